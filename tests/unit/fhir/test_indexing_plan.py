"""Index extraction by per-type plans gives the rows of walking every parameter's paths."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.fhir import indexing
from gateway.fhir.indexing import IndexRows, extract_index
from gateway.fhir.registry import ResourceType, load_registry

ROOT = Path(__file__).resolve().parents[3]
REGISTRY = load_registry()


def _every_path(rtype: ResourceType, resource: Any) -> IndexRows:
    """Index rows as every parameter's every path gives them, in order (no plan)."""
    rows = IndexRows([], [], [], [], [], [])
    for param in rtype.params.values():
        for path in param.paths:
            for value in indexing._walk(resource, path):
                indexing._add(rows, param, value)
    return rows


def _resources() -> list[dict[str, Any]]:
    out = []
    for path in sorted((ROOT / "fixtures" / "sources").glob("*/golden/sample.json")):
        for record in json.loads(path.read_text("utf-8"))["records"]:
            out.extend(record["resources"])
    from tests.unit.validation.conftest import SAMPLES

    return out + [copy.deepcopy(r) for r in SAMPLES.values()]


RESOURCES = _resources()


def test_every_sample_resource_gives_the_same_rows_in_the_same_order() -> None:
    checked = 0
    for resource in RESOURCES:
        rtype = REGISTRY.get(resource["resourceType"])
        if rtype is None:
            continue
        assert extract_index(rtype, resource) == _every_path(rtype, resource)
        checked += 1
    assert checked > 1000


def test_every_type_with_every_top_level_key_in_reverse_order() -> None:
    for resource in RESOURCES:
        rtype = REGISTRY.get(resource["resourceType"])
        if rtype is None:
            continue
        backwards = dict(reversed(list(resource.items())))
        assert extract_index(rtype, backwards) == _every_path(rtype, backwards)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8)
    | st.sampled_from(["Patient/p1", "2024-01-02", "urn:uuid:x", "final"]),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(["reference", "coding", "code", "system", "value",
                                       "start", "end", "family", "given", "text", "line"]),
                      inner, max_size=4),
    max_leaves=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(RESOURCES), st.data())
def test_damaged_resources_give_the_same_rows(resource: dict[str, Any],
                                              data: st.DataObject) -> None:
    rtype = REGISTRY.get(resource["resourceType"])
    if rtype is None:
        return
    damaged = copy.deepcopy(resource)
    keys = sorted({p[0] for param in rtype.params.values() for p in param.paths if p}
                  | set(damaged))
    for key in data.draw(st.lists(st.sampled_from(keys), max_size=4)):
        if key.endswith("[x]"):
            key = key[:-3] + data.draw(st.sampled_from(["DateTime", "Period", "String"]))
        damaged[key] = data.draw(JSON)
    assert _outcome(extract_index, rtype, damaged) == _outcome(_every_path, rtype, damaged)


def _outcome(extract: Any, rtype: ResourceType, resource: Any) -> Any:
    # Resources are validated before they are indexed; invalid shapes may raise, and then the
    # same way.
    try:
        return extract(rtype, resource)
    except Exception as exc:  # noqa: BLE001
        return type(exc)


def _emitted(path: tuple[str, ...], resource: dict[str, Any]) -> Any:
    """The values a compiled path emitter hands to its row builder (or the exception type)."""
    seen: list[Any] = []
    emit = indexing._emitter(path, lambda rows, value: seen.append(value))
    try:
        emit(IndexRows([], [], [], [], [], []), resource)
    except Exception as exc:  # noqa: BLE001
        return type(exc)
    return seen


def _walked(path: tuple[str, ...], resource: dict[str, Any]) -> Any:
    try:
        return list(indexing._walk(resource, path))
    except Exception as exc:  # noqa: BLE001
        return type(exc)


def _paths_from(resource: dict[str, Any]) -> list[tuple[str, ...]]:
    rtype = REGISTRY.get(resource["resourceType"])
    if rtype is None:
        return []
    return [p for param in rtype.params.values() for p in param.paths if p and p[0] in resource]


def test_compiled_paths_find_what_walking_finds_on_every_sample_resource() -> None:
    checked = 0
    for resource in RESOURCES:
        for path in _paths_from(resource):
            found = _emitted(path, resource)
            assert found == _walked(path, resource), path
            # the very same objects, in the same order
            assert all(a is b for a, b in zip(found, indexing._walk(resource, path),
                                               strict=True))
            checked += 1
    assert checked > 5000


def test_remembered_selections_give_the_rows_of_a_fresh_plan() -> None:
    indexing._PLANS.clear()
    for resource in RESOURCES + RESOURCES:  # the second pass meets remembered key lists
        rtype = REGISTRY.get(resource["resourceType"])
        if rtype is not None:
            assert extract_index(rtype, resource) == _every_path(rtype, resource)
    assert all(0 < len(plan.selections) <= indexing._SELECTIONS
               for _, plan in indexing._PLANS.values())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(RESOURCES), st.data())
def test_compiled_paths_on_damaged_resources(resource: dict[str, Any],
                                             data: st.DataObject) -> None:
    paths = _paths_from(resource)
    if not paths:
        return
    damaged = copy.deepcopy(resource)
    keys = sorted({p[0] for p in paths} | {p[1] for p in paths if len(p) > 1})
    for key in data.draw(st.lists(st.sampled_from(keys), max_size=4)):
        target = damaged
        inner = [k for k in damaged if isinstance(damaged[k], (dict, list))]
        if inner and data.draw(st.booleans()):
            target = damaged[data.draw(st.sampled_from(inner))]
            if isinstance(target, list):
                target = target[0] if target and isinstance(target[0], dict) else damaged
        target[key] = data.draw(JSON)
    for path in _paths_from(damaged):
        assert _emitted(path, damaged) == _walked(path, damaged), path
