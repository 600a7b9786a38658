"""The PDS façade over real HTTP to the mock spine: read, search, $verify, metadata."""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from gateway.fhir.validation import validate_resource
from tests.integration.national.conftest import NHS

UKCORE = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"


def _valid(resource: dict[str, Any]) -> None:
    errors = [i for i in validate_resource(resource, resource["resourceType"])
              if i.severity in ("error", "fatal")]
    assert errors == []


def _security(patient: dict[str, Any]) -> set[str]:
    return {s["code"] for s in patient["meta"]["security"] if s["system"] == CONFIDENTIALITY}


def test_read_answers_a_uk_core_patient(client: FlaskClient, child: dict[str, Any]) -> None:
    resp = client.get(f"/national/pds/Patient/{child['nhs_number']}")
    assert resp.status_code == 200
    assert resp.mimetype == "application/fhir+json"
    patient = resp.get_json()
    _valid(patient)
    assert patient["id"] == child["nhs_number"]
    assert patient["meta"]["profile"] == [UKCORE]
    assert _security(patient) == {"U"}
    (identifier,) = patient["identifier"]
    assert (identifier["system"], identifier["value"]) == (NHS, child["nhs_number"])
    status = identifier["extension"][0]["valueCodeableConcept"]["coding"][0]
    assert status["code"] == "01"
    assert patient["name"][0]["family"] == child["family"]
    assert patient["name"][0]["given"] == child["given"][:2]
    assert (patient["gender"], patient["birthDate"]) == (child["gender"], child["birth_date"])
    assert patient["address"][0]["postalCode"] == child["address"]["postcode"]
    gp = patient["generalPractitioner"][0]
    assert gp["identifier"] == {"system": ODS, "value": child["gp"]["ods_code"]}
    assert "deceasedDateTime" not in patient and "link" not in patient


def test_restricted_record_is_labelled_and_has_no_location(
        client: FlaskClient, seed: dict[str, Any]) -> None:
    restricted = next(p for p in seed["pds"] if p["sensitive"])
    patient = client.get(f"/national/pds/Patient/{restricted['nhs_number']}").get_json()
    _valid(patient)
    assert _security(patient) == {"R"}
    assert not {"address", "telecom", "generalPractitioner"} & set(patient)
    assert patient["birthDate"] == restricted["birth_date"]


def test_deceased_child(client: FlaskClient, seed: dict[str, Any]) -> None:
    dead = next(p for p in seed["pds"] if p["deceased_date"])
    patient = client.get(f"/national/pds/Patient/{dead['nhs_number']}").get_json()
    assert patient["deceasedDateTime"] == dead["deceased_date"]


def test_superseded_number_answers_the_current_record(
        client: FlaskClient, seed: dict[str, Any]) -> None:
    record = next(p for p in seed["pds"] if p["superseded_nhs_numbers"])
    old = record["superseded_nhs_numbers"][0]
    resp = client.get(f"/national/pds/Patient/{old}")
    assert resp.status_code == 200
    patient = resp.get_json()
    _valid(patient)
    assert patient["id"] == record["nhs_number"]
    assert patient["identifier"][0]["value"] == record["nhs_number"]
    assert patient["link"] == [{"other": {"identifier": {"system": NHS, "value": old},
                                          "display": "superseded NHS number"},
                                "type": "replaces"}]
    assert resp.headers["Content-Location"].endswith(f"/national/pds/Patient/{record['nhs_number']}")


def test_links_use_the_host_each_request_came_to(
        client: FlaskClient, seed: dict[str, Any]) -> None:
    record = next(p for p in seed["pds"] if p["superseded_nhs_numbers"])
    old = record["superseded_nhs_numbers"][0]
    for host, scheme in (("one.example", "http"), ("two.example:8443", "https"),
                         ("one.example", "http")):
        resp = client.get(f"/national/pds/Patient/{old}", headers={"Host": host},
                          environ_overrides={"wsgi.url_scheme": scheme})
        assert resp.status_code == 200
        assert resp.headers["Content-Location"] == (
            f"{scheme}://{host}/national/pds/Patient/{record['nhs_number']}")


