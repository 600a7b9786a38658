"""A brokered child index search through the gateway vs a raw SOAP POST of the same envelope.

    python -m bench.national_index [--quick] [--rounds N] [--calls N] [--db sqlite|postgres|both]

- **Mock**: the mock national server (`wraparound mocks serve`) in its own process on a free
  loopback port; both sides talk to the same `/contactpoint` endpoint.
- **Brokered** (FHIR in, SOAP out and back): `GET /national/contactpoint/Patient?identifier=
  <child index id system>|<index id>` on the gateway, served by gunicorn as `wraparound serve`
  serves it (`bench.servers gateway`: gthread, 1 worker x 4 threads), with a development bearer
  token. The gateway checks the token, scopes and policy, parses the search, builds the
  `searchChildren` envelope with the child index connector (zeep, WS-Addressing, WS-Security),
  posts it, parses and checks the reply (a shielded child's location refused), answers a
  searchset Bundle of Patients and queues an AuditEvent naming each child returned.
- **Raw** (the baseline): `requests.Session().post` of the envelope the gateway's connector sends
  for the same search (captured with the connector's own transport, refreshed every four rounds
  so the WS-Security timestamp is current), same headers, then an lxml parse of the reply
  (entities, DTDs and network access off).
- **Connector** (for the breakdown, not the target): the same search with the connector called
  in the benchmark process, no gateway.
- **Load**: one client, sequential calls, the same HTTP library on every side; a warm-up, then
  many short rounds, each running every side once in a rotating order. Every answer is checked
  (one match, the child asked for); any error fails the run.
- **Reported**: `ratio` = the median over rounds of brokered/raw median latency (target <= 1.3),
  the range of per-round ratios, pooled medians and p95, `connector_ratio` (connector/raw), and
  CPU milliseconds per call (the gateway's processes for brokered; this process for raw and
  connector).

Results are printed and written to `bench/results/national_index.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import requests
from lxml import etree

from bench.common import (
    DEFAULT_POSTGRES_URL,
    ROOT,
    BenchError,
    PostgresScratch,
    ServerProcess,
    machine_info,
    write_results,
)
from bench.national_pds import DEFAULT, QUICK, SERVER_ENV, MockProcess, Options, Side

NAME = "national_index"
TARGET = 1.3
AGENCY, SCOPES = "social-care", ("system/Patient.s",)
INDEX_SYSTEM = "https://wraparound.example.org/fhir/Id/child-index-id"
CP = "urn:wraparound:contactpoint:1"
_SAFE = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def seeded_children(count: int) -> list[str]:
    """Return index ids of seeded children that are neither shielded nor archived."""
    data = json.loads((ROOT / "fixtures" / "national" / "contactpoint.json").read_text("utf-8"))
    ids = [c["index_id"] for c in data["children"] if not c["shielded"] and not c["archived"]]
    if len(ids) < count:
        raise BenchError("not enough seeded index children")
    return ids[:count]


def mint_token(database_url: str, env: dict[str, str]) -> str:
    """Migrate the benchmark database and mint a development search token on it."""
    from gateway.config import load_settings
    from gateway.security.tokens import TokenService
    from gateway.store import make_engine, upgrade

    settings = load_settings(env)
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        return TokenService(engine, settings).dev_token(AGENCY, list(SCOPES))
    finally:
        engine.dispose()


def accessor() -> Any:
    """Return the accessor the gateway sends for the benchmark's token (same element sizes)."""
    from connectors.contactpoint import IndexAccessor

    return IndexAccessor(
        user_id="dev-social-care",
        name="dev-social-care",
        role="social-care practitioner",
        organisation="Local authority children's services",
    )


def capture_envelopes(url: str, ids: list[str]) -> dict[str, tuple[bytes, dict[str, str]]]:
    """Return, per index id, the search envelope and headers the index connector sends."""
    from connectors.contactpoint import SearchQuery, build_contactpoint_client
    from connectors.soap import HardenedTransport, SoapSettings

    captured: dict[str, tuple[bytes, dict[str, str]]] = {}

    class Recording(HardenedTransport):
        """The connector's transport, keeping what it posts."""

        last: tuple[bytes, dict[str, str]] | None = None

        def post(self, address: str, message: bytes, headers: dict[str, str]) -> Any:
            self.last = (message, dict(headers))
            return super().post(address, message, headers)

    settings = SoapSettings(address=url)
    transport = Recording(
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        operation_timeout=settings.operation_timeout,
        max_response_bytes=settings.max_response_bytes,
    )
    client = build_contactpoint_client(settings, transport=transport)
    for index_id in ids:
        client.search(SearchQuery(index_id=index_id), accessor=accessor())
        assert transport.last is not None
        captured[index_id] = transport.last
    return captured


