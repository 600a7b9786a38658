"""Where the security layer's cost per read goes: CPU per request in one process, part by part.

Run: ``.venv/bin/python -m bench.security_breakdown [--db sqlite|postgres|both] [--quick]``.

`security_cost` measures the layer as a whole, between two gunicorn servers, as throughput; on a
shared machine that figure moves by several points from run to run. This benchmark answers the
question that guides work on it, which part costs what, with a measure that load elsewhere
disturbs much less: the CPU time of one process (every thread: request and audit writer) per
request, with requests sent straight to the WSGI app (no HTTP server or client).

- **Data**: synthetic children seeded as `security_cost` seeds them (2,000; `--quick` 500), on a
  fresh SQLite file or the scratch PostgreSQL database ``wraparound_bench_breakdown``.
- **Apps**: built as `bench.servers` builds them, in this process, with ``gc.freeze()`` after
  building as each gunicorn worker does: the gateway, and the gateway with its security layer
  removed (`bench.servers.remove_security`, the "off" server of `security_cost`).
- **Variants** of the gateway, made by replacing one method of its audit trail for the round:
  - ``hooks``: `AuditTrail.record` does nothing: token check, scopes, agency policy and labels,
    audit context, security headers; no AuditEvent;
  - ``queued``: the AuditEvent is built, prepared and queued, and the writer thread takes it,
    but `_store_prepared` stores nothing;
  - ``full``: the gateway as it runs (each round waits for the writer to store every event).
- **Load**: `GET /fhir/Patient/{id}` for random seeded ids, the variants and "off" in rotation
  for several rounds; every response must be a 200 with the stored body.
- **Reported**: median CPU µs per read of each, what each part adds (hooks; building and
  queueing the event; storing it) and the CPU cost of the whole layer, 1 - off / full. On
  PostgreSQL the database server's CPU is not in this process and not counted.
"""
from __future__ import annotations

import argparse
import gc
import io
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Self

from bench.common import DEFAULT_POSTGRES_URL, ROOT, PostgresScratch, machine_info, write_results

NAME = "security_breakdown"
SCRATCH_DB = "wraparound_bench_breakdown"
VARIANTS = ("off", "hooks", "queued", "full")
ENV = {"WRAPAROUND_ENV": "development", "WRAPAROUND_LOG_LEVEL": "WARNING",
       "WRAPAROUND_RATE_LIMIT_PER_MINUTE": "0"}


def _environ(path: str, authorization: str | None) -> dict[str, Any]:
    environ = {
        "REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "SCRIPT_NAME": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8080", "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(b""), "wsgi.errors": sys.stderr,
        "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False,
        "HTTP_HOST": "127.0.0.1:8080", "HTTP_ACCEPT": "application/fhir+json",
        "REMOTE_ADDR": "127.0.0.1",
    }
    if authorization:
        environ["HTTP_AUTHORIZATION"] = authorization
    return environ


class Variant:
    """One way of serving the reads: an app, its Authorization header, and what to patch."""

    def __init__(self, name: str, app: Any, authorization: str | None) -> None:
        self.name = name
        self.app = app
        self.authorization = authorization
        self.trail = app.extensions["wraparound"].audit if name != "off" else None

    def __enter__(self) -> Self:
        if self.name == "hooks":
            self.trail.record = lambda event: None  # type: ignore[union-attr]
        elif self.name == "queued":
            self.trail._store_prepared = lambda batch, ids: None  # type: ignore[union-attr]
        return self

    def __exit__(self, *exc: object) -> None:
        if self.trail is not None:
            self.trail.flush()
            for attr in ("record", "_store_prepared"):
                self.trail.__dict__.pop(attr, None)

    def serve(self, rid: str, expected: bytes) -> None:
        status: list[str] = []
        body = b"".join(self.app(_environ(f"/fhir/Patient/{rid}", self.authorization),
                                 lambda s, h, e=None: status.append(s)))
        if not status or not status[0].startswith("200") or body != expected:
            raise RuntimeError(f"{self.name}: GET Patient/{rid} answered {status[:1]}")


