"""Outbox fault tests: outages, 500s, hangs and resets, killed workers, racing workers, a database
restart and a killed gateway — counting every message in and out.

Every test ends with the same count: each message the outbox holds is delivered; the mock CP-IS
processed each upload's message id exactly once (a repeat of an id it already answered is
answered from its cache and changes nothing); the stand-in subscriber accepted each notification's
message id at least once, and more than once only where a fault left the sender unsure (it
de-duplicates by X-Message-ID); nothing arrived that the outbox does not hold.

Workers are `wraparound worker` subprocesses: three on PostgreSQL, one on SQLite.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import pytest
import requests
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from gateway import create_app
from gateway.config import Settings
from gateway.outbox.delivery import DeliveryContext
from gateway.outbox.store import DELIVERED, Claimed, Message, Outbox
from gateway.outbox.worker import Worker
from gateway.store import make_engine, upgrade
from tests.conftest import FHIR_JSON, bearer, free_port
from tests.integration.outbox.procs import (
    Proc,
    Subscriber,
    environment,
    outbox_counts,
    private_postgres,
    settled,
    spawn_gateway,
    stop_all,
    subscriber,
    wait_for,
    wait_ready,
)
from tests.integration.outbox.procs import (
    start_workers as procs_start_workers,
)
from tests.integration.outbox.test_outbox_cpis import _child, _plan, ordinary_children

__all__ = ["ordinary_children"]  # the fixture, shared with the CP-IS outbox tests

SETTLE_WITHIN = 120.0  # liveness bound for a busy machine


@pytest.fixture
def sub() -> Iterator[Subscriber]:
    with subscriber() as running:
        yield running


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Subprocesses a test starts; stopped (or killed) afterwards whatever happens."""
    started: list[Proc] = []
    yield started
    stop_all(started)


@pytest.fixture
def env(db_url: str, tmp_path: Path, mock: str) -> dict[str, str]:
    return environment(db_url, tmp_path, mock)


def worker_count(db_url: str) -> int:
    """Several worker processes on PostgreSQL; one on SQLite (a single writer at a time)."""
    return 3 if db_url.startswith("postgresql") else 1


def start_workers(
    procs: list[Proc], env: dict[str, str], tmp_path: Path, n: int, **options: Any
) -> list[Proc]:
    logs = [tmp_path / f"worker-{len(procs) + i}.log" for i in range(n)]
    started = procs_start_workers(env, logs, **options)
    procs.extend(started)
    return started


def _post(client: FlaskClient, resource: dict[str, Any]) -> dict[str, Any]:
    resp = client.post(
        f"/fhir/{resource['resourceType']}", json=resource, headers={"Content-Type": FHIR_JSON}
    )
    assert resp.status_code == 201, resp.get_json()
    body: dict[str, Any] = resp.get_json()
    return body


def subscribe(client: FlaskClient, hook: str) -> str:
    """Subscribe the stand-in subscriber to completed Communications; return the id."""
    sub = _post(
        client,
        {
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "fault tests",
            "criteria": "Communication?status=completed",
            "channel": {"type": "rest-hook", "endpoint": hook, "payload": FHIR_JSON},
        },
    )
    return str(sub["id"])


def note(patient_id: str | None = None, text: str = "Visit recorded") -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Communication",
        "status": "completed",
        "payload": [{"contentString": text}],
    }
    if patient_id:
        resource["subject"] = {"reference": f"Patient/{patient_id}"}
    return resource


def plans(client: FlaskClient, children: list[str]) -> None:
    """Create each child and a child protection plan (one CP-IS upload each)."""
    for nhs in children:
        child = _post(client, _child(nhs))
        _post(client, _plan(child["id"]))


def notes(client: FlaskClient, n: int, patients: list[str] | None = None) -> None:
    """Store `n` completed Communications in one transaction (one notification each)."""
    entries = [
        {
            "resource": note(patients[i % len(patients)] if patients else None, f"Visit {i}"),
            "request": {"method": "POST", "url": "Communication"},
        }
        for i in range(n)
    ]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    resp = client.post("/fhir", json=bundle, headers={"Content-Type": FHIR_JSON})
    assert resp.status_code == 200, resp.get_json()


