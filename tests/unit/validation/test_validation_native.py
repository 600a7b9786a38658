"""Invariants evaluated in Python give the findings their FHIRPath expressions give."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from gateway.fhir import validation
from gateway.fhir.validation import validate_resource

ROOT = Path(__file__).resolve().parents[3]
CODE = {"system": "https://wraparound.example/CodeSystem/education", "code": "attendance"}
OTHER = {"system": "https://wraparound.example/CodeSystem/education", "code": "exclusions"}


def _observation(**extra: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": "o1", "status": "final",
            "code": {"coding": [CODE]}, "subject": {"reference": "Patient/p1"}, **extra}


def _component(*codings: dict[str, Any]) -> dict[str, Any]:
    return {"code": {"coding": list(codings)}, "valueString": "x"}


CASES = [
    _observation(valueString="87.5", component=[_component(CODE)]),
    _observation(valueString="87.5", component=[_component(OTHER)]),
    _observation(valueString="87.5", component=[_component(OTHER, CODE)]),
    _observation(valueString="87.5", component=[_component(dict(CODE, display="Attendance"))]),
    _observation(valueQuantity={"value": 87.5, "unit": "%"}, component=[_component(CODE)]),
    _observation(component=[_component(CODE)]),
    _observation(valueBoolean=False, component=[_component(CODE), _component(OTHER)]),
    _observation(valueString="1", component=[{"code": {"text": "no codings"}}]),
    _observation(_valueString={"extension": [{"url": "http://example.org/x",
                                              "valueString": "y"}]},
                 component=[_component(CODE)]),
    {"resourceType": "Organization", "id": "s1", "name": "School", "contained": [
        _observation(valueString="2", component=[_component(CODE)])]},
]


def _samples() -> list[dict[str, Any]]:
    out = []
    for path in sorted((ROOT / "fixtures" / "sources").glob("*/golden/sample.json")):
        for record in json.loads(path.read_text("utf-8"))["records"]:
            out.extend(r for r in record["resources"] if r["resourceType"] == "Observation")
    return out


def _findings(resource: dict[str, Any]) -> list[tuple[str, str, str]]:
    return sorted((i.severity, i.code, i.diagnostics)
                  for i in validate_resource(copy.deepcopy(resource)))


def test_obs7_is_evaluated_natively_and_finds_the_conflict() -> None:
    table = validation._resource_table("Observation")
    assert table is not None
    assert any(inv.key == "obs-7" and inv._native is not None for inv in table.invariants)
    assert any("obs-7" in d for _, _, d in _findings(CASES[0]))
    assert not any("obs-7" in d for _, _, d in _findings(CASES[1]))


def test_native_invariants_give_the_findings_fhirpath_gives(shortcuts_off: Any) -> None:
    resources = _samples() + CASES
    assert len(resources) > len(CASES), "the samples hold Observations"
    native = [_findings(r) for r in resources]
    with shortcuts_off("_native", ("Observation", "Organization")) as switched:
        assert switched, "obs-7 is evaluated natively"
        fhirpath = [_findings(r) for r in resources]
    assert native == fhirpath
