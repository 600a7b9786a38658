"""Input declarations: the fields a mapping reads, their types, and the check applied to each record."""
from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from mappings.errors import MappingDefinitionError, Problem

SCALAR_TYPES = frozenset({"string", "code", "date", "datetime", "int", "decimal", "bool"})
TYPES = SCALAR_TYPES | {"object", "list"}
LONDON = ZoneInfo("Europe/London")

_TRUE = frozenset({"y", "yes", "true", "t", "1"})
_FALSE = frozenset({"n", "no", "false", "f", "0"})
_UK_DATE = re.compile(r"^(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})$")
_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:T00:00(?::00(?:\.0+)?)?(?:Z|[+-]00:?00)?)?$")
_UK_DATETIME = re.compile(
    r"^(\d{1,2})/(\d{1,2})/(\d{4})[ T](\d{1,2}):(\d{2})(?::(\d{2}))?$"
)
_INT = re.compile(r"^[+-]?\d{1,18}$")
_DECIMAL = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
_FIELD_KEYS = frozenset(
    {"type", "required", "from", "columns", "items", "of", "fields", "format", "pattern",
     "max_length", "min", "max", "table", "description"}
)


@dataclass(frozen=True)
class FieldSpec:
    """One declared input field."""

    name: str
    type: str
    required: bool = False
    source: str | None = None  # path in the raw record ("a/b/@c"); defaults to the name
    columns: str | None = None  # flat column group, e.g. "carer_{n}_" (lists of objects only)
    items: tuple[FieldSpec, ...] = ()  # fields of each object in a list
    of: str | None = None  # scalar type of each item in a list
    fields: tuple[FieldSpec, ...] = ()  # fields of an object
    format: str | None = None
    pattern: re.Pattern[str] | None = None
    max_length: int | None = None
    minimum: float | None = None
    maximum: float | None = None
    table: str | None = None

    @property
    def path(self) -> str:
        """Return where the field sits in the raw record."""
        return self.source or self.name

    def walk(self, prefix: str = "") -> Iterable[tuple[str, FieldSpec]]:
        """Yield (expression path, spec) for this field and every nested field."""
        here = f"{prefix}{self.name}"
        yield here, self
        for child in (*self.items, *self.fields):
            yield from child.walk(here + ".")


@dataclass(frozen=True)
class InputSpec:
    """The declared inputs of one mapping."""

    fields: tuple[FieldSpec, ...]
    ignored: frozenset[str] = frozenset()
    null_values: frozenset[str] = frozenset({""})
    date_format: str = "uk"

    def names(self) -> list[str]:
        """Return the top-level names expressions can use."""
        return [f.name for f in self.fields]

    def tables(self) -> dict[str, str]:
        """Return {expression path: code table} for every code field that names a table."""
        return {
            path: spec.table
            for f in self.fields
            for path, spec in f.walk()
            if spec.table
        }


def parse_inputs(raw: Any, *, path: str, ignored: Any = None, null_values: Any = None,
                 date_format: Any = None) -> InputSpec:
    """Return the InputSpec declared by a mapping file's `inputs` block."""
    if not isinstance(raw, Mapping) or not raw:
        raise MappingDefinitionError(path, "`inputs` must be a non-empty mapping", "inputs")
    fields = tuple(_parse_field(str(k), v, path, f"inputs.{k}") for k, v in raw.items())
    ignore = frozenset(str(x) for x in (ignored or []))
    nulls = frozenset({""} | {str(x) for x in (null_values or [])})
    fmt = str(date_format or "uk")
    return InputSpec(fields=fields, ignored=ignore, null_values=nulls, date_format=fmt)


