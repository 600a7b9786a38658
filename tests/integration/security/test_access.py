"""Every endpoint demands a token, scopes bound what it does, agency policy hides what it may not see."""
from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gateway.security.http import ENDPOINTS, PUBLIC
from tests.conftest import FHIR_JSON, FhirActions, client_as, make_patient

CASE_NOTE = {"resourceType": "Communication", "status": "completed",
             "payload": [{"contentString": "Home visit: concerns about neglect"}]}


def _sample_path(rule: Any, ids: dict[str, str]) -> str:
    path = rule.rule
    values = {"res_type": "Communication", "res_id": ids["Communication"], "version": "1",
              "source": "social-care", "rest": "Communication/x/y/z", "message_id": "x"}
    return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", lambda m: values[m.group(1)], path)


def _routes(app: Flask) -> list[tuple[str, str, Any]]:
    out = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PUBLIC:
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            out.append((rule.endpoint, method, rule))
    return out


def test_every_endpoint_declares_its_interaction(app: Flask) -> None:
    undeclared = sorted({endpoint for endpoint, _, _ in _routes(app)} - set(ENDPOINTS))
    assert undeclared == []


def test_every_endpoint_refuses_a_missing_token(app: Flask, anonymous: FlaskClient) -> None:
    ids = {"Communication": "x"}
    for endpoint, method, rule in _routes(app):
        resp = anonymous.open(_sample_path(rule, ids), method=method, data=b"{}",
                              headers={"Content-Type": FHIR_JSON})
        assert resp.status_code == 401, (endpoint, method)
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert resp.get_json()["resourceType"] == "OperationOutcome"


def test_every_endpoint_refuses_a_bad_token(app: Flask) -> None:
    bad = app.test_client()
    bad.environ_base["HTTP_AUTHORIZATION"] = "Bearer eyJhbGciOiJub25lIn0.e30."
    for endpoint, method, rule in _routes(app):
        resp = bad.open(_sample_path(rule, {"Communication": "x"}), method=method, data=b"{}",
                        headers={"Content-Type": FHIR_JSON})
        assert resp.status_code == 401, (endpoint, method)
        assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]


def test_every_data_endpoint_enforces_scope_and_agency(app: Flask, fhir: FhirActions) -> None:
    note = fhir.created(CASE_NOTE)
    ids = {"Communication": note["id"]}
    no_scope = client_as(app, "social-care", scopes=("system/Flag.rs",))
    outsider = client_as(app, "education")
    for endpoint, method, rule in _routes(app):
        if endpoint in ("fhir.unknown", "ingest.sources") or endpoint.startswith("ingest."):
            continue
        path = _sample_path(rule, ids)
        body: Any = dict(CASE_NOTE, id=note["id"]) if method in ("PUT", "POST") else None
        if endpoint == "fhir.transaction":
            body = {"resourceType": "Bundle", "type": "transaction", "entry": [
                {"resource": CASE_NOTE, "request": {"method": "POST", "url": "Communication"}}]}
        if endpoint == "fhir.search_post":
            resp = no_scope.post(path, data={"status": "completed"})
        else:
            resp = no_scope.open(path, method=method, json=body,
                                 headers={"Content-Type": FHIR_JSON})
        assert resp.status_code in (403, 405), (endpoint, method, resp.status_code)
        if endpoint in ("fhir.read", "fhir.vread", "fhir.instance_history"):
            resp = outsider.open(path, method=method)
            assert resp.status_code == 404, (endpoint, method, resp.status_code)


def test_hidden_resource_is_indistinguishable_from_missing(app: Flask, fhir: FhirActions) -> None:
    note = fhir.created(CASE_NOTE)
    health = client_as(app, "health")
    hidden = health.get(f"/fhir/Communication/{note['id']}")
    missing = health.get("/fhir/Communication/does-not-exist")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.get_data(as_text=True).replace(note["id"], "ID") == \
        missing.get_data(as_text=True).replace("does-not-exist", "ID")
    bundle = health.get("/fhir/Communication").get_json()
    assert bundle["total"] == 0
    assert health.get("/fhir/Communication?_summary=count").get_json()["total"] == 0


def test_health_sees_cp_flag_but_not_case_notes(app: Flask, fhir: FhirActions) -> None:
    child = fhir.created(make_patient())
    flag = fhir.created({"resourceType": "Flag", "status": "active",
                         "code": {"coding": [{
                             "system": "https://wraparound.example.org/fhir/CodeSystem/flag-code",
                             "code": "CPP"}]},
                         "subject": {"reference": f"Patient/{child['id']}"}})
    other_flag = fhir.created({"resourceType": "Flag", "status": "active",
                               "code": {"text": "Worker safety: dog at address"},
                               "subject": {"reference": f"Patient/{child['id']}"}})
    note = fhir.created(dict(CASE_NOTE, subject={"reference": f"Patient/{child['id']}"}))
    health = client_as(app, "health")
    flags = health.get(f"/fhir/Flag?patient={child['id']}").get_json()
    assert {e["resource"]["id"] for e in flags["entry"]} == {flag["id"]}
    assert flags["total"] == 1
    assert health.get(f"/fhir/Flag/{other_flag['id']}").status_code == 404
    bundle = health.get(f"/fhir/Patient?_id={child['id']}&_revinclude=Communication:patient"
                        "&_revinclude=Flag:patient").get_json()
    included = {e["resource"]["id"] for e in bundle["entry"] if e["search"]["mode"] == "include"}
    assert included == {flag["id"]}
    assert note["id"] not in str(bundle)


