"""The CAF assessment store façade over real HTTP: the whole CAF lifecycle in FHIR shapes, the
child index's "CAF exists" indicator following it, illegal moves as 409, faults as outcomes."""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import FHIR_JSON, client_as
from tests.integration.national.conftest import SEED

INDEX = "https://wraparound.example.org/fhir/Id/child-index-id"
CAF_REF = "https://wraparound.example.org/fhir/Id/caf-reference"
CAF_EXISTS = "https://wraparound.example.org/fhir/StructureDefinition/caf-exists"
FAULTS = "https://wraparound.example.org/fhir/CodeSystem/national-fault"
Inject = Callable[..., dict[str, Any]]
HEADERS = {"Content-Type": FHIR_JSON}


@pytest.fixture(scope="module")
def child() -> dict[str, Any]:
    children = json.loads((SEED / "contactpoint.json").read_text(encoding="utf-8"))["children"]
    found: dict[str, Any] = next(c for c in children if not c["shielded"]
                                 and not c["archived"] and not c["caf_exists"])
    return found


def _indicator(client: FlaskClient, index_id: str) -> bool:
    bundle = client.get(f"/national/contactpoint/Patient?identifier={INDEX}|{index_id}")
    patient = bundle.get_json()["entry"][0]["resource"]
    return bool(next(e["valueBoolean"] for e in patient["extension"]
                     if e["url"] == CAF_EXISTS))


def _assessment(index_id: str, status: str) -> dict[str, Any]:
    return {"resourceType": "QuestionnaireResponse", "status": status,
            "questionnaire": "https://wraparound.example.org/fhir/Questionnaire/caf",
            "subject": {"identifier": {"system": INDEX, "value": index_id}},
            "item": [{"linkId": "development", "item": [{"linkId": "development.health", "item": [
                {"linkId": "development.health.strengths",
                 "answer": [{"valueString": "Active, eats well"}]},
                {"linkId": "development.health.needs",
                 "answer": [{"valueString": "Overdue dental check"}]}]}]}]}


def test_the_caf_form_is_a_questionnaire(app: Flask) -> None:
    public = app.test_client()
    form = public.get("/national/ecaf/Questionnaire/caf").get_json()
    assert form["resourceType"] == "Questionnaire"
    assert [g["linkId"] for g in form["item"]] == [
        "development", "parents-carers", "family-environment"]
    assert public.get("/national/ecaf/metadata").status_code == 200


def test_register_complete_and_close_a_caf(app: Flask, child: dict[str, Any]) -> None:
    education = client_as(app, "education")
    index_id = child["index_id"]
    assert _indicator(education, index_id) is False
    created = education.post("/national/ecaf/QuestionnaireResponse", headers=HEADERS,
                             json=_assessment(index_id, "in-progress"))
    assert created.status_code == 201, created.get_json()
    response = created.get_json()
    caf_id = response["id"]
    assert response["status"] == "in-progress" and response["meta"]["versionId"] == "1"
    assert _indicator(education, index_id) is True

    url = f"/national/ecaf/QuestionnaireResponse/{caf_id}"
    no_consent = education.put(url, headers=HEADERS, json=_assessment(index_id, "completed"))
    assert no_consent.status_code == 403
    assert no_consent.get_json()["issue"][0]["details"]["coding"][0]["code"] == \
        "ConsentRequired"
    consent = education.post("/national/ecaf/Consent", headers=HEADERS, json={
        "resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                              "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                   "code": "OPTIN"}]},
        "performer": [{"display": "Mother"}],
        "sourceReference": {"reference": f"QuestionnaireResponse/{caf_id}"}})
    assert consent.status_code == 201, consent.get_json()
    assert consent.get_json()["status"] == "active"
    done = education.put(url, headers=HEADERS, json=_assessment(index_id, "completed"))
    assert done.status_code == 200, done.get_json()
    assert done.get_json()["status"] == "completed"

    team = education.post("/national/ecaf/CareTeam", headers=HEADERS, json={
        "resourceType": "CareTeam", "identifier": [{"system": CAF_REF, "value": caf_id}],
        "participant": [
            {"role": [{"text": "Class teacher"}, {"coding": [{
                "system": "https://wraparound.example.org/fhir/CodeSystem/care-team-role",
                "code": "lead-professional"}]}],
             "member": {"display": "A Teacher"}, "onBehalfOf": {"display": "School"}},
            {"role": [{"text": "School nurse"}], "member": {"display": "B Nurse"}}]})
    assert team.status_code == 201, team.get_json()
    plan = education.post("/national/ecaf/CarePlan", headers=HEADERS, json={
        "resourceType": "CarePlan", "status": "active", "intent": "plan",
        "subject": {"reference": f"Patient/{index_id}"},
        "identifier": [{"system": CAF_REF, "value": caf_id}],
        "activity": [{"detail": {"status": "not-started", "description": "Book the dentist",
                                 "performer": [{"display": "Mother"}],
                                 "scheduledPeriod": {"end": "2026-12-31"}}}]})
    assert plan.status_code == 201, plan.get_json()
    assert plan.get_json()["activity"][0]["detail"]["description"] == "Book the dentist"
    again = education.put(url, headers=HEADERS, json=_assessment(index_id, "completed"))
    assert again.status_code == 409
    assert again.get_json()["issue"][0]["code"] == "business-rule"
    review = education.post(f"{url}/$review", headers=HEADERS, json={
        "resourceType": "Parameters", "parameter": [
            {"name": "date", "valueDate": "2026-12-01"},
            {"name": "summary", "valueString": "Dentist booked"}]})
    assert review.status_code == 200, review.get_json()
    found = education.get(f"/national/ecaf/QuestionnaireResponse?subject={index_id}")
    kinds = [e["resource"]["resourceType"] for e in found.get_json()["entry"]]
    assert kinds == ["QuestionnaireResponse", "Consent", "CareTeam", "CarePlan"]
    closed = education.post(f"{url}/$close", headers=HEADERS, json={
        "resourceType": "Parameters", "parameter": [{"name": "reason",
                                                      "valueCode": "needs-met"}]})
    assert closed.status_code == 200, closed.get_json()
    status = next(e["valueCode"] for e in closed.get_json()["extension"])
    assert status == "closed"
    assert _indicator(education, index_id) is False


def test_agencies_without_ecaf_are_refused(app: Flask, child: dict[str, Any]) -> None:
    resp = client_as(app, "youth-justice").get(
        f"/national/ecaf/QuestionnaireResponse?subject={child['index_id']}")
    assert resp.status_code == 403


@pytest.mark.parametrize(("code", "status", "issue_code"), [
    ("NotFound", 404, "not-found"),
    ("IllegalTransition", 409, "business-rule"),
    ("ConsentRequired", 403, "forbidden"),
    ("ValidationError", 400, "invalid"),
    ("VersionConflict", 409, "conflict"),
    ("AlreadyExists", 409, "duplicate"),
])
def test_every_store_fault_is_an_outcome(client: FlaskClient, inject: Inject, code: str,
                                         status: int, issue_code: str) -> None:
    inject(service="ecaf", kind="soap_fault", code=code)
    resp = client.get("/national/ecaf/QuestionnaireResponse/CAF000001")
    assert resp.status_code == status
    (issue,) = resp.get_json()["issue"]
    assert issue["code"] == issue_code
    assert issue["details"]["coding"] == [{"system": FAULTS, "code": code}]