def mock_cpis(mock: str) -> dict[str, Any]:
    state: dict[str, Any] = requests.get(f"{mock}/admin/services/cpis", timeout=30).json()
    return state


def inject(mock: str, **fault: Any) -> None:
    resp = requests.post(f"{mock}/admin/faults", json={"service": "cpis", **fault}, timeout=30)
    assert resp.status_code == 201, resp.text


def faults_left(mock: str, sub: Subscriber) -> int:
    national = requests.get(f"{mock}/admin/faults", timeout=30).json()
    local = requests.get(f"{sub.base}/admin/faults", timeout=30).json()
    return len(national) + len(local)


def wait_settled(db_url: str, procs: list[Proc]) -> None:
    def done() -> bool:
        for proc in procs:
            code = proc.popen.poll()
            assert code is None or code <= 0, proc.output()[-3000:]  # killed or stopped
        return settled(db_url)

    wait_for(done, within=SETTLE_WITHIN, what="every message to be settled", pause=0.25)


def count_everything(
    db_url: str, mock: str, sub: Subscriber, *, cpis: int, notifications: int
) -> dict[str, int]:
    """Count every message in and out; assert nothing lost and nothing delivered twice.

    Returns the duplicates each receiver de-duplicated, for the test to bound.
    """
    counts = outbox_counts(db_url)
    assert counts.states() == {DELIVERED: cpis + notifications}, [
        (r["destination"], r["state"], r["attempts"], r["error"])
        for r in counts.rows
        if r["state"] != DELIVERED
    ]
    uploads = counts.ids("cpis")
    sent = counts.ids("subscription:")
    assert (len(uploads), len(sent)) == (cpis, notifications)
    # CP-IS: every upload processed, each message id exactly once, nothing else arrived.
    state = mock_cpis(mock)
    processed = state["upload_message_ids"]
    assert sorted(processed) == sorted(uploads)
    assert state["uploads_processed"] == cpis
    # The subscriber: every notification accepted; repeats only of ids the outbox holds.
    received = sub.ids()["accepted"]
    assert set(received) == set(sent)
    return {
        "cpis": state["uploads_repeated"],
        "subscriber": sum(received.values()) - len(received),
    }


# -- outages, errors, hangs and resets -------------------------------------------------------------
def test_a_long_outage_then_recovery_delivers_everything_without_using_up_attempts(
    app: Flask,
    client: FlaskClient,
    db_url: str,
    env: dict[str, str],
    mock: str,
    sub: Subscriber,
    procs: list[Proc],
    tmp_path: Path,
    ordinary_children: list[str],
) -> None:
    subscribe(client, sub.hook)
    plans(client, ordinary_children[:3])
    notes(client, 12)
    # Down for far more attempts than a message may use (5): every request fails, first with
    # 503s, then with connection resets, until the faults run out.
    inject(mock, kind="http_error", status=503, times=10)
    inject(mock, kind="reset", times=6)
    sub.fault(kind="http_error", status=503, times=10)
    sub.fault(kind="reset", times=6)
    start_workers(procs, env, tmp_path, worker_count(db_url))
    wait_settled(db_url, procs)
    assert faults_left(mock, sub) == 0  # the outage really happened
    dups = count_everything(db_url, mock, sub, cpis=3, notifications=12)
    assert dups == {"cpis": 0, "subscriber": 0}  # failed requests were never accepted
    # Nothing dead-lettered although 16 requests to each failed: waiting for the breaker
    # used no attempts. The breakers closed again and the subscription is active.
    assert max(r["attempts"] for r in outbox_counts(db_url).rows) <= 5
    outbox = app.extensions["wraparound.outbox"]
    assert {s["state"] for s in outbox.breakers.states().values()} == {"closed"}
    subs = client.get("/fhir/Subscription").get_json()["entry"]
    assert [e["resource"]["status"] for e in subs] == ["active"]


