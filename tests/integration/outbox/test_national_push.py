"""Local -> national through the outbox: ingested episodes become child index involvements and a
locally completed CAF becomes a completed CAF in the store, delivered by a worker over real SOAP
to the mock national server; retries keep the message id, permanent faults are dead letters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from connectors.contactpoint import IndexAccessor, build_contactpoint_client
from connectors.ecaf import build_ecaf_client
from connectors.soap import SoapSettings
from gateway.config import Settings
from gateway.national.push import CAF_DESTINATION, INVOLVEMENT_DESTINATION
from gateway.outbox.store import DELIVERED, FAILED, PENDING
from gateway.security.context import Caller, acting_as
from tests.conftest import FHIR_JSON
from tests.integration.outbox.conftest import drain, parts

ROOT = Path(__file__).resolve().parents[3]
SOURCES = ROOT / "fixtures" / "sources"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
UPN = "https://wraparound.example.org/fhir/Id/unique-pupil-number"
LOOKER = IndexAccessor("u-1", "Checker", "social-care practitioner", "LA")
PERMANENT = ("NotFound", "no child with this NHS number", "shielded")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The outbox settings with the national push switched on."""
    return settings.replace(outbox_national_push=True)


@pytest.fixture(scope="module")
def index_seed() -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads(
        (ROOT / "fixtures/national/contactpoint.json").read_text("utf-8")
    )["children"]
    return data


def _ingest(app: Flask, source: str, agency: str, name: str, media: str) -> None:
    services = app.extensions["wraparound"]
    with acting_as(Caller.internal(agency)), (SOURCES / source / name).open("rb") as f:
        report = services.ingest.run(source, f, media, collect=False)
    assert report.rejected == 0


def _destination(app: Flask, name: str) -> dict[str, int]:
    found: dict[str, int] = parts(app).outbox.stats()["destinations"].get(name, {})
    return found