def brokered_call(session: requests.Session, url: str, index_id: str) -> None:
    """One FHIR search through the gateway; raise BenchError unless it found the child."""
    resp = session.get(url, params={"identifier": f"{INDEX_SYSTEM}|{index_id}"}, timeout=30)
    body = resp.json()
    if (
        resp.status_code != 200
        or body.get("total") != 1
        or body["entry"][0]["resource"]["id"] != index_id
    ):
        raise BenchError(f"brokered search answered {resp.status_code}")


def raw_call(
    session: requests.Session, url: str, envelope: tuple[bytes, dict[str, str]], index_id: str
) -> None:
    """One raw SOAP POST and an lxml parse; raise BenchError unless the child was found."""
    resp = session.post(url, data=envelope[0], headers=envelope[1], timeout=30)
    root = etree.fromstring(resp.content, _SAFE)
    found = root.findtext(f".//{{{CP}}}child/{{{CP}}}indexId")
    if resp.status_code != 200 or found != index_id:
        raise BenchError(f"raw post answered {resp.status_code}")


def run_database(db: str, url: str, opts: Options, tmp: Path, log: Any) -> dict[str, Any]:
    """Run the comparison with the gateway on one database."""
    from connectors.contactpoint import SearchQuery, build_contactpoint_client
    from connectors.soap import SoapSettings

    ids = seeded_children(opts.children)
    mock = MockProcess(tmp / f"mock-{db}.log")
    mock_url = mock.start()
    index_url = f"{mock_url}/contactpoint"
    env = {
        **os.environ,
        **SERVER_ENV,
        "WRAPAROUND_DATABASE_URL": url,
        "WRAPAROUND_DATA_DIR": str(tmp / "data"),
        "WRAPAROUND_NATIONAL_URL": mock_url,
    }
    for key in ("WRAPAROUND_BASE_URL", "WRAPAROUND_CONTACTPOINT_URL"):
        env.pop(key, None)
    gateway = ServerProcess(
        "gateway",
        ["--workers", str(opts.workers), "--threads", str(opts.threads)],
        env,
        tmp / f"gateway-{db}.log",
    )
    try:
        token = mint_token(url, env)
        gateway.start()
        search_url = f"http://127.0.0.1:{gateway.port}/national/contactpoint/Patient"
        fhir = requests.Session()
        fhir.headers.update({"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"})
        soap = requests.Session()
        envelopes = capture_envelopes(index_url, ids)
        index = build_contactpoint_client(SoapSettings(address=index_url))
        who = accessor()

        def one(name: str, index_id: str) -> None:
            if name == "brokered":
                brokered_call(fhir, search_url, index_id)
            elif name == "raw":
                raw_call(soap, index_url, envelopes[index_id], index_id)
            elif index.search(SearchQuery(index_id=index_id), accessor=who).total != 1:
                raise BenchError("connector search did not find the child")

        for i in range(opts.warmup):
            for name in ("brokered", "raw", "connector"):
                one(name, ids[i % len(ids)])
        sides = {"brokered": Side([], []), "raw": Side([], []), "connector": Side([], [])}
        ratios: list[float] = []
        connector_ratios: list[float] = []
        rotations = (
            ("brokered", "raw", "connector"),
            ("raw", "connector", "brokered"),
            ("connector", "brokered", "raw"),
            ("raw", "brokered", "connector"),
        )
        for round_no in range(opts.rounds):
            if round_no % 4 == 0:
                envelopes = capture_envelopes(index_url, ids)  # fresh WS-Security timestamps
            medians: dict[str, float] = {}
            for name in rotations[round_no % len(rotations)]:
                side = sides[name]
                lat: list[float] = []
                cpu0 = gateway.cpu_seconds() if name == "brokered" else time.process_time()
                for i in range(opts.calls):
                    index_id = ids[(round_no * opts.calls + i) % len(ids)]
                    start = time.perf_counter()
                    one(name, index_id)
                    lat.append(time.perf_counter() - start)
                cpu1 = gateway.cpu_seconds() if name == "brokered" else time.process_time()
                if cpu0 is not None and cpu1 is not None:
                    side.cpu_seconds += cpu1 - cpu0
                side.latencies.extend(lat)
                side.calls += len(lat)
                medians[name] = statistics.median(lat)
                side.round_medians.append(medians[name])
            ratios.append(medians["brokered"] / medians["raw"])
            connector_ratios.append(medians["connector"] / medians["raw"])
            log(
                f"[{db}] round {round_no + 1}/{opts.rounds}: brokered "
                f"{medians['brokered'] * 1000:.2f} ms, raw {medians['raw'] * 1000:.2f} ms, "
                f"connector {medians['connector'] * 1000:.2f} ms, ratio {ratios[-1]:.2f}"
            )
        summary = {name: side.summary() for name, side in sides.items()}
        b, r = summary["brokered"], summary["raw"]
        ratio = statistics.median(ratios)
        return {
            **summary,
            "ratio": round(ratio, 3),
            "round_ratios": [round(x, 3) for x in ratios],
            "pooled_ratio": round(b["median_ms"] / r["median_ms"], 3),
            "connector_ratio": round(statistics.median(connector_ratios), 3),
            "cpu_ratio": round(b["cpu_ms_per_call"] / r["cpu_ms_per_call"], 2)
            if r["cpu_ms_per_call"]
            else None,
            "target": TARGET,
            "meets_target": ratio <= TARGET,
            "failed": False,
        }
    finally:
        gateway.stop()
        mock.stop()


