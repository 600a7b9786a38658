"""Tables of valid and invalid resources: JSON types, formats, cardinality, bindings, shapes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gateway.fhir.validation import ValidationIssue, known_resource_types, validate_resource

DELETE = object()
Sample = Callable[[str], dict[str, Any]]


def mutate(resource: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Apply dotted-path changes ("name.0.given") to a resource; DELETE removes the key."""
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


def errors(issues: list[ValidationIssue]) -> list[tuple[str, str]]:
    """Return (code, expression) of the error issues."""
    return [(i.code, i.expression) for i in issues if i.severity == "error"]


def offending_strings(changes: dict[str, Any]) -> list[str]:
    """Return the distinctive strings written by a change, to look for in diagnostics."""
    found: list[str] = []
    for value in changes.values():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and len(item) >= 3:
                found.append(item)
    return found


@pytest.mark.parametrize("resource_type", sorted(known_resource_types()))
def test_valid_samples_have_no_errors(sample: Sample, resource_type: str) -> None:
    assert errors(validate_resource(sample(resource_type), resource_type)) == []


VALID_VARIANTS = [
    pytest.param("Patient", {"_birthDate": {"extension": [
        {"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
         "valueCode": "unknown"}]}, "birthDate": DELETE}, id="primitive-with-only-extension"),
    pytest.param("Patient", {"name.0.given": ["Sam", None], "name.0._given": [None, {
        "extension": [{"url": "http://example.org/ext", "valueString": "withheld"}]}]},
        id="null-in-primitive-array-with-extension"),
    pytest.param("Patient", {"multipleBirthInteger": 2}, id="integer"),
    pytest.param("Patient", {"deceasedDateTime": "2024-01-01T10:00:00+01:00"}, id="dateTime-tz"),
    pytest.param("Patient", {"birthDate": "2016"}, id="partial-date"),
    pytest.param("Patient", {"birthDate": "2016-02-29"}, id="leap-day"),
    pytest.param("Patient", {"extension": [{"url": "http://example.org/m",
                                            "valueMeta": {"versionId": "1"}}]},
                 id="r4-extension-valueMeta"),
    pytest.param("Patient", {"extension": [{"url": "http://example.org/d",
                                            "valueDecimal": 1.50}]}, id="decimal-float"),
    pytest.param("Patient", {"extension": [{"url": "http://example.org/u",
                                            "valueUuid": "urn:uuid:0d1a0f0e-1b7d-4c55-9a51-"
                                                         "6d1f1e2b3c4d"}]}, id="uuid"),
    pytest.param("Patient", {"extension": [{"url": "http://example.org/o",
                                            "valueOid": "urn:oid:1.2.826.0.1"}]}, id="oid"),
    pytest.param("Patient", {"extension": [{"url": "http://example.org/t",
                                            "valueTime": "23:59:60.5"}]}, id="time"),
    pytest.param("Patient", {"contained": [{"resourceType": "Organization", "id": "gp",
                                            "name": "Surgery"}],
                             "generalPractitioner": [{"reference": "#gp"}]},
                 id="contained-referenced"),
    pytest.param("Patient", {"generalPractitioner": [{
        "reference": "https://fhir.example/Practitioner/p1/_history/2"}]},
        id="absolute-versioned-reference"),
    pytest.param("Patient", {"photo": [{"contentType": "image/png", "data": "iVBO\nRw0K"}]},
                 id="base64-with-whitespace"),
    pytest.param("Observation", {"valueQuantity": DELETE, "dataAbsentReason": {"text": "n/a"}},
                 id="data-absent"),
    pytest.param("Observation", {"effectivePeriod": {"start": "2024-01-02T10:00:00+01:00",
                                                     "end": "2024-01-02T09:30:00Z"}},
                 id="period-ordered-across-time-zones"),
    pytest.param("Observation", {"effectivePeriod": {"start": "2024-01-02",
                                                     "end": "2024-01-02T09:30:00Z"}},
                 id="period-mixed-precision"),
    pytest.param("Observation", {"valueQuantity": DELETE, "valueRange": {
        "low": {"value": 1, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"},
        "high": {"value": 2, "unit": "kg", "system": "http://unitsofmeasure.org",
                 "code": "kg"}}}, id="range-ordered"),
    pytest.param("Condition", {"clinicalStatus.coding.0.code": "resolved",
                               "abatementDateTime": "2024-02-01"}, id="abated-resolved"),
]


@pytest.mark.parametrize(("resource_type", "changes"), VALID_VARIANTS)
def test_valid_variants(sample: Sample, resource_type: str, changes: dict[str, Any]) -> None:
    resource = mutate(sample(resource_type), changes)
    assert errors(validate_resource(resource, resource_type)) == []


INVALID = [
    # JSON types exactly as the spec says
    ("Patient", {"active": "yes"}, "structure", "Patient.active", "string-for-boolean"),
    ("Patient", {"active": 1}, "structure", "Patient.active", "number-for-boolean"),
    ("Patient", {"deceasedBoolean": "True"}, "structure", "Patient.deceasedBoolean",
     "string-true-for-boolean"),
    ("Patient", {"multipleBirthInteger": 1.5}, "structure", "Patient.multipleBirthInteger",
     "float-for-integer"),
    ("Patient", {"multipleBirthInteger": 2.0}, "structure", "Patient.multipleBirthInteger",
     "whole-float-for-integer"),
    ("Patient", {"multipleBirthInteger": "2"}, "structure", "Patient.multipleBirthInteger",
     "string-for-integer"),
    ("Patient", {"multipleBirthInteger": True}, "structure", "Patient.multipleBirthInteger",
     "boolean-for-integer"),
    ("Patient", {"multipleBirthInteger": 2**31}, "value", "Patient.multipleBirthInteger",
     "integer-out-of-range"),
    ("Immunization", {"protocolApplied.0.doseNumberPositiveInt": 0}, "value",
     "Immunization.protocolApplied[0].doseNumberPositiveInt", "positiveInt-zero"),
    ("Patient", {"photo": [{"contentType": "image/png", "size": -1}]}, "value",
     "Patient.photo[0].size", "unsignedInt-negative"),
    ("Observation", {"valueQuantity.value": "87.5"}, "structure",
     "Observation.valueQuantity.value", "string-for-decimal"),
    ("Patient", {"name.0.family": 42}, "structure", "Patient.name[0].family",
     "number-for-string"),
    ("Patient", {"name.0.family": {"value": "Example"}}, "structure", "Patient.name[0].family",
     "object-for-string"),
    ("Patient", {"address.0": "1 Example Street"}, "structure", "Patient.address[0]",
     "string-for-object"),
    # unknown elements and cardinality
    ("Patient", {"favouriteColour": "blue-ish"}, "structure", "Patient.favouriteColour",
     "unknown-element"),
    ("Patient", {"name.0.middle": "Quentin"}, "structure", "Patient.name[0].middle",
     "unknown-nested-element"),
    ("Patient", {"fhir_comments": "a comment here"}, "structure", "Patient.fhir_comments",
     "fhir-comments"),
    ("Patient", {"extension": [{"url": "http://example.org/x",
                                "valueCodeableReference": {"concept": {"text": "r4b-only"}}}]},
     "structure", "Patient.extension[0].valueCodeableReference", "r4b-only-extension-type"),
    ("Patient", {"gender": ["female"]}, "structure", "Patient.gender", "array-for-single"),
    ("Patient", {"managingOrganization": [{"reference": "Organization/x"}]}, "structure",
     "Patient.managingOrganization", "array-for-single-object"),
    ("Patient", {"name": {"family": "Example"}}, "structure", "Patient.name",
     "single-for-array"),
    ("Patient", {"name.0.given": "Sam"}, "structure", "Patient.name[0].given",
     "single-primitive-for-array"),
    ("Observation", {"status": DELETE}, "required", "Observation.status",
     "missing-required-primitive"),
    ("Observation", {"code": DELETE}, "required", "Observation.code",
     "missing-required-complex"),
    ("Immunization", {"occurrenceDateTime": DELETE}, "required", "Immunization.occurrence[x]",
     "missing-required-choice"),
    ("Patient", {"text.div": DELETE}, "required", "Patient.text.div", "missing-narrative-div"),
    ("Observation", {"valueString": "also a string"}, "structure", "Observation.value[x]",
     "two-choice-variants"),
    # primitive formats
    ("Patient", {"id": "a" * 65}, "value", "Patient.id", "id-65-characters"),
    ("Patient", {"id": "has_underscore"}, "value", "Patient.id", "id-bad-character"),
    ("Patient", {"birthDate": "2020-13-01"}, "value", "Patient.birthDate", "date-month-13"),
    ("Patient", {"birthDate": "2021-02-29"}, "value", "Patient.birthDate", "date-not-in-calendar"),
    ("Patient", {"birthDate": "12/04/2016"}, "value", "Patient.birthDate", "date-wrong-format"),
    ("Patient", {"deceasedDateTime": "2024-01-01T10:00:00"}, "value",
     "Patient.deceasedDateTime", "dateTime-without-timezone"),
    ("Observation", {"issued": "2024-04-02T15:59:00"}, "value", "Observation.issued",
     "instant-without-timezone"),
    ("Observation", {"issued": "2024-04-02"}, "value", "Observation.issued",
     "instant-without-time"),
    ("Patient", {"extension": [{"url": "http://example.org/t", "valueTime": "25:00:00"}]},
     "value", "Patient.extension[0].valueTime", "time-hour-25"),
    ("Patient", {"gender": "female "}, "value", "Patient.gender", "code-trailing-space"),
    ("Patient", {"gender": ""}, "value", "Patient.gender", "code-empty"),
    ("Patient", {"implicitRules": "http://example.org/has space"}, "value",
     "Patient.implicitRules", "uri-with-space"),
    ("Patient", {"extension": [{"url": "http://example.org/o", "valueOid": "1.2.826.0.1"}]},
     "value", "Patient.extension[0].valueOid", "oid-without-prefix"),
    ("Patient", {"extension": [{"url": "http://example.org/u",
                                "valueUuid": "urn:uuid:0D1A0F0E-1B7D-4C55-9A51-6D1F1E2B3C4D"}]},
     "value", "Patient.extension[0].valueUuid", "uuid-upper-case"),
    ("Patient", {"photo": [{"contentType": "image/png", "data": "not base64!"}]}, "value",
     "Patient.photo[0].data", "base64-invalid"),
    ("Patient", {"name.0.given": [""]}, "value", "Patient.name[0].given[0]",
     "empty-string-in-array"),
    ("Patient", {"name.0.given": ["Sam", ""]}, "value", "Patient.name[0].given[1]",
     "empty-string-second"),
    ("Patient", {"name.0.family": "Exa\x07mple"}, "value", "Patient.name[0].family",
     "control-character"),
    ("Patient", {"name.0.text": "x" * (1024 * 1024 + 1)}, "value", "Patient.name[0].text",
     "string-over-1mb"),
    # no empty elements, no nulls
    ("Patient", {"name": [{}]}, "invariant", "Patient.name[0]", "empty-object-in-array"),
    ("Patient", {"maritalStatus": {}}, "invariant", "Patient.maritalStatus", "empty-object"),
    ("Patient", {"maritalStatus": {"id": "only-an-id"}}, "invariant", "Patient.maritalStatus",
     "object-with-only-id"),
    ("Patient", {"name": []}, "structure", "Patient.name", "empty-array"),
    ("Patient", {"gender": None}, "structure", "Patient.gender", "null-primitive"),
    ("Patient", {"maritalStatus": None}, "structure", "Patient.maritalStatus", "null-object"),
    ("Patient", {"name.0.given": ["Sam", None]}, "structure", "Patient.name[0].given[1]",
     "null-in-array-without-extension"),
    ("Patient", {"_birthDate": {}}, "invariant", "Patient.birthDate",
     "empty-primitive-extension"),
    ("Patient", {"_birthDate": "unknown-ext"}, "structure", "Patient.birthDate",
     "primitive-extension-not-object"),
    ("Patient", {"name.0._given": [None]}, "structure", "Patient.name[0].given",
     "primitive-extension-array-length"),
    # required bindings
    ("Patient", {"gender": "robot"}, "code-invalid", "Patient.gender", "gender-robot"),
    ("Patient", {"identifier.0.use": "primary"}, "code-invalid", "Patient.identifier[0].use",
     "identifier-use"),
    ("Patient", {"telecom.0.system": "pigeon"}, "code-invalid", "Patient.telecom[0].system",
     "contact-point-system"),
    ("Patient", {"address.0.use": "holiday"}, "code-invalid", "Patient.address[0].use",
     "address-use"),
    ("Patient", {"name.0.use": "stage"}, "code-invalid", "Patient.name[0].use", "name-use"),
    ("Patient", {"text.status": "handmade"}, "code-invalid", "Patient.text.status",
     "narrative-status"),
    ("Patient", {"contact.0.gender": "robot"}, "code-invalid", "Patient.contact[0].gender",
     "backbone-gender"),
    ("Observation", {"status": "done-and-dusted"}, "code-invalid", "Observation.status",
     "observation-status"),
    ("Observation", {"valueQuantity.comparator": "=="}, "code-invalid",
     "Observation.valueQuantity.comparator", "quantity-comparator"),
    ("Bundle", {"type": "pile"}, "code-invalid", "Bundle.type", "bundle-type"),
    ("Bundle", {"entry.0.request.method": "FETCH"}, "code-invalid",
     "Bundle.entry[0].request.method", "http-verb"),
    ("CarePlan", {"activity.0.detail.status": "pending-ish"}, "code-invalid",
     "CarePlan.activity[0].detail.status", "activity-status"),
    ("CarePlan", {"activity.0.detail.scheduledTiming.repeat.periodUnit": "fortnight"},
     "code-invalid", "CarePlan.activity[0].detail.scheduledTiming.repeat.periodUnit",
     "units-of-time"),
    ("Questionnaire", {"item.0.type": "essay"}, "code-invalid", "Questionnaire.item[0].type",
     "item-type"),
    ("Questionnaire", {"subjectType": ["Child"]}, "code-invalid", "Questionnaire.subjectType[0]",
     "resource-types"),
    ("Encounter", {"status": "wandering"}, "code-invalid", "Encounter.status",
     "encounter-status"),
    ("Consent", {"provision.type": "maybe"}, "code-invalid", "Consent.provision.type",
     "consent-provision-type"),
    ("AuditEvent", {"action": "X"}, "code-invalid", "AuditEvent.action", "audit-action"),
    ("OperationOutcome", {"issue.0.code": "oops"}, "code-invalid",
     "OperationOutcome.issue[0].code", "issue-type"),
    ("DocumentReference", {"content.0.attachment.contentType": "pdf please"}, "code-invalid",
     "DocumentReference.content[0].attachment.contentType", "mime-type"),
    ("Condition", {"clinicalStatus.coding.0.code": "cured-ish"}, "code-invalid",
     "Condition.clinicalStatus", "concept-binding-code"),
    ("Condition", {"clinicalStatus": {"text": "Active"}}, "code-invalid",
     "Condition.clinicalStatus", "concept-binding-text-only"),
    # references
    ("Patient", {"generalPractitioner.0.reference": "Observation/att-1"}, "value",
     "Patient.generalPractitioner[0].reference", "reference-target-type"),
    ("CarePlan", {"subject.reference": "https://fhir.example/Organization/o1"}, "value",
     "CarePlan.subject.reference", "absolute-reference-target-type"),
    # resources inside resources
    ("Patient", {"contained": [{"resourceType": "Organization", "id": "gp", "name": 5}],
                 "generalPractitioner": [{"reference": "#gp"}]},
     "structure", "Patient.contained[0].name", "contained-with-error"),
    ("Patient", {"contained": [{"resourceType": "Medication", "id": "m"}]}, "not-supported",
     "Patient.contained[0].resourceType", "contained-unsupported-type"),
    ("Patient", {"contained": [{"id": "m"}]}, "required",
     "Patient.contained[0].resourceType", "contained-without-type"),
    ("Bundle", {"entry.0.resource.gender": "robot"}, "code-invalid",
     "Bundle.entry[0].resource.gender", "bundle-entry-resource"),
    ("Parameters", {"parameter.1.resource.status": "waving"}, "code-invalid",
     "Parameters.parameter[1].resource.status", "parameters-resource"),
    ("Parameters", {"parameter.2.part.0.valueInteger": 1.5}, "structure",
     "Parameters.parameter[2].part[0].valueInteger", "parameters-part"),
]


@pytest.mark.parametrize(("resource_type", "changes", "code", "expression"),
                         [pytest.param(*row[:4], id=row[4]) for row in INVALID])
def test_invalid(sample: Sample, resource_type: str, changes: dict[str, Any], code: str,
                 expression: str) -> None:
    issues = validate_resource(mutate(sample(resource_type), changes), resource_type)
    assert (code, expression) in errors(issues), issues
    for secret in offending_strings(changes):
        assert all(secret not in issue.diagnostics for issue in issues)


@pytest.mark.parametrize(("resource", "expected_type", "code", "expression"), [
    pytest.param({"resourceType": "Foo"}, None, "invalid", "Resource.resourceType",
                 id="unknown-resource-type"),
    pytest.param({"resourceType": "Medication"}, None, "not-supported", "Resource.resourceType",
                 id="unsupported-resource-type"),
    pytest.param({"resourceType": 7}, None, "structure", "Resource.resourceType",
                 id="resource-type-not-string"),
    pytest.param({"gender": "female"}, "Patient", "required", "Patient.resourceType",
                 id="missing-resource-type"),
    pytest.param({"resourceType": "Flag", "status": "active", "code": {"text": "x"},
                  "subject": {"reference": "Patient/1"}}, "Patient", "invalid",
                 "Flag.resourceType", id="expected-type-mismatch"),
    pytest.param([{"resourceType": "Patient"}], None, "structure", "Resource", id="array"),
    pytest.param("Patient", "Patient", "structure", "Patient", id="string"),
    pytest.param(None, None, "structure", "Resource", id="null"),
    pytest.param(42, None, "structure", "Resource", id="number"),
])
def test_resource_level(resource: object, expected_type: str | None, code: str,
                        expression: str) -> None:
    assert (code, expression) in errors(validate_resource(resource, expected_type))


def test_known_resource_types() -> None:
    types = known_resource_types()
    assert isinstance(types, frozenset)
    assert {"Patient", "Observation", "CarePlan", "Bundle", "Parameters", "Consent",
            "Subscription", "OperationOutcome"} <= types
    assert "Medication" not in types


def test_issues_are_frozen_values() -> None:
    issue = validate_resource({"resourceType": "Patient", "active": "yes"})[0]
    assert isinstance(issue, ValidationIssue)
    with pytest.raises(AttributeError):
        issue.code = "value"  # type: ignore[misc]
