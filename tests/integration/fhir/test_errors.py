"""Every error is an OperationOutcome with the right status; nothing stored is harmed."""
from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from tests.conftest import FHIR_JSON, FhirActions, make_patient


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "code"),
    [
        pytest.param("GET", "/fhir/Spaceship/1", None, {}, 404, "not-supported", id="unknown-type"),
        pytest.param("GET", "/fhir/Patient/nobody", None, {}, 404, "not-found", id="unknown-id"),
        pytest.param("GET", "/fhir/Patient/" + "x" * 65, None, {}, 404, "not-found", id="overlong-id"),
        pytest.param("POST", "/fhir/Patient", b"{not json", {"Content-Type": FHIR_JSON}, 400,
                     "invalid", id="malformed-json"),
        pytest.param("POST", "/fhir/Patient", b"", {"Content-Type": FHIR_JSON}, 400, "invalid",
                     id="empty-body"),
        pytest.param("POST", "/fhir/Patient", b"[]", {"Content-Type": FHIR_JSON}, 400, "invalid",
                     id="not-an-object"),
        pytest.param("POST", "/fhir/Patient", b'{"resourceType":"Flag","status":"active"}',
                     {"Content-Type": FHIR_JSON}, 400, "invalid", id="wrong-resource-type"),
        pytest.param("PUT", "/fhir/Patient/a", b'{"resourceType":"Patient","id":"b"}',
                     {"Content-Type": FHIR_JSON}, 400, "invalid", id="id-mismatch"),
        pytest.param("PUT", "/fhir/Patient/a", b'{"resourceType":"Patient"}',
                     {"Content-Type": FHIR_JSON}, 400, "invalid", id="id-missing"),
        pytest.param("POST", "/fhir/Patient", b"<Patient/>", {"Content-Type": "application/fhir+xml"},
                     415, "not-supported", id="xml-body"),
        pytest.param("GET", "/fhir/metadata", None, {"Accept": "application/fhir+xml"}, 406,
                     "not-supported", id="xml-accept"),
        pytest.param("GET", "/fhir/Patient?_format=xml", None, {}, 406, "not-supported",
                     id="xml-format"),
        pytest.param("PATCH", "/fhir/Patient/a", b"{}", {"Content-Type": FHIR_JSON}, 405,
                     "not-supported", id="patch"),
        pytest.param("GET", "/nowhere", None, {}, 404, "not-found", id="unknown-route"),
    ],
)
def test_error_outcomes(client: FlaskClient, method: str, path: str, body: bytes | None,
                        headers: dict[str, str], status: int, code: str) -> None:
    resp = client.open(path, method=method, data=body, headers=headers)
    assert resp.status_code == status
    assert resp.mimetype == FHIR_JSON
    outcome = resp.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == code
    assert b"Traceback" not in resp.data and b"<html" not in resp.data.lower()


def test_oversize_body_is_413(fhir: FhirActions) -> None:
    limit = fhir.client.application.config["MAX_CONTENT_LENGTH"]
    big = b'{"resourceType":"Patient","text":"' + b"a" * (limit + 10) + b'"}'
    resp = fhir.client.post("/fhir/Patient", data=big, headers={"Content-Type": FHIR_JSON})
    assert resp.status_code == 413
    assert resp.get_json()["issue"][0]["code"] == "too-costly"


def test_invalid_update_keeps_stored_version(fhir: FhirActions) -> None:
    created = fhir.created(make_patient())
    bad = dict(created, gender="robot")
    assert fhir.put(bad).status_code in (400, 422)
    current = fhir.client.get(f"/fhir/Patient/{created['id']}").get_json()
    assert current == created


def test_validation_errors_name_the_element(fhir: FhirActions) -> None:
    resp = fhir.create(make_patient(gender="robot"))
    assert resp.status_code in (400, 422)
    issues = resp.get_json()["issue"]
    assert any("Patient.gender" in " ".join(i.get("expression", [])) for i in issues)


def test_validate_operation(fhir: FhirActions) -> None:
    ok = fhir.client.post("/fhir/Patient/$validate", json=make_patient(),
                          headers={"Content-Type": FHIR_JSON})
    assert ok.status_code == 200
    assert ok.get_json()["resourceType"] == "OperationOutcome"
    assert all(i["severity"] in ("information", "warning") for i in ok.get_json()["issue"])
    bad = fhir.client.post("/fhir/Patient/$validate", json=make_patient(active="yes"),
                           headers={"Content-Type": FHIR_JSON})
    assert bad.status_code in (400, 422)
    assert any("Patient.active" in " ".join(i.get("expression", []))
               for i in bad.get_json()["issue"])
    params = {"resourceType": "Parameters",
              "parameter": [{"name": "resource", "resource": make_patient()}]}
    assert fhir.client.post("/fhir/Patient/$validate", json=params,
                            headers={"Content-Type": FHIR_JSON}).status_code == 200
    assert fhir.ids("Patient") == set()  # $validate stores nothing


def test_health_and_readiness(client: FlaskClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").get_json() == {"status": "ready"}


def test_capability_statement_reflects_registry(client: FlaskClient) -> None:
    app = client.application
    registry = app.extensions["wraparound"].registry
    cs = client.get("/fhir/metadata").get_json()
    assert cs["resourceType"] == "CapabilityStatement"
    assert cs["fhirVersion"] == "4.0.1"
    served = {r["type"]: r for r in cs["rest"][0]["resource"]}
    assert set(served) == set(registry.names())
    for name in ("Patient", "RelatedPerson", "Practitioner", "PractitionerRole", "Organization",
                 "CareTeam", "EpisodeOfCare", "Encounter", "Flag", "CarePlan", "Observation",
                 "Immunization", "Condition", "Questionnaire", "QuestionnaireResponse", "Consent",
                 "Communication", "DocumentReference", "Provenance", "AuditEvent"):
        assert name in served
    patient_params = {p["name"] for p in served["Patient"]["searchParam"]}
    assert {"identifier", "name", "family", "given", "birthdate", "gender",
            "address-postalcode", "_id", "_lastUpdated"} <= patient_params
    assert "Flag:patient" in served["Patient"]["searchRevInclude"]
