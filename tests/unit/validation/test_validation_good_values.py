"""Valid strings remembered per element: the findings are those of checking every value."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.fhir import validation
from gateway.fhir.validation import validate_resource

ROOT = Path(__file__).resolve().parents[3]


def _golden() -> list[dict[str, Any]]:
    out = []
    for path in sorted((ROOT / "fixtures" / "sources").glob("*/golden/sample.json")):
        for record in json.loads(path.read_text("utf-8"))["records"]:
            out.extend(record["resources"])
    return out


GOLDEN = _golden()


def _issues(resource: Any, expected: str | None = None) -> list[tuple[str, str, str, str]]:
    return [(i.severity, i.code, repr(i.expression), i.diagnostics)
            for i in validate_resource(resource, expected)]


def _unremembered(resource: Any, expected: str | None = None) -> list[tuple[str, str, str, str]]:
    validation._CACHE_GOOD_VALUES = False
    try:
        return _issues(resource, expected)
    finally:
        validation._CACHE_GOOD_VALUES = True


def _string_paths(node: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _string_paths(v, (*at, k))]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _string_paths(v, (*at, i))]
    return [at] if isinstance(node, str) else []


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        node = node[part]
    return node


POOL = sorted({_get(r, p) for r in GOLDEN for p in _string_paths(r)})
STRINGS = st.one_of(
    st.sampled_from(POOL),
    st.text(max_size=12),
    st.sampled_from(["", " ", "a\x01b", "x y", " lead", "trail ", "2024-02-30", "urn:uuid:x",
                     "9" * 300, "é", "female", "http://example.org"]),
)


def test_every_sample_resource_gives_the_same_findings_cold_and_warm() -> None:
    for resource in GOLDEN:
        expected = _unremembered(resource)
        assert expected == _issues(resource)  # fills the remembered values
        assert expected == _issues(resource)  # answered from them
        assert expected == _unremembered(resource)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(GOLDEN), st.data())
def test_malformed_strings_give_the_same_findings(resource: dict[str, Any],
                                                  data: st.DataObject) -> None:
    for warm in GOLDEN[:50]:
        _issues(warm)
    damaged = copy.deepcopy(resource)
    paths = _string_paths(damaged)
    for path in data.draw(st.lists(st.sampled_from(paths), min_size=1, max_size=4)):
        node = _get(damaged, path[:-1])
        node[path[-1]] = data.draw(st.one_of(STRINGS, st.integers(), st.none(), st.booleans()))
    expected = _unremembered(damaged, resource["resourceType"])
    assert _issues(damaged, resource["resourceType"]) == expected
    assert _issues(damaged, resource["resourceType"]) == expected


@pytest.mark.parametrize("value", ["ok", "", "a\x02", "x" * 300])
def test_remembered_values_stay_per_element_and_bounded(value: str) -> None:
    patient = {"resourceType": "Patient", "id": "p", "gender": value,
               "name": [{"family": value}]}
    expected = _unremembered(patient)
    for _ in range(3):
        assert _issues(patient) == expected
    table = validation._resource_table("Patient")
    assert table is not None
    for element in table.elements.values():
        assert len(element.good) <= validation._GOOD_VALUES_PER_ELEMENT
        assert all(len(v) <= validation._GOOD_VALUE_CHARS for v in element.good)
    assert value not in table.elements["gender"].good or value in ("female", "male")


def test_every_synthetic_sample_gives_the_same_findings_cold_and_warm(
        samples: dict[str, dict[str, Any]]) -> None:
    for rtype, resource in samples.items():
        expected = _unremembered(resource, rtype)
        assert _issues(resource, rtype) == expected
        assert _issues(resource, rtype) == expected
