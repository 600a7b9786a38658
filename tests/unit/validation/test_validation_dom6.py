"""dom-6 is decided without FHIRPath on a resource without `text`, with the same findings."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gateway.fhir.validation import validate_resource

ROOT = Path(__file__).resolve().parents[3]


def _samples() -> list[dict[str, Any]]:
    out = []
    for path in sorted((ROOT / "fixtures" / "sources").glob("*/golden/sample.json")):
        for record in json.loads(path.read_text("utf-8"))["records"]:
            out.extend(record["resources"])
    return out


NARRATIVE = {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>'}
CASES = [
    {"resourceType": "Patient", "id": "a"},
    {"resourceType": "Patient", "id": "a", "text": NARRATIVE},
    {"resourceType": "Patient", "id": "a", "text": {"status": "generated"}},
    {"resourceType": "Patient", "id": "a", "text": {"status": "generated", "_div": {
        "extension": [{"url": "http://example.org/x", "valueString": "y"}]}}},
    {"resourceType": "Organization", "id": "o", "name": "S", "contained": [
        {"resourceType": "Practitioner", "id": "p"}], "text": NARRATIVE},
]


def _issues(resource: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    return [(i.severity, i.code, i.expression if isinstance(i.expression, str)
             else repr(i.expression), i.diagnostics) for i in validate_resource(resource)]


def test_dom6_without_text_is_the_warning_fhirpath_gives() -> None:
    found = [i for i in validate_resource(CASES[0]) if "dom-6" in i.diagnostics]
    assert len(found) == 1 and found[0].severity == "warning"
    assert not [i for i in validate_resource(CASES[1]) if "dom-6" in i.diagnostics]


def test_the_shortcut_gives_the_findings_fhirpath_gives(shortcuts_off: Any) -> None:
    resources = _samples() + CASES
    fast = [_issues(r) for r in resources]
    with shortcuts_off("_needs", {r["resourceType"] for r in resources}) as switched:
        assert switched, "dom-6 takes the shortcut"
        slow = [_issues(r) for r in resources]
    assert fast == slow