def test_mixed_500s_hangs_and_resets(
    client: FlaskClient,
    db_url: str,
    tmp_path: Path,
    mock: str,
    sub: Subscriber,
    procs: list[Proc],
    ordinary_children: list[str],
) -> None:
    env = environment(db_url, tmp_path, mock, WRAPAROUND_OUTBOX_MAX_ATTEMPTS="10")
    subscribe(client, sub.hook)
    plans(client, ordinary_children[3:6])
    notes(client, 10)
    # CP-IS read timeout 1.5 s; a hang holds the request longer. `latency` answers after the
    # worker gave up but processes the upload: the retry must be answered from the cache.
    for fault in (
        {"kind": "http_error", "status": 500, "times": 2},
        {"kind": "hang", "seconds": 5, "times": 1},
        {"kind": "reset", "times": 2},
        {"kind": "latency", "seconds": 2.0, "times": 1},
        {"kind": "soap_fault", "fault_code": "Server", "times": 1},
        {"kind": "http_error", "status": 502, "times": 1},
        {"kind": "hang", "seconds": 5, "times": 1},
    ):
        inject(mock, **fault)
    # Subscriber timeout 1 s: `latency` accepts, then answers too late for the worker.
    for fault in (
        {"kind": "http_error", "status": 500, "times": 3},
        {"kind": "hang", "seconds": 4, "times": 2},
        {"kind": "reset", "times": 3},
        {"kind": "latency", "seconds": 1.5, "times": 2},
        {"kind": "http_error", "status": 503, "times": 2},
    ):
        sub.fault(**fault)
    start_workers(procs, env, tmp_path, worker_count(db_url))
    wait_settled(db_url, procs)
    assert faults_left(mock, sub) == 0
    dups = count_everything(db_url, mock, sub, cpis=3, notifications=10)
    # Only the late answers can leave a duplicate, and only with the same message id.
    assert dups["cpis"] <= 1 and dups["subscriber"] <= 2


# -- killed workers --------------------------------------------------------------------------------
def test_a_worker_killed_after_claiming_or_after_sending_loses_nothing(
    client: FlaskClient,
    db_url: str,
    env: dict[str, str],
    mock: str,
    sub: Subscriber,
    procs: list[Proc],
    tmp_path: Path,
    ordinary_children: list[str],
) -> None:
    subscribe(client, sub.hook)

    def one_of_each(children: list[str]) -> tuple[str, str]:
        plans(client, children)
        notes(client, 1)
        counts = outbox_counts(db_url)
        return counts.ids("cpis")[-1], counts.ids("subscription:")[-1]

    # 1. Killed after claiming, while the requests hang (nothing was processed).
    upload, notification = one_of_each(ordinary_children[6:7])
    inject(mock, kind="hang", seconds=60, times=1)
    sub.fault(kind="hang", seconds=60, times=1)
    (first,) = start_workers(procs, env, tmp_path, 1, threads=2, batch=1)
    wait_for(lambda: faults_left(mock, sub) == 0, within=60, what="both requests to hang")
    first.kill()
    requests.delete(f"{mock}/admin/faults", timeout=30)
    sub.clear()
    assert {r["state"] for r in outbox_counts(db_url).rows} == {"in-flight"}
    start_workers(procs, env, tmp_path, 1)  # it waits out the lease
    wait_settled(db_url, procs)
    stop_all(procs[1:])
    assert mock_cpis(mock)["upload_message_ids"] == [upload]
    assert sub.ids()["accepted"] == {notification: 1}

    # 2. Killed after sending, before settling: both receivers processed the messages, the
    # outbox does not know. They are sent again with the same ids after the lease.
    upload, notification = one_of_each(ordinary_children[7:8])
    inject(mock, kind="latency", seconds=1.0, times=1)
    sub.fault(kind="latency", seconds=1.0, times=1)
    (second,) = start_workers(procs, env, tmp_path, 1, threads=2, batch=1)
    wait_for(
        lambda: faults_left(mock, sub) == 0 and notification in sub.ids()["accepted"],
        within=60,
        what="both requests to be received",
    )
    second.kill()
    wait_for(
        lambda: upload in mock_cpis(mock)["upload_message_ids"],
        within=30,
        what="CP-IS to process the upload",
    )
    start_workers(procs, env, tmp_path, worker_count(db_url))
    wait_settled(db_url, procs)
    dups = count_everything(db_url, mock, sub, cpis=2, notifications=2)
    # The crash left each receiver exactly one repeat of the same message id.
    assert dups == {"cpis": 1, "subscriber": 1}
    assert sub.ids()["accepted"][notification] == 2