def _parse_field(name: str, raw: Any, path: str, where: str) -> FieldSpec:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise MappingDefinitionError(path, f"input name {name!r} is not an identifier", where)
    if isinstance(raw, str):
        raw = {"type": raw}
    if not isinstance(raw, Mapping):
        raise MappingDefinitionError(path, "an input is a type name or a mapping", where)
    unknown = set(raw) - _FIELD_KEYS
    if unknown:
        raise MappingDefinitionError(path, f"unknown input keys {sorted(unknown)}", where)
    kind = str(raw.get("type", "string"))
    if kind not in TYPES:
        raise MappingDefinitionError(path, f"unknown type {kind!r}", where)
    items: tuple[FieldSpec, ...] = ()
    fields: tuple[FieldSpec, ...] = ()
    of = raw.get("of")
    if kind == "list":
        if "items" in raw and of is not None:
            raise MappingDefinitionError(path, "a list has `items` or `of`, not both", where)
        if "items" in raw:
            if not isinstance(raw["items"], Mapping) or not raw["items"]:
                raise MappingDefinitionError(path, "`items` must be a mapping", where)
            items = tuple(
                _parse_field(str(k), v, path, f"{where}.items.{k}") for k, v in raw["items"].items()
            )
        elif of is None:
            of = "string"
        if of is not None and of not in SCALAR_TYPES:
            raise MappingDefinitionError(path, f"`of` must be a scalar type, not {of!r}", where)
        if raw.get("columns") is not None and not items:
            raise MappingDefinitionError(path, "`columns` needs `items`", where)
    elif kind == "object":
        if not isinstance(raw.get("fields"), Mapping) or not raw["fields"]:
            raise MappingDefinitionError(path, "an object input needs `fields`", where)
        fields = tuple(
            _parse_field(str(k), v, path, f"{where}.fields.{k}") for k, v in raw["fields"].items()
        )
    else:
        for key in ("items", "of", "fields", "columns"):
            if key in raw:
                raise MappingDefinitionError(path, f"`{key}` is only for lists/objects", where)
    columns = raw.get("columns")
    if columns is not None and "{n}" not in str(columns):
        raise MappingDefinitionError(path, "`columns` must contain `{n}`", where)
    pattern = None
    if raw.get("pattern") is not None:
        try:
            pattern = re.compile(str(raw["pattern"]))
        except re.error as exc:
            raise MappingDefinitionError(path, f"bad pattern: {exc}", where) from exc
    return FieldSpec(
        name=name,
        type=kind,
        required=bool(raw.get("required", False)),
        source=str(raw["from"]) if raw.get("from") is not None else None,
        columns=str(columns) if columns is not None else None,
        items=items,
        of=str(of) if of is not None else None,
        fields=fields,
        format=str(raw["format"]) if raw.get("format") is not None else None,
        pattern=pattern,
        max_length=int(raw["max_length"]) if raw.get("max_length") is not None else None,
        minimum=float(raw["min"]) if raw.get("min") is not None else None,
        maximum=float(raw["max"]) if raw.get("max") is not None else None,
        table=str(raw["table"]) if raw.get("table") is not None else None,
    )


class _Missing:
    pass


_MISSING = _Missing()


# The numbered groups a `columns` pattern finds among a record's keys, for the last key list
# seen: every record of a CSV export has the same keys, in the same order.
_HEADS: dict[str, tuple[list[Any], list[tuple[str, list[str]]]]] = {}


def _column_heads(columns: str, record: Mapping[str, Any]) -> list[tuple[str, list[str]]]:
    """Return (head, the record's keys starting with it) per group number, in number order."""
    keys = list(record)
    cached = _HEADS.get(columns)
    if cached is not None and cached[0] == keys:
        return cached[1]
    prefix, _, suffix = columns.partition("{n}")
    numbers: set[int] = set()
    for key in keys:
        if not isinstance(key, str) or not key.startswith(prefix):
            continue
        rest = key[len(prefix):]
        match = re.match(r"(\d+)", rest)
        if match and rest[len(match.group(1)):].startswith(suffix):
            numbers.add(int(match.group(1)))
    heads = []
    for n in sorted(numbers):
        head = f"{prefix}{n}{suffix}"
        heads.append((head, [k for k in keys if isinstance(k, str) and k.startswith(head)]))
    _HEADS[columns] = (keys, heads)
    return heads