def test_education_sees_caf_flag_only(app: Flask, fhir: FhirActions) -> None:
    child = fhir.created(make_patient())
    caf = fhir.created({"resourceType": "Flag", "status": "active", "code": {"coding": [{
        "system": "https://wraparound.example.org/fhir/CodeSystem/flag-code", "code": "CAF"}]},
        "subject": {"reference": f"Patient/{child['id']}"}})
    fhir.created({"resourceType": "Flag", "status": "active", "code": {"coding": [{
        "system": "https://wraparound.example.org/fhir/CodeSystem/flag-code", "code": "CPP"}]},
        "subject": {"reference": f"Patient/{child['id']}"}})
    school = client_as(app, "education")
    assert FhirActions(school).ids("Flag") == {caf["id"]}
    assert school.get("/fhir/Immunization").get_json()["total"] == 0


def test_writes_keep_owner_and_labels(app: Flask, fhir: FhirActions) -> None:
    labelled = make_patient(meta={"security": [{
        "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]})
    created = fhir.created(labelled)
    assert {"system": "https://wraparound.example.org/fhir/CodeSystem/agency",
            "code": "social-care"} in created["meta"]["tag"]
    stripped = dict(created, meta={"tag": [{
        "system": "https://wraparound.example.org/fhir/CodeSystem/agency", "code": "health"}]},
        gender="male")
    updated = fhir.put(stripped).get_json()
    assert updated["meta"]["security"][0]["code"] == "R"
    owners = [t["code"] for t in updated["meta"]["tag"]
              if t["system"].endswith("/agency")]
    assert owners == ["social-care"]
    health = client_as(app, "health")
    resp = health.put(f"/fhir/Patient/{created['id']}", json=dict(updated, gender="female"),
                      headers={"Content-Type": FHIR_JSON})
    assert resp.status_code == 403


@pytest.mark.parametrize(
    ("agency", "resource", "status"),
    [
        pytest.param("education", {"resourceType": "Immunization", "status": "completed",
                                   "vaccineCode": {"text": "MMR"},
                                   "patient": {"reference": "Patient/x"},
                                   "occurrenceDateTime": "2020-01-01"}, 403, id="type-not-writable"),
        pytest.param("auditor", make_patient(), 403, id="auditor-read-only"),
        pytest.param("social-care", {"resourceType": "AuditEvent", "type": {"code": "rest"},
                                     "recorded": "2026-01-01T00:00:00Z",
                                     "agent": [{"requestor": True}],
                                     "source": {"observer": {"display": "x"}}}, 403,
                     id="audit-never-writable"),
    ],
)
def test_write_refusals(app: Flask, agency: str, resource: dict[str, Any], status: int) -> None:
    caller = client_as(app, agency)
    resp = caller.post(f"/fhir/{resource['resourceType']}", json=resource,
                       headers={"Content-Type": FHIR_JSON})
    assert resp.status_code == status


def test_scopes_bound_interactions(app: Flask, fhir: FhirActions) -> None:
    child = fhir.created(make_patient())
    read_only = client_as(app, "social-care", scopes=("system/Patient.r",))
    assert read_only.get(f"/fhir/Patient/{child['id']}").status_code == 200
    assert read_only.get("/fhir/Patient?gender=female").status_code == 403  # no 's'
    assert read_only.post("/fhir/Patient", json=make_patient(),
                          headers={"Content-Type": FHIR_JSON}).status_code == 403


def test_transaction_entries_go_through_policy(app: Flask) -> None:
    school = client_as(app, "education")
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": make_patient(), "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Immunization", "status": "completed",
                      "vaccineCode": {"text": "MMR"}, "patient": {"reference": "Patient/x"},
                      "occurrenceDateTime": "2020-01-01"},
         "request": {"method": "POST", "url": "Immunization"}}]}
    resp = school.post("/fhir", json=bundle, headers={"Content-Type": FHIR_JSON})
    assert resp.status_code == 403
    assert school.get("/fhir/Patient").get_json()["total"] == 0


def test_security_headers_everywhere(client: FlaskClient, anonymous: FlaskClient) -> None:
    for resp in (client.get("/fhir/Patient"), anonymous.get("/fhir/Patient"),
                 anonymous.get("/fhir/metadata"), anonymous.get("/healthz")):
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Cache-Control"] == "no-store"
        assert "default-src 'none'" in resp.headers["Content-Security-Policy"]


def test_deeply_nested_json_refused(client: FlaskClient) -> None:
    body = '{"resourceType":"Patient","extension":' + "[" * 100 + "]" * 100 + "}"
    resp = client.post("/fhir/Patient", data=body, headers={"Content-Type": FHIR_JSON})
    assert resp.status_code == 400


def test_rate_limit_answers_429(settings: Any) -> None:
    from gateway import create_app
    from tests.conftest import bearer

    app = create_app(settings.replace(rate_limit_per_minute=60))
    limited = app.test_client()
    limited.environ_base["HTTP_AUTHORIZATION"] = bearer(app)
    statuses = [limited.get("/fhir/Patient").status_code for _ in range(15)]
    assert statuses[0] == 200
    assert 429 in statuses
    resp = limited.get("/fhir/Patient")
    assert resp.status_code == 429 and int(resp.headers["Retry-After"]) >= 1
    app.extensions["wraparound"].audit.flush()
    app.extensions["wraparound"].store.dispose()