def print_table(results: dict[str, Any]) -> None:
    """Print the results."""
    print(
        f"\n{'db':<9}{'brokered ms':>12}{'raw ms':>9}{'connector ms':>14}{'ratio':>8}"
        f"{'rounds':>12}{'connector/raw':>15}{'cpu ms b/r':>14}"
    )
    for db, data in results["databases"].items():
        if "error" in data:
            print(f"{db:<9} error: {data['error']}")
            continue
        b, r, c = data["brokered"], data["raw"], data["connector"]
        rounds = f"{min(data['round_ratios']):.2f}-{max(data['round_ratios']):.2f}"
        print(
            f"{db:<9}{b['median_ms']:>12.2f}{r['median_ms']:>9.2f}{c['median_ms']:>14.2f}"
            f"{data['ratio']:>8.2f}{rounds:>12}{data['connector_ratio']:>15.2f}"
            f"{b['cpu_ms_per_call']:>7.2f}/{r['cpu_ms_per_call']:<6.2f}"
        )
    print(f"target: brokered/raw <= {TARGET} (median over rounds of the per-round ratio)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.national_index",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke-test run")
    parser.add_argument(
        "--db",
        choices=("sqlite", "postgres", "both"),
        default="sqlite",
        help="the gateway's database (it stores the audit trail; default sqlite)",
    )
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--calls", type=int, help="calls per side per round")
    parser.add_argument("--warmup", type=int)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--threads", type=int)
    parser.add_argument(
        "--postgres-url",
        default=None,
        help=f"admin URL (default WRAPAROUND_BENCH_POSTGRES_URL or {DEFAULT_POSTGRES_URL})",
    )
    parser.add_argument("--postgres-db", default="wraparound_bench_index")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return 0, or 1 when a run failed."""
    args = parse_args(argv)
    opts = QUICK if args.quick else DEFAULT
    opts = replace(
        opts,
        **{
            k: getattr(args, k)
            for k in ("rounds", "calls", "warmup", "workers", "threads")
            if getattr(args, k) is not None
        },
    )

    def log(msg: str) -> None:
        print(msg, flush=True)

    started = time.monotonic()
    results: dict[str, Any] = {
        "benchmark": NAME,
        "machine": machine_info(),
        "options": asdict(opts),
        "quick": args.quick,
        "server": "gunicorn (gateway.cli.serve options), gthread",
        "databases": {},
    }
    failed = False
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    with tempfile.TemporaryDirectory(prefix="wraparound-bench-") as tmpdir:
        tmp = Path(tmpdir)
        for db in dbs:
            try:
                if db == "sqlite":
                    results["databases"][db] = run_database(
                        db, f"sqlite:///{tmp / 'bench.sqlite'}", opts, tmp, log
                    )
                    continue
                admin = (
                    args.postgres_url
                    or os.environ.get("WRAPAROUND_BENCH_POSTGRES_URL")
                    or DEFAULT_POSTGRES_URL
                )
                scratch = PostgresScratch(admin, args.postgres_db)
                try:
                    results["databases"][db] = run_database(db, scratch.create(), opts, tmp, log)
                finally:
                    scratch.drop()
            except Exception as exc:  # noqa: BLE001 - report it; the other database still runs
                failed = True
                log(f"[{db}] benchmark could not run: {type(exc).__name__}: {exc}")
                results["databases"][db] = {"error": f"{type(exc).__name__}: {exc}"}
    results["seconds"] = round(time.monotonic() - started, 1)
    print_table(results)
    path = write_results(NAME, results)
    print(f"\nresults: {path} ({results['seconds']:.0f}s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