def measure(db: str, url: str, patients: int, rounds: int, requests: int) -> dict[str, Any]:
    """Seed, build the apps, run the rounds and return the medians for one database."""
    from bench.fhir_throughput import Access, seed
    from bench.servers import gateway_loader, remove_security
    from bench.synthetic import children

    os.environ.update({**ENV, "WRAPAROUND_DATABASE_URL": url})
    contents = seed(url, children(patients))  # creates the schema
    authorization = Access(url).headers().get("Authorization")
    on = gateway_loader()
    off = remove_security(gateway_loader(), "social-care")
    gc.collect()
    gc.freeze()  # as gateway.cli.serve.load_frozen does in each worker
    ids = sorted(contents)
    variants = [Variant(name, off if name == "off" else on,
                        None if name == "off" else authorization) for name in VARIANTS]
    rng = random.Random(7)
    for variant in variants:  # warm-up: caches, pooled connections, the writer thread
        with variant:
            for _ in range(300):
                rid = ids[rng.randrange(len(ids))]
                variant.serve(rid, contents[rid])
    cpu: dict[str, list[float]] = {v.name: [] for v in variants}
    for rnd in range(rounds):
        order = variants[rnd % len(variants):] + variants[:rnd % len(variants)]
        for variant in order:
            picks = [ids[rng.randrange(len(ids))] for _ in range(requests)]
            start = time.process_time()
            with variant:
                for rid in picks:
                    variant.serve(rid, contents[rid])
            cpu[variant.name].append((time.process_time() - start) * 1e6 / requests)
        print(f"  [{db}] round {rnd + 1}: " + "  ".join(
            f"{name} {values[-1]:6.0f}" for name, values in cpu.items()) + "  µs/read",
            flush=True)
    on.extensions["wraparound"].store.dispose()
    off.extensions["wraparound"].store.dispose()
    gc.unfreeze()
    med = {name: statistics.median(values) for name, values in cpu.items()}
    return {
        "db": db, "patients": len(contents), "rounds": rounds, "requests_per_round": requests,
        "cpu_us_per_read": {k: round(v, 1) for k, v in med.items()},
        "cpu_us_per_read_rounds": {k: [round(x, 1) for x in v] for k, v in cpu.items()},
        "added_us": {"hooks": round(med["hooks"] - med["off"], 1),
                     "event_built_and_queued": round(med["queued"] - med["hooks"], 1),
                     "event_stored": round(med["full"] - med["queued"], 1),
                     "whole_layer": round(med["full"] - med["off"], 1)},
        "cpu_cost": round(1 - med["off"] / med["full"], 4),
    }


def print_table(results: list[dict[str, Any]]) -> None:
    """Print one line per database."""
    print("\nSecurity layer, CPU per read in one process (all threads), medians; "
          "each part as it adds to the one before")
    print(f"{'db':10}{'off µs':>8}{'hooks':>8}{'+event':>8}{'+store':>8}{'full µs':>9}"
          f"{'cpu cost':>10}")
    for r in results:
        c, a = r["cpu_us_per_read"], r["added_us"]
        print(f"{r['db']:10}{c['off']:8.0f}{a['hooks']:+8.0f}{a['event_built_and_queued']:+8.0f}"
              f"{a['event_stored']:+8.0f}{c['full']:9.0f}{r['cpu_cost']:10.1%}")
    print("off: the security layer removed; hooks: token, scopes, policy, labels, audit context, "
          "headers (no event); +event: the AuditEvent built, prepared and queued, the writer "
          "taking it; +store: the writer storing it. PostgreSQL: its server's CPU is not counted.")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return non-zero when a database could not be used."""
    parser = argparse.ArgumentParser(prog="python -m bench.security_breakdown",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--quick", action="store_true", help="500 children, 3 short rounds")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (8)")
    parser.add_argument("--requests", type=int, default=None,
                        help="reads per variant per round (3000)")
    parser.add_argument("--postgres-url", default=os.environ.get(
        "WRAPAROUND_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level="WARNING")
    rounds = args.rounds or (3 if args.quick else 8)
    requests = args.requests or (500 if args.quick else 3000)
    patients = 500 if args.quick else 2000
    status = 0
    results: list[dict[str, Any]] = []
    for db in (["sqlite", "postgres"] if args.db == "both" else [args.db]):
        work = Path(tempfile.mkdtemp(prefix=f"bench-breakdown-{db}-"))
        os.environ["WRAPAROUND_DATA_DIR"] = str(work)
        scratch = PostgresScratch(args.postgres_url, SCRATCH_DB) if db == "postgres" else None
        try:
            url = scratch.create() if scratch else f"sqlite:///{work / 'bench.sqlite'}"
            results.append(measure(db, url, patients, rounds, requests))
        except Exception as exc:  # noqa: BLE001 - an unusable database fails this run only
            print(f"  {db}: failed: {type(exc).__name__}: {exc}", flush=True)
            status = 1
        finally:
            if scratch is not None:
                try:
                    scratch.drop()
                except Exception as exc:  # noqa: BLE001 - reported, the results stand
                    print(f"  {db}: could not drop {SCRATCH_DB}: {type(exc).__name__}", flush=True)
            shutil.rmtree(work, ignore_errors=True)
    print_table(results)
    path = write_results(NAME, {"machine": machine_info(), "results": results})
    print(f"\nwritten {path.relative_to(ROOT)}")
    return status


if __name__ == "__main__":
    sys.exit(main())
