"""CP-IS inactive NHS numbers end to end: PDS supersedes a number a plan is held under (the mock's
admin control), CP-IS pushes the notification to the gateway, the gateway flags the child, and
the social care system's Subscription to those flags is told."""
from __future__ import annotations

import json
import time
from pathlib import Path

import orjson
import requests
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import FHIR_JSON, LiveServer, make_patient
from tests.integration.outbox.conftest import Receiver, drain
from tests.integration.outbox.test_subscriptions import subscription

SEED = Path(__file__).resolve().parents[3] / "fixtures" / "national"
CPIS_INACTIVE = "urn:oid:2.16.840.1.113883.2.1.3.2.4.17.470|06"


def test_an_inactive_nhs_number_flags_the_child_and_reaches_the_subscription(
        app: Flask, client: FlaskClient, receiver: Receiver, mock: str) -> None:
    seed = json.loads((SEED / "cpis.json").read_text("utf-8"))
    number = seed["plans"][0]["nhs_number"]
    resp = client.post("/fhir/Patient", json=make_patient(number),
                       headers={"Content-Type": FHIR_JSON})
    assert resp.status_code == 201, resp.get_json()
    child = resp.get_json()["id"]
    resp = client.post("/fhir/Subscription", json=subscription(
        receiver.url, f"Flag?code={CPIS_INACTIVE}&status=active"),
        headers={"Content-Type": FHIR_JSON})
    assert resp.status_code == 201, resp.get_json()
    with LiveServer(app) as gateway:
        requests.post(f"{mock}/admin/services/cpis/config", timeout=30, json={
            "callback_url": f"{gateway.url}/inbound/cpis/notifications"}).raise_for_status()
        control = requests.post(f"{mock}/admin/services/cpis/control/inactive-nhs-numbers",
                                timeout=30, json={"nhs_numbers": [number]})
        assert control.status_code == 200, control.text
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            state = requests.get(f"{mock}/admin/services/cpis", timeout=30).json()
            if [n["status"] for n in state["notifications"]] == ["delivered"]:
                break
            time.sleep(0.05)
        assert [n["status"] for n in state["notifications"]] == ["delivered"]
        drain(app, until=lambda: bool(receiver.received))
    (got,) = receiver.received
    assert got.path.startswith("/hook/Flag/")
    flag = orjson.loads(got.body)
    assert flag["subject"] == {"reference": f"Patient/{child}"}
    assert flag["code"]["coding"][0]["code"] == "06"