# -- workers racing ----------------------------------------------------------------------------------
def test_racing_workers_deliver_each_message_once_and_in_order(
    client: FlaskClient,
    db_url: str,
    env: dict[str, str],
    mock: str,
    sub: Subscriber,
    procs: list[Proc],
    tmp_path: Path,
    ordinary_children: list[str],
) -> None:
    subscribe(client, sub.hook)
    children = [_post(client, _child(nhs))["id"] for nhs in ordinary_children[10:18]]
    for patient_id in children[:4]:
        _post(client, _plan(patient_id))
    notes(client, 160, patients=children)  # 20 notifications for each of 8 children
    start_workers(procs, env, tmp_path, worker_count(db_url), threads=3, batch=5)
    wait_settled(db_url, procs)
    # Without faults there is no doubt, hence no repeat: each message arrived exactly once.
    assert count_everything(db_url, mock, sub, cpis=4, notifications=160) == {
        "cpis": 0,
        "subscriber": 0,
    }
    # Per child, notifications arrived in the order they were queued.
    rows = {r["id"]: r for r in outbox_counts(db_url).rows}
    order = requests.get(f"{sub.base}/received/ids?order=1", timeout=30).json()["order"]
    by_key: dict[str, list[int]] = {}
    for message_id in order:
        by_key.setdefault(rows[message_id]["key"], []).append(rows[message_id]["seq"])
    assert len(by_key) == len(children)
    assert all(seqs == sorted(seqs) for seqs in by_key.values())
    processed = mock_cpis(mock)["upload_message_ids"]
    assert processed == sorted(processed, key=lambda i: rows[i]["seq"])


# -- a database restart and a killed gateway during a burst of writes -------------------------------
class Burst:
    """Writers posting completed Communications to a gateway subprocess, recording the
    acknowledged (201) ids and counting the requests that got no answer or an error."""

    def __init__(self, base: str, token: str, writers: int = 4) -> None:
        self.base = base
        self.headers = {"Content-Type": FHIR_JSON, "Authorization": token}
        self.acknowledged: list[str] = []
        self.unanswered = 0
        self.refused = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._write, args=(n,)) for n in range(writers)]

    def _write(self, n: int) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            try:
                resp = requests.post(
                    f"{self.base}/fhir/Communication",
                    json=note(text=f"writer {n} note {i}"),
                    headers=self.headers,
                    timeout=10,
                )
            except requests.RequestException:
                with self.lock:
                    self.unanswered += 1
                time.sleep(0.05)
                continue
            with self.lock:
                if resp.status_code == 201:
                    self.acknowledged.append(resp.json()["id"])
                else:
                    self.refused += 1
            if resp.status_code != 201:
                time.sleep(0.05)

    def __enter__(self) -> Self:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def reach(self, n: int) -> None:
        wait_for(lambda: len(self.acknowledged) >= n, within=60, what=f"{n} acknowledged writes")


def check_burst(db_url: str, sub: Subscriber, acknowledged: list[str]) -> None:
    """Every acknowledged write has exactly one delivered notification; every message in the
    outbox belongs to a stored write (none without its data); the subscriber got them all."""
    counts = outbox_counts(db_url)
    assert counts.states() == {DELIVERED: len(counts.rows)}
    about = {r["payload"]["id"]: r["id"] for r in counts.rows}
    assert len(about) == len(counts.rows)  # one message per write
    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            stored = set(
                conn.execute(
                    sa.text("SELECT res_id FROM resources WHERE res_type = 'Communication'")
                ).scalars()
            )
    finally:
        engine.dispose()
    assert set(acknowledged) <= stored
    assert set(about) == stored  # a message exists if and only if its write was committed
    received = sub.ids()["accepted"]
    assert set(received) == set(about.values())


