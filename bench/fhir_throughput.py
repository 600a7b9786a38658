"""FHIR read and search throughput of the gateway, as a ratio against a bare Flask baseline.

    python -m bench.fhir_throughput [--quick] [--db sqlite|postgres|both]

For each database (a temporary SQLite file; a scratch PostgreSQL database created and dropped):

1. seed synthetic children through the store API (`SqlResourceStore.write`, batches of 500);
2. start two servers as subprocesses under the same gunicorn settings
   (`gateway.cli.serve.gunicorn_options` + `run_wsgi`), each on a free loopback port: the gateway
   (`create_app`, as `wraparound serve` builds it) and the baseline described in
   `bench/servers.py` (bare Flask, one SQLAlchemy Core query on a `make_engine` engine, the same
   bytes);
3. for each scenario, run the load generator (`bench/loadgen.py`) against gateway and baseline in
   turn (ABBA...), several rounds, and report the median throughput of each, their ratio, the
   latency percentiles and the servers' CPU time per request. Every response must be a 200 with
   the expected bytes; a run with any error is reported as failed.

When the gateway has bearer-token security, the benchmark sends a development token (minted on
the gateway's database) to both servers, and turns rate limiting off for both.

Only ratios are comparable between runs: absolute figures depend on the (shared) machine.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
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
from urllib.parse import urlencode

from bench import loadgen
from bench.common import (
    DEFAULT_POSTGRES_URL,
    BenchError,
    PostgresScratch,
    ServerProcess,
    http_get,
    machine_info,
    write_results,
)
from bench.synthetic import Child, children
from vocab.systems import NHS_NUMBER

NAME = "fhir_throughput"
READ_TARGET = 0.7
SEED_BATCH = 500

BASELINE_DOES = {
    "read": ("bare Flask GET /fhir/Patient/<id>: SQLAlchemy Core SELECT content FROM resources "
             "WHERE res_type='Patient' AND res_id=:id (engine from gateway.store.make_engine, one "
             "connection per request as the engine's pool gives it), body = the content column"),
    "search": ("bare Flask GET /fhir/Patient?<query>: SQLAlchemy Core SELECT content FROM "
               "resources WHERE res_type='Patient' AND res_id IN (:ids on the gateway's page for "
               "that query), body = the bytes the gateway returned for that query, captured "
               "before the run"),
}
# Both servers get the same environment. Rate limiting is off: with it on, a throughput
# benchmark would measure the limiter.
SERVER_ENV = {"WRAPAROUND_ENV": "development", "WRAPAROUND_LOG_LEVEL": "INFO",
              "WRAPAROUND_RATE_LIMIT_PER_MINUTE": "0"}
STATISTICS = {
    "sqlite": "no ANALYZE after seeding (the gateway never runs ANALYZE or PRAGMA optimize)",
    "postgres": "ANALYZE after seeding (what autovacuum does shortly after a bulk load)",
}
GATEWAY_DOES = ("gateway.create_app() as `wraparound serve` builds it: everything it does per "
                "request (logging at INFO, security and audit when present, a read-only "
                "transaction, search parsing, index queries, Bundle rendering; a search with "
                "more than one page also stores a paging result set)")


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
    identifier_queries: int


DEFAULT = Options(patients=10_000, rounds=5, warmup=0.5, duration=2.5, clients=4, workers=2,
                  threads=4, identifier_queries=1000)
QUICK = Options(patients=1_000, rounds=1, warmup=0.3, duration=1.0, clients=4, workers=2,
                threads=4, identifier_queries=200)

# A searchset Bundle carries its own creation time and, when paged, a fresh result-set id: both
# change on every request, so bodies are compared with those two values blanked out.
_BUNDLE_TIME = re.compile(rb'^(\{"resourceType":"Bundle","type":"searchset","meta":'
                          rb'\{"lastUpdated":")[^"]*"')
_PAGES_ID = re.compile(rb"_getpages=[0-9A-Za-z-]+")


def normalise_searchset(body: bytes) -> bytes:
    """Return a searchset body with its per-request values (timestamp, paging set id) blanked."""
    return _PAGES_ID.sub(b"_getpages=*", _BUNDLE_TIME.sub(rb'\1*"', body, count=1))


# -- set-up ---------------------------------------------------------------------------------------
class Access:
    """Request headers that authorise the benchmark's reads, when the gateway asks for any.

    When the gateway has bearer-token security, a development token for an agency that may read
    every Patient is minted on the gateway's own database, afresh for each run (tokens are
    short-lived). The baseline gets the same headers, so both receive identical requests.
    """

    AGENCY = "social-care"
    SCOPES = ("system/Patient.rs",)

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        try:
            self.enabled = importlib.util.find_spec("gateway.security.tokens") is not None
        except ImportError:
            self.enabled = False

    def headers(self) -> dict[str, str]:
        """Return fresh headers (an Authorization header when the gateway needs one)."""
        if not self.enabled:
            return {}
        from gateway.config import load_settings
        from gateway.security.tokens import TokenService
        from gateway.store import make_engine

        settings = load_settings({**os.environ, **SERVER_ENV,
                                  "WRAPAROUND_DATABASE_URL": self.database_url})
        engine = make_engine(self.database_url)
        try:
            token = TokenService(engine, settings).dev_token(self.AGENCY, list(self.SCOPES))
        finally:
            engine.dispose()
        return {"Authorization": f"Bearer {token}"}


def seed(database_url: str, kids: list[Child]) -> dict[str, bytes]:
    """Create the schema, store the children through the store API, return id -> stored bytes."""
    from sqlalchemy import select

    from gateway.fhir.registry import load_registry
    from gateway.store import SqlResourceStore, make_engine, upgrade
    from gateway.store.schema import resources

    engine = make_engine(database_url)
    try:
        upgrade(engine)
        store = SqlResourceStore(engine, load_registry())
        for start in range(0, len(kids), SEED_BATCH):
            batch = kids[start : start + SEED_BATCH]
            store.write(lambda tx, batch=batch: [  # type: ignore[misc]
                tx.put("Patient", kid.res_id, kid.resource, previous=None, method="POST")
                for kid in batch])
        with engine.connect() as conn:
            rows = conn.execute(select(resources.c.res_id, resources.c.content)
                                .where(resources.c.res_type == "Patient")).all()
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("ANALYZE")
    finally:
        engine.dispose()
    return {rid: content.encode("utf-8") for rid, content in rows}


@dataclass
class SearchCapture:
    """What the gateway answered for a set of searches: the workload and the baseline fixture."""

    workload: list[tuple[str, bytes]]
    fixture: dict[str, dict[str, Any]]
    matches: list[int]  # total matches per query
    paged: int  # how many queries had more than one page


def capture_searches(port: int, queries: list[dict[str, str]],
                     check: Callable[[dict[str, str], dict[str, Any]], str | None],
                     headers: dict[str, str]) -> SearchCapture:
    """Ask the gateway each query once; keep its bytes and page ids for the baseline."""
    workload: list[tuple[str, bytes]] = []
    fixture: dict[str, dict[str, Any]] = {}
    matches: list[int] = []
    paged = 0
    for params in queries:
        qs = urlencode(params)
        status, body = http_get(port, f"/fhir/Patient?{qs}", headers=headers)
        if status != 200:
            raise BenchError(f"the gateway answered {status} to a search while capturing")
        bundle = json.loads(body)
        problem = check(params, bundle)
        if problem:
            raise BenchError(f"the gateway's answer to a search is wrong: {problem}")
        ids = [e["resource"]["id"] for e in bundle.get("entry", [])
               if e.get("search", {}).get("mode") == "match"]
        fixture[qs] = {"ids": ids, "body": body.decode("utf-8")}
        workload.append((f"/fhir/Patient?{qs}", normalise_searchset(body)))
        matches.append(int(bundle.get("total", 0)))
        paged += any(link.get("relation") == "next" for link in bundle.get("link", []))
    return SearchCapture(workload, fixture, matches, paged)


def _identifier_check(kids_by_nhs: dict[str, Child]) -> Callable[[dict[str, str], dict[str, Any]],
                                                                  str | None]:
    def check(params: dict[str, str], bundle: dict[str, Any]) -> str | None:
        nhs = params["identifier"].split("|", 1)[1]
        entries = bundle.get("entry", [])
        if bundle.get("total") != 1 or len(entries) != 1:
            return f"identifier search found {bundle.get('total')} children, not 1"
        if entries[0]["resource"]["id"] != kids_by_nhs[nhs].res_id:
            return "identifier search found the wrong child"
        return None
    return check


def _family_check(kids: list[Child]) -> Callable[[dict[str, str], dict[str, Any]], str | None]:
    def check(params: dict[str, str], bundle: dict[str, Any]) -> str | None:
        prefix = params["family"].lower()
        expected = sum(1 for k in kids if k.family.lower().startswith(prefix))
        if bundle.get("total") != expected:
            return f"family search total {bundle.get('total')}, expected {expected}"
        if len(bundle.get("entry", [])) != min(10, expected):
            return "family search page has the wrong number of entries"
        return None
    return check


# -- one database ---------------------------------------------------------------------------------
def run_database(db: str, database_url: str, opts: Options, tmp: Path,
                 log: Callable[[str], None]) -> dict[str, Any]:
    """Seed one database, start both servers, run every scenario; return the results."""
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
    gateway = ServerProcess("gateway", sizing, env, tmp / f"{db}-gateway.log")
    baseline: ServerProcess | None = None
    access = Access(database_url)
    try:
        gateway.start()
        headers = access.headers()
        rng = random.Random(7)
        sample = rng.sample(kids, min(opts.identifier_queries, len(kids)))
        ident = capture_searches(
            gateway.port, [{"identifier": f"{NHS_NUMBER}|{k.nhs_number}"} for k in sample],
            _identifier_check({k.nhs_number: k for k in kids}), headers)
        prefixes = sorted({k.family[:3].lower() for k in kids})
        family = capture_searches(gateway.port, [{"family": p, "_count": "10"} for p in prefixes],
                                  _family_check(kids), headers)
        fixture_path = tmp / f"{db}-search-fixture.json"
        fixture_path.write_text(json.dumps({**ident.fixture, **family.fixture}), encoding="utf-8")
        baseline = ServerProcess("baseline", [*sizing, "--fixture", str(fixture_path)], env,
                                 tmp / f"{db}-baseline.log")
        baseline.start()

        reads = [(f"/fhir/Patient/{rid}", body) for rid, body in contents.items()]
        for path, body in reads[:3]:
            for server in (gateway, baseline):
                status, got = http_get(server.port, path, headers=headers)
                if status != 200 or got != body:
                    raise BenchError(f"the {server.kind} did not return the stored bytes")
        scenarios: list[tuple[str, str, str, loadgen.Workload, dict[str, Any]]] = [
            ("read", "read by id", "GET /fhir/Patient/{id}",
             loadgen.Workload("read", reads), {}),
            ("search_identifier", "search identifier",
             "GET /fhir/Patient?identifier=<nhs-system>|<nhs>",
             loadgen.Workload("search_identifier", ident.workload, normalise_searchset),
             {"queries": len(ident.workload), "matches_per_query": 1}),
            ("search_family", "search family prefix",
             "GET /fhir/Patient?family=<3-letter prefix>&_count=10",
             loadgen.Workload("search_family", family.workload, normalise_searchset),
             {"queries": len(family.workload),
              "median_matches_per_query": loadgen.median(family.matches),
              "queries_with_more_than_one_page": family.paged}),
        ]
        out: dict[str, Any] = {"database": db, "patients": len(contents),
                               "seed_seconds": round(seeded_s, 1), "statistics": STATISTICS[db],
                               "scenarios": {}}
        for key, label, request, workload, extra in scenarios:
            out["scenarios"][key] = run_scenario(
                db, key, label, request, workload, extra, gateway, baseline, opts, access, log)
        return out
    finally:
        gateway.stop()
        if baseline is not None:
            baseline.stop()


def run_scenario(db: str, key: str, label: str, request: str, workload: loadgen.Workload,
                 extra: dict[str, Any], gateway: ServerProcess, baseline: ServerProcess,
                 opts: Options, access: Access, log: Callable[[str], None]) -> dict[str, Any]:
    """Run gateway and baseline alternately (ABBA...) for each round; return medians and ratios.

    The ratio is median(gateway) / median(baseline); the paired ratios (gateway / baseline
    within each round, the two runs next to each other in time) show how noisy the machine was.
    """
    runs: dict[str, list[loadgen.RunResult]] = {"gateway": [], "baseline": []}
    for rnd in range(opts.rounds):
        headers = access.headers()
        for server in ((gateway, baseline) if rnd % 2 == 0 else (baseline, gateway)):
            result = loadgen.run(server.port, workload, clients=opts.clients, warmup=opts.warmup,
                                 duration=opts.duration, seed=rnd, headers=headers,
                                 server_cpu=server.cpu_seconds)
            runs[server.kind].append(result)
            log(f"[{db}] {label:<22} round {rnd + 1} {server.kind:<8} "
                f"{result.throughput:8.1f} req/s  p50 {result.p50_ms:6.2f} ms  "
                f"p95 {result.p95_ms:6.2f} ms  {loadgen.cpu_text(result.cpu_ms_per_request)}  "
                f"errors {result.errors}")
    summary: dict[str, Any] = {"label": label, "request": request, **extra}
    for kind, results in runs.items():
        summary[kind] = {
            "median_rps": round(loadgen.median([r.throughput for r in results]), 1),
            "median_p50_ms": round(loadgen.median([r.p50_ms for r in results]), 3),
            "median_p95_ms": round(loadgen.median([r.p95_ms for r in results]), 3),
            "median_cpu_ms_per_request": loadgen.median_or_none(
                [r.cpu_ms_per_request for r in results]),
            "errors": sum(r.errors for r in results),
            "runs": [r.to_json() for r in results],
        }
    base = summary["baseline"]["median_rps"]
    ratio = summary["gateway"]["median_rps"] / base if base else float("nan")
    summary["ratio"] = round(ratio, 3)
    paired = sorted(g.throughput / b.throughput
                    for g, b in zip(runs["gateway"], runs["baseline"]) if b.throughput)
    summary["paired_ratios"] = [round(r, 3) for r in paired]
    gw_cpu = summary["gateway"]["median_cpu_ms_per_request"]
    base_cpu = summary["baseline"]["median_cpu_ms_per_request"]
    summary["cpu_ratio"] = round(base_cpu / gw_cpu, 3) if gw_cpu and base_cpu else None
    summary["baseline_does"] = BASELINE_DOES["read" if key == "read" else "search"]
    summary["failed"] = bool(summary["gateway"]["errors"] or summary["baseline"]["errors"])
    if key == "read":
        summary["target"] = READ_TARGET
        summary["meets_target"] = (not summary["failed"]) and ratio >= READ_TARGET
    return summary


# -- report ---------------------------------------------------------------------------------------
def print_table(results: dict[str, Any], opts: Options) -> None:
    """Print the results as a table, then what each side does."""
    print()
    print(f"FHIR throughput: gateway vs bare Flask baseline, same run, same gunicorn settings "
          f"(gthread, {opts.workers} workers x {opts.threads} threads); {opts.clients} keep-alive "
          f"clients; {opts.rounds} round(s) of {opts.duration:g}s each, interleaved; medians")
    header = (f"{'database':<9}{'scenario':<21}{'gw req/s':>9}{'base req/s':>11}{'ratio':>6}"
              f"{'(rounds)':>12}{'gw cpu':>8}{'base cpu':>9}{'cpu ratio':>10}"
              f"{'gw p50/p95 ms':>16}{'base p50/p95':>15}  status")
    print(header)
    print("-" * len(header))
    for db, data in results["databases"].items():
        if "error" in data:
            print(f"{db:<9}{data['error']}")
            continue
        for summary in data["scenarios"].values():
            gw, base = summary["gateway"], summary["baseline"]
            if summary["failed"]:
                status = f"FAILED ({gw['errors']}+{base['errors']} errors)"
            elif "meets_target" in summary:
                verdict = "met" if summary["meets_target"] else "MISSED"
                status = f"target >={summary['target']:g} {verdict}"
            else:
                status = "ok"
            paired = summary["paired_ratios"]
            spread = f"{paired[0]:.2f}-{paired[-1]:.2f}" if paired else "-"
            cpu = ((f"{gw['median_cpu_ms_per_request']:>8.2f}"
                    f"{base['median_cpu_ms_per_request']:>9.2f}{summary['cpu_ratio']:>10.2f}")
                   if summary["cpu_ratio"] is not None else f"{'n/a':>8}{'n/a':>9}{'n/a':>10}")
            print(f"{db:<9}{summary['label']:<21}{gw['median_rps']:>9.1f}"
                  f"{base['median_rps']:>11.1f}{summary['ratio']:>6.2f}{spread:>12}{cpu}"
                  f"{gw['median_p50_ms']:>8.2f}/{gw['median_p95_ms']:<7.2f}"
                  f"{base['median_p50_ms']:>7.2f}/{base['median_p95_ms']:<7.2f}  {status}")
    print("ratio = median gateway req/s / median baseline req/s (the target applies to it); "
          "(rounds) = range of the per-round ratios, gateway and baseline run back to back;")
    print("cpu = median CPU ms per request of the server's gunicorn processes (database server "
          "excluded); cpu ratio = baseline cpu / gateway cpu, less disturbed by other load")
    print()
    print(f"gateway:  {GATEWAY_DOES}")
    print(f"baseline (read):   {BASELINE_DOES['read']}")
    print(f"baseline (search): {BASELINE_DOES['search']}")
    for db, data in results["databases"].items():
        if "statistics" in data:
            print(f"{db}: {data['patients']:,} Patients seeded; {data['statistics']}")
        fam = data.get("scenarios", {}).get("search_family")
        if fam:
            print(f"{db}: family prefixes match a median of {fam['median_matches_per_query']:g} "
                  f"children; {fam['queries_with_more_than_one_page']} of {fam['queries']} "
                  f"queries have a next page (the gateway stores a paging result set for those)")


# -- entry point ----------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.fhir_throughput",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="short smoke-test run")
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--patients", type=int, help="children to seed (default 10000)")
    parser.add_argument("--rounds", type=int, help="rounds per scenario (default 3)")
    parser.add_argument("--duration", type=float, help="seconds measured per run (default 4)")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up per run (default 1)")
    parser.add_argument("--clients", type=int, help="concurrent client processes (default 4)")
    parser.add_argument("--workers", type=int, help="gunicorn workers, both servers (default 2)")
    parser.add_argument("--threads", type=int, help="threads per worker, both servers (default 4)")
    parser.add_argument("--postgres-url", default=None,
                        help=f"admin URL used to create the scratch database "
                             f"(default WRAPAROUND_BENCH_POSTGRES_URL or {DEFAULT_POSTGRES_URL})")
    parser.add_argument("--postgres-db", default="wraparound_bench",
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
                               "gateway_does": GATEWAY_DOES, "baseline_does": BASELINE_DOES,
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
        failed = failed or any(s["failed"] for s in data.get("scenarios", {}).values())
    results["seconds"] = round(time.monotonic() - started, 1)
    print_table(results, opts)
    path = write_results(NAME, results)
    print(f"\nresults: {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}"
          f" ({results['seconds']:.0f}s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
