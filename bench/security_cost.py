"""The cost of the security layer: FHIR read throughput with authentication and audit on vs off.

    python -m bench.security_cost [--quick] [--db sqlite|postgres|both]

For each database (a temporary SQLite file; a scratch PostgreSQL database created and dropped):

1. seed synthetic children through the store API, as `bench/fhir_throughput.py` does;
2. mint a development token (`TokenService.dev_token`, agency social-care, `system/*.cruds`) on
   that database, afresh for each round (tokens are short-lived);
3. start two servers as subprocesses from the same `create_app`, under the same gunicorn
   settings (`gateway.cli.serve.gunicorn_options` + `run_wsgi`), with the same environment
   (rate limiting off: `WRAPAROUND_RATE_LIMIT_PER_MINUTE=0`):
   - "on": the gateway as `wraparound serve` builds it; every request checks the bearer token,
     goes through scopes and the agency policy, is audited (an AuditEvent per read, queued and
     group-committed) and gets the security headers;
   - "off": the same app with the security layer taken out (`bench.servers.remove_security`):
     the three hooks and the security-headers middleware `gateway.security.http.install`
     registers are dropped and every request
     runs as `Caller.internal("social-care")`, so no token check, no policy or label filtering,
     no audit, no security headers;
4. before measuring, check that the two servers differ as intended (on: 401 without a token,
   200 with it and the security headers; off: 200 without a token, no security headers);
5. run `GET /fhir/Patient/{id}` (random seeded ids; the same token header sent to both) against
   on and off in turn, the order alternating each round (AB BA AB ...), and report the medians:
   throughput, p50/p95 latency and server CPU per request. Every response must be a 200 with
   the stored bytes; a run with any error is failed;
6. after each "on" run, wait until the audit writer has stored an AuditEvent for every /fhir
   request the server logged (its request log), so that audit work left over from an "on" run
   never lands in the next "off" run; the backlog at the end of the run and the time it took
   to store are reported, and the server CPU per request of each run includes that drain;
7. after the last round, check the AuditEvent rows in `resources`: exactly one per /fhir request
   the "on" server logged (so the "off" server wrote none and the "on" server audited every
   read), none lost by the audit writer, and a random sample of them reads of seeded Patients
   by the token's client. Without that the comparison would mean nothing.

cost = 1 - median(on req/s) / median(off req/s); target: at most 15%. Audit work still queued
when the clients stop is not in the "on" throughput, so with a backlog the throughput cost
understates what the layer costs under sustained load. The CPU cost, 1 - cpu(off) / cpu(on)
per request (drain included), is disturbed much less by other load on a shared machine (it
leaves out the database server's own CPU, which matters for PostgreSQL).
"""
from __future__ import annotations

import argparse
import dataclasses
import http.client
import json
import os
import random
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import loadgen
from bench.common import (
    DEFAULT_POSTGRES_URL,
    BenchError,
    PostgresScratch,
    ServerProcess,
    machine_info,
    write_results,
)
from bench.fhir_throughput import SERVER_ENV, STATISTICS, Access, seed
from bench.synthetic import children

NAME = "security_cost"
COST_TARGET = 0.15
AGENCY = "social-care"
SETTLE_SECONDS = 0.3  # pause after an "off" run (an "on" run waits for its audit writer instead)
LOG_LAG = 0.2  # time for a server's background log thread to write its last request lines
AUDIT_DRAIN_TIMEOUT = 120.0
SIDES = {"gateway": "on", "unsecured": "off"}
ON_DOES = ("gateway.create_app() as `wraparound serve` builds it, bearer token (development "
           "token, social-care, system/*.cruds) on every request: token verification, scopes, "
           "agency policy and label check, an AuditEvent per read (group-committed), security "
           "headers; rate limiting off")
OFF_DOES = ("the same create_app() with the security layer removed: the before/after/teardown "
            "hooks and the SecurityHeaders middleware gateway.security.http.install registers "
            "are dropped and each request runs as "
            "Caller.internal('social-care') (no token check, no scope/policy/label filtering, no "
            "audit, no security headers)")