def test_modulus_11_is_checked_before_any_call(
        client: FlaskClient, mock_state: Callable[[str], dict[str, Any]]) -> None:
    before = mock_state("pds")["calls"]
    for bad in ("9990043095", "12345", "999004309X"):
        resp = client.get(f"/national/pds/Patient/{bad}")
        assert resp.status_code == 400, bad
        issue = resp.get_json()["issue"][0]
        assert issue["code"] == "invalid" and "Modulus 11" in issue["diagnostics"]
    assert mock_state("pds")["calls"] == before


def test_unknown_number_is_404_with_the_pds_code(client: FlaskClient) -> None:
    resp = client.get("/national/pds/Patient/9111231130")
    assert resp.status_code == 404
    issue = resp.get_json()["issue"][0]
    assert issue["code"] == "not-found"
    assert issue["details"]["coding"][0]["code"] == "DEMOG-0001"
    assert "9111231130" not in issue["diagnostics"]
    assert "correlation id" in issue["diagnostics"]


def test_search_by_demographics_finds_one(client: FlaskClient, child: dict[str, Any]) -> None:
    resp = client.get("/national/pds/Patient", query_string={
        "family": child["family"], "given": child["given"][0], "birthdate": child["birth_date"],
        "gender": child["gender"], "address-postalcode": child["address"]["postcode"]})
    assert resp.status_code == 200
    bundle = resp.get_json()
    _valid(bundle)
    assert (bundle["type"], bundle["total"]) == ("searchset", 1)
    (entry,) = bundle["entry"]
    assert entry["search"]["mode"] == "match"
    assert entry["resource"]["id"] == child["nhs_number"]
    assert entry["fullUrl"].endswith(f"/national/pds/Patient/{child['nhs_number']}")


def test_search_with_no_match_is_an_empty_searchset(client: FlaskClient) -> None:
    bundle = client.get("/national/pds/Patient?family=Nobody&birthdate=2015-01-01&gender=male"
                        ).get_json()
    assert bundle["resourceType"] == "Bundle" and bundle["total"] == 0
    assert "entry" not in bundle


def test_search_matching_several_is_422(client: FlaskClient, seed: dict[str, Any]) -> None:
    counts = Counter((p["family"], p["birth_date"], p["gender"]) for p in seed["pds"])
    family, birth, gender = next(k for k, n in counts.items() if n > 1)
    resp = client.get("/national/pds/Patient", query_string={
        "family": family, "birthdate": birth, "gender": gender})
    assert resp.status_code == 422
    issue = resp.get_json()["issue"][0]
    assert issue["code"] == "multiple-matches"
    assert issue["details"]["coding"][0]["code"] == "DEMOG-0007"
    assert "more than one person" in issue["diagnostics"]


def test_search_of_a_restricted_child_by_postcode_finds_nobody(
        client: FlaskClient, seed: dict[str, Any]) -> None:
    restricted = next(p for p in seed["pds"] if p["sensitive"])
    query = {"family": restricted["family"], "birthdate": restricted["birth_date"],
             "gender": restricted["gender"]}
    assert client.get("/national/pds/Patient", query_string={
        **query, "address-postalcode": restricted["address"]["postcode"]}).get_json()["total"] == 0
    found = client.get("/national/pds/Patient", query_string=query).get_json()
    assert found["total"] == 1
    assert _security(found["entry"][0]["resource"]) == {"R"}


@pytest.mark.parametrize(("query", "fragment"), [
    pytest.param("family=Smith&birthdate=2015-01-01", "missing: gender", id="missing-gender"),
    pytest.param("birthdate=2015-01-01&gender=male", "missing: family", id="missing-family"),
    pytest.param("family=Smith&birthdate=2015&gender=male", "full date", id="partial-date"),
    pytest.param("family=Smith&birthdate=2015-01-01&gender=robot", "gender", id="bad-gender"),
    pytest.param("family=Smith&birthdate=2015-01-01&gender=male&email=x", "unknown",
                 id="unknown-param"),
    pytest.param("family=Smith&family=Jones&birthdate=2015-01-01&gender=male", "once",
                 id="repeated"),
])
def test_bad_searches_are_400(client: FlaskClient, query: str, fragment: str) -> None:
    resp = client.get(f"/national/pds/Patient?{query}")
    assert resp.status_code == 400
    assert fragment in resp.get_json()["issue"][0]["diagnostics"]


