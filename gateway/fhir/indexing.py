"""Extract search-index rows from a resource, by its registered search parameters."""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

from gateway.fhir.registry import ResourceType, SearchParam

_HUMAN_NAME_PARTS = ("family", "given", "prefix", "suffix", "text")
_ADDRESS_PARTS = ("line", "city", "district", "state", "postalCode", "country", "text")
# The pure string functions below are cached: ingest meets the same names, dates and
# references many times (codes, sources, golden Patients recomposed from their members).
_CACHE_SIZE = 4096
_DATE_RE = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?"
    r"(Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


@dataclass(frozen=True)
class IndexRows:
    """Index rows for one resource, by table."""

    tokens: list[tuple[str, str | None, str]]
    strings: list[tuple[str, str, str]]
    dates: list[tuple[str, str, str]]
    references: list[tuple[str, str | None, str]]
    numbers: list[tuple[str, float]]
    uris: list[tuple[str, str]]


@lru_cache(maxsize=_CACHE_SIZE)
def normalise_string(value: str) -> str:
    """Return the case- and accent-insensitive form used for string search."""
    decomposed = unicodedata.normalize("NFKD", value)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.casefold().split())


def _fmt(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


@lru_cache(maxsize=_CACHE_SIZE)
def date_range(value: str) -> tuple[str, str] | None:
    """Return the UTC [low, high] instant range a FHIR date/dateTime/instant covers, or None."""
    m = _DATE_RE.match(value)
    if not m:
        return None
    year, month, day, hh, mi, ss, frac, tz = m.groups()
    tzinfo = UTC
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        tzinfo = timezone(sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6])))
    try:
        y = int(year)
        if month is None:
            low = datetime(y, 1, 1, tzinfo=tzinfo)
            high = datetime(y + 1, 1, 1, tzinfo=tzinfo)
        elif day is None:
            mo = int(month)
            low = datetime(y, mo, 1, tzinfo=tzinfo)
            high = datetime(y + (mo == 12), mo % 12 + 1, 1, tzinfo=tzinfo)
        elif hh is None:
            low = datetime(y, int(month), int(day), tzinfo=tzinfo)
            high = low + timedelta(days=1)
        else:
            second = int(ss) if ss else 0
            micro = int((frac or ".0")[1:7].ljust(6, "0"))
            low = datetime(y, int(month), int(day), int(hh), int(mi), second, micro, tzinfo=tzinfo)
            if frac:
                high = low + timedelta(microseconds=1)
            elif ss:
                high = low + timedelta(seconds=1)
            else:
                high = low + timedelta(minutes=1)
    except ValueError:
        return None
    return _fmt(low), _fmt(high - timedelta(microseconds=1))


def _step(node: Any, key: str, choice: bool, out: list[Any]) -> None:
    if isinstance(node, list):
        for item in node:
            _step(item, key, choice, out)
        return
    if not isinstance(node, dict):
        return
    if choice:
        stem = key[:-3]
        for k, v in node.items():
            if k.startswith(stem) and len(k) > len(stem) and k[len(stem)].isupper():
                out.append(v)
    elif key in node:
        out.append(node[key])


def _walk(node: Any, path: tuple[str, ...]) -> list[Any]:
    """Return the values at a path, in document order (lists on the way are entered)."""
    if path and type(node) is dict and path[0] not in node and not path[0].endswith("[x]"):
        return []  # most search parameters of a type find nothing in a given resource
    current = [node]
    for key in path:
        found: list[Any] = []
        choice = key.endswith("[x]")
        for item in current:
            _step(item, key, choice, found)
        if not found:
            return found
        current = found
    out: list[Any] = []
    for value in current:
        if isinstance(value, list):
            out.extend(value)
        else:
            out.append(value)
    return out


@lru_cache(maxsize=_CACHE_SIZE)
def parse_reference(ref: str) -> tuple[str | None, str] | None:
    """Return (type, id) for a literal reference ("Patient/1", a full URL, or "#contained")."""
    if not ref or ref.startswith(("#", "urn:")):
        return None
    parts = ref.split("?")[0].rstrip("/").split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2 and parts[-2][:1].isupper():
        return parts[-2], parts[-1]
    return None


