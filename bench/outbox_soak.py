"""Outbox soak: at least 10,000 messages through injected failures, counted in and out.

A gateway app in this process writes data whose commit hook queues messages (CP-IS uploads of
child protection plans and Subscription notifications of completed Communications) while
`wraparound worker` subprocesses deliver them to the mock national server and the stand-in
subscriber (both on loopback ports in this process). Throughout, faults are injected into both
receivers (HTTP 500/502/503, connection resets, hangs past the client timeouts, late answers
that leave the sender unsure) and worker processes are killed with SIGKILL and replaced.

At the end every message is counted: lost = queued but never accepted by its receiver (or not
delivered); duplicated = the same change (resource version) sent under two message ids, or one
CP-IS message id processed twice — what a receiver de-duplicating by message id would still see
twice. Repeats of one message id (the price of at-least-once delivery) are reported apart.
The exit status is non-zero on any loss, duplicate or dead letter, or when the run does not
drain within --max-seconds.

    python -m bench.outbox_soak                      # PostgreSQL (3 workers), then SQLite (1)
    python -m bench.outbox_soak --db sqlite --messages 2000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import requests
import sqlalchemy as sa

from bench.common import (
    DEFAULT_POSTGRES_URL,
    ROOT,
    BenchError,
    PostgresScratch,
    machine_info,
    write_results,
)

FHIR_JSON = "application/fhir+json"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
VERIFIED_EXT = (
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus"
)
VERIFIED_SYSTEM = "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland"
CP_PLAN_TYPE = "https://wraparound.example.org/fhir/CodeSystem/cp-plan-type"

# Short timeouts and backoffs: faults play out in seconds. Leases stay well above a delivery.
WORKER_ENV = {
    "WRAPAROUND_ENV": "test",
    "WRAPAROUND_LOG_LEVEL": "ERROR",
    "WRAPAROUND_NATIONAL_CONNECT_TIMEOUT": "1.0",
    "WRAPAROUND_NATIONAL_READ_TIMEOUT": "1.5",
    "WRAPAROUND_NATIONAL_CALL_TIMEOUT": "3.0",
    "WRAPAROUND_OUTBOX_LEASE_SECONDS": "4.0",
    # Backoffs are compressed to seconds here, so the attempt limit is raised to span a
    # comparable stretch of faults (12 attempts at the default backoff span hours).
    "WRAPAROUND_OUTBOX_MAX_ATTEMPTS": "20",
    "WRAPAROUND_OUTBOX_BACKOFF_SECONDS": "0.05",
    "WRAPAROUND_OUTBOX_BACKOFF_CAP_SECONDS": "1.0",
    "WRAPAROUND_OUTBOX_BREAKER_FAILURES": "5",
    "WRAPAROUND_OUTBOX_BREAKER_SECONDS": "0.5",
    "WRAPAROUND_SUBSCRIPTION_TIMEOUT": "1.0",
}


# -- the stack: receivers, the gateway app, worker processes -------------------------------------
@dataclass
class Receivers:
    """The mock national server and the stand-in subscriber, on loopback ports here."""

    national: str
    subscriber: str
    stops: list[Callable[[], None]]

    def national_fault(self, **fault: Any) -> None:
        _post_json(f"{self.national}/admin/faults", {"service": "cpis", **fault})

    def subscriber_fault(self, **fault: Any) -> None:
        _post_json(f"{self.subscriber}/admin/faults", fault)

    def faults_waiting(self, national: bool) -> int:
        """Return how many injected faults the receiver has not yet used up."""
        base = self.national if national else self.subscriber
        return len(requests.get(f"{base}/admin/faults", timeout=30).json())

    def clear_faults(self) -> None:
        requests.delete(f"{self.national}/admin/faults", timeout=30).raise_for_status()
        requests.delete(f"{self.subscriber}/admin/faults", timeout=30).raise_for_status()

    def cpis_state(self) -> dict[str, Any]:
        state: dict[str, Any] = requests.get(
            f"{self.national}/admin/services/cpis", timeout=60
        ).json()
        return state

    def accepted(self, order: bool = False) -> dict[str, Any]:
        url = f"{self.subscriber}/received/ids" + ("?order=1" if order else "")
        data: dict[str, Any] = requests.get(url, timeout=60).json()
        return data


def _post_json(url: str, body: dict[str, Any]) -> None:
    resp = requests.post(url, json=body, timeout=30)
    if resp.status_code != 201:
        raise BenchError(f"fault refused: {resp.text[:200]}")


@contextlib.contextmanager
def receivers() -> Iterator[Receivers]:
    """Start the mock national server and the stand-in subscriber in threads."""
    from connectors.mockserver import run_in_thread
    from gateway.outbox.localsystem import create_subscriber_app

    national, stop_national = run_in_thread("127.0.0.1", 0)
    app = create_subscriber_app()
    subscriber, stop_subscriber = run_in_thread("127.0.0.1", 0, app=app)

    def release() -> None:
        app.extensions["wraparound_subscriber_faults"].clear()

    running = Receivers(national, subscriber, [release, stop_subscriber, stop_national])
    try:
        yield running
    finally:
        for stop in running.stops:
            with contextlib.suppress(Exception):
                stop()


def worker_env(db_url: str, data_dir: Path, national: str, **extra: str) -> dict[str, str]:
    """Return the environment of a worker process."""
    return {
        **os.environ,
        **WORKER_ENV,
        **extra,
        "WRAPAROUND_DATABASE_URL": db_url,
        "WRAPAROUND_DATA_DIR": str(data_dir),
        "WRAPAROUND_NATIONAL_URL": national,
    }


class Workers:
    """`wraparound worker` subprocesses, each in its own process group."""

    def __init__(
        self,
        env: dict[str, str],
        logs: Path,
        *,
        threads: int,
        batch: int,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.env = env
        self.logs = logs
        self.args = ["--threads", str(threads), "--batch", str(batch), *extra_args]
        self.procs: list[subprocess.Popen[bytes]] = []
        self.killed = 0

    def start(self, n: int = 1) -> None:
        """Start `n` workers and wait until their delivery loops run."""
        started = []
        for _ in range(n):
            log = self.logs / f"worker-{len(self.procs)}.log"
            with log.open("ab") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "gateway.cli", "worker", *self.args],
                    env=self.env,
                    start_new_session=True,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=ROOT,
                )
            self.procs.append(proc)
            started.append((proc, log))
        deadline = time.monotonic() + 90
        for proc, log in started:
            while "delivery loop" not in log.read_text("utf-8", errors="replace"):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"a worker did not start: {log.read_text()[-1000:]}")
                time.sleep(0.05)

    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.procs if p.poll() is None]

    def kill_one(self, rng: random.Random) -> None:
        """SIGKILL one running worker (mid-delivery, whatever it holds) and start another."""
        victim = rng.choice(self.alive())
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(30)
        self.killed += 1
        self.start(1)

    def check(self) -> None:
        for proc in self.procs:
            code = proc.poll()
            if code is not None and code > 0:
                raise BenchError(f"a worker exited with status {code}")

    def stop(self) -> None:
        for proc in self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)


def make_app(db_url: str, data_dir: Path, national: str) -> Any:
    """Return a gateway app (as `wraparound serve` builds it) on a migrated database."""
    from gateway import create_app
    from gateway.config import Settings
    from gateway.store import make_engine, upgrade

    engine = make_engine(db_url, pool_size=0)
    upgrade(engine)
    engine.dispose()
    return create_app(
        Settings(
            env="test",
            data_dir=data_dir,
            database_url=db_url,
            db_pool_size=4,
            national_url=national,
            rate_limit_per_minute=0,
        )
    )


def client_for(app: Any) -> Any:
    """Return a test client of the app acting for social care with every scope."""
    client = app.test_client()
    token = app.extensions["wraparound"].tokens.dev_token("social-care", ["system/*.cruds"])
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client


def ordinary_children() -> list[str]:
    """NHS numbers the mock CP-IS accepts plans for (current, not sensitive, no plan yet)."""
    seed = ROOT / "fixtures" / "national"
    patients = json.loads((seed / "pds.json").read_text("utf-8"))["patients"]
    planned = {
        p["nhs_number"] for p in json.loads((seed / "cpis.json").read_text("utf-8"))["plans"]
    }
    return [
        p["nhs_number"]
        for p in patients
        if not p["sensitive"]
        and not p["deceased_date"]
        and not p["superseded_nhs_numbers"]
        and p["nhs_number"] not in planned
    ]


def child(nhs: str, i: int) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [
            {
                "system": NHS,
                "value": nhs,
                "extension": [
                    {
                        "url": VERIFIED_EXT,
                        "valueCodeableConcept": {
                            "coding": [{"system": VERIFIED_SYSTEM, "code": "01"}]
                        },
                    }
                ],
            }
        ],
        "name": [{"family": f"Soak{i}", "given": ["Sam"]}],
        "gender": "female",
        "birthDate": "2016-05-04",
    }


def plan(patient_id: str, end: str | None = None) -> dict[str, Any]:
    period = {"start": "2026-01-05", **({"end": end} if end else {})}
    return {
        "resourceType": "CarePlan",
        "status": "active",
        "intent": "plan",
        "category": [{"coding": [{"system": CP_PLAN_TYPE, "code": "CPP"}]}],
        "subject": {"reference": f"Patient/{patient_id}"},
        "period": period,
    }


def transaction(client: Any, entries: list[dict[str, Any]]) -> list[str]:
    """Post a transaction bundle; return the ids of the entries (in order)."""
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    resp = client.post("/fhir", json=bundle, headers={"Content-Type": FHIR_JSON})
    if resp.status_code != 200:
        raise BenchError(f"transaction refused: HTTP {resp.status_code}")
    return [str(e["response"]["location"]).split("/")[1] for e in resp.get_json().get("entry", [])]


def subscribe(client: Any, hook: str) -> None:
    resp = client.post(
        "/fhir/Subscription",
        json={
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "outbox soak",
            "criteria": "Communication?status=completed",
            "channel": {"type": "rest-hook", "endpoint": hook, "payload": FHIR_JSON},
        },
        headers={"Content-Type": FHIR_JSON},
    )
    if resp.status_code != 201:
        raise BenchError(f"Subscription refused: HTTP {resp.status_code}")


def note(patient_id: str, i: int) -> dict[str, Any]:
    return {
        "resourceType": "Communication",
        "status": "completed",
        "subject": {"reference": f"Patient/{patient_id}"},
        "payload": [{"contentString": f"Contact {i} recorded"}],
    }


def outbox_rows(db_url: str) -> list[Any]:
    from gateway.store.schema import outbox_messages as m

    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return list(
                conn.execute(
                    sa.select(m.c.id, m.c.destination, m.c.state, m.c.attempts, m.c.payload)
                ).all()
            )
    finally:
        engine.dispose()


def open_count(db_url: str) -> int:
    from gateway.store.schema import outbox_messages as m

    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count()).where(m.c.state.in_(("pending", "in-flight")))
                ).scalar()
                or 0
            )
    finally:
        engine.dispose()


# -- the soak ------------------------------------------------------------------------------------
@dataclass
class Chaos:
    """Faults injected at random into both receivers, and worker kills."""

    rng: random.Random
    counts: dict[str, int] = field(default_factory=dict)

    def national(self, rx: Receivers) -> None:
        """Inject one fault into the mock CP-IS."""
        n = self.rng.randint
        choices: list[tuple[str, Callable[[], None]]] = [
            (
                "cpis 5xx",
                lambda: rx.national_fault(
                    kind="http_error", status=self.rng.choice([500, 502, 503]), times=n(1, 3)
                ),
            ),
            ("cpis reset", lambda: rx.national_fault(kind="reset", times=n(1, 2))),
            ("cpis hang", lambda: rx.national_fault(kind="hang", seconds=2, times=1)),
            ("cpis late answer", lambda: rx.national_fault(kind="latency", seconds=1.8, times=1)),
            (
                "cpis Server fault",
                lambda: rx.national_fault(kind="soap_fault", fault_code="Server", times=1),
            ),
        ]
        self._one(choices)

    def subscriber(self, rx: Receivers) -> None:
        """Inject one fault into the stand-in subscriber."""
        n = self.rng.randint
        choices: list[tuple[str, Callable[[], None]]] = [
            (
                "subscriber 5xx",
                lambda: rx.subscriber_fault(
                    kind="http_error", status=self.rng.choice([500, 503]), times=n(1, 4)
                ),
            ),
            ("subscriber reset", lambda: rx.subscriber_fault(kind="reset", times=n(1, 3))),
            ("subscriber hang", lambda: rx.subscriber_fault(kind="hang", seconds=2, times=n(1, 2))),
            (
                "subscriber late answer",
                lambda: rx.subscriber_fault(kind="latency", seconds=1.5, times=n(1, 2)),
            ),
        ]
        self._one(choices)

    def _one(self, choices: list[tuple[str, Callable[[], None]]]) -> None:
        name, action = self.rng.choice(choices)
        action()
        self.counts[name] = self.counts.get(name, 0) + 1


def soak(
    kind: str,
    db_url: str,
    *,
    messages: int,
    workers: int,
    threads: int,
    batch: int,
    max_seconds: float,
    seed: int,
    work: Path,
) -> dict[str, Any]:
    """Run one soak on one database; return its counts."""
    rng = random.Random(seed)
    children_nhs = ordinary_children()
    uploads_wanted = max(messages // 10, 1)
    plan_children = children_nhs[: min(200, len(children_nhs))]
    with receivers() as rx:
        app = make_app(db_url, work, rx.national)
        client = client_for(app)
        store = app.extensions["wraparound"].store
        subscribe(client, f"{rx.subscriber}/hook")
        # Children for the notifications (no messages: the subscription is for Communications).
        patients = transaction(
            client,
            [
                {"resource": child(nhs, i), "request": {"method": "POST", "url": "Patient"}}
                for i, nhs in enumerate(plan_children)
            ],
        )
        pool = Workers(worker_env(db_url, work, rx.national), work, threads=threads, batch=batch)
        pool.start(workers)
        stop_chaos = threading.Event()
        chaos = Chaos(rng)

        def chaos_loop() -> None:
            # A new fault only once the receiver has used up the last one: the receivers fail
            # in bursts and recover in between, whatever the speed of the machine (faults
            # injected faster than requests arrive would keep a receiver down for good).
            # CP-IS takes one upload at a time, so it gets a fault every 2.5-6 s at most;
            # the subscriber every 1-3 s at most.
            national_at = subscriber_at = time.monotonic()
            while not stop_chaos.wait(0.2):
                if time.monotonic() >= subscriber_at and not rx.faults_waiting(national=False):
                    chaos.subscriber(rx)
                    subscriber_at = time.monotonic() + rng.uniform(1.0, 3.0)
                if time.monotonic() >= national_at and not rx.faults_waiting(national=True):
                    chaos.national(rx)
                    national_at = time.monotonic() + rng.uniform(2.5, 6.0)

        chaos_thread = threading.Thread(target=chaos_loop, daemon=True)
        started = time.monotonic()
        chaos_thread.start()
        queued = 0
        kills_at = {messages // 3, 2 * messages // 3}
        try:
            # Plans first (one CP-IS upload each), then their end dates changed again and again
            # (one more upload each time), interleaved with notes (one notification each).
            plan_ids = transaction(
                client,
                [
                    {"resource": plan(pid), "request": {"method": "POST", "url": "CarePlan"}}
                    for pid in patients
                ],
            )
            queued += len(plan_ids)
            round_no = 0
            while queued < messages:
                if time.monotonic() - started > max_seconds:
                    raise BenchError("the run did not queue its messages in time")
                round_no += 1
                if queued < messages * 0.9 and round_no * len(plan_ids) < uploads_wanted:
                    end = f"2026-0{2 + round_no % 7}-1{round_no % 10}"
                    transaction(
                        client,
                        [
                            {
                                "resource": dict(plan(pid, end), id=plan_id),
                                "request": {"method": "PUT", "url": f"CarePlan/{plan_id}"},
                            }
                            for pid, plan_id in zip(patients, plan_ids, strict=True)
                        ],
                    )
                    queued += len(plan_ids)
                size = min(250, messages - queued)
                if size > 0:
                    # Through the store API (the same commit hook as the FHIR API, without
                    # the FHIR validation of every note): one transaction per lump.
                    items = [
                        (
                            "Communication",
                            str(uuid.uuid4()),
                            note(rng.choice(patients[:50]), queued + i),
                        )
                        for i in range(size)
                    ]
                    store.write(lambda tx, items=items: tx.insert_many(items))
                    queued += size
                for mark in sorted(kills_at):
                    if queued >= mark:
                        kills_at.discard(mark)
                        pool.kill_one(rng)
                pool.check()
                time.sleep(0.05)  # a steady stream, not one lump
            produced_in = time.monotonic() - started
            # Faults go on while the backlog drains, then stop: everything must get through.
            while open_count(db_url) > messages // 5:
                if time.monotonic() - started > max_seconds:
                    raise BenchError("the backlog did not drain in time")
                pool.check()
                time.sleep(0.5)
            stop_chaos.set()
            chaos_thread.join(5)
            rx.clear_faults()
            while open_count(db_url) > 0:
                if time.monotonic() - started > max_seconds:
                    raise BenchError("the backlog did not drain in time")
                pool.check()
                time.sleep(0.25)
            elapsed = time.monotonic() - started
        finally:
            stop_chaos.set()
            pool.stop()
            app.extensions["wraparound"].audit.flush()
            app.extensions["wraparound"].store.dispose()
        return count(
            kind,
            db_url,
            rx,
            chaos,
            pool,
            elapsed=elapsed,
            produced_in=produced_in,
            workers=workers,
            threads=threads,
        )


def count(
    kind: str,
    db_url: str,
    rx: Receivers,
    chaos: Chaos,
    pool: Workers,
    *,
    elapsed: float,
    produced_in: float,
    workers: int,
    threads: int,
) -> dict[str, Any]:
    """Count every message in and out."""
    rows = outbox_rows(db_url)
    states: dict[str, int] = {}
    for row in rows:
        states[row.state] = states.get(row.state, 0) + 1
    uploads = {r.id: orjson.loads(r.payload) for r in rows if r.destination == "cpis"}
    notes_ = {r.id: orjson.loads(r.payload) for r in rows if r.destination.startswith("sub")}
    cpis = rx.cpis_state()
    processed: list[str] = cpis["upload_message_ids"]
    accepted: dict[str, int] = rx.accepted()["accepted"]
    lost_cpis = sorted(set(uploads) - set(processed))
    lost_notes = sorted(set(notes_) - set(accepted))
    unknown = (set(processed) - set(uploads)) | (set(accepted) - set(notes_))
    # Duplicates after de-duplication by message id: one change under two ids, or one CP-IS
    # message id processed twice.
    changes_cpis = {(p["resource"], p["version"]) for p in uploads.values()}
    changes_notes = {(p["subscription"], p["type"], p["id"], p["version"]) for p in notes_.values()}
    duplicated = (
        (len(uploads) - len(changes_cpis))
        + (len(notes_) - len(changes_notes))
        + (len(processed) - len(set(processed)))
    )
    delivered = states.get("delivered", 0)
    return {
        "database": kind,
        "workers": workers,
        "threads_per_worker": threads,
        "messages": len(rows),
        "cpis_uploads": len(uploads),
        "notifications": len(notes_),
        "states": states,
        "lost": len(lost_cpis) + len(lost_notes),
        "duplicated_after_dedup": duplicated,
        "unknown_at_receivers": len(unknown),
        "dead_letters": states.get("failed", 0),
        "repeats_deduplicated": {
            "cpis": cpis["uploads_repeated"],
            "subscriber": sum(accepted.values()) - len(accepted),
        },
        "max_attempts_used": max((r.attempts for r in rows), default=0),
        "faults_injected": dict(sorted(chaos.counts.items())),
        "workers_killed": pool.killed,
        "seconds": round(elapsed, 1),
        "queued_in_seconds": round(produced_in, 1),
        "msg_per_s": round(delivered / elapsed, 1) if elapsed else None,
    }


def show(result: dict[str, Any]) -> None:
    print(
        f"{result['database']:>8}: {result['messages']} messages "
        f"({result['cpis_uploads']} CP-IS uploads, {result['notifications']} notifications), "
        f"{result['workers']} worker process(es) x {result['threads_per_worker']} threads"
    )
    print(
        f"          lost {result['lost']}, duplicated after de-duplication "
        f"{result['duplicated_after_dedup']}, dead letters {result['dead_letters']}, "
        f"unknown at receivers {result['unknown_at_receivers']}"
    )
    print(
        f"          repeats de-duplicated by message id: {result['repeats_deduplicated']}; "
        f"workers killed {result['workers_killed']}; max attempts used "
        f"{result['max_attempts_used']}"
    )
    print(f"          faults injected: {result['faults_injected']}")
    print(
        f"          {result['seconds']} s ({result['msg_per_s']} msg/s delivered through the "
        f"faults; queued in {result['queued_in_seconds']} s)",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the soak; return non-zero on loss, duplicates, dead letters or a run that stalls."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.outbox_soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="2,000 messages")
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--messages", type=int, default=None, help="at least (default 10000)")
    parser.add_argument("--workers", type=int, default=3, help="worker processes on PostgreSQL")
    parser.add_argument("--threads", type=int, default=4, help="delivery loops per worker")
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--max-seconds", type=float, default=900.0, help="bound per database")
    parser.add_argument("--seed", type=int, default=20261127)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("WRAPAROUND_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="admin URL used to create the scratch database",
    )
    parser.add_argument("--postgres-db", default="wraparound_bench_outbox_soak")
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so worker processes are stopped and scratch data dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    messages = args.messages or (2000 if args.quick else 10_000)
    kinds = ("postgres", "sqlite") if args.db == "both" else (args.db,)
    results: list[dict[str, Any]] = []
    status = 0
    for kind in kinds:
        work = Path(tempfile.mkdtemp(prefix=f"wraparound-soak-{kind}-"))
        scratch = None
        try:
            if kind == "postgres":
                scratch = PostgresScratch(args.postgres_url, args.postgres_db)
                db_url = scratch.create()
                workers = args.workers
            else:
                db_url = f"sqlite:///{work / 'soak.sqlite'}"
                workers = 1  # one writer at a time on SQLite
            result = soak(
                kind,
                db_url,
                messages=messages,
                workers=workers,
                threads=args.threads,
                batch=args.batch,
                max_seconds=args.max_seconds,
                seed=args.seed,
                work=work,
            )
        except Exception as exc:  # noqa: BLE001 - reported, and the run fails
            print(f"{kind:>8}: failed: {type(exc).__name__}: {exc}", flush=True)
            results.append({"database": kind, "error": f"{type(exc).__name__}: {exc}"})
            status = 1
            continue
        finally:
            if scratch is not None:
                with contextlib.suppress(Exception):
                    scratch.drop()
            shutil.rmtree(work, ignore_errors=True)
        show(result)
        results.append(result)
        if (
            result["lost"]
            or result["duplicated_after_dedup"]
            or result["dead_letters"]
            or result["unknown_at_receivers"]
            or result["messages"] < messages
        ):
            status = 1
    write_results("outbox_soak", {"machine": machine_info(), "results": results})
    return status


if __name__ == "__main__":
    sys.exit(main())
