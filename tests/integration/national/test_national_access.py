"""Every façade route needs a token, the right scopes and an agency allowed the service; each call
is audited with its correlation id and never logs personal data."""
from __future__ import annotations

import logging
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gateway.security.audit import AuditContext, build_event
from tests.conftest import client_as
from tests.integration.national.conftest import NHS, audit_events

SUBTYPES = "https://wraparound.example.org/fhir/CodeSystem/audit-event-subtype"
VERIFY = {"resourceType": "Parameters", "parameter": [
    {"name": "nhs-number", "valueString": "9990043094"},
    {"name": "birthdate", "valueDate": "2020-02-15"}]}
UPLOAD = {"resourceType": "Parameters", "parameter": [
    {"name": "patient", "valueReference": {"reference": "Patient/x"}}]}
ROUTES = [
    ("GET", "/national/pds/Patient/9990043094", None),
    ("GET", "/national/pds/Patient?family=Nowak&birthdate=2020-02-15&gender=female", None),
    ("POST", "/national/pds/Patient/$verify", VERIFY),
    ("GET", f"/national/cpis/Flag?nhs-number={NHS}|9990197768", None),
    ("GET", f"/national/cpis/AuditEvent?patient={NHS}|9990197768", None),
    ("POST", "/national/cpis/$upload", UPLOAD),
]
IDS = ["pds-read", "pds-search", "pds-verify", "cpis-flag", "cpis-history", "cpis-upload"]


def _open(client: FlaskClient, method: str, path: str, body: Any) -> Any:
    return client.open(path, method=method, json=body,
                       headers={"Content-Type": "application/fhir+json"})


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=IDS)
def test_no_token_is_401(anonymous: FlaskClient, method: str, path: str, body: Any) -> None:
    resp = _open(anonymous, method, path, body)
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


# (agency, scopes) that must be refused for each route: one agency policy refuses, one scope set
# lacks what the route needs.
REFUSED = {
    "pds-read": [("education", None), ("social-care", ("system/Patient.s",))],
    "pds-search": [("youth-support", None), ("social-care", ("system/Patient.r",))],
    "pds-verify": [("auditor", None), ("social-care", ("system/Patient.s",))],
    "cpis-flag": [("youth-justice", None), ("health", ("system/Flag.rs",))],
    "cpis-history": [("education", None), ("health", ("system/Flag.rs",))],
    "cpis-upload": [("health", None), ("social-care", ("system/Patient.r", "system/Flag.rs"))],
}


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=IDS)
def test_wrong_agency_or_scope_is_403(request: pytest.FixtureRequest, app: Flask, method: str,
                                      path: str, body: Any,
                                      mock_state: Any) -> None:
    route = request.node.callspec.id.removeprefix("sqlite-").removeprefix("postgres-")
    before = mock_state("pds")["calls"]
    for agency, scopes in REFUSED[route]:
        client = client_as(app, agency, scopes) if scopes else client_as(app, agency)
        resp = _open(client, method, path, body)
        assert resp.status_code == 403, (agency, scopes, resp.get_json())
        assert resp.get_json()["issue"][0]["code"] == "forbidden"
    assert mock_state("pds")["calls"] == before  # refused before any national call


def test_health_may_read_pds_and_query_cpis(health: FlaskClient, child: dict[str, Any],
                                            seed: dict[str, Any]) -> None:
    assert health.get(f"/national/pds/Patient/{child['nhs_number']}").status_code == 200
    plan = seed["cpis"]["plans"][0]
    assert health.get(f"/national/cpis/Flag?nhs-number={plan['nhs_number']}").status_code == 200


def test_each_call_is_audited_with_its_correlation_id(
        app: Flask, client: FlaskClient, auditor: FlaskClient, child: dict[str, Any]) -> None:
    request_id = "national-audit-test-1"
    resp = client.get(f"/national/pds/Patient/{child['nhs_number']}",
                      headers={"X-Request-ID": request_id})
    assert resp.status_code == 200 and resp.headers["X-Request-ID"] == request_id
    (event,) = audit_events(app, auditor, request_id)
    assert event["subtype"][0] == {"system": SUBTYPES, "code": "national"}
    assert event["outcome"] == "0"
    references = [e["what"]["reference"] for e in event.get("entity", []) if "what" in e]
    assert references == [f"http://localhost/national/pds/Patient/{child['nhs_number']}"]
    # The operation and the SOAP ids are in the context's description, which the audit layer
    # writes when it records descriptions.
    probe = build_event(None, AuditContext("national", description="probe-text"), "success",
                        request_id=None)
    if "probe-text" in str(probe):
        assert "getPatientDetailsByNHSNumber" in str(event)


def test_failed_and_refused_calls_are_audited(app: Flask, client: FlaskClient,
                                              auditor: FlaskClient) -> None:
    assert client.get("/national/pds/Patient/9111231130",
                      headers={"X-Request-ID": "national-audit-404"}).status_code == 404
    education = client_as(app, "education")
    assert education.get("/national/pds/Patient/9111231130",
                         headers={"X-Request-ID": "national-audit-403"}).status_code == 403
    (missing,) = audit_events(app, auditor, "national-audit-404")
    (refused,) = audit_events(app, auditor, "national-audit-403")
    assert (missing["outcome"], missing["outcomeDesc"]) == ("4", "HTTP 404")
    assert (refused["outcome"], refused["outcomeDesc"]) == ("4", "HTTP 403")


def test_no_personal_data_in_logs(client: FlaskClient, child: dict[str, Any],
                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client.get(f"/national/pds/Patient/{child['nhs_number']}")
    client.get("/national/pds/Patient", query_string={
        "family": child["family"], "birthdate": child["birth_date"], "gender": child["gender"]})
    client.get("/national/pds/Patient/9111231130")
    text = caplog.text
    assert "soap call service=pds" in text  # the connector's timing record is there
    for value in (child["nhs_number"], child["family"], child["birth_date"], "9111231130"):
        assert value not in text
