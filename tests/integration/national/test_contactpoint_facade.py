"""The child index façade over real HTTP: search, records with a reason, involvements,
shielding, the access log, and every index fault as an OperationOutcome."""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import FHIR_JSON, client_as
from tests.integration.national.conftest import SEED, audit_events

INDEX = "https://wraparound.example.org/fhir/Id/child-index-id"
CAF_EXISTS = "https://wraparound.example.org/fhir/StructureDefinition/caf-exists"
FAULTS = "https://wraparound.example.org/fhir/CodeSystem/national-fault"
Inject = Callable[..., dict[str, Any]]


@pytest.fixture(scope="module")
def index_seed() -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads(
        (SEED / "contactpoint.json").read_text(encoding="utf-8"))["children"]
    return data


def _plain(children: list[dict[str, Any]], **want: Any) -> dict[str, Any]:
    return next(c for c in children if not c["shielded"] and not c["archived"]
                and all(c[k] == v for k, v in want.items()))


def _shielded(children: list[dict[str, Any]]) -> dict[str, Any]:
    return next(c for c in children if c["shielded"] and not c["archived"])


def _params(**values: Any) -> dict[str, Any]:
    out = []
    for name, value in values.items():
        key = {bool: "valueBoolean", str: "valueString"}[type(value)]
        out.append({"name": name.replace("_", "-"), key: value})
    return {"resourceType": "Parameters", "parameter": out}


def test_capability_statement_is_public(app: Flask) -> None:
    resp = app.test_client().get("/national/contactpoint/metadata")
    assert resp.status_code == 200
    assert resp.get_json()["rest"][0]["resource"][0]["type"] == "Patient"


def test_search_answers_a_searchset_of_patients(client: FlaskClient,
                                                index_seed: list[dict[str, Any]]) -> None:
    child = _plain(index_seed)
    resp = client.get(f"/national/contactpoint/Patient?phonetic={child['family']}"
                      f"&birthdate=ge{child['birth_date']}&birthdate=le{child['birth_date']}")
    assert resp.status_code == 200, resp.get_json()
    bundle = resp.get_json()
    assert bundle["type"] == "searchset"
    patient = next(e["resource"] for e in bundle["entry"]
                   if e["resource"]["id"] == child["index_id"])
    assert {"system": INDEX, "value": child["index_id"]} in patient["identifier"]
    assert patient["address"][0]["postalCode"] == child["address"]["postcode"]
    assert client.get("/national/contactpoint/Patient").status_code == 400
    assert client.get("/national/contactpoint/Patient?name=x").status_code == 400


def test_shielded_children_never_leak_location(app: Flask, client: FlaskClient,
                                               auditor: FlaskClient,
                                               index_seed: list[dict[str, Any]]) -> None:
    child = _shielded(index_seed)
    secrets = [child["address"]["postcode"], *child["address"]["lines"],
               *(c["phone"] for c in child["carers"] if c.get("phone"))]
    bodies = []
    for agency in ("education", "health", "youth-support"):
        caller = client_as(app, agency)
        bodies.append(caller.get("/national/contactpoint/Patient?address-postalcode="
                                 + child["address"]["postcode"]))
        bodies.append(caller.get(f"/national/contactpoint/Patient?identifier={INDEX}|"
                                 f"{child['index_id']}"))
        bodies.append(caller.get(f"/national/contactpoint/Patient/{child['index_id']}",
                                 headers={"X-Access-Reason": "safeguarding"}))
        bodies.append(caller.post(
            f"/national/contactpoint/Patient/{child['index_id']}/$record-involvement",
            json=_params(service="school", organization_name="School"),
            headers={"Content-Type": FHIR_JSON}))
    assert child["index_id"] not in {e["resource"]["id"] for e in
                                     bodies[0].get_json().get("entry", [])}
    patient = bodies[1].get_json()["entry"][0]["resource"]
    assert patient["meta"]["security"][0]["code"] == "R" and "address" not in patient
    record = bodies[2].get_json()
    assert [e["resource"]["resourceType"] for e in record["entry"]] == ["Patient"]
    assert bodies[3].status_code == 403
    assert bodies[3].get_json()["issue"][0]["details"]["coding"][0]["code"] == "RecordShielded"
    audit = auditor.get(f"/national/contactpoint/AuditEvent?patient={child['index_id']}")
    assert audit.status_code == 200
    bodies.append(audit)
    app.extensions["wraparound"].audit.flush()
    bodies.append(auditor.get("/fhir/AuditEvent?_count=200"))
    for resp in bodies:
        text = resp.get_data(as_text=True)
        for secret in secrets:
            assert secret not in text


