"""Parse FHIR search query parameters into criteria the store can run.

Supported: string (starts-with by default, `:exact`, `:contains`), token (`system|code`, `code`,
`|code`, `system|`, `:not`), date with prefixes (eq, ne, lt, gt, le, ge, sa, eb, ap), reference
(`Type/id`, `id`, full URL, `:Type` modifier), number and uri; `:missing` on any; `_id`,
`_lastUpdated`, `_count`, `_offset` (for paging links), `_sort`, `_include`, `_revinclude`,
`_summary=count`, `_total`. Comma-separated values are ORed; repeated parameters are ANDed.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import BadRequest, Issue, UnsupportedSearchParameter
from gateway.fhir.indexing import date_range, parse_reference
from gateway.fhir.registry import Registry, ResourceType, SearchParam

DATE_PREFIXES = ("eq", "ne", "lt", "gt", "le", "ge", "sa", "eb", "ap")
NUMBER_PREFIXES = ("eq", "ne", "lt", "gt", "le", "ge")
RESULT_PARAMS = {
    "_count", "_sort", "_include", "_revinclude", "_summary", "_total", "_format",
    "_elements", "_offset", "_pretty", "_getpages",
}
MODIFIERS = {
    "string": {"exact", "contains", "missing"},
    "token": {"not", "missing"},
    "date": {"missing"},
    "reference": {"missing"},
    "number": {"missing"},
    "uri": {"missing", "below"},
}
_ESCAPE = re.compile(r"\\([,$|\\])")


@dataclass(frozen=True)
class Criterion:
    """One ANDed search condition: a parameter, its kind, a modifier and ORed values."""

    name: str
    kind: str  # string token date reference number uri id lastUpdated
    modifier: str | None
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Include:
    """An `_include` or `_revinclude` directive: source type, reference parameter, target type."""

    source_type: str
    param: str
    target_type: str | None


@dataclass(frozen=True)
class AccessFilter:
    """What the caller may see of a type, as the store applies it in SQL.

    rules: ANDed with the query; any one rule admits a resource: ("all",), ("own",) or
    ("codes", ((system, code), ...)). owner: the caller's agency (for "own" and restricted).
    hide_restricted: leave out resources labelled restricted (R) that the caller does not own.
    """

    rules: tuple[tuple[Any, ...], ...]
    owner: str
    hide_restricted: bool = False


@dataclass
class SearchQuery:
    """A parsed search."""

    res_type: str
    criteria: list[Criterion] = field(default_factory=list)
    sort: list[tuple[str, str, bool]] = field(default_factory=list)  # (name, kind, descending)
    count: int = 20
    offset: int = 0
    includes: list[Include] = field(default_factory=list)
    revincludes: list[Include] = field(default_factory=list)
    summary_count: bool = False
    warnings: list[Issue] = field(default_factory=list)
    access: AccessFilter | None = None


def _split_values(raw: str) -> list[str]:
    parts: list[str] = []
    buf: list[str] = []
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\" and i + 1 < len(raw):
            buf.append(raw[i : i + 2])
            i += 2
            continue
        if ch == ",":
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
        i += 1
    parts.append("".join(buf))
    return parts


def _unescape(value: str) -> str:
    return _ESCAPE.sub(r"\1", value)


def _split_pipe(value: str) -> tuple[str, str] | None:
    i = 0
    while i < len(value):
        if value[i] == "\\":
            i += 2
            continue
        if value[i] == "|":
            return value[:i], value[i + 1 :]
        i += 1
    return None


def _token_value(raw: str) -> tuple[str | None, str | None, bool]:
    """Return (system, code, system_given) for a token search value."""
    pair = _split_pipe(raw)
    if pair is None:
        return None, _unescape(raw), False
    system, code = pair
    return (_unescape(system) or None), (_unescape(code) or None), True


def _date_value(name: str, raw: str) -> tuple[str, str, str]:
    prefix = "eq"
    if raw[:2] in DATE_PREFIXES and not raw[:2].isdigit():
        prefix, raw = raw[:2], raw[2:]
    rng = date_range(raw)
    if rng is None:
        raise BadRequest(
            f"search parameter '{name}' needs a FHIR date, dateTime or instant",
            issues=[Issue("error", "invalid",
                          f"search parameter '{name}' needs a FHIR date, dateTime or instant")],
        )
    return prefix, rng[0], rng[1]


def _number_value(name: str, raw: str) -> tuple[str, float]:
    prefix = "eq"
    if raw[:2] in NUMBER_PREFIXES:
        prefix, raw = raw[:2], raw[2:]
    try:
        return prefix, float(raw)
    except ValueError as exc:
        raise BadRequest(f"search parameter '{name}' needs a number") from exc


def _reference_value(param: SearchParam, modifier: str | None, raw: str) -> tuple[str | None, str]:
    raw = _unescape(raw)
    parsed = parse_reference(raw)
    if parsed:
        rtype, rid = parsed
    elif "/" in raw:
        raise BadRequest(f"search parameter '{param.name}' has a malformed reference")
    else:
        rtype, rid = None, raw
    if modifier:
        if rtype and rtype != modifier:
            raise BadRequest(f"search parameter '{param.name}' type modifier conflicts with value")
        rtype = modifier
    if rtype is None and len(param.targets) == 1:
        rtype = next(iter(param.targets))
    return rtype, rid


def _criterion(rtype: ResourceType, key: str, raw_values: list[str]) -> Criterion:
    name, _, modifier = key.partition(":")
    mod = modifier or None
    if name == "_id":
        if mod:
            raise UnsupportedSearchParameter(f"modifier ':{mod}' is not supported on _id")
        return Criterion("_id", "id", None, tuple(_unescape(v) for v in raw_values))
    if name == "_lastUpdated":
        if mod:
            raise UnsupportedSearchParameter(f"modifier ':{mod}' is not supported on _lastUpdated")
        return Criterion(name, "lastUpdated", None,
                         tuple(_date_value(name, v) for v in raw_values))
    param = rtype.params.get(name)
    if param is None:
        raise UnsupportedSearchParameter(
            f"search parameter '{name}' is not supported for {rtype.name}"
        )
    if mod == "missing":
        if raw_values not in (["true"], ["false"]):
            raise BadRequest(f"':missing' on '{name}' takes true or false")
        return Criterion(name, param.type, "missing", (raw_values[0] == "true",))
    if mod and param.type == "reference":
        if not (mod[:1].isupper() and mod.isalpha()):
            raise UnsupportedSearchParameter(f"modifier ':{mod}' is not supported on '{name}'")
    elif mod and mod not in MODIFIERS[param.type]:
        raise UnsupportedSearchParameter(f"modifier ':{mod}' is not supported on '{name}'")
    values: tuple[Any, ...]
    if param.type == "string":
        values = tuple(_unescape(v) for v in raw_values)
    elif param.type == "token":
        values = tuple(_token_value(v) for v in raw_values)
    elif param.type == "date":
        values = tuple(_date_value(name, v) for v in raw_values)
    elif param.type == "reference":
        values = tuple(_reference_value(param, mod, v) for v in raw_values)
        mod = None
    elif param.type == "number":
        values = tuple(_number_value(name, v) for v in raw_values)
    else:
        values = tuple(_unescape(v) for v in raw_values)
    return Criterion(name, param.type, mod, values)


def _include(registry: Registry, raw: str, *, reverse: bool, base_type: str) -> Include:
    parts = raw.split(":")
    if len(parts) not in (2, 3):
        raise BadRequest(f"'{'_revinclude' if reverse else '_include'}' takes Type:parameter")
    source, pname = parts[0], parts[1]
    target = parts[2] if len(parts) == 3 else None
    src = registry.get(source)
    if src is None:
        raise UnsupportedSearchParameter(f"unknown resource type '{source}' in include")
    if not reverse and source != base_type:
        raise UnsupportedSearchParameter("_include must name the searched type (no :iterate)")
    param = src.params.get(pname)
    if param is None or param.type != "reference":
        raise UnsupportedSearchParameter(f"'{source}:{pname}' is not a reference parameter")
    if reverse and param.targets and base_type not in param.targets:
        raise UnsupportedSearchParameter(f"'{source}:{pname}' cannot point to {base_type}")
    return Include(source, pname, target if not reverse else base_type)


def parse_search(
    registry: Registry,
    rtype: ResourceType,
    items: Iterable[tuple[str, str]],
    *,
    default_count: int,
    max_count: int,
    lenient: bool = False,
) -> SearchQuery:
    """Parse (name, value) query pairs into a SearchQuery; unknown parameters raise unless lenient."""
    query = SearchQuery(rtype.name, count=default_count)
    for key, raw in items:
        name = key.partition(":")[0]
        if name in RESULT_PARAMS:
            _result_param(registry, rtype, query, name, key, raw, max_count)
            continue
        if raw == "":
            continue
        try:
            query.criteria.append(_criterion(rtype, key, _split_values(raw)))
        except UnsupportedSearchParameter as exc:
            if not lenient:
                raise
            query.warnings.append(Issue("warning", "not-supported", exc.message))
    return query


def _result_param(registry: Registry, rtype: ResourceType, query: SearchQuery, name: str,
                  key: str, raw: str, max_count: int) -> None:
    if name in ("_count", "_offset"):
        try:
            number = int(raw)
        except ValueError as exc:
            raise BadRequest(f"{name} must be a non-negative integer") from exc
        if number < 0:
            raise BadRequest(f"{name} must be a non-negative integer")
        if name == "_count":
            query.count = min(number, max_count)
            if number > max_count:
                query.warnings.append(Issue(
                    "information", "informational", f"_count reduced to the maximum {max_count}"))
        else:
            query.offset = number
    elif name == "_sort":
        for item in raw.split(","):
            desc = item.startswith("-")
            pname = item[1:] if desc else item
            if pname in ("_id", "_lastUpdated"):
                query.sort.append((pname, pname, desc))
                continue
            param = rtype.params.get(pname)
            if param is None or param.type not in ("string", "date", "token", "number", "uri"):
                raise UnsupportedSearchParameter(f"cannot sort {rtype.name} by '{pname}'")
            query.sort.append((pname, param.type, desc))
    elif name == "_include":
        if key != "_include":
            raise UnsupportedSearchParameter(f"'{key}' is not supported")
        query.includes.append(_include(registry, raw, reverse=False, base_type=rtype.name))
    elif name == "_revinclude":
        if key != "_revinclude":
            raise UnsupportedSearchParameter(f"'{key}' is not supported")
        query.revincludes.append(_include(registry, raw, reverse=True, base_type=rtype.name))
    elif name == "_summary":
        if raw == "count":
            query.summary_count = True
        elif raw != "false":
            raise UnsupportedSearchParameter(f"_summary={raw} is not supported (count, false)")
    elif name == "_elements":
        raise UnsupportedSearchParameter("_elements is not supported")
    # _format, _pretty, _total and _getpages are handled by the caller or ignored.
