"""Simple leaves evaluated without a template give exactly what the sandboxed template gives."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from jinja2.exceptions import UndefinedError

from mappings import MappingError, TableUsage, load_registry
from mappings.engine import Expr, Run
from mappings.expressions import RUN, direct_evaluator, make_environment

RECORDED = "2026-09-01T09:00:00Z"
SAMPLES = Path(__file__).resolve().parents[3] / "fixtures" / "sources"


def _exprs(node: Any, seen: set[int] | None = None) -> list[Expr]:
    """Return every compiled expression reachable from a node (partials included once)."""
    seen = set() if seen is None else seen
    if id(node) in seen:
        return []
    seen.add(id(node))
    if isinstance(node, Expr):
        return [node]
    children: list[Any] = []
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        children = [getattr(node, f.name) for f in dataclasses.fields(node)]
    elif isinstance(node, dict):
        children = list(node.values())
    elif isinstance(node, (list, tuple)):
        children = list(node)
    return [e for child in children for e in _exprs(child, seen)]


def _map_samples(registry: Any) -> list[Any]:
    out: list[Any] = []
    for source in registry.sources():
        usage = TableUsage()
        for sample in sorted((SAMPLES / source).glob("sample.*")):
            with sample.open("rb") as stream:
                for location, raw in registry.read_records(source, stream):
                    try:
                        mapped = registry.map_record(source, raw, location, recorded=RECORDED,
                                                     usage=usage)
                        out.append((location, mapped.resources))
                    except MappingError as exc:
                        out.append((location, [dataclasses.astuple(p) for p in exc.problems]))
        out.append((source, sorted((t, sorted(k)) for t, k in usage.used.items()),
                    sorted(usage.missing.items())))
    return out


def test_every_sample_maps_the_same_with_and_without_direct_evaluation() -> None:
    registry = load_registry()
    exprs = _exprs(registry._mappings)
    direct = [e for e in exprs if e.direct is not None]
    assert len(exprs) > 300 and len(direct) > 0.9 * len(exprs)
    with_direct = _map_samples(registry)
    for expr in direct:
        expr.direct = None
    assert _map_samples(registry) == with_direct
    assert sum(len(r[1]) for r in with_direct if len(r) == 2) > 3000


class _Thing:
    visible = "yes"
    _hidden = "no"


TABLES = load_registry().tables("social-care")
TABLES["sex"] = TABLES["gender"]
SCOPE: dict[str, Any] = {
    "name": "  Ada ", "none_field": None, "row": {"ID": "C1", "items": "field"},
    "rows": [{"ID": "A"}, {"ID": "B"}], "thing": _Thing(), "code_value": "F", "count": 3,
}


@pytest.mark.parametrize("text", [
    "name", "missing", "row.ID", "row['ID']", "row.items", "row.missing", "rows",
    "missing.attr", "none_field.attr", "thing.visible", "thing._hidden",
    "name.__class__", "row.__class__.__mro__", "systems.NHS_NUMBER", "systems.missing",
    "present(name)", "present(missing)", "present(none_field)", "first(missing, name)",
    "join('/', row.ID, missing, name)", "names(name, 'jo anne')",
    "name | upper", "missing | upper", "none_field | name_case", "name | trim | lower",
    "row.ID if present(row.ID) else none", "'a' if missing else 'b'",
    "name or 'x'", "missing or 'x'", "none_field and name", "not missing",
    "count == 3", "code_value in ['F', 'M']", "code_value not in ['F']",
    "not none_field is none", "missing is defined", "[row.ID, name]",
    "ref('Patient', row.ID)", "rid('Patient', missing)", "lookup('sex', code_value)",
    "code('sex', 'Q')", "display('sex', code_value)", "local_system('carer')",
    "is_valid_nhs('9434765919')", "percent(count, 4)",
])
def test_a_simple_expression_evaluates_as_its_template(text: str) -> None:
    env = make_environment()
    template = env.compile_expression(text, undefined_to_none=True)
    direct = direct_evaluator(env, text)
    assert direct is not None, text
    tables = dict(TABLES)

    def scope() -> dict[str, Any]:
        return {**SCOPE, RUN: Run("social-care", tables, "row 2")}

    def outcome(fn: Any) -> Any:
        try:
            return ("value", fn())
        except Exception as exc:  # noqa: BLE001 - the two must fail alike
            return ("raised", type(exc))

    expected = outcome(lambda: template(scope()))
    assert outcome(lambda: direct(scope(), template)) == expected
    if text == "missing.attr":
        assert expected == ("raised", UndefinedError)
    if text in ("name.__class__", "thing._hidden"):
        assert expected == ("value", None)  # the sandbox hides it


def test_a_record_field_named_like_a_function_is_left_to_the_template() -> None:
    env = make_environment()
    template = env.compile_expression("present(name)", undefined_to_none=True)
    direct = direct_evaluator(env, "present(name)")
    assert direct is not None
    with pytest.raises(Exception) as from_template:  # the sandbox's own error
        template({"present": "a string", "name": "x"})
    with pytest.raises(from_template.type):
        direct({"present": "a string", "name": "x"}, template)
    assert direct({"name": "x"}, template) is True


@pytest.mark.parametrize("text", [
    "count - 1", "rows | map(attribute='ID') | list", "row.ID ~ name", "range(3)",
    "name.upper()", "row[name]", "count if name",
])
def test_other_expressions_stay_with_the_template(text: str) -> None:
    assert direct_evaluator(make_environment(), text) is None
