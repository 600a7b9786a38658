"""FHIR R4 Subscriptions (rest-hook): accepted or refused, matched in the write, delivered over HTTP."""
from __future__ import annotations

from typing import Any

import orjson
import pytest
from flask import Flask
from flask.testing import FlaskClient

from gateway.outbox.store import DELIVERED, FAILED
from tests.conftest import FHIR_JSON, client_as, make_patient
from tests.integration.outbox.conftest import Receiver, drain, parts

EMER = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "EMER"}
FLAG_CODE = "https://wraparound.example.org/fhir/CodeSystem/flag-code"


def subscription(endpoint: str, criteria: str, *, payload: str | None = "application/fhir+json",
                 **channel: Any) -> dict[str, Any]:
    chan: dict[str, Any] = {"type": "rest-hook", "endpoint": endpoint, **channel}
    if payload:
        chan["payload"] = payload
    return {"resourceType": "Subscription", "status": "requested", "reason": "test",
            "criteria": criteria, "channel": chan}


def _create(client: FlaskClient, resource: dict[str, Any]) -> Any:
    return client.post(f"/fhir/{resource['resourceType']}", json=resource,
                       headers={"Content-Type": FHIR_JSON})


def _created(client: FlaskClient, resource: dict[str, Any]) -> dict[str, Any]:
    resp = _create(client, resource)
    assert resp.status_code == 201, resp.get_json()
    body: dict[str, Any] = resp.get_json()
    return body


def _note(patient_id: str | None = None) -> dict[str, Any]:
    note: dict[str, Any] = {"resourceType": "Communication", "status": "completed",
                            "payload": [{"contentString": "Visit recorded"}]}
    if patient_id:
        note["subject"] = {"reference": f"Patient/{patient_id}"}
    return note


def test_a_requested_subscription_becomes_active(client: FlaskClient, receiver: Receiver) -> None:
    sub = _created(client, subscription(receiver.url, "Communication?status=completed"))
    stored = client.get(f"/fhir/Subscription/{sub['id']}").get_json()
    assert stored["status"] == "active"
    assert stored["meta"]["versionId"] == "2"


@pytest.mark.parametrize(("change", "expected"), [
    ({"criteria": "Nonsense?x=1"}, "unsupported resource type"),
    ({"criteria": "Communication?no-such-param=1"}, "Subscription.criteria"),
    ({"criteria": "Encounter?patient.name=Smith"}, "chained criterion"),
    ({"channel": {"type": "email", "endpoint": "mailto:team@example.org"}}, "rest-hook"),
    ({"channel": {"type": "rest-hook", "endpoint": "http://10.1.2.3/hook",
                  "payload": "application/fhir+json"}}, "host the gateway may not call"),
    ({"channel": {"type": "rest-hook", "endpoint": "file:///etc/passwd"}}, "http(s) URL"),
    ({"channel": {"type": "rest-hook", "endpoint": "http://127.0.0.1:9/hook",
                  "payload": "application/xml"}}, "payload"),
    ({"channel": {"type": "rest-hook", "endpoint": "http://127.0.0.1:9/hook",
                  "header": ["no colon here"]}}, "Name: value"),
])
def test_a_subscription_the_gateway_cannot_serve_is_refused(
        client: FlaskClient, change: dict[str, Any], expected: str) -> None:
    resource = dict(subscription("http://127.0.0.1:9/hook", "Communication?status=completed"),
                    **change)
    resp = _create(client, resource)
    assert resp.status_code == 422
    outcome = resp.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert expected in " ".join(i["diagnostics"] for i in outcome["issue"])
    assert client.get("/fhir/Subscription?_summary=count").get_json()["total"] == 0


def test_a_match_is_put_to_the_subscriber_with_its_message_id(
        app: Flask, client: FlaskClient, receiver: Receiver) -> None:
    sub = _created(client, subscription(receiver.url, "Communication?status=completed",
                                        header=["Authorization: Bearer subscriber-secret"]))
    note = _created(client, _note())
    _created(client, dict(_note(), status="in-progress"))  # does not match
    (queued,) = parts(app).outbox.list(destination=f"subscription:{sub['id']}")
    drain(app)
    (got,) = receiver.received
    assert (got.method, got.path) == ("PUT", f"/hook/Communication/{note['id']}")
    assert got.message_id == queued["id"]
    assert got.headers["Authorization"] == "Bearer subscriber-secret"
    assert got.headers["Content-Type"] == "application/fhir+json"
    body = orjson.loads(got.body)
    assert (body["id"], body["meta"]["versionId"]) == (note["id"], "1")
    assert parts(app).outbox.get(queued["id"])["state"] == DELIVERED


