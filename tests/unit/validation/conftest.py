"""Valid synthetic FHIR R4 resources, one per supported type, for the validation tests."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

DIV = '<div xmlns="http://www.w3.org/1999/xhtml"><p>{}</p></div>'
CHILD = "Patient/c0a8f2e4"
LA = "Organization/la-e09000001"
SOCIAL_WORKER = "Practitioner/sw-0042"


def _text(summary: str) -> dict[str, str]:
    return {"status": "generated", "div": DIV.format(summary)}


SAMPLES: dict[str, dict[str, Any]] = {
    "Patient": {
        "resourceType": "Patient", "id": "c0a8f2e4", "text": _text("Synthetic child"),
        "meta": {"versionId": "2", "lastUpdated": "2024-03-01T09:30:00Z"},
        "identifier": [{"use": "official", "system": "https://fhir.nhs.uk/Id/nhs-number",
                        "value": "9000000009"}],
        "active": True,
        "name": [{"use": "official", "family": "Example", "given": ["Sam", "Alex"]}],
        "telecom": [{"system": "phone", "value": "01632 960000", "use": "home"}],
        "gender": "female", "birthDate": "2016-04-12",
        "address": [{"use": "home", "line": ["1 Example Street"], "postalCode": "EX1 1AA",
                     "period": {"start": "2019-01-01"}}],
        "contact": [{"relationship": [{"text": "Mother"}],
                     "name": {"family": "Example", "given": ["Jo"]}}],
        "generalPractitioner": [{"reference": "Organization/gp-a81001"}],
        "managingOrganization": {"reference": LA},
    },
    "RelatedPerson": {
        "resourceType": "RelatedPerson", "id": "mother-1", "text": _text("Mother"),
        "patient": {"reference": CHILD},
        "relationship": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "MTH"}]}],
        "name": [{"family": "Example", "given": ["Jo"]}], "gender": "female",
        "telecom": [{"system": "phone", "value": "07700 900000", "use": "mobile"}],
    },
    "Practitioner": {
        "resourceType": "Practitioner", "id": "sw-0042", "text": _text("Social worker"),
        "identifier": [{"system": "https://wraparound.example/Id/staff", "value": "0042"}],
        "name": [{"family": "Worker", "given": ["Sol"], "prefix": ["Ms"]}],
        "telecom": [{"system": "email", "value": "sol.worker@la.example", "use": "work"}],
    },
    "PractitionerRole": {
        "resourceType": "PractitionerRole", "id": "sw-0042-la", "text": _text("Role"),
        "practitioner": {"reference": SOCIAL_WORKER}, "organization": {"reference": LA},
        "code": [{"text": "Social worker"}],
        "availableTime": [{"daysOfWeek": ["mon", "tue"], "availableStartTime": "09:00:00"}],
    },
    "Organization": {
        "resourceType": "Organization", "id": "la-e09000001", "text": _text("Council"),
        "identifier": [{"system": "https://wraparound.example/Id/la", "value": "E09000001"}],
        "name": "Example Council", "telecom": [{"system": "phone", "value": "020 7946 0000",
                                                "use": "work"}],
        "address": [{"use": "work", "line": ["Town Hall"], "postalCode": "EX1 2BB"}],
    },
    "CareTeam": {
        "resourceType": "CareTeam", "id": "ctac-000123", "text": _text("Team around the child"),
        "status": "active", "subject": {"reference": CHILD},
        "participant": [{"role": [{"text": "Lead professional"}],
                         "member": {"reference": SOCIAL_WORKER}}],
        "managingOrganization": [{"reference": LA}],
    },
    "EpisodeOfCare": {
        "resourceType": "EpisodeOfCare", "id": "cin-000123", "text": _text("Child in need"),
        "status": "active", "type": [{"text": "Child in need"}],
        "statusHistory": [{"status": "planned",
                           "period": {"start": "2024-01-01", "end": "2024-01-10"}}],
        "patient": {"reference": CHILD}, "managingOrganization": {"reference": LA},
        "period": {"start": "2024-01-10"},
    },
    "Encounter": {
        "resourceType": "Encounter", "id": "visit-1", "text": _text("Home visit"),
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "HH"},
        "subject": {"reference": CHILD},
        "participant": [{"individual": {"reference": SOCIAL_WORKER}}],
        "period": {"start": "2024-03-01T10:00:00+00:00", "end": "2024-03-01T11:00:00Z"},
    },
    "Flag": {
        "resourceType": "Flag", "id": "cpis-1", "text": _text("On a child protection plan"),
        "status": "active", "code": {"text": "Child protection plan"},
        "subject": {"reference": CHILD}, "period": {"start": "2024-02-14"},
    },
    "CarePlan": {
        "resourceType": "CarePlan", "id": "cpp-000123", "text": _text("Child protection plan"),
        "status": "active", "intent": "plan", "subject": {"reference": CHILD},
        "period": {"start": "2024-02-14"}, "careTeam": [{"reference": "CareTeam/ctac-000123"}],
        "activity": [{"detail": {"kind": "Appointment", "status": "scheduled",
                                 "code": {"text": "Core group meeting"},
                                 "scheduledTiming": {"repeat": {"frequency": 1, "period": 4,
                                                                "periodUnit": "wk"}}}}],
    },
    "Observation": {
        "resourceType": "Observation", "id": "att-1", "text": _text("Attendance 87.5%"),
        "status": "final",
        "code": {"coding": [{"system": "https://wraparound.example/CodeSystem/education",
                             "code": "attendance-rate"}]},
        "subject": {"reference": CHILD},
        "effectivePeriod": {"start": "2024-01-08", "end": "2024-03-28"},
        "issued": "2024-04-02T15:59:00Z",
        "valueQuantity": {"value": 87.5, "unit": "%", "system": "http://unitsofmeasure.org",
                          "code": "%"},
        "referenceRange": [{"low": {"value": 90, "unit": "%"}}],
    },
    "Immunization": {
        "resourceType": "Immunization", "id": "imm-1", "text": _text("MMR"),
        "status": "completed", "vaccineCode": {"text": "MMR"}, "patient": {"reference": CHILD},
        "occurrenceDateTime": "2017-05-01", "primarySource": True,
        "protocolApplied": [{"doseNumberPositiveInt": 1}],
    },
    "Condition": {
        "resourceType": "Condition", "id": "need-1", "text": _text("Neglect"),
        "clinicalStatus": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
            "code": "active"}]},
        "verificationStatus": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
            "code": "confirmed"}]},
        "category": [{"text": "Need"}], "code": {"text": "Neglect"},
        "subject": {"reference": CHILD}, "onsetDateTime": "2024-01-05",
    },
    "Questionnaire": {
        "resourceType": "Questionnaire", "id": "caf-1", "text": _text("CAF"),
        "name": "CommonAssessment", "status": "active", "subjectType": ["Patient"],
        "item": [{"linkId": "dev", "type": "group", "text": "Development of the child",
                  "item": [{"linkId": "dev.health", "type": "string", "text": "Health"},
                           {"linkId": "dev.school", "type": "choice", "text": "In school?",
                            "answerOption": [{"valueCoding": {"code": "y"}},
                                             {"valueCoding": {"code": "n"}}]},
                           {"linkId": "dev.why", "type": "text", "text": "Why not?",
                            "enableWhen": [{"question": "dev.school", "operator": "=",
                                            "answerCoding": {"code": "n"}}]}]}],
    },
    "QuestionnaireResponse": {
        "resourceType": "QuestionnaireResponse", "id": "caf-resp-1", "text": _text("CAF"),
        "questionnaire": "https://wraparound.example/Questionnaire/caf-1",
        "status": "completed", "subject": {"reference": CHILD},
        "authored": "2024-02-01T10:00:00Z",
        "item": [{"linkId": "dev", "item": [
            {"linkId": "dev.health", "answer": [{"valueString": "Well"}]}]}],
    },
    "Consent": {
        "resourceType": "Consent", "id": "consent-1", "text": _text("Consent to share"),
        "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                              "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": CHILD}, "dateTime": "2024-02-01T10:00:00Z",
        "policyRule": {"text": "Information sharing agreement"},
        "provision": {"type": "permit", "period": {"start": "2024-02-01"},
                      "actor": [{"role": {"text": "Recipient"},
                                 "reference": {"reference": LA}}]},
    },
    "Communication": {
        "resourceType": "Communication", "id": "comm-1", "text": _text("Letter"),
        "status": "completed", "subject": {"reference": CHILD},
        "sent": "2024-02-02T09:00:00Z", "recipient": [{"reference": LA}],
        "payload": [{"contentString": "Conference invitation sent"}],
    },
    "DocumentReference": {
        "resourceType": "DocumentReference", "id": "doc-1", "text": _text("Assessment"),
        "status": "current", "type": {"text": "Assessment"}, "subject": {"reference": CHILD},
        "date": "2024-02-03T09:00:00Z",
        "content": [{"attachment": {"contentType": "application/pdf",
                                    "url": "https://docs.example/doc-1.pdf",
                                    "title": "Assessment", "data": "JVBERi0xLjQK"}}],
    },
    "Provenance": {
        "resourceType": "Provenance", "id": "prov-1", "text": _text("Ingest"),
        "target": [{"reference": CHILD}], "recorded": "2024-02-03T09:00:00.123Z",
        "agent": [{"who": {"reference": LA}}],
        "entity": [{"role": "source", "what": {"display": "Case management system"}}],
    },
    "AuditEvent": {
        "resourceType": "AuditEvent", "id": "audit-1", "text": _text("Read"),
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
                 "code": "rest"},
        "action": "R", "recorded": "2024-02-03T09:00:00Z", "outcome": "0",
        "agent": [{"who": {"reference": SOCIAL_WORKER}, "requestor": True}],
        "source": {"observer": {"display": "Wraparound gateway"}},
        "entity": [{"what": {"reference": CHILD}}],
    },
    "Subscription": {
        "resourceType": "Subscription", "id": "sub-1", "text": _text("Notify"),
        "status": "requested", "reason": "Notify the local system",
        "criteria": "Flag?subject=Patient/c0a8f2e4",
        "channel": {"type": "rest-hook", "endpoint": "https://local.example/notify",
                    "payload": "application/fhir+json"},
    },
    "Bundle": {
        "resourceType": "Bundle", "id": "tx-1", "type": "transaction",
        "entry": [{"fullUrl": "urn:uuid:0d1a0f0e-1b7d-4c55-9a51-6d1f1e2b3c4d",
                   "resource": {"resourceType": "Patient", "text": _text("New child"),
                                "gender": "male"},
                   "request": {"method": "POST", "url": "Patient"}}],
    },
    "OperationOutcome": {
        "resourceType": "OperationOutcome", "id": "oo-1", "text": _text("All OK"),
        "issue": [{"severity": "information", "code": "informational",
                   "diagnostics": "All OK"}],
    },
    "Parameters": {
        "resourceType": "Parameters", "id": "params-1",
        "parameter": [{"name": "mode", "valueCode": "create"},
                      {"name": "resource", "resource": {"resourceType": "Flag",
                                                        "text": _text("Flag"),
                                                        "status": "active",
                                                        "code": {"text": "CP"},
                                                        "subject": {"reference": CHILD}}},
                      {"name": "pair", "part": [{"name": "a", "valueInteger": 1}]}],
    },
    "CapabilityStatement": {
        "resourceType": "CapabilityStatement", "id": "wraparound", "text": _text("Gateway"),
        "status": "active", "date": "2024-01-01", "kind": "instance",
        "software": {"name": "Wraparound"},
        "implementation": {"description": "Wraparound FHIR gateway"},
        "fhirVersion": "4.0.1", "format": ["json", "application/fhir+json"],
        "rest": [{"mode": "server", "resource": [{
            "type": "Patient", "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": [{"name": "birthdate", "type": "date"}]}]}],
    },
}


@pytest.fixture(scope="session")
def samples() -> dict[str, dict[str, Any]]:
    """Return the valid samples by type (copy before changing one)."""
    return SAMPLES


@pytest.fixture
def sample() -> Callable[[str], dict[str, Any]]:
    """Return a factory of fresh copies of the valid sample resources."""
    def make(resource_type: str) -> dict[str, Any]:
        return copy.deepcopy(SAMPLES[resource_type])
    return make


@pytest.fixture
def shortcuts_off() -> Callable[[str, Iterable[str]], contextlib.AbstractContextManager[int]]:
    """Return a context manager that turns one shortcut (an `_Invariant` attribute: `_needs`,
    `_native`) off on the invariants of the given resource types, so they are evaluated with
    FHIRPath; it yields how many it turned off and restores them after."""
    from gateway.fhir import validation

    @contextlib.contextmanager
    def switch(attr: str, resource_types: Iterable[str]) -> Iterator[int]:
        tables = [validation._resource_table(rt) for rt in set(resource_types)]
        assert all(t is not None for t in tables)
        saved = [(inv, getattr(inv, attr)) for t in tables if t is not None
                 for inv in t.invariants if getattr(inv, attr)]
        try:
            for inv, _ in saved:
                setattr(inv, attr, None)
            yield len(saved)
        finally:
            for inv, value in saved:
                setattr(inv, attr, value)

    return switch