SECURITY_HEADER = "X-Content-Type-Options"
_LOGGED_FHIR = re.compile(rb" [A-Z]+ /fhir/\S* (\d{3}) ")
_WRITER_FAILED = re.compile(rb"could not store (\d+) audit events")
_EXCEPTION_LINE = re.compile(rb"^[A-Za-z_][\w.]*(Error|Exception|Locked)\b.*")


@dataclass(frozen=True)
class Options:
    """What one run of the benchmark does."""

    patients: int
    rounds: int
    warmup: float
    duration: float
    clients: int
    workers: int
    threads: int


DEFAULT = Options(patients=10_000, rounds=8, warmup=0.5, duration=2.5, clients=4, workers=2,
                  threads=4)
QUICK = Options(patients=1_000, rounds=2, warmup=0.3, duration=1.0, clients=4, workers=2,
                threads=4)


class FullAccess(Access):
    """A development token for social-care with every scope, minted on the benchmark database."""

    AGENCY = AGENCY
    SCOPES = ("system/*.cruds",)


# -- checks ---------------------------------------------------------------------------------------
def _get(port: int, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Accept": "application/fhir+json", **headers})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def check_sides(on: ServerProcess, off: ServerProcess, reads: list[tuple[str, bytes]],
                headers: dict[str, str]) -> None:
    """Check that "on" enforces and hardens and "off" does neither, both with the right bytes."""
    status, _, _ = _get(on.port, reads[0][0], {})
    if status != 401:
        raise BenchError(f"the 'on' server answered {status}, not 401, to a read without a token")
    for port, side, sent, hardened in ((on.port, "on", headers, True),
                                       (off.port, "off", headers, False),
                                       (off.port, "off", {}, False)):
        for path, body in reads[:3]:
            status, got_headers, got = _get(port, path, sent)
            if status != 200 or got != body:
                raise BenchError(f"the '{side}' server did not return the stored bytes "
                                 f"(status {status}, {'with' if sent else 'without'} a token)")
            if (SECURITY_HEADER.lower() in got_headers) != hardened:
                raise BenchError(f"the '{side}' server {'omits' if hardened else 'sends'} the "
                                 f"security headers")


