"""The worker's decisions: retry or dead letter, backoff, attempts, breaker, fencing, audit."""
from __future__ import annotations

import time
from typing import Any

import pytest
from flask import Flask

from connectors.errors import Rejected, Timeout, Unavailable
from gateway.outbox.breaker import OPEN
from gateway.outbox.delivery import DeliveryContext
from gateway.outbox.store import DELIVERED, FAILED, PENDING, Claimed, Message, Outbox
from gateway.outbox.worker import Worker
from tests.integration.outbox.conftest import parts


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    """The worker's logic is the same on both databases (the queue is tested on both)."""
    return sqlite_url


class Script:
    """A destination that answers from a script: an exception to raise, or a detail string."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, int]] = []

    def __call__(self, message: Claimed, ctx: DeliveryContext) -> str:
        self.calls.append((message.id, message.attempts))
        answer = self.answers.pop(0) if self.answers else "ok"
        if isinstance(answer, BaseException):
            raise answer
        return str(answer)


def _worker(app: Flask, script: Script, **options: Any) -> Worker:
    services = app.extensions["wraparound"]
    ctx = DeliveryContext(settings=services.settings, store=services.store,
                          policy=services.policy, clients=None)  # type: ignore[arg-type]
    defaults: dict[str, Any] = {"backoff": 0.0, "backoff_cap": 0.0, "max_attempts": 4}
    defaults.update(options)
    return Worker(parts(app).outbox, parts(app).breakers, ctx, deliverers={"test": script},
                  **defaults)


def _queue(app: Flask, n: int = 1) -> list[str]:
    return parts(app).outbox.enqueue([Message("test", "op", f"k{i}", {"n": i})
                                      for i in range(n)])


def _run(worker: Worker, rounds: int = 20) -> None:
    for _ in range(rounds):
        if not worker.run_once():
            time.sleep(0.02)
            if not worker.run_once():
                return


def test_transient_errors_are_retried_until_delivered(app: Flask) -> None:
    (mid,) = _queue(app)
    script = Script(Timeout("slow"), Unavailable("HTTP 503"), "accepted")
    worker = _worker(app, script)
    _run(worker)
    assert [attempt for _, attempt in script.calls] == [1, 2, 3]
    assert {m for m, _ in script.calls} == {mid}  # one message id on every attempt
    record = parts(app).outbox.get(mid)
    assert (record["state"], record["attempts"], record["lastError"]) == (DELIVERED, 3, None)


def test_a_permanent_refusal_is_a_dead_letter_at_once(app: Flask) -> None:
    (mid,) = _queue(app)
    script = Script(Rejected("validation", service_code="CPR04", permanent=True))
    _run(_worker(app, script))
    record = parts(app).outbox.get(mid)
    assert (record["state"], record["attempts"]) == (FAILED, 1)
    assert "CPR04" in record["lastError"]


def test_retries_stop_at_max_attempts(app: Flask) -> None:
    (mid,) = _queue(app)
    script = Script(*[Timeout("down")] * 10)
    _run(_worker(app, script, max_attempts=3))
    assert len(script.calls) == 3
    assert parts(app).outbox.get(mid)["state"] == FAILED


def test_an_unexpected_exception_is_retried_not_lost(app: Flask) -> None:
    (mid,) = _queue(app)
    _run(_worker(app, Script(KeyError("bug"), "ok")))
    assert parts(app).outbox.get(mid)["state"] == DELIVERED


def test_backoff_grows_exponentially_with_jitter_and_a_cap(app: Flask) -> None:
    low = _worker(app, Script(), backoff=1.0, backoff_cap=60.0, rng=lambda: 0.0)
    high = _worker(app, Script(), backoff=1.0, backoff_cap=60.0, rng=lambda: 0.999999)
    assert [low.delay(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert [round(high.delay(n), 3) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert low.delay(20) == 30.0 and round(high.delay(20), 3) == 60.0


def test_a_retry_waits_for_its_backoff(app: Flask) -> None:
    (mid,) = _queue(app)
    script = Script(Timeout("slow"))
    worker = _worker(app, script, backoff=30.0, backoff_cap=30.0)
    assert worker.run_once() == 1
    assert worker.run_once() == 0  # not due for 15-30 s
    record = parts(app).outbox.get(mid)
    assert record["state"] == PENDING and record["nextAttempt"] > record["updated"]


def test_the_breaker_opens_and_holds_the_destination_back(app: Flask) -> None:
    _queue(app, 5)
    script = Script(*[Timeout("down")] * 10)
    worker = _worker(app, script, max_attempts=20)
    worker.run_once()
    assert parts(app).breakers.states()["test"]["state"] == OPEN
    calls = len(script.calls)
    assert worker.run_once() == 0 and len(script.calls) == calls  # no hammering while open


def test_a_worker_that_lost_its_lease_keeps_nothing(app: Flask) -> None:
    services = app.extensions["wraparound"]
    short = Outbox(services.store, lease_seconds=0.2)
    (mid,) = short.enqueue([Message("test", "op", "k", {})])

    def slow(message: Claimed, ctx: DeliveryContext) -> str:
        time.sleep(0.35)  # outlives the lease
        return "late"

    ctx = DeliveryContext(settings=services.settings, store=services.store,
                          policy=services.policy, clients=None)  # type: ignore[arg-type]
    worker = Worker(short, parts(app).breakers, ctx, deliverers={"test": slow})
    assert worker.run_once() == 1
    assert worker.stats.fenced == 1 and worker.stats.delivered == 0
    assert short.get(mid)["state"] == "in-flight"  # re-claimable, then delivered again


def test_every_outcome_is_audited_without_personal_data(app: Flask) -> None:
    (delivered, failed) = _queue(app, 2)
    script = Script("accepted", Rejected("no", permanent=True))
    _run(_worker(app, script))
    services = app.extensions["wraparound"]
    from gateway.fhir.search import parse_search

    rtype = services.registry.get("AuditEvent")
    query = parse_search(services.registry, rtype, [("subtype", "outbox-delivery")],
                         default_count=10, max_count=10)
    events = services.store.read(lambda tx: tx.fetch(
        [("AuditEvent", i) for i in tx.search_ids(query, limit=10)]))
    import orjson

    bodies = [orjson.loads(e.content) for e in events]
    outcomes = sorted(b["outcome"] for b in bodies)
    assert outcomes == ["0", "8"]
    ids = {b["entity"][0]["what"]["identifier"]["value"] for b in bodies}
    assert ids == {f"urn:uuid:{delivered}", f"urn:uuid:{failed}"}