def test_a_record_needs_a_reason_and_is_audited_on_both_sides(
        app: Flask, auditor: FlaskClient, index_seed: list[dict[str, Any]]) -> None:
    child = _plain(index_seed, caf_exists=True)
    education = client_as(app, "education")
    missing = education.get(f"/national/contactpoint/Patient/{child['index_id']}")
    assert missing.status_code == 400
    assert missing.get_json()["issue"][0]["code"] == "required"
    resp = education.get(f"/national/contactpoint/Patient/{child['index_id']}",
                         headers={"X-Access-Reason": "attendance concern"})
    assert resp.status_code == 200, resp.get_json()
    bundle = resp.get_json()
    kinds = {e["resource"]["resourceType"] for e in bundle["entry"]}
    assert {"Patient", "RelatedPerson", "CareTeam", "Organization"} <= kinds
    patient = bundle["entry"][0]["resource"]
    assert {"url": CAF_EXISTS, "valueBoolean": True} in patient["extension"]
    team = next(e["resource"] for e in bundle["entry"]
                if e["resource"]["resourceType"] == "CareTeam")
    roles = [c["code"] for p in team["participant"] for r in p["role"]
             for c in r.get("coding", [])]
    assert "lead-professional" in roles
    log = auditor.get(f"/national/contactpoint/AuditEvent?patient={child['index_id']}")
    first = log.get_json()["entry"][0]["resource"]
    assert first["purposeOfEvent"][0]["text"] == "attendance concern"
    events = audit_events(app, auditor, resp.headers["X-Request-ID"])
    assert events and "attendance concern" in events[0]["entity"][-1]["description"]
    assert client_as(app, "health").get(
        f"/national/contactpoint/AuditEvent?patient={child['index_id']}").status_code == 403


def test_sensitive_involvements_need_consent(client: FlaskClient,
                                             index_seed: list[dict[str, Any]]) -> None:
    hidden = next(c for c in index_seed if not c["shielded"] and not c["archived"] and any(
        i["service"] == "sexual-health" and not i["consent"] for i in c["involvements"]))
    bundle = client.get(f"/national/contactpoint/Patient/{hidden['index_id']}",
                        headers={"X-Access-Reason": "planning"}).get_json()
    team = next(e["resource"] for e in bundle["entry"]
                if e["resource"]["resourceType"] == "CareTeam")
    assert any(p["member"].get("display") == "contact the index team"
               for p in team["participant"])
    assert "sexual health service" not in json.dumps(bundle)
    child = _plain(index_seed)
    url = f"/national/contactpoint/Patient/{child['index_id']}"
    refused = client.post(f"{url}/$record-involvement", headers={"Content-Type": FHIR_JSON},
                          json=_params(service="mental-health", organization_name="CAMHS"))
    assert refused.status_code == 403
    assert refused.get_json()["issue"][0]["details"]["coding"] == [
        {"system": FAULTS, "code": "ConsentRequired"}]
    done = client.post(f"{url}/$record-involvement", headers={"Content-Type": FHIR_JSON},
                       json=_params(service="mental-health", organization_name="CAMHS",
                                    consent=True, lead=True))
    assert done.status_code == 200, done.get_json()
    inv_id = next(p["valueString"] for p in done.get_json()["parameter"]
                  if p["name"] == "involvement-id")
    ended = client.post(f"{url}/$end-involvement", headers={"Content-Type": FHIR_JSON},
                        json=_params(involvement_id=inv_id))
    assert ended.status_code == 200
    assert any(p["name"] == "end" for p in ended.get_json()["parameter"])


def test_shielding_is_role_gated(app: Flask, client: FlaskClient,
                                 index_seed: list[dict[str, Any]]) -> None:
    child = _plain(index_seed)
    url = f"/national/contactpoint/Patient/{child['index_id']}/$shield"
    body = _params(reason="risk of harm")
    assert client_as(app, "health").post(url, json=body, headers={
        "Content-Type": FHIR_JSON}).status_code == 403
    resp = client.post(url, json=body, headers={"Content-Type": FHIR_JSON})
    assert resp.status_code == 200, resp.get_json()
    assert {"name": "shielded", "valueBoolean": True} in resp.get_json()["parameter"]
    found = client.get("/national/contactpoint/Patient?address-postalcode="
                       + child["address"]["postcode"]).get_json()
    assert child["index_id"] not in {e["resource"]["id"] for e in found.get("entry", [])}
    override = client.get(f"/national/contactpoint/Patient/{child['index_id']}", headers={
        "X-Access-Reason": "court order", "X-Break-Glass-Reason": "court order"})
    assert override.status_code == 200
    assert override.get_json()["entry"][0]["resource"]["address"]
    unshield = f"/national/contactpoint/Patient/{child['index_id']}/$unshield"
    assert client.post(unshield, json=body, headers={
        "Content-Type": FHIR_JSON}).status_code == 200


@pytest.mark.parametrize(("code", "status", "issue_code"), [
    ("NotAuthorised", 403, "forbidden"),
    ("ReasonRequired", 400, "required"),
    ("RecordShielded", 403, "suppressed"),
    ("ConsentRequired", 403, "forbidden"),
    ("RecordArchived", 410, "deleted"),
    ("ValidationError", 400, "invalid"),
    ("NotFound", 404, "not-found"),
])
def test_every_index_fault_is_an_outcome(client: FlaskClient, inject: Inject, code: str,
                                         status: int, issue_code: str) -> None:
    inject(service="contactpoint", kind="soap_fault", code=code)
    resp = client.get("/national/contactpoint/Patient?family=Smith")
    assert resp.status_code == status
    (issue,) = resp.get_json()["issue"]
    assert issue["code"] == issue_code
    assert issue["details"]["coding"] == [{"system": FAULTS, "code": code}]


def test_archived_record_is_gone(client: FlaskClient,
                                 index_seed: list[dict[str, Any]]) -> None:
    archived = next(c for c in index_seed if c["archived"])
    resp = client.get(f"/national/contactpoint/Patient/{archived['index_id']}",
                      headers={"X-Access-Reason": "look"})
    assert resp.status_code == 410
