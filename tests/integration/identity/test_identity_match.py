"""POST /fhir/Patient/$match: golden Patients graded certain, probable or possible."""
from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import FHIR_JSON, client_as
from tests.integration.identity.conftest import golden_of
from tests.integration.identity.test_identity_review import child, put

NHS = "https://fhir.nhs.uk/Id/nhs-number"
GRADE = "http://hl7.org/fhir/StructureDefinition/match-grade"
VERIFIED = [{"url": "https://fhir.hl7.org.uk/StructureDefinition/"
                    "Extension-UKCore-NHSNumberVerificationStatus",
             "valueCodeableConcept": {"coding": [{
                 "system": "https://fhir.hl7.org.uk/CodeSystem/"
                           "UKCore-NHSNumberVerificationStatusEngland", "code": "01"}]}}]
R_LABEL = {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}


def params(resource: dict[str, Any], **extra: Any) -> dict[str, Any]:
    out: list[dict[str, Any]] = [{"name": "resource", "resource": resource}]
    for name, value in extra.items():
        key = "valueBoolean" if isinstance(value, bool) else "valueInteger"
        out.append({"name": name, key: value})
    return {"resourceType": "Parameters", "parameter": out}


def match(client: FlaskClient, body: Any) -> Any:
    return client.post("/fhir/Patient/$match", json=body, headers={"Content-Type": FHIR_JSON})


def grades(bundle: dict[str, Any]) -> list[tuple[str, str, float]]:
    return [(e["resource"]["id"], e["search"]["extension"][0]["valueCode"], e["search"]["score"])
            for e in bundle.get("entry", [])]


@pytest.fixture
def stored(app: Flask) -> dict[str, str]:
    ruby = put(app, "health", child(
        "child-health", "CH1", "Ruby", "Clarke", "2016-02-21", "IP24 5AZ", "4 Well Street",
        identifier=[{"system": NHS, "value": "9434765005", "extension": VERIFIED}]))
    tom = put(app, "social-care", child(
        "social-care", "SC9", "Thomas", "Hart", "2015-07-04", "PE30 4DT", "2 Quay Side",
        gender="male"))
    secret = put(app, "youth-support", child(
        "youth-support", "YS1", "Kit", "Hidden", "2011-03-03", "NR99 7QX", "4 Quarry Refuge",
        meta={"source": "urn:wraparound:source:youth-support", "security": [R_LABEL]}))
    return {"ruby": golden_of(app, ruby), "tom": golden_of(app, tom),
            "secret": golden_of(app, secret)}


def test_match_grades_and_scores(client: FlaskClient, stored: dict[str, str]) -> None:
    by_nhs = match(client, params({"resourceType": "Patient", "identifier": [
        {"system": NHS, "value": "943 476 5005"}], "birthDate": "2016-02-21"})).get_json()
    assert by_nhs["resourceType"] == "Bundle" and by_nhs["type"] == "searchset"
    assert grades(by_nhs) == [(stored["ruby"], "certain", 1.0)]
    assert by_nhs["entry"][0]["search"]["mode"] == "match"
    assert by_nhs["entry"][0]["resource"]["identifier"][0]["value"] == stored["ruby"]

    # A nickname and a transposed date of birth still find him, as probable; his postcode
    # (unspaced, lower case) makes it certain.
    tommy = {"resourceType": "Patient", "name": [{"family": "HART", "given": ["Tom"]}],
             "gender": "male", "birthDate": "2015-04-07"}
    found = grades(match(client, params(tommy)).get_json())
    assert [(g, grade) for g, grade, _ in found] == [(stored["tom"], "probable")]
    assert 0.9 < found[0][2] < 1.0
    assert match(client, params(tommy, onlyCertainMatches=True)).get_json()["total"] == 0
    assert match(client, tommy).get_json()["total"] == 1  # a bare Patient is accepted too
    tommy["address"] = [{"postalCode": "pe304dt"}]
    found = grades(match(client, params(tommy, onlyCertainMatches=True, count=1)).get_json())
    assert [(g, grade) for g, grade, _ in found] == [(stored["tom"], "certain")]

    stranger = {"resourceType": "Patient", "name": [{"family": "Nobody", "given": ["Zed"]}],
                "birthDate": "2001-01-01"}
    assert match(client, params(stranger)).get_json()["total"] == 0


def test_match_never_uses_a_shielded_childs_location(app: Flask,
                                                     stored: dict[str, str]) -> None:
    # Her first name, birthday and (secret) address, another surname: the address would lift
    # this to probable, so it must not count unless the caller breaks the glass.
    probe = {"resourceType": "Patient", "name": [{"family": "Other", "given": ["Kit"]}],
             "birthDate": "2011-03-03", "gender": "female",
             "address": [{"line": ["4 Quarry Refuge"], "postalCode": "NR99 7QX"}]}
    resp = match(client_as(app, "education"), params(probe))
    assert resp.status_code == 200
    assert "Quarry" not in resp.get_data(as_text=True)
    assert grades(resp.get_json())[0][:2] == (stored["secret"], "possible")
    glass = client_as(app, "social-care", **{"X-Break-Glass-Reason": "child at risk tonight"})
    assert grades(match(glass, params(probe)).get_json())[0][:2] == (stored["secret"],
                                                                     "probable")


@pytest.mark.parametrize(("body", "status"), [
    ({"resourceType": "Parameters", "parameter": []}, 400),
    ({"resourceType": "Communication", "status": "completed"}, 400),
    (params({"resourceType": "Patient", "gender": "robot"}), 400),
    (params({"resourceType": "Patient"}, count=0), 400),
    ({"resourceType": "Parameters", "parameter": [{"name": "nonsense", "valueBoolean": True}]},
     400),
])
def test_match_refuses_bad_parameters(client: FlaskClient, body: Any, status: int) -> None:
    resp = match(client, body)
    assert resp.status_code == status
    assert resp.get_json()["resourceType"] == "OperationOutcome"


def test_match_needs_patient_search(app: Flask) -> None:
    flags_only = client_as(app, "social-care", scopes=("system/Flag.rs",))
    assert match(flags_only, params({"resourceType": "Patient"})).status_code == 403
    assert match(client_as(app, "auditor"), params({"resourceType": "Patient"})).status_code == 403
