"""Operating the outbox over HTTP: who may, what it shows, replays, and the metrics."""
from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gateway.outbox.store import FAILED, PENDING, Message
from tests.conftest import client_as
from tests.integration.outbox.conftest import parts


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    """The endpoints read the same queue on both databases (the queue is tested on both)."""
    return sqlite_url


@pytest.fixture
def ops(app: Flask) -> FlaskClient:
    """A client of the operations agency."""
    return client_as(app, "operations", scopes=())


def _dead_letters(app: Flask, n: int, destination: str = "cpis") -> list[str]:
    outbox = parts(app).outbox
    store = app.extensions["wraparound"].store
    ids = outbox.enqueue([Message(destination, "upload", f"k{i}", {"nhsNumber": "9990043094"})
                          for i in range(n)])
    for m in outbox.claim("w", n):
        store.write(lambda tx, m=m: outbox.dead_letter_in(tx, m, "rejected (CPR03)"))
    return ids


@pytest.mark.parametrize("agency", ["social-care", "health", "auditor"])
def test_data_agencies_may_not_operate_the_outbox(app: Flask, agency: str) -> None:
    other = client_as(app, agency)
    for method, path in (("GET", "/admin/outbox"), ("GET", "/metrics"),
                         ("POST", "/admin/outbox/$replay?all=true")):
        resp = other.open(path, method=method)
        assert resp.status_code == 403, (agency, path)
        assert resp.get_json()["resourceType"] == "OperationOutcome"


def test_status_shows_counts_and_records_but_never_payloads(app: Flask, ops: FlaskClient) -> None:
    _dead_letters(app, 2)
    parts(app).outbox.enqueue([Message("subscription:s1", "notify", "k", {"type": "Encounter"})])
    body = ops.get("/admin/outbox").get_json()
    assert body["states"] == {"pending": 1, "in-flight": 0, "delivered": 0, "failed": 2}
    assert body["destinations"]["cpis"]["failed"] == 2
    assert len(body["messages"]) == 3
    assert "9990043094" not in ops.get("/admin/outbox").get_data(as_text=True)
    only = ops.get("/admin/outbox?state=failed&_count=1").get_json()["messages"]
    assert [m["state"] for m in only] == [FAILED]
    assert ops.get("/admin/outbox?state=lost").status_code == 400
    assert ops.get("/admin/outbox?_count=many").status_code == 400


def test_replay_one_and_by_filter(app: Flask, ops: FlaskClient) -> None:
    first, second, third = _dead_letters(app, 3)
    resp = ops.post(f"/admin/outbox/{first}/$replay")
    assert resp.status_code == 200 and resp.get_json()["state"] == PENDING
    assert ops.post(f"/admin/outbox/{first}/$replay").status_code == 409  # already pending
    assert ops.post("/admin/outbox/no-such-id/$replay").status_code == 404
    assert ops.post("/admin/outbox/$replay").status_code == 400  # no filter
    assert ops.post("/admin/outbox/$replay?since=yesterday").status_code == 400
    assert ops.post("/admin/outbox/$replay?destination=ecaf").get_json()["replayed"] == 0
    replayed = ops.post("/admin/outbox/$replay?error=CPR03&since=2020-01-01").get_json()
    assert replayed["replayed"] == 2 and set(replayed["ids"]) == {second, third}
    assert ops.get(f"/admin/outbox/{third}").get_json()["state"] == PENDING


def test_metrics_are_prometheus_text(app: Flask, ops: FlaskClient) -> None:
    _dead_letters(app, 1)
    parts(app).outbox.enqueue([Message("cpis", "upload", "k9", {})])
    store = app.extensions["wraparound"].store
    breakers = parts(app).breakers
    for _ in range(5):
        store.write(lambda tx: breakers.failure_in(tx, "cpis"))
    resp = ops.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = resp.get_data(as_text=True)
    assert 'wraparound_outbox_messages{destination="cpis",state="failed"} 1' in text
    assert "wraparound_outbox_queue_depth 1" in text
    assert 'wraparound_outbox_breaker_state{destination="cpis"} 2' in text
    for line in text.splitlines():
        assert line.startswith("#") or re.fullmatch(
            r'[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? [0-9.e+-]+', line), line
