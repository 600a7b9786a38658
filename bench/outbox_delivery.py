"""Outbox delivery vs a direct connector call: throughput and added latency, in the same run.

- **Direct (baseline)**: the bench process sends CP-IS uploads one after another straight with
  the connector client (`deliver_cpis_upload`: the CP-IS client's `upload`, exactly the call a
  worker makes), to the mock national server running as `wraparound mocks serve` on a loopback
  port. Reported: calls per second and the latency of one call.
- **Outbox**: the same uploads queued in the outbox (one transaction) and delivered by a
  `wraparound worker` process to the same mock. CP-IS uploads of one local authority go one at a
  time, in order, so both sides are serial. Reported: messages per second from the commit to the
  last delivery, and the latency of one message queued into an idle outbox, from its commit to
  its settle (`created` → `delivered`, both stamped by the database side of the gateway).
- **Ratios**: outbox throughput / direct throughput, and added latency = outbox p50 − direct p50.
- The worker's idle poll (`wraparound worker --idle`) bounds how long a new message waits for
  an idle worker; each value in --idle is measured with its own worker process.

    python -m bench.outbox_delivery --db postgres --idle 0.25,0.05
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.common import (
    DEFAULT_POSTGRES_URL,
    ROOT,
    BenchError,
    PostgresScratch,
    free_port,
    machine_info,
    write_results,
)
from bench.outbox_soak import Workers, make_app, ordinary_children, worker_env


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@contextlib.contextmanager
def mock_process(work: Path) -> Any:
    """Run `wraparound mocks serve` on a free loopback port; yield its base URL."""
    port = free_port()
    log = (work / "mock.log").open("ab")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "mocks",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        import requests

        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError("the mock national server did not start")
            time.sleep(0.1)
        yield base
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        log.close()


def payload(nhs: str, i: int) -> dict[str, Any]:
    """One upload record, as the commit hook queues it for a child protection plan."""
    return {
        "resource": f"CarePlan/bench-{i}",
        "version": 1,
        "nhsNumber": nhs,
        "verified": True,
        "planType": "CPP",
        "start": "2026-01-05",
        "end": None,
        "deleted": False,
    }


def direct(app: Any, children: list[str], n: int) -> dict[str, Any]:
    """Send `n` uploads straight with the connector client; return rate and latencies."""
    from gateway.national.clients import NationalClients
    from gateway.outbox.delivery import DeliveryContext, deliver_cpis_upload
    from gateway.outbox.store import Claimed

    services = app.extensions["wraparound"]
    ctx = DeliveryContext(
        settings=services.settings,
        store=services.store,
        policy=services.policy,
        clients=NationalClients(services.settings),
    )
    latencies = []

    def one(i: int) -> None:
        message = Claimed(
            0,
            str(uuid.uuid4()),
            "cpis",
            "upload",
            "cpis:bench",
            payload(children[i % len(children)], i),
            1,
            1,
            "",
            None,
            None,
        )
        t0 = time.perf_counter()
        deliver_cpis_upload(message, ctx)  # raises unless CP-IS accepted the file and record
        latencies.append(time.perf_counter() - t0)

    for i in range(5):  # warm-up: WSDLs, connections
        one(i)
    latencies.clear()
    started = time.perf_counter()
    for i in range(n):
        one(i)
    elapsed = time.perf_counter() - started
    return {"per_s": n / elapsed, "latencies": latencies}


def _delivered(engine: sa.Engine, ids: list[str]) -> list[Any]:
    from gateway.store.schema import outbox_messages as m

    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(m.c.id, m.c.state, m.c.attempts, m.c.created, m.c.delivered).where(
                    m.c.id.in_(ids)
                )
            ).all()
        )


def _wait_delivered(
    engine: sa.Engine, ids: list[str], bound: float, pause: float = 0.005
) -> list[Any]:
    deadline = time.monotonic() + bound
    while True:
        rows = _delivered(engine, ids)
        if len(rows) == len(ids) and all(r.state == "delivered" for r in rows):
            return rows
        if any(r.state == "failed" for r in rows):
            raise BenchError("an upload was dead-lettered")
        if time.monotonic() > deadline:
            raise BenchError("the outbox did not deliver in time")
        time.sleep(pause)


def through_outbox(
    app: Any, db_url: str, children: list[str], n: int, samples: int, rng: random.Random
) -> dict[str, Any]:
    """Queue `n` uploads at once (throughput), then `samples` one at a time (latency)."""
    from gateway.outbox.store import Message, parse_timestamp

    outbox = app.extensions["wraparound.outbox"].outbox
    la = app.extensions["wraparound"].settings.la_ods_code
    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    try:

        def queue(count: int, offset: int) -> list[str]:
            return outbox.enqueue(
                [
                    Message(
                        "cpis",
                        "upload",
                        f"cpis:{la}",
                        payload(children[(offset + i) % len(children)], offset + i),
                    )
                    for i in range(count)
                ]
            )

        _wait_delivered(engine, queue(5, 0), 60)  # warm-up
        ids = queue(n, 10)
        rows = _wait_delivered(engine, ids, 600, pause=0.1)  # seldom: the worker needs the CPU
        # From the commit of the batch to the last delivery, as the database stamped them.
        elapsed = (
            max(parse_timestamp(r.delivered) for r in rows)
            - min(parse_timestamp(r.created) for r in rows)
        ).total_seconds()
        retried = sum(1 for r in rows if r.attempts != 1)
        latencies = []
        for i in range(samples):
            # A random pause: the message lands anywhere in the idle worker's poll cycle.
            time.sleep(rng.uniform(0.05, 0.35))
            (row,) = _wait_delivered(engine, queue(1, 10_000 + i), 60)
            latencies.append(
                (parse_timestamp(row.delivered) - parse_timestamp(row.created)).total_seconds()
            )
    finally:
        engine.dispose()
    return {"per_s": n / elapsed, "latencies": latencies, "retried": retried}


def run(
    kind: str, db_url: str, work: Path, *, n: int, samples: int, idles: list[float], seed: int
) -> dict[str, Any]:
    rng = random.Random(seed)
    children = ordinary_children()
    with mock_process(work) as national:
        app = make_app(db_url, work, national)
        try:
            baseline = [direct(app, children, n)]
            outboxes = {}
            for idle in idles:
                pool = Workers(
                    worker_env(db_url, work, national),
                    work,
                    threads=2,
                    batch=10,
                    extra_args=("--idle", str(idle)),
                )
                pool.start(1)
                try:
                    outboxes[idle] = through_outbox(app, db_url, children, n, samples, rng)
                finally:
                    pool.stop()
                baseline.append(direct(app, children, n))  # again: drift shows in the range
        finally:
            app.extensions["wraparound"].audit.flush()
            app.extensions["wraparound"].store.dispose()
    direct_rate = statistics.median(b["per_s"] for b in baseline)
    direct_lat = [x for b in baseline for x in b["latencies"]]
    d50 = statistics.median(direct_lat)
    result: dict[str, Any] = {
        "database": kind,
        "messages": n,
        "direct": {
            "per_s": round(direct_rate, 1),
            "per_s_range": [
                round(min(b["per_s"] for b in baseline), 1),
                round(max(b["per_s"] for b in baseline), 1),
            ],
            "p50_ms": round(d50 * 1000, 1),
            "p95_ms": round(_percentile(direct_lat, 0.95) * 1000, 1),
        },
        "outbox": {},
    }
    for idle, o in outboxes.items():
        o50 = statistics.median(o["latencies"])
        result["outbox"][str(idle)] = {
            "idle_s": idle,
            "per_s": round(o["per_s"], 1),
            "throughput_ratio": round(o["per_s"] / direct_rate, 2),
            "p50_ms": round(o50 * 1000, 1),
            "p95_ms": round(_percentile(o["latencies"], 0.95) * 1000, 1),
            "added_p50_ms": round((o50 - d50) * 1000, 1),
            "latency_ratio": round(o50 / d50, 2),
            "retried": o["retried"],
        }
    return result


def show(result: dict[str, Any]) -> None:
    d = result["direct"]
    print(
        f"{result['database']:>8}: direct connector call {d['per_s']} uploads/s "
        f"(range {d['per_s_range'][0]}-{d['per_s_range'][1]}), p50 {d['p50_ms']} ms, "
        f"p95 {d['p95_ms']} ms"
    )
    for o in result["outbox"].values():
        print(
            f"          outbox, idle poll {o['idle_s']} s: {o['per_s']} msg/s "
            f"(ratio {o['throughput_ratio']}), commit-to-delivered p50 {o['p50_ms']} ms, "
            f"p95 {o['p95_ms']} ms, added p50 {o['added_p50_ms']} ms "
            f"(latency ratio {o['latency_ratio']})",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    """Measure; return non-zero when a run failed."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.outbox_delivery",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="fewer messages and samples")
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--messages", type=int, default=None, help="per throughput run (300)")
    parser.add_argument("--samples", type=int, default=None, help="latency samples (60)")
    parser.add_argument(
        "--idle",
        default="0.25,0.1,0.05",
        help="comma-separated worker idle polls to measure, in seconds",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("WRAPAROUND_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
    )
    parser.add_argument("--postgres-db", default="wraparound_bench_outbox_delivery")
    args = parser.parse_args(argv)
    n = args.messages or (100 if args.quick else 300)
    samples = args.samples or (20 if args.quick else 60)
    idles = [float(x) for x in args.idle.split(",") if x.strip()]
    kinds = ("postgres", "sqlite") if args.db == "both" else (args.db,)
    results = []
    status = 0
    for kind in kinds:
        work = Path(tempfile.mkdtemp(prefix=f"wraparound-delivery-{kind}-"))
        scratch = None
        try:
            if kind == "postgres":
                scratch = PostgresScratch(args.postgres_url, args.postgres_db)
                db_url = scratch.create()
            else:
                db_url = f"sqlite:///{work / 'delivery.sqlite'}"
            result = run(kind, db_url, work, n=n, samples=samples, idles=idles, seed=args.seed)
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
    write_results("outbox_delivery", {"machine": machine_info(), "results": results})
    return status


if __name__ == "__main__":
    sys.exit(main())