def _tokens(param: SearchParam, value: Any) -> Iterator[tuple[str | None, str]]:
    if isinstance(value, bool):
        yield None, "true" if value else "false"
    elif isinstance(value, str):
        yield None, value
    elif isinstance(value, dict):
        if "coding" in value:
            for coding in value.get("coding") or ():
                if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                    yield coding.get("system"), coding["code"]
        elif param.shape == "contact-point":
            if isinstance(value.get("value"), str):
                yield None, value["value"]
        elif isinstance(value.get("code"), str):
            yield value.get("system"), value["code"]
        elif isinstance(value.get("value"), str):
            yield value.get("system"), value["value"]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        parts = _HUMAN_NAME_PARTS if ("family" in value or "given" in value) else _ADDRESS_PARTS
        if not any(p in value for p in parts):
            parts = _HUMAN_NAME_PARTS + _ADDRESS_PARTS
        for part in parts:
            sub = value.get(part)
            if isinstance(sub, str):
                yield sub
            elif isinstance(sub, list):
                yield from (s for s in sub if isinstance(s, str))


def _dates(value: Any) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        rng = date_range(value)
        if rng:
            yield rng
    elif isinstance(value, dict) and ("start" in value or "end" in value):
        start = date_range(value["start"]) if isinstance(value.get("start"), str) else None
        end = date_range(value["end"]) if isinstance(value.get("end"), str) else None
        low = start[0] if start else "0001-01-01T00:00:00.000000"
        high = end[1] if end else "9999-12-31T23:59:59.999999"
        yield low, high


_Adder = Callable[[IndexRows, Any], None]
_Emit = Callable[[IndexRows, dict[str, Any]], None]
_Entry = tuple[int, SearchParam, tuple[str, ...], _Adder, _Emit]
# Resources of one type mostly come with the same top-level keys (one mapping makes them), so
# the entries a key list selects are remembered per type, for this many key lists at most.
_SELECTIONS = 256


@dataclass(frozen=True)
class _Plan:
    """A type's (param, path) pairs, by the top-level key each path starts with."""

    params: tuple[SearchParam, ...]  # what the plan was built from
    by_key: dict[str, list[_Entry]]
    always: list[_Entry]  # paths starting with a choice element (or empty): always walked
    selections: dict[tuple[str, ...], tuple[_Emit, ...]]  # by a resource's top-level keys


_PLANS: dict[int, tuple[ResourceType, _Plan]] = {}


def _plan(rtype: ResourceType) -> _Plan:
    params = tuple(rtype.params.values())
    cached = _PLANS.get(id(rtype))
    if cached is not None and cached[0] is rtype and cached[1].params == params:
        return cached[1]
    by_key: dict[str, list[_Entry]] = {}
    always: list[_Entry] = []
    order = 0
    for param in params:
        adder = _adder(param)
        for path in param.paths:
            if not path or path[0].endswith("[x]"):
                always.append((order, param, path, adder, _walking(path, adder)))
            else:
                by_key.setdefault(path[0], []).append(
                    (order, param, path, adder, _emitter(path, adder)))
            order += 1
    plan = _Plan(params, by_key, always, {})
    _PLANS[id(rtype)] = (rtype, plan)
    return plan


def _walking(path: tuple[str, ...], add: _Adder) -> _Emit:
    """Return a function adding the rows of every value `_walk` finds at the path."""
    def emit(rows: IndexRows, node: dict[str, Any]) -> None:
        for value in _walk(node, path):
            add(rows, value)
    return emit