def test_without_payload_the_notification_is_an_empty_post(
        app: Flask, client: FlaskClient, receiver: Receiver) -> None:
    _created(client, subscription(receiver.url, "Communication?status=completed", payload=None))
    _created(client, _note())
    drain(app)
    (got,) = receiver.received
    assert (got.method, got.path, got.body) == ("POST", "/hook", b"")


def test_a_subscriber_sees_only_what_its_agency_may_see(
        app: Flask, client: FlaskClient, receiver: Receiver) -> None:
    health = client_as(app, "health")
    _created(health, subscription(receiver.url, "Communication?status=completed"))
    _created(client, _note())  # a social-care case note: health may not read it
    own = _created(health, _note())
    drain(app)
    assert [r.path for r in receiver.received] == [f"/hook/Communication/{own['id']}"]


def test_repeated_failures_set_error_and_an_answer_recovers(
        app: Flask, client: FlaskClient, receiver: Receiver) -> None:
    sub = _created(client, subscription(receiver.url, "Communication?status=completed"))
    receiver.answers = [503, 503, 503]
    _created(client, _note())
    seen: list[str] = []

    def errored() -> bool:
        status = client.get(f"/fhir/Subscription/{sub['id']}").get_json()["status"]
        seen.append(status)
        return status == "error"

    drain(app, until=errored)
    assert seen[-1] == "error"
    assert "notifications in a row failed" in client.get(
        f"/fhir/Subscription/{sub['id']}").get_json()["error"]
    drain(app)  # the subscriber answers again
    assert [r.message_id for r in receiver.received].count(receiver.received[0].message_id) == 4
    recovered = client.get(f"/fhir/Subscription/{sub['id']}").get_json()
    assert recovered["status"] == "active" and "error" not in recovered
    assert parts(app).outbox.stats()["states"][DELIVERED] == 1


def test_a_refusal_is_a_dead_letter_without_retries(
        app: Flask, client: FlaskClient, receiver: Receiver) -> None:
    _created(client, subscription(receiver.url, "Communication?status=completed"))
    receiver.answers = [400]
    _created(client, _note())
    worker = drain(app)
    assert (worker.stats.failed, len(receiver.received)) == (1, 1)
    (failed,) = parts(app).outbox.list(state=FAILED)
    assert "HTTP 400" in failed["lastError"]


def test_chained_flag_criteria_match_a_child_on_a_plan(
        app: Flask, client: FlaskClient, receiver: Receiver) -> None:
    _created(client, subscription(receiver.url, "Encounter?class=EMER&patient.flag=CPP"))
    on_plan = _created(client, make_patient(nhs="9000000009"))
    other = _created(client, make_patient(nhs="9000000017", family="Jones"))
    _created(client, {"resourceType": "Flag", "status": "active",
                      "code": {"coding": [{"system": FLAG_CODE, "code": "CPP"}]},
                      "subject": {"reference": f"Patient/{on_plan['id']}"}})
    health = client_as(app, "health")
    attended = _created(health, {"resourceType": "Encounter", "status": "finished", "class": EMER,
                                 "subject": {"reference": f"Patient/{on_plan['id']}"}})
    _created(health, {"resourceType": "Encounter", "status": "finished", "class": EMER,
                      "subject": {"reference": f"Patient/{other['id']}"}})
    _created(health, {"resourceType": "Encounter", "status": "finished",
                      "class": dict(EMER, code="AMB"),
                      "subject": {"reference": f"Patient/{on_plan['id']}"}})
    drain(app)
    assert [r.path for r in receiver.received] == [f"/hook/Encounter/{attended['id']}"]


def test_switching_a_subscription_off_stops_notifications(
        app: Flask, client: FlaskClient, receiver: Receiver) -> None:
    sub = _created(client, subscription(receiver.url, "Communication?status=completed"))
    current = client.get(f"/fhir/Subscription/{sub['id']}").get_json()
    resp = client.put(f"/fhir/Subscription/{sub['id']}", json=dict(current, status="off"),
                      headers={"Content-Type": FHIR_JSON})
    assert resp.status_code == 200
    _created(client, _note())
    drain(app)
    assert receiver.received == []
    assert parts(app).outbox.stats()["states"][DELIVERED] == 0
