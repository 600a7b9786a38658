"""The local authority's data feed and the lead professional through the child index façade, over
real HTTP to the mock index: per-record answers, idempotent re-sends, the feed role, and every
index fault at both new entry points as an OperationOutcome."""

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
NHS = "https://fhir.nhs.uk/Id/nhs-number"
UPN = "https://wraparound.example.org/fhir/Id/unique-pupil-number"
PR = "https://wraparound.example.org/fhir/CodeSystem/parental-responsibility"
LEAD = {
    "system": "https://wraparound.example.org/fhir/CodeSystem/care-team-role",
    "code": "lead-professional",
    "display": "Lead professional",
}
FAULTS = "https://wraparound.example.org/fhir/CodeSystem/national-fault"
FEED = "/national/contactpoint/$feed"
Inject = Callable[..., dict[str, Any]]


@pytest.fixture(scope="module")
def index_seed() -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads(
        (SEED / "contactpoint.json").read_text(encoding="utf-8")
    )["children"]
    return data


def _plain(children: list[dict[str, Any]]) -> dict[str, Any]:
    return next(c for c in children if not c["shielded"] and not c["archived"])


def _patient(
    pid: str,
    family: str,
    *,
    birth: str | None = "2019-03-04",
    identifiers: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "id": pid,
        "identifier": identifiers or [],
        "name": [{"use": "official", "family": family, "given": ["Rowan", "Ash"]}],
        "gender": "male",
        "address": [
            {"use": "home", "line": ["4 Feed Lane"], "city": "Norwich", "postalCode": "NR2 9ZZ"}
        ],
    }
    if birth:
        patient["birthDate"] = birth
    if not patient["identifier"]:
        del patient["identifier"]
    return patient


def _carer(pid: str) -> dict[str, Any]:
    return {
        "resourceType": "RelatedPerson",
        "patient": {"reference": f"Patient/{pid}"},
        "relationship": [{"text": "mother"}, {"coding": [{"system": PR, "code": "PR"}]}],
        "name": [{"family": "Feedwell", "given": ["Morgan"]}],
        "telecom": [{"system": "phone", "value": "07700 900111"}],
    }


def _bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": f"urn:uuid:00000000-0000-4000-8000-00000000000{n}", "resource": r}
            for n, r in enumerate(resources)
        ],
    }


def _post(client: FlaskClient, url: str, body: dict[str, Any]) -> Any:
    return client.post(url, json=body, headers={"Content-Type": FHIR_JSON})


def test_a_feed_creates_updates_and_answers_each_record(
    client: FlaskClient, index_seed: list[dict[str, Any]]
) -> None:
    known = _plain(index_seed)
    new = _patient("feed-new", "Feedwell", identifiers=[{"system": NHS, "value": "9990000018"}])
    update = _patient(
        "feed-known",
        known["family"],
        birth=known["birth_date"],
        identifiers=[{"system": INDEX, "value": known["index_id"]}],
    )
    unknown = _patient(
        "feed-unknown", "Nobody", identifiers=[{"system": INDEX, "value": "CP99999999"}]
    )
    incomplete = _patient("feed-incomplete", "Nodate", birth=None)
    resp = _post(client, FEED, _bundle(new, _carer("feed-new"), update, unknown, incomplete))
    assert resp.status_code == 200, resp.get_json()
    bundle = resp.get_json()
    assert bundle["type"] == "batch-response"
    statuses = [e["response"]["status"] for e in bundle["entry"]]
    assert statuses == ["201 Created", "200 OK", "404", "400 Bad Request"]
    created = bundle["entry"][0]["response"]["location"].rsplit("/", 1)[1]
    assert bundle["entry"][1]["response"]["location"].endswith(f"/Patient/{known['index_id']}")
    refused = bundle["entry"][2]["response"]["outcome"]["issue"][0]
    assert refused["code"] == "not-found"
    assert refused["details"]["coding"] == [{"system": FAULTS, "code": "NotFound"}]
    assert "not sent" in bundle["entry"][3]["response"]["outcome"]["issue"][0]["diagnostics"]
    # The new child is in the index, with the carer that rode along.
    record = client.get(
        f"/national/contactpoint/Patient/{created}", headers={"X-Access-Reason": "feed check"}
    ).get_json()
    kinds = {e["resource"]["resourceType"]: e["resource"] for e in record["entry"]}
    assert kinds["Patient"]["name"][0]["family"] == "Feedwell"
    assert kinds["Patient"]["address"][0]["postalCode"] == "NR2 9ZZ"
    assert kinds["RelatedPerson"]["name"][0]["given"] == ["Morgan"]
    # Sending the same feed again creates nothing new: the NHS number matches the child.
    again = _post(client, FEED, _bundle(new, _carer("feed-new"))).get_json()
    assert again["entry"][0]["response"]["status"] == "200 OK"
    assert again["entry"][0]["response"]["location"].endswith(f"/Patient/{created}")
    assert "unchanged" in again["entry"][0]["response"]["outcome"]["issue"][0]["diagnostics"]