def _verify(client: FlaskClient, nhs: str, birth: str, **extra: Any) -> Any:
    params: list[dict[str, Any]] = [{"name": "nhs-number", "valueString": nhs},
                                    {"name": "birthdate", "valueDate": birth}]
    if "family" in extra:
        params.append({"name": "name", "valueHumanName": {"family": extra["family"]}})
    return client.post("/national/pds/Patient/$verify",
                       json={"resourceType": "Parameters", "parameter": params},
                       headers={"Content-Type": "application/fhir+json"})


def _out(parameters: dict[str, Any]) -> dict[str, Any]:
    return {p["name"]: p for p in parameters["parameter"]}


def test_verify_a_correct_number(client: FlaskClient, child: dict[str, Any]) -> None:
    resp = _verify(client, child["nhs_number"], child["birth_date"], family=child["family"])
    assert resp.status_code == 200
    out = _out(resp.get_json())
    _valid(resp.get_json())
    assert out["verified"]["valueBoolean"] is True
    assert out["pds-response-code"]["valueCoding"]["code"] == "SMSP-0000"
    assert out["nhs-number"]["valueIdentifier"]["value"] == child["nhs_number"]


def test_verify_a_wrong_birth_date(client: FlaskClient, child: dict[str, Any]) -> None:
    out = _out(_verify(client, child["nhs_number"], "1999-01-01").get_json())
    assert out["verified"]["valueBoolean"] is False
    assert out["pds-response-code"]["valueCoding"]["code"] == "DEMOG-0001"


def test_verify_a_superseded_number(client: FlaskClient, seed: dict[str, Any]) -> None:
    record = next(p for p in seed["pds"] if p["superseded_nhs_numbers"])
    out = _out(_verify(client, record["superseded_nhs_numbers"][0], record["birth_date"]
                       ).get_json())
    assert out["verified"]["valueBoolean"] is False
    assert out["pds-response-code"]["valueCoding"]["code"] == "DEMOG-0017"
    assert out["nhs-number"]["valueIdentifier"]["value"] == record["nhs_number"]


@pytest.mark.parametrize(("body", "status"), [
    pytest.param({"resourceType": "Parameters", "parameter": [
        {"name": "birthdate", "valueDate": "2015-01-01"}]}, 400, id="no-number"),
    pytest.param({"resourceType": "Parameters", "parameter": [
        {"name": "nhs-number", "valueString": "9990043095"},
        {"name": "birthdate", "valueDate": "2015-01-01"}]}, 400, id="modulus-11"),
    pytest.param({"resourceType": "Parameters", "parameter": [
        {"name": "nhs-number", "valueString": "9990043094"}]}, 400, id="no-birthdate"),
    pytest.param({"resourceType": "Patient"}, 400, id="not-parameters"),
    pytest.param({"resourceType": "Parameters", "parameter": [{"name": "x"}]}, 422,
                 id="breaks-an-invariant"),
])
def test_bad_verify_input_is_refused(client: FlaskClient, body: dict[str, Any],
                                     status: int) -> None:
    resp = client.post("/national/pds/Patient/$verify", json=body,
                       headers={"Content-Type": "application/fhir+json"})
    assert resp.status_code == status
    assert resp.get_json()["resourceType"] == "OperationOutcome"


def test_verify_needs_fhir_json(client: FlaskClient) -> None:
    resp = client.post("/national/pds/Patient/$verify", data=b"<Parameters/>",
                       headers={"Content-Type": "application/xml"})
    assert resp.status_code == 415


def test_capability_statement_is_public(anonymous: FlaskClient) -> None:
    resp = anonymous.get("/national/pds/metadata")
    assert resp.status_code == 200
    statement = resp.get_json()
    _valid(statement)
    assert statement["implementation"]["url"].endswith("/national/pds")
    (patient,) = statement["rest"][0]["resource"]
    assert patient["type"] == "Patient" and patient["profile"] == UKCORE
    assert {p["name"] for p in patient["searchParam"]} == {
        "family", "given", "birthdate", "gender", "address-postalcode"}
    assert patient["operation"][0]["name"] == "verify"
