"""The CP-IS loop end to end, on the sample population.

Social care ingests its export → the child protection plans are uploaded to CP-IS by a worker →
child health ingests its export → every emergency attendance of a child on a plan reaches the
social care system's subscription; and when an unscheduled-care clinician looks the child up in
CP-IS, the mock's access notification reaches it too.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import requests
from flask import Flask
from flask.testing import FlaskClient

from gateway.outbox.store import DELIVERED
from gateway.security.context import Caller, acting_as
from tests.conftest import FHIR_JSON, LiveServer, client_as
from tests.integration.outbox.conftest import Receiver, drain, parts
from tests.integration.outbox.test_subscriptions import subscription

SOURCES = Path(__file__).resolve().parents[3] / "fixtures" / "sources"
CPIS_ACCESS = "urn:oid:2.16.840.1.113883.2.1.3.2.4.17.470|05"


def _rows(source: str) -> list[dict[str, str]]:
    raw = (SOURCES / source / "sample.csv").read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252")  # as the council's system exports it
    return list(csv.DictReader(text.splitlines()))


def _expected_attendances() -> int:
    """Count, from the raw exports and the ground truth alone, ED attendances of children on
    a current child protection plan in the social care export."""
    lines = (SOURCES / "truth.csv").read_text(encoding="utf-8").splitlines()
    truth = {(r["source"], r["record_id"]): r["child_id"] for r in csv.DictReader(lines)}
    on_plan = {truth[("social-care", r["PersonID"])] for r in _rows("social-care")
               if r["CPPlanStart"].strip() and not r["CPPlanEnd"].strip()}
    count = 0
    for row in _rows("child-health"):
        child = truth.get(("child-health", row["CHISNumber"]))
        if child in on_plan:
            count += sum(1 for n in (1, 2) if row.get(f"ED{n}_Arrival", "").strip())
    return count


def _ingest(app: Flask, source: str, agency: str) -> None:
    services = app.extensions["wraparound"]
    with acting_as(Caller.internal(agency)), (SOURCES / source / "sample.csv").open("rb") as f:
        report = services.ingest.run(source, f, "text/csv", collect=False)
    assert report.rejected == 0


def test_emergency_attendances_of_children_on_plans_reach_social_care(
        app: Flask, client: FlaskClient, receiver: Receiver, mock: str) -> None:
    sub = client.post("/fhir/Subscription", json=subscription(
        receiver.url, "Encounter?class=EMER&patient.flag=CPP"),
        headers={"Content-Type": FHIR_JSON}).get_json()
    _ingest(app, "social-care", "social-care")
    uploads = parts(app).outbox.stats()["destinations"]["cpis"]["pending"]
    drain(app)
    assert parts(app).outbox.stats()["destinations"]["cpis"]["delivered"] > 0
    assert requests.get(f"{mock}/admin/services/cpis", timeout=5).json()[
        "uploads_processed"] == uploads
    _ingest(app, "child-health", "health")
    expected = _expected_attendances()
    assert expected > 0
    drain(app)
    paths = [r.path for r in receiver.received]
    assert len(paths) == len(set(paths)) == expected
    assert all(p.startswith("/hook/Encounter/") for p in paths)
    destination = f"subscription:{sub['id']}"
    assert parts(app).outbox.stats()["destinations"][destination]["delivered"] == expected


def test_a_cpis_access_notification_reaches_the_subscription(
        app: Flask, client: FlaskClient, receiver: Receiver, mock: str) -> None:
    client.post("/fhir/Subscription", json=subscription(
        receiver.url, f"Communication?category={CPIS_ACCESS}"),
        headers={"Content-Type": FHIR_JSON})
    with LiveServer(app) as gateway:
        requests.post(f"{mock}/admin/services/cpis/config", timeout=5, json={
            "callback_url": f"{gateway.url}/inbound/cpis/notifications"}).raise_for_status()
        plans = requests.get(f"{mock}/admin/services/cpis", timeout=5).json()["plans"]
        assert plans > 0
        nhs = _a_seeded_plan_nhs_number()
        # An emergency department clinician looks the child up (unscheduled care).
        health = client_as(app, "health")
        resp = health.get(f"/national/cpis/Flag?patient.identifier="
                          f"https://fhir.nhs.uk/Id/nhs-number|{nhs}",
                          headers={"X-Access-Type": "unscheduled"})
        assert resp.status_code == 200, resp.get_json()
        notified = _wait_for(lambda: requests.get(f"{mock}/admin/services/cpis", timeout=5)
                             .json()["notifications"])
        assert notified, "the mock did not push its notification"
        drain(app, until=lambda: bool(receiver.received))
    (got,) = receiver.received
    assert got.path.startswith("/hook/Communication/")
    assert parts(app).outbox.stats()["states"][DELIVERED] == 1


def _a_seeded_plan_nhs_number() -> str:
    import json

    document = json.loads((SOURCES.parent / "national" / "cpis.json").read_text("utf-8"))
    return str(document["plans"][0]["nhs_number"])


def _wait_for(probe: Any, timeout: float = 10.0) -> Any:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value and all(n.get("state") in ("delivered", "acknowledged", "sent")
                         for n in value):
            return value
        time.sleep(0.05)
    return probe()