def _expected(source: str, index_seed: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Index id -> the organisation or practitioner names the golden output implies."""
    by_nhs = {c["nhs_number"]: c for c in index_seed if c.get("nhs_number")}
    by_upn = {c["upn"]: c for c in index_seed if c.get("upn")}
    golden = json.loads((SOURCES / source / "golden" / "sample.json").read_text("utf-8"))
    out: dict[str, set[str]] = {}
    for record in golden["records"]:
        res = {(r["resourceType"], r["id"]): r for r in record["resources"]}
        patient = next(r for (t, _), r in res.items() if t == "Patient")
        ids = {i["system"]: i["value"] for i in patient.get("identifier", [])}
        child = by_nhs.get(ids.get(NHS, "")) or by_upn.get(ids.get(UPN, ""))
        if child is None or child["archived"] or child["shielded"]:
            continue
        for (kind, _), episode in res.items():
            if kind != "EpisodeOfCare" or episode["status"] != "active":
                continue
            if source == "school":
                org = res[
                    ("Organization", episode["managingOrganization"]["reference"].split("/")[1])
                ]
                out.setdefault(child["index_id"], set()).add(org["name"])
            elif "careManager" in episode:
                worker = res[("Practitioner", episode["careManager"]["reference"].split("/")[1])]
                out.setdefault(child["index_id"], set()).add(worker["name"][0]["text"])
    return out


def _involved(mock: str, index_id: str) -> set[str]:
    index = build_contactpoint_client(SoapSettings(address=f"{mock}/contactpoint"))
    record = index.get_record(index_id, accessor=LOOKER, reason="push check")
    return {n for i in record.involvements for n in (i.practitioner_name, i.organisation_name) if n}


@pytest.mark.parametrize(
    ("source", "agency", "name", "media"),
    [
        ("social-care", "social-care", "sample.csv", "text/csv"),
        ("school", "education", "sample.xml", "application/xml"),
    ],
)
def test_ingested_involvements_reach_the_child_index(
    app: Flask,
    mock: str,
    index_seed: list[dict[str, Any]],
    source: str,
    agency: str,
    name: str,
    media: str,
) -> None:
    _ingest(app, source, agency, name, media)
    queued = _destination(app, INVOLVEMENT_DESTINATION)[PENDING]
    assert queued > 0
    # The same export again changes nothing, so nothing more is queued.
    _ingest(app, source, agency, name, media)
    assert _destination(app, INVOLVEMENT_DESTINATION)[PENDING] == queued
    worker = drain(app)
    done = _destination(app, INVOLVEMENT_DESTINATION)
    assert done[DELIVERED] > 0 and done[DELIVERED] + done[FAILED] == queued
    assert worker.stats.fenced == 0
    for record in parts(app).outbox.list(
        state=FAILED, destination=INVOLVEMENT_DESTINATION, limit=500
    ):
        assert any(p in (record["lastError"] or "") for p in PERMANENT), record["lastError"]
    expected = _expected(source, index_seed)
    assert expected
    for index_id, names in list(expected.items())[:8]:
        assert names <= _involved(mock, index_id), index_id


def _caf_response(patient_id: str, *, source: str | None = "Parent (mother)") -> dict[str, Any]:
    response: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": "https://wraparound.example.org/fhir/Questionnaire/caf",
        "status": "completed",
        "subject": {"reference": f"Patient/{patient_id}"},
        "item": [
            {
                "linkId": "development",
                "item": [
                    {
                        "linkId": "development.health",
                        "item": [
                            {
                                "linkId": "development.health.needs",
                                "answer": [{"valueString": "speech therapy referral"}],
                            }
                        ],
                    }
                ],
            }
        ],
    }
    if source:
        response["source"] = {"display": source}
    return response


def test_a_locally_completed_caf_is_registered_and_completed(
    app: Flask, client: FlaskClient, mock: str, index_seed: list[dict[str, Any]]
) -> None:
    child = next(
        c
        for c in index_seed
        if not c["shielded"] and not c["archived"] and not c["caf_exists"] and c.get("nhs_number")
    )
    patient = client.post(
        "/fhir/Patient",
        headers={"Content-Type": FHIR_JSON},
        json={
            "resourceType": "Patient",
            "identifier": [{"system": NHS, "value": child["nhs_number"]}],
            "name": [{"family": child["family"], "given": child["given"]}],
            "gender": child["gender"],
            "birthDate": child["birth_date"],
        },
    ).get_json()
    draft = dict(_caf_response(patient["id"]), status="in-progress")
    stored = client.post(
        "/fhir/QuestionnaireResponse", headers={"Content-Type": FHIR_JSON}, json=draft
    )
    assert stored.status_code == 201, stored.get_json()
    assert not _destination(app, CAF_DESTINATION)  # a draft stays local
    qr = stored.get_json()
    resp = client.put(
        f"/fhir/QuestionnaireResponse/{qr['id']}",
        headers={"Content-Type": FHIR_JSON},
        json=dict(_caf_response(patient["id"]), id=qr["id"]),
    )
    assert resp.status_code == 200, resp.get_json()
    assert _destination(app, CAF_DESTINATION)[PENDING] == 1
    drain(app)
    assert _destination(app, CAF_DESTINATION)[DELIVERED] == 1
    store = build_ecaf_client(SoapSettings(address=f"{mock}/ecaf"))
    check = store.check(child["index_id"], accessor=LOOKER)
    assert check.exists and check.status == "completed"
    caf = store.get(str(check.caf_id), accessor=LOOKER)
    assert caf.consent.given_by == "Parent (mother)"
    assert caf.domains[0].elements[0].needs == "speech therapy referral"
    index = build_contactpoint_client(SoapSettings(address=f"{mock}/contactpoint"))
    record = index.get_record(child["index_id"], accessor=LOOKER, reason="push check")
    assert record.child.caf_exists


def test_outages_are_retried_and_validation_faults_are_dead_letters(
    app: Flask, client: FlaskClient, mock: str, inject: Any, index_seed: list[dict[str, Any]]
) -> None:
    child = next(
        c for c in index_seed if not c["shielded"] and not c["archived"] and c.get("nhs_number")
    )
    patient = client.post(
        "/fhir/Patient",
        headers={"Content-Type": FHIR_JSON},
        json={
            "resourceType": "Patient",
            "identifier": [{"system": NHS, "value": child["nhs_number"]}],
            "name": [{"family": child["family"], "given": child["given"]}],
            "gender": child["gender"],
            "birthDate": child["birth_date"],
        },
    ).get_json()
    team = client.post(
        "/fhir/Organization",
        headers={"Content-Type": FHIR_JSON},
        json={"resourceType": "Organization", "name": "Pushing Team"},
    ).get_json()
    worker = client.post(
        "/fhir/Practitioner",
        headers={"Content-Type": FHIR_JSON},
        json={"resourceType": "Practitioner", "name": [{"text": "Pat Pusher"}]},
    ).get_json()

    def episode(start: str) -> dict[str, Any]:
        return {
            "resourceType": "EpisodeOfCare",
            "status": "active",
            "type": [
                {
                    "coding": [
                        {
                            "system": "https://wraparound.example.org/fhir/CodeSystem/"
                            "episode-of-care-type",
                            "code": "CIN",
                        }
                    ]
                }
            ],
            "patient": {"reference": f"Patient/{patient['id']}"},
            "managingOrganization": {"reference": f"Organization/{team['id']}"},
            "careManager": {"reference": f"Practitioner/{worker['id']}"},
            "period": {"start": start},
        }

    inject(
        service="contactpoint",
        operation="recordInvolvement",
        kind="http_error",
        status=503,
        times=2,
    )
    created = client.post(
        "/fhir/EpisodeOfCare", headers={"Content-Type": FHIR_JSON}, json=episode("2026-02-01")
    )
    assert created.status_code == 201, created.get_json()
    stats = drain(app).stats
    assert (stats.retried, stats.delivered) == (2, 1)
    (record,) = parts(app).outbox.list(destination=INVOLVEMENT_DESTINATION)
    assert record["attempts"] == 3 and record["state"] == DELIVERED
    # The index received the outbox message's own id as the WS-Addressing MessageID.
    seen = requests.get(f"{mock}/admin/services/contactpoint", timeout=30).json()["message_ids"]
    assert ["recordInvolvement", record["id"]] in seen
    assert "Pat Pusher" in _involved(mock, child["index_id"])
    requests.delete(f"{mock}/admin/faults", timeout=5).raise_for_status()
    inject(
        service="contactpoint",
        operation="recordInvolvement",
        kind="soap_fault",
        code="ValidationError",
    )
    client.post(
        "/fhir/EpisodeOfCare", headers={"Content-Type": FHIR_JSON}, json=episode("2026-03-01")
    )
    stats = drain(app).stats
    assert (stats.failed, stats.retried) == (1, 0)
    failed = parts(app).outbox.list(state=FAILED, destination=INVOLVEMENT_DESTINATION)
    assert len(failed) == 1 and failed[0]["attempts"] == 1


def test_a_finished_episode_ends_the_involvement(
    app: Flask, client: FlaskClient, mock: str, index_seed: list[dict[str, Any]]
) -> None:
    child = next(
        c for c in index_seed if not c["shielded"] and not c["archived"] and c.get("nhs_number")
    )
    headers = {"Content-Type": FHIR_JSON}
    patient = client.post(
        "/fhir/Patient",
        headers=headers,
        json={
            "resourceType": "Patient",
            "identifier": [{"system": NHS, "value": child["nhs_number"]}],
            "name": [{"family": child["family"], "given": child["given"]}],
            "gender": child["gender"],
            "birthDate": child["birth_date"],
        },
    ).get_json()
    worker = client.post(
        "/fhir/Practitioner",
        headers=headers,
        json={"resourceType": "Practitioner", "name": [{"text": "Eve Ender"}]},
    ).get_json()
    episode = {
        "resourceType": "EpisodeOfCare",
        "status": "active",
        "type": [
            {
                "coding": [
                    {
                        "system": "https://wraparound.example.org/fhir/CodeSystem/"
                        "episode-of-care-type",
                        "code": "LAC",
                    }
                ]
            }
        ],
        "patient": {"reference": f"Patient/{patient['id']}"},
        "careManager": {"reference": f"Practitioner/{worker['id']}"},
        "period": {"start": "2026-01-05"},
    }
    created = client.post("/fhir/EpisodeOfCare", headers=headers, json=episode).get_json()
    drain(app)
    assert "Eve Ender" in _involved(mock, child["index_id"])
    finished = dict(
        episode,
        id=created["id"],
        status="finished",
        period={"start": "2026-01-05", "end": "2026-06-30"},
    )
    resp = client.put(f"/fhir/EpisodeOfCare/{created['id']}", headers=headers, json=finished)
    assert resp.status_code == 200, resp.get_json()
    drain(app)
    operations = [
        (r["operation"], r["state"])
        for r in parts(app).outbox.list(destination=INVOLVEMENT_DESTINATION)
    ]
    assert sorted(operations) == [("endInvolvement", DELIVERED), ("recordInvolvement", DELIVERED)]
    assert "Eve Ender" not in _involved(mock, child["index_id"])  # the record shows open ones