def _emitter(path: tuple[str, ...], add: _Adder) -> _Emit:
    """Return `_walking(path, add)` for a path without choice elements, for a resource that
    has the path's first key: the same values in the same order, with fewer calls."""
    if any(key.endswith("[x]") for key in path):
        return _walking(path, add)
    first, rest = path[0], path[1:]
    if not rest:
        def emit_one(rows: IndexRows, node: dict[str, Any]) -> None:
            value = node[first]
            if isinstance(value, list):
                for item in value:
                    add(rows, item)
            else:
                add(rows, value)
        return emit_one

    def emit(rows: IndexRows, node: dict[str, Any]) -> None:
        current = [node[first]]
        for key in rest:
            found: list[Any] = []
            for item in current:
                if type(item) is dict:
                    if key in item:
                        found.append(item[key])
                else:
                    _step(item, key, False, found)
            if not found:
                return
            current = found
        for value in current:
            if isinstance(value, list):
                for item in value:
                    add(rows, item)
            else:
                add(rows, value)
    return emit


def _select(plan: _Plan, resource: dict[str, Any]) -> tuple[_Emit, ...]:
    """Return the emitters of the paths whose first key the resource has, in plan order."""
    keys = tuple(resource)
    found = plan.selections.get(keys)
    if found is not None:
        return found
    entries = list(plan.always)
    by_key = plan.by_key
    for key in keys:
        hit = by_key.get(key)
        if hit is not None:
            entries.extend(hit)
    entries.sort(key=_order)
    found = tuple(entry[4] for entry in entries)
    if len(plan.selections) < _SELECTIONS:
        plan.selections[keys] = found
    return found


def extract_index(rtype: ResourceType, resource: dict[str, Any]) -> IndexRows:
    """Return every index row the resource's registered search parameters produce."""
    rows = IndexRows([], [], [], [], [], [])
    if type(resource) is not dict:
        for param in rtype.params.values():
            for path in param.paths:
                for value in _walk(resource, path):
                    _add(rows, param, value)
        return rows
    # Only the paths whose first key the resource has can find anything: walk those, in the
    # order of the parameters and their paths.
    for emit in _select(_plan(rtype), resource):
        emit(rows, resource)
    return rows


def _order(entry: _Entry) -> int:
    return entry[0]


def _adder(param: SearchParam) -> _Adder:
    """Return _add for one parameter, its type decided once."""
    name = param.name
    kind = param.type
    if kind == "token":
        def add(rows: IndexRows, value: Any) -> None:
            if type(value) is str:
                rows.tokens.append((name, None, value))
                return
            for system, code in _tokens(param, value):
                rows.tokens.append((name, system, code))
    elif kind == "string":
        def add(rows: IndexRows, value: Any) -> None:
            for s in _strings(value):
                rows.strings.append((name, normalise_string(s)[:512], s[:512]))
    elif kind == "date":
        def add(rows: IndexRows, value: Any) -> None:
            for low, high in _dates(value):
                rows.dates.append((name, low, high))
    elif kind == "reference":
        targets = param.targets

        def add(rows: IndexRows, value: Any) -> None:
            if isinstance(value, dict):
                ref = value.get("reference")
                if isinstance(ref, str):
                    parsed = parse_reference(ref)
                    if parsed and (not targets or parsed[0] in targets):
                        rows.references.append((name, parsed[0], parsed[1]))
    elif kind in ("number", "uri"):
        def add(rows: IndexRows, value: Any) -> None:
            _add(rows, param, value)
    else:
        def add(rows: IndexRows, value: Any) -> None:
            return None
    return add


def _add(rows: IndexRows, param: SearchParam, value: Any) -> None:
    name = param.name
    if param.type == "token":
        for system, code in _tokens(param, value):
            rows.tokens.append((name, system, code))
    elif param.type == "string":
        for s in _strings(value):
            rows.strings.append((name, normalise_string(s)[:512], s[:512]))
    elif param.type == "date":
        for low, high in _dates(value):
            rows.dates.append((name, low, high))
    elif param.type == "reference":
        if isinstance(value, dict) and isinstance(value.get("reference"), str):
            parsed = parse_reference(value["reference"])
            if parsed and (not param.targets or parsed[0] in param.targets):
                rows.references.append((name, parsed[0], parsed[1]))
    elif param.type == "number":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            rows.numbers.append((name, float(value)))
    elif param.type == "uri" and isinstance(value, str):
        rows.uris.append((name, value[:1024]))