class ServerLog:
    """Follows a server's log: /fhir requests it answered, audit events its writer lost."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.by_status: dict[str, int] = {}
        self.lost = 0
        self.writer_errors: list[str] = []
        self._after_failure = False

    @property
    def requests(self) -> int:
        """Return the /fhir requests logged so far."""
        return sum(self.by_status.values())

    def update(self) -> int:
        """Read what was logged since the last call (whole lines only); return `requests`."""
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            chunk = fh.read()
        end = chunk.rfind(b"\n") + 1
        self.offset += end
        for line in chunk[:end].splitlines():
            match = _LOGGED_FHIR.search(line)
            if match:
                status = match.group(1).decode("ascii")
                self.by_status[status] = self.by_status.get(status, 0) + 1
                continue
            failed = _WRITER_FAILED.search(line)
            if failed:
                self.lost += int(failed.group(1))
                self._after_failure = True
            elif self._after_failure and _EXCEPTION_LINE.match(line):
                text = line.decode("utf-8", "replace").strip()[:200]
                if text not in self.writer_errors and len(self.writer_errors) < 5:
                    self.writer_errors.append(text)
                self._after_failure = False
        return self.requests


class AuditCounter:
    """Counts the AuditEvent rows in the resources table of the benchmark database."""

    def __init__(self, database_url: str) -> None:
        from gateway.store import make_engine

        self.engine = make_engine(database_url)

    def count(self) -> int:
        """Return the number of AuditEvent rows."""
        from sqlalchemy import func, select

        from gateway.store.schema import resources

        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(resources)
                                    .where(resources.c.res_type == "AuditEvent")).scalar_one())

    def sample(self, size: int, seed_: int) -> list[dict[str, Any]]:
        """Return up to `size` AuditEvents picked at random."""
        from sqlalchemy import select

        from gateway.store.schema import resources

        res = resources.c
        with self.engine.connect() as conn:
            all_ids = conn.execute(select(res.res_id).where(res.res_type == "AuditEvent")
                                   ).scalars().all()
            chosen = random.Random(seed_).sample(sorted(all_ids), min(size, len(all_ids)))
            rows = conn.execute(select(res.content).where(res.res_type == "AuditEvent",
                                                          res.res_id.in_(chosen))).scalars()
            return [json.loads(content) for content in rows]

    def close(self) -> None:
        """Release the engine."""
        self.engine.dispose()


def wait_for_audit(audit: AuditCounter, log: ServerLog, timeout: float) -> tuple[int, int, float]:
    """Wait until every /fhir request the "on" server logged has its AuditEvent stored.

    Returns (audit events, logged requests, seconds waited); on timeout the two counts differ.
    """
    started = time.monotonic()
    while True:
        events, logged = audit.count(), log.update()
        waited = time.monotonic() - started
        if events >= logged or waited >= timeout:
            return events, logged, waited
        time.sleep(0.1)


@dataclass
class Measured:
    """One run of the load generator, with what the benchmark observed around it."""

    result: loadgen.RunResult
    answered: int  # /fhir requests the server logged during the run (warm-up included)
    cpu_ms_per_request: float | None  # server CPU per answered request, audit drain included
    backlog: int = 0  # "on": reads answered but not yet audited when the clients stopped
    drain_s: float = 0.0  # "on": seconds until the audit writer had stored them all

    def to_json(self) -> dict[str, Any]:
        """Return the run as plain data."""
        cpu = None if self.cpu_ms_per_request is None else round(self.cpu_ms_per_request, 4)
        return {**self.result.to_json(), "answered": self.answered,
                "server_cpu_ms_per_request_with_audit_drain": cpu,
                "audit_backlog_at_end": self.backlog, "audit_drain_seconds": round(self.drain_s, 2)}


def audit_sample_problems(sample: list[dict[str, Any]], patient_ids: set[str]) -> int:
    """Return how many sampled events are not a successful read of a seeded Patient by the
    benchmark's client (the one read sent without a token while checking is let through)."""
    bad = 0
    for event in sample:
        if event.get("outcome") != "0" and event.get("outcomeDesc") == "HTTP 401":
            continue
        refs = [e.get("what", {}).get("reference", "") for e in event.get("entity", [])]
        patients = [r.split("/", 1)[1] for r in refs if r.startswith("Patient/")]
        subtype = [c.get("code") for c in event.get("subtype", [])]
        who = event.get("agent", [{}])[0].get("who", {}).get("identifier", {}).get("value")
        if subtype != ["read"] or who != f"dev:{AGENCY}" or len(patients) != 1 \
                or patients[0] not in patient_ids:
            bad += 1
    return bad


