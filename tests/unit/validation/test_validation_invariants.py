"""FHIRPath invariants: one failing case per key, at the expected element."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gateway.fhir import validation
from gateway.fhir.validation import validate_resource

Sample = Callable[[str], dict[str, Any]]
DELETE = object()
UCUM = "http://unitsofmeasure.org"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"


def mutate(resource: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Apply dotted-path changes ("item.0.type") to a resource; DELETE removes the key."""
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node: Any = resource
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if value is DELETE:
            del node[last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return resource


def ext(**value: Any) -> list[dict[str, Any]]:
    """Return a one-extension list with the given value[x]."""
    return [{"url": "http://example.org/ext", **value}]


ORG_CONTAINED = {"resourceType": "Organization", "id": "gp", "name": "Surgery"}

CASES = [
    # DomainResource and datatypes
    ("dom-2", "error", "Patient", {
        "contained": [{**ORG_CONTAINED, "contained": [{**ORG_CONTAINED, "id": "inner"}],
                       "partOf": {"reference": "#inner"}}],
        "generalPractitioner": [{"reference": "#gp"}]}, "Patient"),
    ("dom-3", "error", "Patient", {"contained": [ORG_CONTAINED]}, "Patient"),
    ("dom-4", "error", "Patient", {
        "contained": [{**ORG_CONTAINED, "meta": {"versionId": "1"}}],
        "generalPractitioner": [{"reference": "#gp"}]}, "Patient"),
    ("dom-5", "error", "Patient", {
        "contained": [{**ORG_CONTAINED, "meta": {"security": [{"code": "R"}]}}],
        "generalPractitioner": [{"reference": "#gp"}]}, "Patient"),
    ("dom-6", "warning", "Patient", {"text": DELETE}, "Patient"),
    ("ext-1", "error", "Patient", {"extension": [{"url": "http://example.org/ext"}]},
     "Patient.extension[0]"),
    ("ext-1", "error", "Patient", {"extension": [{"url": "http://example.org/ext",
                                                  "valueString": "both",
                                                  "extension": ext(valueString="nested")}]},
     "Patient.extension[0]"),
    ("per-1", "error", "Observation", {"effectivePeriod": {"start": "2024-03-28",
                                                           "end": "2024-01-08"}},
     "Observation.effectivePeriod"),
    ("per-1", "error", "Observation", {"effectivePeriod": {
        "start": "2024-01-02T10:00:00+01:00", "end": "2024-01-02T08:30:00Z"}},
     "Observation.effectivePeriod"),
    ("per-1", "error", "Patient", {"address.0.period": {"start": "2020-01-01T10:00:00.5Z",
                                                        "end": "2020-01-01T10:00:00.1Z"}},
     "Patient.address[0].period"),
    ("ref-1", "error", "Patient", {"generalPractitioner": [{"reference": "#missing"}]},
     "Patient.generalPractitioner[0]"),
    ("qty-3", "error", "Observation", {"valueQuantity.system": DELETE},
     "Observation.valueQuantity"),
    ("rng-2", "error", "Observation", {"valueQuantity": DELETE, "valueRange": {
        "low": {"value": 5, "system": UCUM, "code": "kg"},
        "high": {"value": 3, "system": UCUM, "code": "kg"}}}, "Observation.valueRange"),
    ("rat-1", "error", "Observation", {"valueQuantity": DELETE, "valueRatio": {
        "numerator": {"value": 1}}}, "Observation.valueRatio"),
    ("att-1", "error", "Patient", {"photo": [{"data": "iVBORw0K"}]}, "Patient.photo[0]"),
    ("cpt-2", "error", "Patient", {"telecom.0.system": DELETE}, "Patient.telecom[0]"),
    ("age-1", "error", "Patient", {"extension": ext(valueAge={
        "value": -1, "system": UCUM, "code": "a"})}, "Patient.extension[0].valueAge"),
    ("cnt-3", "error", "Patient", {"extension": ext(valueCount={
        "value": 1.5, "system": UCUM, "code": "1"})}, "Patient.extension[0].valueCount"),
    ("dis-1", "error", "Patient", {"extension": ext(valueDistance={
        "value": 2, "system": "http://example.org/units"})},
     "Patient.extension[0].valueDistance"),
    ("drt-1", "error", "Patient", {"extension": ext(valueDuration={
        "value": 2, "code": "d", "system": "http://example.org/units"})},
     "Patient.extension[0].valueDuration"),
    ("exp-1", "error", "Patient", {"extension": ext(valueExpression={
        "language": "text/fhirpath"})}, "Patient.extension[0].valueExpression"),
    ("tim-2", "error", "CarePlan", {"activity.0.detail.scheduledTiming.repeat.periodUnit":
                                   DELETE},
     "CarePlan.activity[0].detail.scheduledTiming.repeat"),
    ("tim-5", "error", "CarePlan", {"activity.0.detail.scheduledTiming.repeat.period": -4},
     "CarePlan.activity[0].detail.scheduledTiming.repeat"),
    ("tim-9", "error", "CarePlan", {"activity.0.detail.scheduledTiming.repeat.offset": 30},
     "CarePlan.activity[0].detail.scheduledTiming.repeat"),
    # resources
    ("pat-1", "error", "Patient", {"contact.0.name": DELETE}, "Patient.contact[0]"),
    ("org-1", "error", "Organization", {"name": DELETE, "identifier": DELETE}, "Organization"),
    ("org-2", "error", "Organization", {"address.0.use": "home"}, "Organization.address[0]"),
    ("org-3", "error", "Organization", {"telecom.0.use": "home"}, "Organization.telecom[0]"),
    ("cpl-3", "error", "CarePlan", {"activity.0.reference": {"reference": "Task/t1"}},
     "CarePlan.activity[0]"),
    ("obs-3", "error", "Observation", {"referenceRange": [{"type": {"text": "normal"}}]},
     "Observation.referenceRange[0]"),
    ("obs-6", "error", "Observation", {"dataAbsentReason": {"text": "asked but declined"}},
     "Observation"),
    ("obs-7", "error", "Observation", {"component": [{
        "code": {"coding": [{"system": "https://wraparound.example/CodeSystem/education",
                             "code": "attendance-rate"}]}, "valueString": "87.5"}]},
     "Observation"),
    ("imm-1", "error", "Immunization", {"education": [{"publicationDate": "2017-01-01"}]},
     "Immunization.education[0]"),
    ("con-1", "error", "Condition", {"stage": [{"type": {"text": "stage type"}}]},
     "Condition.stage[0]"),
    ("con-2", "error", "Condition", {"evidence": [{"extension": ext(valueString="x")}]},
     "Condition.evidence[0]"),
    ("con-3", "warning", "Condition", {"clinicalStatus": DELETE}, "Condition"),
    ("con-4", "error", "Condition", {"abatementDateTime": "2024-02-01"}, "Condition"),
    ("con-5", "error", "Condition", {"verificationStatus.coding.0.code": "entered-in-error"},
     "Condition"),
    ("que-1", "error", "Questionnaire", {"item.0.item": DELETE}, "Questionnaire.item[0]"),
    ("que-2", "error", "Questionnaire", {"item.0.item.1.linkId": "dev.health"},
     "Questionnaire"),
    ("que-3", "error", "Questionnaire", {"item.0.item.0.type": "display",
                                         "item.0.item.0.code": [{"code": "x"}]},
     "Questionnaire.item[0].item[0]"),
    ("que-4", "error", "Questionnaire", {"item.0.item.1.answerValueSet":
                                         "http://example.org/ValueSet/yn"},
     "Questionnaire.item[0].item[1]"),
    ("que-5", "error", "Questionnaire", {"item.0.item.1.type": "boolean"},
     "Questionnaire.item[0].item[1]"),
    ("que-6", "error", "Questionnaire", {"item.0.item.0.type": "display",
                                         "item.0.item.0.required": True},
     "Questionnaire.item[0].item[0]"),
    ("que-7", "error", "Questionnaire", {"item.0.item.2.enableWhen.0.operator": "exists"},
     "Questionnaire.item[0].item[2].enableWhen[0]"),
    ("que-8", "error", "Questionnaire", {"item.0.initial": [{"valueString": "x"}]},
     "Questionnaire.item[0]"),
    ("que-9", "error", "Questionnaire", {"item.0.item.0.type": "display",
                                         "item.0.item.0.readOnly": True},
     "Questionnaire.item[0].item[0]"),
    ("que-10", "error", "Questionnaire", {"item.0.item.1.maxLength": 5},
     "Questionnaire.item[0].item[1]"),
    ("que-11", "error", "Questionnaire", {"item.0.item.1.initial": [
        {"valueCoding": {"code": "y"}}]}, "Questionnaire.item[0].item[1]"),
    ("que-12", "error", "Questionnaire", {"item.0.item.2.enableWhen": [
        {"question": "dev.school", "operator": "exists", "answerBoolean": True}] * 3},
     "Questionnaire.item[0].item[2]"),
    ("que-13", "error", "Questionnaire", {"item.0.item.0.repeats": False,
                                          "item.0.item.0.initial": [
        {"valueString": "a"}, {"valueString": "b"}]}, "Questionnaire.item[0].item[0]"),
    ("qrs-1", "error", "QuestionnaireResponse", {"item.0.answer": [{"valueString": "x"}]},
     "QuestionnaireResponse.item[0]"),
    ("qrs-2", "error", "QuestionnaireResponse", {"item.0.item": [
        {"linkId": "dev.health", "answer": [{"valueString": "a"}]},
        {"linkId": "dev.health", "answer": [{"valueString": "b"}]}]},
     "QuestionnaireResponse"),
    ("ppc-1", "error", "Consent", {"policyRule": DELETE}, "Consent"),
    ("sev-1", "error", "AuditEvent", {"entity.0.name": "Patient search",
                                      "entity.0.query": "Z2VuZGVyPWZlbWFsZQ=="},
     "AuditEvent.entity[0]"),
    ("bdl-1", "error", "Bundle", {"total": 1}, "Bundle"),
    ("bdl-2", "error", "Bundle", {"entry.0.search": {"mode": "match"}}, "Bundle"),
    ("bdl-3", "error", "Bundle", {"entry.0.request": DELETE}, "Bundle"),
    ("bdl-4", "error", "Bundle", {"type": "batch-response", "entry.0.request": DELETE},
     "Bundle"),
    ("bdl-5", "error", "Bundle", {"type": "collection", "entry.0.request": DELETE,
                                  "entry.0.resource": DELETE}, "Bundle.entry[0]"),
    ("bdl-7", "error", "Bundle", {"type": "collection", "entry.0.request": DELETE,
                                  "entry.1": {"fullUrl": "urn:uuid:0d1a0f0e-1b7d-4c55-9a51-"
                                                         "6d1f1e2b3c4d",
                                              "resource": {"resourceType": "Flag",
                                                           "status": "active",
                                                           "code": {"text": "x"},
                                                           "subject": {"reference": "#"}}}},
     "Bundle"),
    ("bdl-8", "error", "Bundle", {"entry.0.fullUrl": "https://fhir.example/Patient/1/_history/2",
                                  "entry.0.request": {"method": "PUT", "url": "Patient/1"}},
     "Bundle.entry[0]"),
    ("bdl-9", "error", "Bundle", {"type": "document", "entry.0.request": DELETE}, "Bundle"),
    ("bdl-10", "error", "Bundle", {"type": "document", "entry.0.request": DELETE}, "Bundle"),
    ("bdl-11", "error", "Bundle", {"type": "document", "entry.0.request": DELETE}, "Bundle"),
    ("bdl-12", "error", "Bundle", {"type": "message", "entry.0.request": DELETE}, "Bundle"),
    ("inv-1", "error", "Parameters", {"parameter.0.resource": {"resourceType": "Flag",
                                                               "status": "active",
                                                               "code": {"text": "x"},
                                                               "subject": {"reference": "a/b"}}},
     "Parameters.parameter[0]"),
    ("inv-1", "error", "Parameters", {"parameter.0.valueCode": DELETE},
     "Parameters.parameter[0]"),
    ("cpb-1", "error", "CapabilityStatement", {"rest": DELETE}, "CapabilityStatement"),
    ("cpb-2", "error", "CapabilityStatement", {"software": DELETE, "implementation": DELETE},
     "CapabilityStatement"),
    ("cpb-9", "error", "CapabilityStatement", {"rest.0.resource.1": {"type": "Patient"}},
     "CapabilityStatement.rest[0]"),
    ("cpb-12", "error", "CapabilityStatement", {"rest.0.resource.0.searchParam.1": {
        "name": "birthdate", "type": "date"}}, "CapabilityStatement.rest[0].resource[0]"),
]


def _list_append_safe(resource: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Apply changes, growing lists when a change targets the next index."""
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node: Any = resource
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list) and int(last) == len(node):
            node.append(value)
        else:
            mutate(resource, {dotted: value})
    return resource


@pytest.mark.parametrize(
    ("key", "severity", "resource_type", "changes", "expression"),
    [pytest.param(*row, id=f"{row[0]}-{n}") for n, row in enumerate(CASES)])
def test_invariant_fails(sample: Sample, key: str, severity: str, resource_type: str,
                         changes: dict[str, Any], expression: str) -> None:
    resource = _list_append_safe(sample(resource_type), changes)
    issues = validate_resource(resource, resource_type)
    found = [(i.severity, i.code, i.expression) for i in issues
             if i.diagnostics.startswith(f"{key}:")]
    assert (severity, "invariant", expression) in found, issues


def test_every_invariant_in_the_table_has_a_failing_case() -> None:
    defined = {row[1] for row in validation._INVARIANTS}
    untested = {"tim-1", "tim-4", "tim-6", "tim-7", "tim-8", "tim-10", "drq-1", "drq-2",
                "trd-1", "trd-2", "ppc-2", "ppc-3", "ppc-4", "ppc-5"}  # same shapes as tested ones
    assert defined - {row[0] for row in CASES} == untested


def test_invariants_are_compiled_once(sample: Sample, monkeypatch: pytest.MonkeyPatch) -> None:
    resource = mutate(sample("Observation"), {"effectivePeriod": {"start": "2024-03-28",
                                                                  "end": "2024-01-08"}})
    validate_resource(resource, "Observation")
    engine = validation._fhirpath()
    calls: list[str] = []
    real_parse = engine.parse
    monkeypatch.setattr(engine, "parse", lambda text: calls.append(text) or real_parse(text))
    assert validate_resource(resource, "Observation")
    assert calls == []


def test_invariants_skip_subtrees_with_structural_errors(sample: Sample) -> None:
    resource = mutate(sample("Observation"), {"effectivePeriod": {"start": 2024,
                                                                  "end": "2024-01-08"}})
    issues = validate_resource(resource, "Observation")
    assert [(i.code, i.expression) for i in issues] == [
        ("structure", "Observation.effectivePeriod.start")]


def test_validation_does_not_change_the_resource(sample: Sample) -> None:
    import copy

    resource = mutate(sample("Patient"), {"contained": [ORG_CONTAINED],
                                          "generalPractitioner": [{"reference": "#nope"}]})
    before = copy.deepcopy(resource)
    assert validate_resource(resource, "Patient")
    assert resource == before