@dataclass
class _Checker:
    spec: InputSpec
    location: str
    problems: list[Problem] = field(default_factory=list)
    consumed: set[str] = field(default_factory=set)

    def fail(self, where: str, message: str) -> None:
        self.problems.append(Problem(self.location, where, message))

    def lookup(self, record: Mapping[str, Any], path: str) -> Any:
        value: Any = record
        for part in path.split("/"):
            if isinstance(value, list) and len(value) == 1:
                value = value[0]
            if not isinstance(value, Mapping) or part not in value:
                return _MISSING
            value = value[part]
        return value

    def is_null(self, value: Any) -> bool:
        if value is None or value is _MISSING:
            return True
        if isinstance(value, str):
            return value.strip() in self.spec.null_values
        if isinstance(value, Mapping):
            # An XML element with no content, or with only attributes that are all blank.
            return all(self.is_null(v) for v in value.values())
        if isinstance(value, list):
            return not value
        return False

    def object(self, specs: tuple[FieldSpec, ...], record: Mapping[str, Any], where: str,
               seen_prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for spec in specs:
            if spec.columns is not None:
                out[spec.name] = self.column_group(spec, record, where)
                continue
            raw = self.lookup(record, spec.path)
            self.consumed.add(seen_prefix + spec.path)
            out[spec.name] = self.value(spec, raw, where + spec.path)
        return out

    def column_group(self, spec: FieldSpec, record: Mapping[str, Any], where: str) -> Any:
        assert spec.columns is not None
        items: list[dict[str, Any]] = []
        for head, keys in _column_heads(spec.columns, record):
            flat = {k[len(head):]: record[k] for k in keys}
            for item_spec in spec.items:
                self.consumed.add(head + item_spec.path)
            if all(self.is_null(v) for v in flat.values()):
                continue
            items.append(self.object(spec.items, flat, where + head, "\0"))
        if not items:
            if spec.required:
                self.fail(where + spec.columns, "required but missing")
            return []
        return items

    def value(self, spec: FieldSpec, raw: Any, where: str) -> Any:
        if self.is_null(raw):
            if spec.required:
                self.fail(where, "required but missing")
            return [] if spec.type == "list" else (
                self.empty_object(spec) if spec.type == "object" else None
            )
        if spec.type == "list":
            values = raw if isinstance(raw, list) else [raw]
            out: list[Any] = []
            for index, item in enumerate(values):
                here = f"{where}[{index + 1}]"
                if spec.items:
                    if not isinstance(item, Mapping):
                        self.fail(here, "expected an object")
                        continue
                    if self.is_null(item):
                        continue
                    out.append(self.object(spec.items, item, here + "/", self.strip(where) + "/"))
                else:
                    assert spec.of is not None
                    if self.is_null(item):
                        continue
                    out.append(self.scalar(spec.of, spec, item, here))
            if spec.required and not out:
                self.fail(where, "required but missing")
            return out
        if spec.type == "object":
            if not isinstance(raw, Mapping):
                self.fail(where, "expected an object")
                return self.empty_object(spec)
            return self.object(spec.fields, raw, where + "/", self.strip(where) + "/")
        return self.scalar(spec.type, spec, raw, where)

    @staticmethod
    def strip(where: str) -> str:
        return re.sub(r"\[\d+\]", "", where)

    def empty_object(self, spec: FieldSpec) -> dict[str, Any]:
        return {f.name: ([] if f.type == "list" else None) for f in spec.fields}

    def scalar(self, kind: str, spec: FieldSpec, raw: Any, where: str) -> Any:
        if isinstance(raw, Mapping):
            if "#text" in raw:
                raw = raw["#text"]
            else:
                self.fail(where, f"expected a {kind}, got an object")
                return None
        if isinstance(raw, list):
            self.fail(where, f"expected one {kind}, got a list")
            return None
        try:
            value = _convert(kind, raw, spec.format or self.spec.date_format)
        except ValueError as exc:
            self.fail(where, str(exc))
            return None
        if isinstance(value, str):
            if spec.pattern is not None and not spec.pattern.fullmatch(value):
                self.fail(where, "does not match the declared pattern")
                return None
            if spec.max_length is not None and len(value) > spec.max_length:
                self.fail(where, f"longer than {spec.max_length} characters")
                return None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if spec.minimum is not None and value < spec.minimum:
                self.fail(where, f"less than {spec.minimum:g}")
                return None
            if spec.maximum is not None and value > spec.maximum:
                self.fail(where, f"more than {spec.maximum:g}")
                return None
        return value


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")  # below 32, except tab, LF and CR


def _convert(kind: str, raw: Any, date_format: str) -> Any:
    if kind in ("string", "code"):
        if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
            raise ValueError(f"expected text, got {type(raw).__name__}")
        text = raw.strip() if isinstance(raw, str) else str(raw)
        if _CONTROL.search(text) is not None:
            raise ValueError("contains control characters")
        return text
    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, (str, int)):
            text = str(raw).strip().casefold()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
        raise ValueError("expected yes/no, true/false, Y/N or 1/0")
    if kind == "int":
        if isinstance(raw, bool):
            raise ValueError("expected a whole number")
        if isinstance(raw, int):
            return raw
        if isinstance(raw, float) and raw.is_integer():
            return int(raw)
        if isinstance(raw, str) and _INT.match(raw.strip()):
            return int(raw.strip())
        raise ValueError("expected a whole number")
    if kind == "decimal":
        if isinstance(raw, bool):
            raise ValueError("expected a number")
        if isinstance(raw, (int, float)):
            number = float(raw)
        elif isinstance(raw, str) and _DECIMAL.match(raw.strip()):
            number = float(raw.strip())
        else:
            raise ValueError("expected a number")
        if not math.isfinite(number):
            raise ValueError("expected a finite number")
        return number
    if not isinstance(raw, str):
        raise ValueError(f"expected a {kind} as text")  # noqa: TRY004 - callers report ValueError
    if kind == "date":
        return parse_date(raw, date_format)
    if kind == "datetime":
        return parse_datetime(raw)
    raise ValueError(f"unknown type {kind}")  # pragma: no cover - types are checked at load