# -- one database ---------------------------------------------------------------------------------
def run_database(db: str, database_url: str, opts: Options, tmp: Path,
                 log: Callable[[str], None]) -> dict[str, Any]:
    """Seed one database, start both servers, run the rounds, check the audit; return results."""
    kids = children(opts.patients)
    t0 = time.monotonic()
    contents = seed(database_url, kids)
    seeded_s = time.monotonic() - t0
    log(f"[{db}] seeded {len(contents):,} Patients in {seeded_s:.1f}s")
    if len(contents) != len(kids):
        raise BenchError(f"seeding stored {len(contents)} of {len(kids)} Patients")

    env = {**os.environ, **SERVER_ENV, "WRAPAROUND_DATABASE_URL": database_url,
           "WRAPAROUND_DATA_DIR": str(tmp / "data")}
    env.pop("WRAPAROUND_BASE_URL", None)
    sizing = ["--workers", str(opts.workers), "--threads", str(opts.threads)]
    on = ServerProcess("gateway", sizing, env, tmp / f"{db}-on.log")
    off = ServerProcess("unsecured", [*sizing, "--agency", AGENCY], env, tmp / f"{db}-off.log")
    logs = {"on": ServerLog(on.log_path), "off": ServerLog(off.log_path)}
    access = FullAccess(database_url)
    if not access.enabled:
        raise BenchError("the gateway has no token service: there is no security layer to cost")
    audit = AuditCounter(database_url)
    runs: dict[str, list[Measured]] = {"on": [], "off": []}
    audit_ok = True
    try:
        on.start()
        off.start()
        reads = [(f"/fhir/Patient/{rid}", body) for rid, body in contents.items()]
        check_sides(on, off, reads, access.headers())
        wait_for_audit(audit, logs["on"], AUDIT_DRAIN_TIMEOUT)
        workload = loadgen.Workload("read", reads)
        for rnd in range(opts.rounds):
            headers = access.headers()
            for server in ((on, off) if rnd % 2 == 0 else (off, on)):
                side = SIDES[server.kind]
                server_log = logs[side]
                cpu0, logged0, events0 = server.cpu_seconds(), server_log.update(), audit.count()
                result = loadgen.run(server.port, workload, clients=opts.clients,
                                     warmup=opts.warmup, duration=opts.duration, seed=rnd,
                                     headers=headers, server_cpu=server.cpu_seconds)
                backlog, drain = 0, 0.0
                if side == "on":
                    time.sleep(LOG_LAG)  # the request log is written by a background thread
                    backlog = max(0, server_log.update() - audit.count())
                    events, logged, drain = wait_for_audit(audit, server_log, AUDIT_DRAIN_TIMEOUT)
                    if events != logged:
                        audit_ok = False
                        log(f"[{db}] the 'on' server answered {logged:,} /fhir requests but "
                            f"only {events:,} AuditEvents were stored {drain:.0f}s later")
                else:
                    time.sleep(SETTLE_SECONDS)
                    if audit.count() != events0:
                        audit_ok = False
                        log(f"[{db}] AuditEvents were stored while only the 'off' server ran")
                cpu1, logged1 = server.cpu_seconds(), server_log.update()
                answered = logged1 - logged0
                cpu_ms = ((cpu1 - cpu0) * 1000 / answered
                          if cpu0 is not None and cpu1 is not None and answered else None)
                runs[side].append(Measured(result, answered, cpu_ms, backlog, drain))
                log(f"[{db}] round {rnd + 1} {side:<3} {result.throughput:8.1f} req/s  "
                    f"p50 {result.p50_ms:6.2f} ms  p95 {result.p95_ms:6.2f} ms  "
                    f"{loadgen.cpu_text(cpu_ms)}  errors {result.errors}"
                    + (f"  audit backlog {backlog:,}, stored {drain:.1f}s after"
                       if side == "on" else ""))
        events = audit.count()
        logs["on"].update()
        logs["off"].update()
        bad = audit_sample_problems(audit.sample(500, 11), set(contents))
    finally:
        on.stop()
        off.stop()
        audit.close()
    measured_on = sum(m.result.requests for m in runs["on"])
    checks = {
        "audit_events": events,
        "on_logged_fhir_requests": logs["on"].by_status,
        "off_logged_fhir_requests": logs["off"].by_status,
        "on_measured_requests": measured_on,
        "audit_events_the_writer_failed_to_store": logs["on"].lost,
        "audit_writer_errors": logs["on"].writer_errors,
        "sampled": min(500, events),
        "sampled_not_a_patient_read_by_the_client": bad,
    }
    checks["ok"] = (audit_ok and events == logs["on"].requests and events >= measured_on
                    and bad == 0 and not logs["on"].lost)
    log(f"[{db}] {events:,} AuditEvents stored; the 'on' server logged "
        f"{logs['on'].requests:,} /fhir requests, the 'off' server {logs['off'].requests:,}"
        f"{'' if checks['ok'] else ' (AUDIT CHECK FAILED)'}")
    if logs["on"].lost:
        log(f"[{db}] the 'on' server's audit writer could not store {logs['on'].lost:,} events: "
            f"{'; '.join(logs['on'].writer_errors) or 'no exception line found'}")
    return {"database": db, "patients": len(contents), "seed_seconds": round(seeded_s, 1),
            "statistics": STATISTICS[db], "read": summarise(runs), "audit": checks}


