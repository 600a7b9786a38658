"""The CP-IS façade over real HTTP to the mock spine: query, access history, upload, metadata."""
from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gateway.fhir.validation import validate_resource
from tests.conftest import FhirActions, client_as, make_patient
from tests.integration.national.conftest import NHS

SNOMED = "http://snomed.info/sct"
CP_PLAN_TYPE = "https://wraparound.example.org/fhir/CodeSystem/cp-plan-type"
FLAG_CODE = "https://wraparound.example.org/fhir/CodeSystem/flag-code"
FLAG_DETAIL = "http://hl7.org/fhir/StructureDefinition/flag-detail"
VERIFICATION = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus"
VERIFICATION_CODES = "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland"
FHIR_JSON = {"Content-Type": "application/fhir+json"}


def _errors(resource: dict[str, Any]) -> list[Any]:
    return [i for i in validate_resource(resource, resource["resourceType"])
            if i.severity in ("error", "fatal")]


def _by_type(bundle: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for entry in bundle.get("entry", []):
        out.setdefault(entry["resource"]["resourceType"], []).append(entry["resource"])
    return out


def _plan_of(seed: dict[str, Any], plan_type: str = "CPP") -> dict[str, Any]:
    plan: dict[str, Any] = next(p for p in seed["cpis"]["plans"] if p["plan_type"] == plan_type)
    return plan


def test_query_answers_flag_careplan_careteam(client: FlaskClient, seed: dict[str, Any]) -> None:
    plan = _plan_of(seed)
    resp = client.get(f"/national/cpis/Flag?patient.identifier={NHS}|{plan['nhs_number']}")
    assert resp.status_code == 200
    bundle = resp.get_json()
    assert _errors(bundle) == []
    assert (bundle["type"], bundle["total"]) == ("searchset", 1)
    modes = {e["resource"]["resourceType"]: e["search"]["mode"] for e in bundle["entry"]}
    assert modes == {"Flag": "match", "CarePlan": "include", "CareTeam": "include",
                     "Organization": "include"}
    found = _by_type(bundle)
    (flag,), (care_plan,), (team,), (org,) = (found["Flag"], found["CarePlan"], found["CareTeam"],
                                              found["Organization"])
    assert flag["status"] == "active"
    assert flag["subject"]["identifier"] == {"system": NHS, "value": plan["nhs_number"]}
    assert {(c["system"], c["code"]) for c in flag["code"]["coding"]} >= {
        (SNOMED, "342191000000101"), (FLAG_CODE, "CPP")}
    assert flag["period"]["start"] == plan["start_date"]
    detail = next(x for x in flag["extension"] if x["url"] == FLAG_DETAIL)
    assert detail["valueReference"]["reference"] == f"CarePlan/{care_plan['id']}"
    assert care_plan["careTeam"] == [{"reference": f"CareTeam/{team['id']}"}]
    assert (CP_PLAN_TYPE, "CPP") in {(c["system"], c["code"])
                                     for c in care_plan["category"][0]["coding"]}
    la = seed["cpis"]["local_authority"]
    assert team["name"] == la["name"]
    assert {(t["use"], t["value"]) for t in team["telecom"]} == {
        ("work", la["office_phone"]), ("mobile", la["emergency_phone"])}
    assert team["managingOrganization"][0]["reference"] == f"Organization/{org['id']}"
    assert org["identifier"][0]["value"] == la["ods_code"]


def test_looked_after_child(client: FlaskClient, seed: dict[str, Any]) -> None:
    plan = _plan_of(seed, "LAC")
    bundle = client.get(f"/national/cpis/Flag?nhs-number={plan['nhs_number']}").get_json()
    (flag,) = _by_type(bundle)["Flag"]
    assert (SNOMED, "764841000000100") in {(c["system"], c["code"]) for c in flag["code"]["coding"]}


def test_a_child_on_no_plan_is_an_empty_searchset(client: FlaskClient,
                                                  seed: dict[str, Any]) -> None:
    on_plan = {p["nhs_number"] for p in seed["cpis"]["plans"]}
    number = next(p["nhs_number"] for p in seed["pds"] if p["nhs_number"] not in on_plan)
    bundle = client.get(f"/national/cpis/Flag?patient:identifier={NHS}|{number}").get_json()
    assert bundle["total"] == 0 and "entry" not in bundle


def _history(client: FlaskClient, nhs: str) -> list[dict[str, Any]]:
    resp = client.get(f"/national/cpis/AuditEvent?patient={NHS}|{nhs}")
    assert resp.status_code == 200
    bundle = resp.get_json()
    assert _errors(bundle) == []
    return _by_type(bundle).get("AuditEvent", [])


def test_scheduled_reads_are_silent_and_unscheduled_are_recorded(
        app: Flask, client: FlaskClient, seed: dict[str, Any]) -> None:
    plan = _plan_of(seed)
    assert client.get(f"/national/cpis/Flag?nhs-number={plan['nhs_number']}").status_code == 200
    assert _history(client, plan["nhs_number"]) == []
    ed = client_as(app, "health", **{"X-Access-Type": "unscheduled",
                                     "X-Care-Setting": "Emergency department"})
    assert ed.get(f"/national/cpis/Flag?nhs-number={plan['nhs_number']}").status_code == 200
    assert client.get(f"/national/cpis/Flag?nhs-number={plan['nhs_number']}"
                      "&access-type=unscheduled").status_code == 200
    first, second = _history(client, plan["nhs_number"])
    assert first["agent"][0]["who"]["identifier"]["value"] == "dev:social-care"  # most recent
    assert second["agent"][0]["who"]["identifier"]["value"] == "dev:health"
    assert second["agent"][0]["location"]["display"] == "Emergency department"
    assert second["entity"][0]["what"]["identifier"] == {"system": NHS,
                                                         "value": plan["nhs_number"]}


@pytest.mark.parametrize(("query", "headers"), [
    pytest.param("", {}, id="no-child"),
    pytest.param("nhs-number=9990043095", {}, id="modulus-11"),
    pytest.param("nhs-number=http://example.org/id|9990043094", {}, id="wrong-system"),
    pytest.param("nhs-number=9990043094&nhs-number=9990043094", {}, id="twice"),
    pytest.param("nhs-number=9990043094&family=x", {}, id="unknown-param"),
    pytest.param("nhs-number=9990043094", {"X-Access-Type": "curious"}, id="bad-access-type"),
])
def test_bad_queries_are_400(client: FlaskClient, query: str, headers: dict[str, str]) -> None:
    resp = client.get(f"/national/cpis/Flag?{query}", headers=headers)
    assert resp.status_code == 400
    assert resp.get_json()["resourceType"] == "OperationOutcome"


def test_capability_statement_is_public(anonymous: FlaskClient) -> None:
    statement = anonymous.get("/national/cpis/metadata").get_json()
    assert _errors(statement) == []
    assert {r["type"] for r in statement["rest"][0]["resource"]} == {"Flag", "AuditEvent"}
    assert statement["rest"][0]["operation"][0]["name"] == "upload"


# -- upload -----------------------------------------------------------------------------------
def _verified(nhs: str, code: str = "01") -> dict[str, Any]:
    return {"system": NHS, "value": nhs, "extension": [{
        "url": VERIFICATION, "valueCodeableConcept": {"coding": [
            {"system": VERIFICATION_CODES, "code": code}]}}]}


def _stored_child(fhir: FhirActions, nhs: str, *, verified: str = "01",
                  plan_type: str = "CPP") -> tuple[dict[str, Any], dict[str, Any]]:
    patient = fhir.created(make_patient(nhs, identifier=[_verified(nhs, verified)]))
    care_plan = fhir.created({
        "resourceType": "CarePlan", "status": "active", "intent": "plan",
        "category": [{"coding": [{"system": CP_PLAN_TYPE, "code": plan_type}]}],
        "subject": {"reference": f"Patient/{patient['id']}"},
        "period": {"start": "2026-01-05"}})
    return patient, care_plan


def _upload(client: FlaskClient, body: dict[str, Any]) -> Any:
    return client.post("/national/cpis/$upload", json=body, headers=FHIR_JSON)


def _patients(*ids: str) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueReference": {"reference": f"Patient/{i}"}} for i in ids]}


def _codes(outcome: dict[str, Any]) -> list[str]:
    return [i["details"]["coding"][0]["code"] for i in outcome["issue"] if "details" in i]


def test_upload_of_stored_plans(client: FlaskClient, fhir: FhirActions, child: dict[str, Any],
                                seed: dict[str, Any]) -> None:
    patient, care_plan = _stored_child(fhir, child["nhs_number"])
    resp = _upload(client, _patients(patient["id"]))
    assert resp.status_code == 200, resp.get_json()
    outcome = resp.get_json()
    assert _errors(outcome) == []
    assert _codes(outcome) == ["CPF02", "CPR06"]
    assert outcome["issue"][1]["diagnostics"].startswith(f"CarePlan/{care_plan['id']}:")
    assert child["nhs_number"] not in resp.get_data(as_text=True)
    # CP-IS now answers the plan, with the gateway's local authority responsible.
    bundle = client.get(f"/national/cpis/Flag?nhs-number={child['nhs_number']}").get_json()
    (team,) = _by_type(bundle)["CareTeam"]
    assert team["name"] == "Local authority children's services"
    assert team["period"]["start"] == "2026-01-05"


def test_upload_of_an_unverified_number_is_refused_by_record(
        client: FlaskClient, fhir: FhirActions, child: dict[str, Any]) -> None:
    patient, _ = _stored_child(fhir, child["nhs_number"], verified="02")
    resp = _upload(client, _patients(patient["id"]))
    assert resp.status_code == 422
    assert _codes(resp.get_json()) == ["CPF04", "CPR03"]


def test_upload_of_a_bundle_partly_accepted(client: FlaskClient, seed: dict[str, Any],
                                            child: dict[str, Any]) -> None:
    restricted = next(p for p in seed["pds"] if p["sensitive"])
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:6c1f3f8e-7d4a-4f7e-9a51-0c1d2e3f4a5b", "resource": {
            "resourceType": "Flag", "id": "lac1", "status": "active",
            "code": {"coding": [{"system": FLAG_CODE, "code": "LAC"}]},
            "subject": {"identifier": _verified(child["nhs_number"])},
            "period": {"start": "2025-11-01"}}},
        {"resource": {
            "resourceType": "CarePlan", "id": "cpp1", "status": "active", "intent": "plan",
            "category": [{"coding": [{"system": SNOMED, "code": "342191000000101"}]}],
            "subject": {"identifier": _verified(restricted["nhs_number"])},
            "period": {"start": "2025-12-01"}}},
        {"resource": {
            "resourceType": "Flag", "id": "caf1", "status": "active",
            "code": {"coding": [{"system": FLAG_CODE, "code": "CAF"}]},
            "subject": {"identifier": _verified(child["nhs_number"])}}},
    ]}
    resp = _upload(client, bundle)
    assert resp.status_code == 200, resp.get_json()
    outcome = resp.get_json()
    assert _codes(outcome) == ["CPF03", "CPR06", "CPR02"]
    assert outcome["issue"][-1]["severity"] == "warning"
    assert "Flag/caf1" in outcome["issue"][-1]["diagnostics"]


def test_upload_with_nothing_to_send_is_422(client: FlaskClient, fhir: FhirActions,
                                            child: dict[str, Any]) -> None:
    patient = fhir.created(make_patient(child["nhs_number"]))
    resp = _upload(client, _patients(patient["id"]))
    assert resp.status_code == 422
    assert "nothing to upload" in resp.get_json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize("body", [
    pytest.param({"resourceType": "Patient"}, id="wrong-type"),
    pytest.param({"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueString": "x"}]}, id="not-a-reference"),
    pytest.param({"resourceType": "Parameters", "parameter": [
        {"name": "other", "valueString": "x"}]}, id="unknown-parameter"),
])
def test_bad_uploads_are_400(client: FlaskClient, body: dict[str, Any]) -> None:
    assert _upload(client, body).status_code == 400


def test_upload_of_an_unknown_patient_is_404(client: FlaskClient) -> None:
    assert _upload(client, _patients("no-such-child")).status_code == 404