def parse_date(text: str, date_format: str = "uk") -> dt.date:
    """Return the date in `text`: ISO always, else day/month/year (or a strptime format)."""
    text = text.strip()
    try:
        iso = _ISO_DATE.match(text)
        if iso:
            value = dt.date(int(iso.group(1)), int(iso.group(2)), int(iso.group(3)))
        elif date_format == "uk":
            uk = _UK_DATE.match(text)
            if not uk:
                raise ValueError
            value = dt.date(int(uk.group(3)), int(uk.group(2)), int(uk.group(1)))
        elif date_format == "iso":
            raise ValueError
        else:
            value = dt.datetime.strptime(text, date_format).date()
    except ValueError:
        shown = "dd/mm/yyyy" if date_format == "uk" else date_format
        raise ValueError(f"not a valid date (expected {shown} or yyyy-mm-dd)") from None
    if not 1900 <= value.year <= 2100:
        raise ValueError("date out of range")
    return value


def parse_datetime(text: str) -> dt.datetime:
    """Return the instant in `text` (ISO 8601 or dd/mm/yyyy hh:mm); naive times are UK local."""
    text = text.strip()
    uk = _UK_DATETIME.match(text)
    try:
        if uk:
            d, m, y, hh, mm, ss = uk.groups()
            value = dt.datetime(int(y), int(m), int(d), int(hh), int(mm), int(ss or 0))
        elif re.match(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}", text):
            value = dt.datetime.fromisoformat(text)
        else:
            raise ValueError
    except ValueError:
        raise ValueError("not a valid date and time (expected ISO 8601 or dd/mm/yyyy hh:mm)") \
            from None
    if not 1900 <= value.year <= 2100:
        raise ValueError("date out of range")
    if value.tzinfo is None:
        value = value.replace(tzinfo=LONDON)
    return value.replace(microsecond=0)


def check_record(spec: InputSpec, record: Any, location: str) -> tuple[dict[str, Any],
                                                                       list[Problem], set[str]]:
    """Return (typed values, problems, raw paths read) for one raw record."""
    checker = _Checker(spec, location)
    if not isinstance(record, Mapping):
        checker.fail("(record)", "a record must be an object")
        return {}, checker.problems, set()
    extra = record.get("__extra__")
    if extra:
        checker.fail("(row)", f"row has {len(extra)} more values than the header")
    values = checker.object(spec.fields, record, "", "")
    consumed = {c for c in checker.consumed if not c.startswith("\0")}
    consumed |= set(spec.ignored)
    return values, checker.problems, consumed


def raw_paths(record: Any, prefix: str = "") -> set[str]:
    """Return the paths of every non-empty leaf in a raw record (list indexes dropped)."""
    out: set[str] = set()
    if isinstance(record, Mapping):
        for key, value in record.items():
            if key == "__extra__":
                continue
            out |= raw_paths(value, f"{prefix}{key}/")
    elif isinstance(record, list):
        for item in record:
            out |= raw_paths(item, prefix)
    elif record is not None and not (isinstance(record, str) and not record.strip()):
        out.add(prefix.rstrip("/").removesuffix("/#text"))
    return out


def unconsumed(record: Any, consumed: set[str]) -> set[str]:
    """Return raw leaf paths of `record` that no declared input (or `ignored`) reads."""
    missing = set()
    for path in raw_paths(record):
        parts = path.split("/")
        if not any("/".join(parts[:i]) in consumed for i in range(1, len(parts) + 1)):
            missing.add(path)
    return missing