def summarise(runs: dict[str, list[Measured]]) -> dict[str, Any]:
    """Return medians per side, the cost of the security layer and its spread over rounds."""
    out: dict[str, Any] = {"request": "GET /fhir/Patient/{id}"}
    for side, measured in runs.items():
        results = [m.result for m in measured]
        out[side] = {
            "median_rps": round(loadgen.median([r.throughput for r in results]), 1),
            "median_p50_ms": round(loadgen.median([r.p50_ms for r in results]), 3),
            "median_p95_ms": round(loadgen.median([r.p95_ms for r in results]), 3),
            "median_cpu_ms_per_request": loadgen.median_or_none([m.cpu_ms_per_request
                                                          for m in measured]),
            "errors": sum(r.errors for r in results),
            "runs": [m.to_json() for m in measured],
        }
    out["on"]["median_audit_backlog_at_end"] = loadgen.median([m.backlog for m in runs["on"]])
    out["on"]["median_audit_drain_seconds"] = round(loadgen.median([m.drain_s
                                                                    for m in runs["on"]]), 2)
    out["on"]["max_audit_drain_seconds"] = round(max((m.drain_s for m in runs["on"]),
                                                     default=0.0), 2)
    on_rps, off_rps = out["on"]["median_rps"], out["off"]["median_rps"]
    cost = 1 - on_rps / off_rps if off_rps else float("nan")
    out["cost"] = round(cost, 3)
    paired = sorted(1 - a.result.throughput / b.result.throughput
                    for a, b in zip(runs["on"], runs["off"]) if b.result.throughput)
    out["paired_costs"] = [round(c, 3) for c in paired]
    on_cpu, off_cpu = out["on"]["median_cpu_ms_per_request"], out["off"]["median_cpu_ms_per_request"]
    out["cpu_cost"] = round(1 - off_cpu / on_cpu, 3) if on_cpu and off_cpu else None
    out["failed"] = bool(out["on"]["errors"] or out["off"]["errors"])
    out["target"] = COST_TARGET
    out["meets_target"] = (not out["failed"]) and cost <= COST_TARGET
    return out


# -- report ---------------------------------------------------------------------------------------
def print_table(results: dict[str, Any], opts: Options) -> None:
    """Print the results as a table, then what each side does."""
    print()
    print(f"Security layer cost, read by id: on vs off, same run, same gunicorn settings "
          f"(gthread, {opts.workers} workers x {opts.threads} threads); {opts.clients} keep-alive "
          f"clients; {opts.rounds} round(s) of {opts.duration:g}s each, interleaved; medians")
    header = (f"{'database':<9}{'on req/s':>9}{'off req/s':>10}{'cost':>7}{'(rounds)':>14}"
              f"{'on cpu':>8}{'off cpu':>8}{'cpu cost':>9}{'on p50/p95 ms':>16}"
              f"{'off p50/p95':>14}{'audit events':>13}{'backlog':>8}{'drain':>6}  status")
    print(header)
    print("-" * len(header))
    for db, data in results["databases"].items():
        if "error" in data:
            print(f"{db:<9}{data['error']}")
            continue
        s, audit = data["read"], data["audit"]
        on, off = s["on"], s["off"]
        if s["failed"]:
            status = f"FAILED ({on['errors']}+{off['errors']} errors)"
        elif not audit["ok"]:
            status = "FAILED (audit check)"
        else:
            status = f"target <={COST_TARGET:.0%} {'met' if s['meets_target'] else 'MISSED'}"
        paired = s["paired_costs"]
        spread = f"{paired[0]:+.0%}..{paired[-1]:+.0%}" if paired else "-"
        cpu = (f"{on['median_cpu_ms_per_request']:>8.2f}{off['median_cpu_ms_per_request']:>8.2f}"
               f"{s['cpu_cost']:>9.0%}" if s["cpu_cost"] is not None
               else f"{'n/a':>8}{'n/a':>8}{'n/a':>9}")
        print(f"{db:<9}{on['median_rps']:>9.1f}{off['median_rps']:>10.1f}{s['cost']:>7.1%}"
              f"{spread:>14}{cpu}{on['median_p50_ms']:>8.2f}/{on['median_p95_ms']:<7.2f}"
              f"{off['median_p50_ms']:>6.2f}/{off['median_p95_ms']:<7.2f}"
              f"{audit['audit_events']:>13,}{on['median_audit_backlog_at_end']:>8,.0f}"
              f"{on['median_audit_drain_seconds']:>5.1f}s  {status}")
    print("cost = 1 - median on req/s / median off req/s (the target applies to it); (rounds) = "
          "range of the per-round costs, on and off run back to back;")
    print("cpu = median CPU ms per request of the server's gunicorn processes, audit drain "
          "included (database server excluded); cpu cost = 1 - off cpu / on cpu, less disturbed "
          "by other load")
    print("audit events = AuditEvent rows after the run; the check requires one per /fhir "
          "request the 'on' server logged, and a sample to be reads of seeded Patients;")
    print("backlog = reads the 'on' server had answered but not yet audited when the clients "
          "stopped; drain = seconds until they were all stored (median over rounds). The next "
          "run starts")
    print("after the drain, and on cpu includes it; on req/s does not, so with a backlog the "
          "throughput cost understates the sustained cost")
    print()
    print(f"on:  {ON_DOES}")
    print(f"off: {OFF_DOES}")
    for db, data in results["databases"].items():
        if "statistics" in data:
            print(f"{db}: {data['patients']:,} Patients seeded (no security labels or agency "
                  f"tags); {data['statistics']}")


