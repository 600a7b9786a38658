"""CP-IS uploads through the outbox: queued with the plan, delivered to the mock over real SOAP."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from gateway.outbox.store import DELIVERED, FAILED, PENDING
from gateway.security.context import Caller, acting_as
from tests.conftest import FHIR_JSON, client_as, make_patient
from tests.integration.outbox.conftest import drain, parts

ROOT = Path(__file__).resolve().parents[3]
NHS = "https://fhir.nhs.uk/Id/nhs-number"
CP_PLAN_TYPE = "https://wraparound.example.org/fhir/CodeSystem/cp-plan-type"
VERIFIED_EXT = ("https://fhir.hl7.org.uk/StructureDefinition/"
                "Extension-UKCore-NHSNumberVerificationStatus")
VERIFIED_SYSTEM = ("https://fhir.hl7.org.uk/CodeSystem/"
                   "UKCore-NHSNumberVerificationStatusEngland")


@pytest.fixture(scope="module")
def ordinary_children() -> list[str]:
    """NHS numbers CP-IS accepts (current, not sensitive, living) and holds no plan for yet."""
    patients = json.loads((ROOT / "fixtures/national/pds.json").read_text("utf-8"))["patients"]
    plans = json.loads((ROOT / "fixtures/national/cpis.json").read_text("utf-8"))["plans"]
    planned = {p["nhs_number"] for p in plans}
    return [p["nhs_number"] for p in patients if not p["sensitive"] and not p["deceased_date"]
            and not p["superseded_nhs_numbers"] and p["nhs_number"] not in planned]


def _child(nhs: str) -> dict[str, Any]:
    patient = make_patient(nhs=nhs)
    patient["identifier"][0]["extension"] = [{
        "url": VERIFIED_EXT, "valueCodeableConcept": {"coding": [
            {"system": VERIFIED_SYSTEM, "code": "01"}]}}]
    return patient


def _plan(patient_id: str, start: str = "2026-01-05", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "CarePlan", "status": "active", "intent": "plan",
            "category": [{"coding": [{"system": CP_PLAN_TYPE, "code": "CPP"}]}],
            "subject": {"reference": f"Patient/{patient_id}"},
            "period": {"start": start}, **extra}


def _post(client: FlaskClient, resource: dict[str, Any]) -> dict[str, Any]:
    resp = client.post(f"/fhir/{resource['resourceType']}", json=resource,
                       headers={"Content-Type": FHIR_JSON})
    assert resp.status_code == 201, resp.get_json()
    body: dict[str, Any] = resp.get_json()
    return body


def _cpis_flags(client: FlaskClient, nhs: str) -> list[dict[str, Any]]:
    bundle = client.get(f"/national/cpis/Flag?patient.identifier={NHS}|{nhs}").get_json()
    return [e["resource"] for e in bundle.get("entry", [])
            if e["resource"]["resourceType"] == "Flag"]


def test_a_plan_written_through_the_api_reaches_cpis(app: Flask, client: FlaskClient,
                                                     ordinary_children: list[str]) -> None:
    nhs = ordinary_children[0]
    child = _post(client, _child(nhs))
    plan = _post(client, _plan(child["id"]))
    records = parts(app).outbox.list()
    assert [(r["destination"], r["operation"], r["state"]) for r in records] == [
        ("cpis", "upload", PENDING)]
    worker = drain(app)
    assert worker.stats.delivered == 1
    assert parts(app).outbox.get(records[0]["id"])["state"] == DELIVERED
    flags = _cpis_flags(client, nhs)
    assert [f["period"]["start"] for f in flags] == ["2026-01-05"]
    # Ending the plan sends the end date: CP-IS then no longer shows it as current.
    ended = dict(plan, period={"start": "2026-01-05", "end": "2026-03-01"}, status="completed")
    assert client.put(f"/fhir/CarePlan/{plan['id']}", json=ended,
                      headers={"Content-Type": FHIR_JSON}).status_code == 200
    assert drain(app).stats.delivered == 1
    assert parts(app).outbox.stats()["states"][DELIVERED] == 2


def test_a_failed_transaction_queues_nothing(app: Flask, client: FlaskClient,
                                             ordinary_children: list[str]) -> None:
    child = _post(client, _child(ordinary_children[1]))
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": _plan(child["id"]), "request": {"method": "POST", "url": "CarePlan"}},
        {"resource": {"resourceType": "CarePlan", "status": "not-a-status"},
         "request": {"method": "POST", "url": "CarePlan"}},
    ]}
    resp = client.post("/fhir", json=bundle, headers={"Content-Type": FHIR_JSON})
    assert resp.status_code in (400, 422)
    assert parts(app).outbox.stats()["states"][PENDING] == 0
    assert client.get("/fhir/CarePlan?_summary=count").get_json()["total"] == 0


def test_plans_of_other_agencies_and_other_kinds_are_not_uploaded(
        app: Flask, client: FlaskClient, ordinary_children: list[str]) -> None:
    child = _post(client, _child(ordinary_children[2]))
    _post(client, {"resourceType": "CarePlan", "status": "active", "intent": "plan",
                   "subject": {"reference": f"Patient/{child['id']}"},
                   "period": {"start": "2026-01-05"}})  # not a CP-IS plan type
    health = client_as(app, "health")
    patient = _post(health, _child(ordinary_children[3]))
    _post(health, {"resourceType": "Encounter", "status": "finished",
                   "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                             "code": "EMER"},
                   "subject": {"reference": f"Patient/{patient['id']}"}})
    assert parts(app).outbox.stats()["states"][PENDING] == 0


def test_the_social_care_sample_is_uploaded_once_per_plan(app: Flask, client: FlaskClient,
                                                          mock: str) -> None:
    services = app.extensions["wraparound"]
    sample = ROOT / "fixtures/sources/social-care/sample.csv"
    with acting_as(Caller.internal("social-care")), sample.open("rb") as stream:
        services.ingest.run("social-care", stream, "text/csv")
    queued = parts(app).outbox.stats()["states"][PENDING]
    plans = [e["resource"] for e in client.get(
        f"/fhir/CarePlan?category={CP_PLAN_TYPE}|CPP&_count=500").get_json().get("entry", [])]
    assert queued >= len(plans) > 0
    # Ingesting the same export again changes nothing, so nothing more is queued.
    with acting_as(Caller.internal("social-care")), sample.open("rb") as stream:
        services.ingest.run("social-care", stream, "text/csv")
    assert parts(app).outbox.stats()["states"][PENDING] == queued
    worker = drain(app)
    stats = parts(app).outbox.stats()["states"]
    assert stats[DELIVERED] + stats[FAILED] == queued
    assert stats[DELIVERED] > 0 and worker.stats.fenced == 0
    # Every dead letter is a record CP-IS refused (an unverified or unknown NHS number), with
    # the service's code; none is a transport failure.
    for record in parts(app).outbox.list(state=FAILED, limit=500):
        assert "CPR0" in (record["lastError"] or ""), record["lastError"]
    state = requests.get(f"{mock}/admin/services/cpis", timeout=5).json()
    assert state["uploads_processed"] == queued


def test_a_service_outage_is_retried_and_a_client_fault_is_a_dead_letter(
        app: Flask, client: FlaskClient, inject: Any, ordinary_children: list[str]) -> None:
    child = _post(client, _child(ordinary_children[4]))
    inject(service="cpis", operation="*", kind="http_error", status=503, times=2)
    _post(client, _plan(child["id"]))
    worker = drain(app)
    assert (worker.stats.retried, worker.stats.delivered) == (2, 1)
    (record,) = parts(app).outbox.list()
    assert record["attempts"] == 3 and record["state"] == DELIVERED
    other = _post(client, _child(ordinary_children[5]))
    inject(service="cpis", operation="*", kind="soap_fault", fault_code="Client", times=1)
    _post(client, _plan(other["id"]))
    worker = drain(app)
    assert worker.stats.failed == 1
    (failed,) = parts(app).outbox.list(state=FAILED)
    assert failed["attempts"] == 1
    # Replayed over HTTP by the operations team: delivered with the same message id.
    ops = client_as(app, "operations", scopes=())
    resp = ops.post(f"/admin/outbox/{failed['id']}/$replay")
    assert resp.status_code == 200 and resp.get_json()["state"] == PENDING
    assert drain(app).stats.delivered == 1
    assert parts(app).outbox.get(failed["id"])["state"] == DELIVERED
    assert len(_cpis_flags(client, ordinary_children[5])) == 1


def test_an_unborn_child_plan_is_uploaded_with_its_delivery_date(
        app: Flask, client: FlaskClient, ordinary_children: list[str]) -> None:
    nhs = ordinary_children[1]  # the mother's NHS number: CP-IS records the plan under it
    mother = _post(client, _child(nhs))
    _post(client, _plan(mother["id"], category=[{"coding": [
        {"system": CP_PLAN_TYPE, "code": "UCPP"}]}], activity=[{"detail": {
            "kind": "Appointment", "status": "not-started",
            "code": {"coding": [{"system": "http://loinc.org", "code": "11778-8"}]},
            "scheduledPeriod": {"start": "2026-12-24"}}}]))
    (record,) = parts(app).outbox.list()
    assert drain(app).stats.delivered == 1
    assert parts(app).outbox.get(record["id"])["state"] == DELIVERED
    bundle = client.get(f"/national/cpis/Flag?patient.identifier={NHS}|{nhs}").get_json()
    (care_plan,) = [e["resource"] for e in bundle["entry"]
                    if e["resource"]["resourceType"] == "CarePlan"]
    assert care_plan["description"].endswith("expected delivery date 2026-12-24")