def test_a_feed_of_stored_patients_by_reference(client: FlaskClient) -> None:
    stored = client.post(
        "/fhir/Patient",
        headers={"Content-Type": FHIR_JSON},
        json={
            k: v
            for k, v in _patient(
                "x", "Storedfeed", identifiers=[{"system": UPN, "value": "A926299999991"}]
            ).items()
            if k != "id"
        },
    ).get_json()
    resp = _post(
        client,
        FEED,
        {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "patient", "valueReference": {"reference": f"Patient/{stored['id']}"}}
            ],
        },
    )
    assert resp.status_code == 200, resp.get_json()
    (entry,) = resp.get_json()["entry"]
    assert entry["response"]["status"] == "201 Created"
    found = client.get("/national/contactpoint/Patient?family=Storedfeed").get_json()
    assert found["total"] == 1


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ({"resourceType": "Patient"}, "takes a Bundle"),
        (
            {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [
                    {
                        "resource": {
                            "resourceType": "Observation",
                            "status": "final",
                            "code": {"text": "x"},
                        }
                    }
                ],
            },
            "Patient and RelatedPerson",
        ),
        ({"resourceType": "Bundle", "type": "collection"}, "1 to 1000"),
        (
            {"resourceType": "Parameters", "parameter": [{"name": "child", "valueString": "x"}]},
            "unknown $feed parameter",
        ),
    ],
)
def test_a_bad_feed_is_a_400_outcome(client: FlaskClient, body: dict[str, Any], text: str) -> None:
    resp = _post(client, FEED, body)
    assert resp.status_code == 400
    outcome = resp.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert text in outcome["issue"][0]["diagnostics"]


def test_only_the_feed_agency_may_feed(app: Flask) -> None:
    resp = _post(client_as(app, "health"), FEED, _bundle(_patient("p", "Feedwell")))
    assert resp.status_code == 403
    assert resp.get_json()["issue"][0]["code"] == "forbidden"


def test_set_lead_professional(client: FlaskClient, index_seed: list[dict[str, Any]]) -> None:
    child = _plain(index_seed)
    url = f"/national/contactpoint/Patient/{child['index_id']}"
    done = _post(
        client,
        f"{url}/$record-involvement",
        {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "service", "valueString": "early-help"},
                {"name": "practitioner-name", "valueString": "Robin Lead"},
                {"name": "organization-name", "valueString": "Early Help"},
            ],
        },
    )
    assert done.status_code == 200, done.get_json()
    inv_id = next(
        p["valueString"] for p in done.get_json()["parameter"] if p["name"] == "involvement-id"
    )
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "involvement-id", "valueString": inv_id}],
    }
    lead = _post(client, f"{url}/$set-lead-professional", body)
    assert lead.status_code == 200, lead.get_json()
    assert {"name": "lead", "valueBoolean": True} in lead.get_json()["parameter"]
    record = client.get(url, headers={"X-Access-Reason": "planning"}).get_json()
    team = next(
        e["resource"] for e in record["entry"] if e["resource"]["resourceType"] == "CareTeam"
    )
    leads = [p for p in team["participant"] if any(LEAD in r.get("coding", []) for r in p["role"])]
    assert [p["member"]["display"] for p in leads] == ["Robin Lead"]
    _post(client, f"{url}/$end-involvement", body)
    ended = _post(client, f"{url}/$set-lead-professional", body)
    assert ended.status_code == 400
    assert ended.get_json()["issue"][0]["details"]["coding"][0]["code"] == "ValidationError"
    missing = _post(client, f"{url}/$set-lead-professional", {"resourceType": "Parameters"})
    assert missing.status_code == 400


ENTRY_POINTS = {
    "feed": (FEED, _bundle(_patient("p", "Faulty"))),
    "set-lead-professional": (
        "/national/contactpoint/Patient/CP00000001/$set-lead-professional",
        {
            "resourceType": "Parameters",
            "parameter": [{"name": "involvement-id", "valueString": "CP00000001-1"}],
        },
    ),
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize(
    ("code", "status", "issue_code"),
    [
        ("NotAuthorised", 403, "forbidden"),
        ("ReasonRequired", 400, "required"),
        ("RecordShielded", 403, "suppressed"),
        ("ConsentRequired", 403, "forbidden"),
        ("RecordArchived", 410, "deleted"),
        ("ValidationError", 400, "invalid"),
        ("NotFound", 404, "not-found"),
    ],
)
def test_every_index_fault_at_the_new_entry_points(
    client: FlaskClient, inject: Inject, entry: str, code: str, status: int, issue_code: str
) -> None:
    inject(service="contactpoint", kind="soap_fault", code=code)
    url, body = ENTRY_POINTS[entry]
    resp = _post(client, url, body)
    assert resp.status_code == status
    (issue,) = resp.get_json()["issue"]
    assert issue["code"] == issue_code
    assert issue["details"]["coding"] == [{"system": FAULTS, "code": code}]
