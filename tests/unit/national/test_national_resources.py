"""FHIR shapes of national answers: valid, deterministic, restricted records without location."""
from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from connectors.cpis import AccessNotification, Accessor, CpisAccess, CpisPlan, LocalAuthority
from connectors.pds import Address, GpPractice, PdsPatient, PersonName, Telecom
from gateway.fhir.validation import validate_resource
from gateway.national import resources as r
from gateway.national.capability import cpis_capability, pds_capability

NHS = "https://fhir.nhs.uk/Id/nhs-number"
LA = LocalAuthority("LA926", "Synthetic County Council", "01632 960100", "01632 960199")
ACCESS = CpisAccess(dt.datetime(2026, 9, 1, 9, 30, tzinfo=dt.UTC),
                    Accessor("555000111222", "Dr Test", "ED doctor", "RGT01", "Hospital"), "ED")


def _patient(**changes: Any) -> PdsPatient:
    fields: dict[str, Any] = {
        "nhs_number": "9990043094", "response_code": "SMSP-0000",
        "name": PersonName("Nowak", ("Ines", "Grace"), "Miss", "L"),
        "birth_date": dt.date(2020, 2, 15), "gender": "female",
        "addresses": (Address(("75 Wensum View", "King's Lynn"), "PE33 1SU", "H"),),
        "telecoms": (Telecom("tel:07700900786", "H"), Telecom("mailto:a@example.org", "WP")),
        "gp": GpPractice("D82008", "Gaywood Surgery")}
    fields.update(changes)
    return PdsPatient(**fields)


def _errors(resource: dict[str, Any]) -> list[Any]:
    return [i for i in validate_resource(resource, resource["resourceType"])
            if i.severity in ("error", "fatal")]


def test_patient_shape() -> None:
    patient = r.patient_from_pds(_patient())
    assert _errors(patient) == []
    assert patient["name"] == [{"use": "official", "family": "Nowak", "given": ["Ines", "Grace"],
                                "prefix": ["Miss"]}]
    assert patient["telecom"] == [
        {"system": "phone", "value": "07700900786", "use": "home"},
        {"system": "email", "value": "a@example.org", "use": "work"}]
    assert patient["address"] == [{"use": "home", "line": ["75 Wensum View", "King's Lynn"],
                                   "postalCode": "PE33 1SU"}]
    assert patient["meta"]["security"][0]["code"] == "U"


def test_restricted_patient_is_labelled_r_and_never_carries_location() -> None:
    patient = r.patient_from_pds(_patient(addresses=(), telecoms=(), gp=None))
    assert _errors(patient) == []
    assert patient["meta"]["security"][0]["code"] == "R"
    assert not {"address", "telecom", "generalPractitioner"} & set(patient)


def test_superseded_and_deceased() -> None:
    patient = r.patient_from_pds(_patient(superseded_nhs_number="9993285943",
                                          deceased_date=dt.date(2022, 9, 11)))
    assert _errors(patient) == []
    assert patient["deceasedDateTime"] == "2022-09-11"
    assert patient["link"][0]["type"] == "replaces"
    assert patient["link"][0]["other"]["identifier"] == {"system": NHS, "value": "9993285943"}


@pytest.mark.parametrize(("end", "today", "status"), [
    (None, dt.date(2026, 1, 1), "active"),
    (dt.date(2026, 6, 1), dt.date(2026, 1, 1), "active"),
    (dt.date(2025, 6, 1), dt.date(2026, 1, 1), "inactive"),
])
def test_cpis_shape(end: dt.date | None, today: dt.date, status: str) -> None:
    plan = CpisPlan("UCPP", dt.date(2025, 1, 1), end, LA)
    flag, care_plan, care_team = r.cpis_plan_resources("9990043094", plan, today)
    for resource in (flag, care_plan, care_team, r.organization_for(LA)):
        assert _errors(resource) == []
    assert flag["status"] == status
    assert flag["extension"][0]["valueReference"]["reference"] == f"CarePlan/{care_plan['id']}"
    assert care_plan["careTeam"][0]["reference"] == f"CareTeam/{care_team['id']}"
    assert care_plan["category"][0]["coding"][0]["code"] == "818901000000100"
    # The same answer always has the same ids.
    again = r.cpis_plan_resources("9990043094", plan, today)
    assert [x["id"] for x in again] == [flag["id"], care_plan["id"], care_team["id"]]


def test_notification_resources_are_valid_and_keyed_by_message_id() -> None:
    note = AccessNotification("N-1", "5B0F4F38-0A34-4E8C-9A3F-7C9D64F1C0AA", "9990043094",
                              "C0001", "LA926", ("CPP", "LAC"), ACCESS)
    linked = r.notification_resources(note, "Patient/abc")
    unlinked = r.notification_resources(note, None)
    for event, communication in (linked, unlinked):
        assert _errors(event) == [] and _errors(communication) == []
        assert (communication["id"], event["id"]) == r.notification_ids(note.message_id)
        assert communication["about"] == [{"reference": f"AuditEvent/{event['id']}"}]
        assert communication["identifier"][0] == {
            "system": "urn:ietf:rfc:3986", "value": "urn:uuid:5b0f4f38-0a34-4e8c-9a3f-7c9d64f1c0aa"}
    assert linked[1]["subject"] == {"reference": "Patient/abc"}
    assert linked[0]["entity"][0]["what"]["reference"] == "Patient/abc"
    assert unlinked[1]["subject"] == {"identifier": {"system": NHS, "value": "9990043094"}}
    assert unlinked[0]["recorded"] == "2026-09-01T09:30:00Z"


@pytest.mark.parametrize(("message_id", "value"), [
    ("5B0F4F38-0A34-4E8C-9A3F-7C9D64F1C0AA", "urn:uuid:5b0f4f38-0a34-4e8c-9a3f-7c9d64f1c0aa"),
    ("urn:uuid:5b0f4f38-0a34-4e8c-9a3f-7c9d64f1c0aa",
     "urn:uuid:5b0f4f38-0a34-4e8c-9a3f-7c9d64f1c0aa"),
    ("urn:example:message:42", "urn:example:message:42"),
])
def test_message_identifier(message_id: str, value: str) -> None:
    assert r.message_identifier(message_id)["value"] == value


@pytest.mark.parametrize(("code", "system"), [
    ("DEMOG-0001", "urn:oid:2.16.840.1.113883.2.1.3.2.4.17.285"),
    ("SMSP-0001", "urn:oid:2.16.840.1.113883.2.1.3.2.4.17.285"),
    ("2200", "urn:oid:2.16.840.1.113883.2.1.3.2.4.17.268"),
    ("CPR03", "urn:oid:2.16.840.1.113883.2.1.3.2.4.17.473"),
    ("CPIS-VALIDATION", None),
    (None, None),
])
def test_service_code_systems(code: str | None, system: str | None) -> None:
    coding = r.service_code_coding(code)
    assert (coding or {}).get("system") == system


def test_capability_statements_are_valid() -> None:
    for statement in (pds_capability("http://x/national/pds"),
                      cpis_capability("http://x/national/cpis")):
        assert _errors(statement) == []