# -- entry point ----------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.security_cost",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="short smoke-test run")
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--patients", type=int, help=f"children to seed (default "
                                                     f"{DEFAULT.patients})")
    parser.add_argument("--rounds", type=int, help=f"rounds (default {DEFAULT.rounds})")
    parser.add_argument("--duration", type=float,
                        help=f"seconds measured per run (default {DEFAULT.duration:g})")
    parser.add_argument("--warmup", type=float,
                        help=f"seconds of warm-up per run (default {DEFAULT.warmup:g})")
    parser.add_argument("--clients", type=int,
                        help=f"concurrent client processes (default {DEFAULT.clients})")
    parser.add_argument("--workers", type=int,
                        help=f"gunicorn workers, both servers (default {DEFAULT.workers})")
    parser.add_argument("--threads", type=int,
                        help=f"threads per worker, both servers (default {DEFAULT.threads})")
    parser.add_argument("--postgres-url", default=None,
                        help=f"admin URL used to create the scratch database "
                             f"(default WRAPAROUND_BENCH_POSTGRES_URL or {DEFAULT_POSTGRES_URL})")
    parser.add_argument("--postgres-db", default="wraparound_bench_security",
                        help="name of the scratch database (dropped at the end)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return 0, or 1 when a run failed or a database could not be used."""
    args = parse_args(argv)
    base = QUICK if args.quick else DEFAULT
    overrides = {name: getattr(args, name) for name in ("patients", "rounds", "duration", "warmup",
                                                         "clients", "workers", "threads")
                 if getattr(args, name) is not None}
    opts = dataclasses.replace(base, **overrides)

    def log(msg: str) -> None:
        print(msg, flush=True)

    started = time.monotonic()
    results: dict[str, Any] = {"benchmark": NAME, "machine": machine_info(),
                               "options": dataclasses.asdict(opts), "quick": args.quick,
                               "on_does": ON_DOES, "off_does": OFF_DOES, "target": COST_TARGET,
                               "databases": {}}
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    failed = False
    with tempfile.TemporaryDirectory(prefix="wraparound-bench-") as tmpdir:
        tmp = Path(tmpdir)
        for db in dbs:
            try:
                if db == "sqlite":
                    url = f"sqlite:///{tmp / 'bench.sqlite'}"
                    results["databases"][db] = run_database(db, url, opts, tmp, log)
                else:
                    admin = (args.postgres_url or os.environ.get("WRAPAROUND_BENCH_POSTGRES_URL")
                             or DEFAULT_POSTGRES_URL)
                    scratch = PostgresScratch(admin, args.postgres_db)
                    try:
                        url = scratch.create()
                        results["databases"][db] = run_database(db, url, opts, tmp, log)
                    finally:
                        try:
                            scratch.drop()
                        except Exception as exc:  # noqa: BLE001 - report it, keep the results
                            log(f"[{db}] could not drop {args.postgres_db}: {exc}")
            except Exception as exc:  # noqa: BLE001 - one database failing must not hide the other
                failed = True
                log(f"[{db}] benchmark could not run: {type(exc).__name__}: {exc}")
                results["databases"][db] = {"error": f"{type(exc).__name__}: {exc}"}
    for data in results["databases"].values():
        if "read" in data:
            failed = failed or data["read"]["failed"] or not data["audit"]["ok"]
    results["seconds"] = round(time.monotonic() - started, 1)
    print_table(results, opts)
    path = write_results(NAME, results)
    print(f"\nresults: {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}"
          f" ({results['seconds']:.0f}s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