def _started(db_url: str) -> Any:
    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT pg_postmaster_start_time()")).scalar()
    finally:
        engine.dispose()


def test_a_postgres_restart_during_a_burst_of_writes_loses_no_acknowledged_message(
    tmp_path: Path, mock: str, sub: Subscriber, procs: list[Proc]
) -> None:
    with private_postgres() as cluster:
        admin = sa.create_engine(cluster.url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text("CREATE DATABASE wraparound"))
        admin.dispose()
        db_url = cluster.url.rsplit("/", 1)[0] + "/wraparound"
        engine = make_engine(db_url, pool_size=0)
        upgrade(engine)
        engine.dispose()
        env = environment(db_url, tmp_path, mock)
        local = create_app(
            Settings(env="test", data_dir=tmp_path, database_url=db_url, db_pool_size=0)
        )
        token = bearer(local)
        client = local.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = token
        subscribe(client, sub.hook)
        local.extensions["wraparound"].audit.flush()
        local.extensions["wraparound"].store.dispose()
        port = free_port()
        gateway = spawn_gateway(env, port, tmp_path / "gateway.log")
        procs.append(gateway)
        start_workers(procs, env, tmp_path, 2)  # while the gateway starts
        wait_ready(gateway, port)
        before = _started(db_url)
        with Burst(f"http://127.0.0.1:{port}", token) as burst:
            burst.reach(25)
            cluster.restart()
            burst.reach(len(burst.acknowledged) + 25)  # writes are acknowledged again after it
        assert _started(db_url) > before  # the server really restarted mid-burst
        wait_settled(db_url, procs)
        check_burst(db_url, sub, burst.acknowledged)
        stop_all(procs)  # before the cluster goes away


def test_a_gateway_killed_mid_burst_leaves_no_write_without_its_message(
    app: Flask,
    client: FlaskClient,
    db_url: str,
    env: dict[str, str],
    mock: str,
    sub: Subscriber,
    procs: list[Proc],
    tmp_path: Path,
) -> None:
    subscribe(client, sub.hook)
    port = free_port()
    gateway = spawn_gateway(env, port, tmp_path / "gateway.log")
    procs.append(gateway)
    start_workers(procs, env, tmp_path, worker_count(db_url))  # while the gateway starts
    wait_ready(gateway, port)
    with Burst(f"http://127.0.0.1:{port}", bearer(app)) as burst:
        burst.reach(30)
        gateway.kill()  # master and workers, mid-write
    assert len(burst.acknowledged) >= 30
    wait_settled(db_url, procs)
    check_burst(db_url, sub, burst.acknowledged)


# -- a slow batch ----------------------------------------------------------------------------------
def test_a_message_whose_lease_is_half_gone_goes_back_unsent(app: Flask) -> None:
    services = app.extensions["wraparound"]
    parts = app.extensions["wraparound.outbox"]
    outbox = Outbox(services.store, lease_seconds=4.0)
    ids = outbox.enqueue([Message("slow", "op", f"k{i}", {"n": i}) for i in range(3)])
    sent: list[str] = []
    pause = [2.1]  # more than half the lease, far less than all of it

    def slow(message: Claimed, ctx: DeliveryContext) -> str:
        sent.append(message.id)
        time.sleep(pause[0])
        return "ok"

    ctx = DeliveryContext(
        settings=services.settings, store=services.store, policy=services.policy, clients=None
    )  # type: ignore[arg-type]
    worker = Worker(outbox, parts.breakers, ctx, deliverers={"slow": slow}, batch=3)
    assert worker.run_once() == 3
    # The first was sent and settled; the other two went back unsent, their attempt given back.
    assert sent == ids[:1] and worker.stats.held == 2 and worker.stats.fenced == 0
    states = [(r["state"], r["attempts"]) for r in (outbox.get(i) for i in ids)]
    assert states == [(DELIVERED, 1), ("pending", 0), ("pending", 0)]
    pause[0] = 0.0
    while worker.run_once():
        pass
    assert sent == ids and {outbox.get(i)["state"] for i in ids} == {DELIVERED}
