"""The outbox queue on SQLite and PostgreSQL: transactional enqueue, ordering, leases, fencing, replay."""
from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from flask import Flask

from gateway.outbox.breaker import CLOSED, OPEN
from gateway.outbox.store import DELIVERED, FAILED, IN_FLIGHT, PENDING, Message, Outbox
from tests.integration.outbox.conftest import parts


def _messages(n: int, key: str = "k", destination: str = "test") -> list[Message]:
    return [Message(destination=destination, operation="op", key=key, payload={"n": i})
            for i in range(n)]


def test_a_rolled_back_transaction_leaves_no_message(app: Flask) -> None:
    outbox = parts(app).outbox

    def _fail(tx: Any) -> None:
        outbox.enqueue_in(tx, _messages(3))
        raise RuntimeError("the data change failed")

    with pytest.raises(RuntimeError):
        app.extensions["wraparound"].store.write(_fail)
    assert outbox.stats()["states"][PENDING] == 0
    outbox.enqueue(_messages(2))
    assert outbox.stats()["states"][PENDING] == 2


def test_one_key_is_delivered_in_order_and_one_at_a_time(app: Flask) -> None:
    outbox = parts(app).outbox
    outbox.enqueue(_messages(3, key="child-a") + _messages(2, key="child-b"))
    first = outbox.claim("w1", 10)
    # One message per key at a time: the head of each key.
    assert sorted((m.key, m.payload["n"]) for m in first) == [("child-a", 0), ("child-b", 0)]
    assert outbox.claim("w2", 10) == []
    store = app.extensions["wraparound"].store
    for m in first:
        assert store.write(lambda tx, m=m: outbox.complete_in(tx, m))
    second = outbox.claim("w2", 10)
    assert sorted((m.key, m.payload["n"]) for m in second) == [("child-a", 1), ("child-b", 1)]


def test_a_retry_holds_back_the_messages_behind_it_but_a_dead_letter_does_not(app: Flask) -> None:
    outbox = parts(app).outbox
    store = app.extensions["wraparound"].store
    outbox.enqueue(_messages(2, key="k"))
    (head,) = outbox.claim("w", 10)
    assert store.write(lambda tx: outbox.retry_in(tx, head, "Unavailable", delay=0.0))
    (again,) = outbox.claim("w", 10)
    assert again.id == head.id and again.attempts == 2 and again.lease_token == 2
    assert store.write(lambda tx: outbox.dead_letter_in(tx, again, "Rejected (CPR03)"))
    (behind,) = outbox.claim("w", 10)
    assert behind.payload == {"n": 1}


def test_an_expired_lease_is_reclaimed_and_the_old_holder_is_fenced(app: Flask) -> None:
    store = app.extensions["wraparound"].store
    # Long enough that a loaded machine cannot let it run out between the two claims.
    short = Outbox(store, lease_seconds=2.0)
    short.enqueue(_messages(1))
    (held,) = short.claim("slow-worker", 1)
    assert short.claim("other", 1) == []  # the lease is current
    time.sleep(2.1)
    (taken,) = short.claim("other", 1)
    assert taken.id == held.id and taken.lease_token == held.lease_token + 1
    # The slow worker comes back: none of its outcomes may be settled.
    assert not store.write(lambda tx: short.complete_in(tx, held))
    assert not store.write(lambda tx: short.retry_in(tx, held, "late", 0.0))
    assert not store.write(lambda tx: short.dead_letter_in(tx, held, "late"))
    assert short.get(held.id)["state"] == IN_FLIGHT
    assert store.write(lambda tx: short.complete_in(tx, taken))
    record = short.get(held.id)
    assert record["state"] == DELIVERED and record["attempts"] == 2


def test_a_lease_that_ran_out_cannot_complete_even_unclaimed(app: Flask) -> None:
    store = app.extensions["wraparound"].store
    short = Outbox(store, lease_seconds=0.1)
    short.enqueue(_messages(1))
    (held,) = short.claim("w", 1)
    time.sleep(0.2)
    assert not store.write(lambda tx: short.complete_in(tx, held))


def test_concurrent_claimers_never_hold_the_same_message(app: Flask) -> None:
    outbox = parts(app).outbox
    outbox.enqueue([Message("test", "op", f"key-{i}", {"n": i}) for i in range(60)])
    claimed: list[str] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def claimer(name: str) -> None:
        try:
            while True:
                got = outbox.claim(name, 3)
                if not got:
                    return
                with lock:
                    claimed.extend(m.id for m in got)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(claimed) == 60 and len(set(claimed)) == 60


def test_replay_puts_dead_letters_back_with_their_ids(app: Flask) -> None:
    outbox = parts(app).outbox
    store = app.extensions["wraparound"].store
    outbox.enqueue(_messages(2, key="a", destination="cpis") + _messages(1, key="b",
                                                                         destination="other"))
    for m in outbox.claim("w", 10):
        store.write(lambda tx, m=m: outbox.dead_letter_in(tx, m, f"Rejected ({m.destination})"))
    assert outbox.replay(destination="nowhere") == []
    ids = outbox.replay(error="(cpis)")
    assert len(ids) == 1  # only the head of key "a" was claimed and failed
    record = outbox.get(ids[0])
    assert record["state"] == PENDING and record["attempts"] == 0
    assert outbox.stats()["states"][FAILED] == 1


def test_breaker_opens_after_the_threshold_and_one_probe_closes_it(app: Flask) -> None:
    breakers = parts(app).breakers
    store = app.extensions["wraparound"].store
    for _ in range(2):
        store.write(lambda tx: breakers.failure_in(tx, "cpis"))
    assert breakers.blocked() == []
    assert store.write(lambda tx: breakers.failure_in(tx, "cpis")) == OPEN
    assert breakers.blocked() == ["cpis"]
    assert breakers.take_probes() == []  # cool-down not over
    time.sleep(0.35)
    assert breakers.take_probes() == ["cpis"]
    assert breakers.take_probes() == []  # one probe at a time
    assert breakers.blocked() == ["cpis"]
    store.write(lambda tx: breakers.success_in(tx, "cpis"))
    assert breakers.states()["cpis"]["state"] == CLOSED
    assert breakers.blocked() == []
