"""A brokered PDS read through the gateway vs a raw SOAP POST of the same envelope, same run.

    python -m bench.national_pds [--quick] [--rounds N] [--calls N] [--db sqlite|postgres|both]

- **Mock**: the mock national server (`wraparound mocks serve`) in its own process on a free
  loopback port; both sides talk to the same `/spine/pds` endpoint.
- **Brokered** (FHIR in, SOAP out and back): `GET /national/pds/Patient/{nhs}` on the gateway,
  served by gunicorn exactly as `wraparound serve` serves it (`bench.servers gateway`: gthread,
  1 worker x 4 threads), with a development bearer token. The gateway checks the token, scopes
  and policy, Modulus-11 checks the number, builds the ITK/HL7v3 envelope with the PDS connector
  (zeep, WS-Addressing, WS-Security), posts it, parses and checks the reply, answers a UK Core
  Patient and queues an AuditEvent.
- **Raw** (the baseline): `requests.Session().post` of the envelope the gateway's connector sends
  for the same NHS number (captured at the start of each round with the connector's own
  transport, so the WS-Security timestamp is current), with the same headers, followed by an lxml
  parse of the reply (`lxml.etree.fromstring` with entities, DTDs and network access off).
- **Connector** (for the breakdown, not the target): the same read with the PDS connector
  called in the benchmark process (lxml envelope, WS-Security, post, hardened parse), no gateway.
- **Hop** (for the breakdown, not the target): `GET /relay/{nhs}` on `bench.pds_relay`, a bare
  Flask app served by gunicorn with the gateway's options, which posts the raw side's envelope
  to the same mock and lxml-parses the reply: one HTTP hop plus the raw call, no gateway logic.
  `ratio` = `hop_ratio` (hop/raw: what any HTTP broker in front of the service costs on this
  machine) x `gateway_over_hop` (brokered/hop: the gateway's own work, i.e. token, policy,
  audit, connector and FHIR rendering), each the median of the per-round ratios.
- **Load**: one client, sequential calls (the same HTTP library, requests, for every side; the
  mock closes each connection, so every side connects per SOAP call); a warm-up, then many short
  rounds, each running every side once in a rotating order, so each round compares the sides
  under the same machine load. Every answer is checked (brokered: 200 and the Patient asked
  for; raw and connector: SMSP-0000); any error fails the run.
- **Reported**: `ratio` = the median over rounds of brokered/raw median latency (target <= 1.3),
  the range of per-round ratios, the pooled medians and p95 of each side, `connector_ratio`
  (connector/raw), and CPU milliseconds per call: the gateway's gunicorn processes for a brokered
  call, the relay's gunicorn processes for a hop call, the benchmark process for a raw call
  (requests + lxml) and a connector call.

Results are printed and written to `bench/results/national_pds.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
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
    free_port,
    machine_info,
    process_tree_cpu,
    write_results,
)

NAME = "national_pds"
TARGET = 1.3
AGENCY, SCOPES = "social-care", ("system/Patient.r",)
SERVER_ENV = {
    "WRAPAROUND_ENV": "development",
    "WRAPAROUND_LOG_LEVEL": "INFO",
    "WRAPAROUND_RATE_LIMIT_PER_MINUTE": "0",
}
_SAFE = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


@dataclass(frozen=True)
class Options:
    """How long and how hard to run."""

    rounds: int = 24
    calls: int = 50
    warmup: int = 30
    children: int = 50
    workers: int = 1
    threads: int = 4


# Every side runs once in every round, in an order that rotates from round to round.
SIDES = ("brokered", "raw", "connector", "hop", "inprocess")
DEFAULT = Options()
QUICK = Options(rounds=4, calls=30, warmup=10, children=20)


# -- set-up -----------------------------------------------------------------------------------
def seeded_children(count: int) -> list[str]:
    """Return NHS numbers of seeded, unrestricted, current PDS records."""
    data = json.loads((ROOT / "fixtures" / "national" / "pds.json").read_text(encoding="utf-8"))
    numbers = [
        p["nhs_number"]
        for p in data["patients"]
        if not p.get("sensitive") and not p.get("deceased_date")
    ]
    if len(numbers) < count:
        raise BenchError("not enough seeded PDS children")
    return numbers[:count]


class MockProcess:
    """The mock national server in its own process."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        """Start the mock and return its base URL once /health answers."""
        self.port = free_port()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gateway.cli",
                    "mocks",
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                ],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if requests.get(f"{url}/health", timeout=1).status_code == 200:
                    return url
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise BenchError("the mock national server did not start")

    def cpu_seconds(self) -> float | None:
        """Return the CPU time the mock has used so far."""
        return process_tree_cpu(self.proc.pid) if self.proc is not None else None

    def stop(self) -> None:
        """Stop the mock."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


class RelayProcess(ServerProcess):
    """The bare hop: `python -m bench.pds_relay` on a free port (see that module)."""

    def __init__(self, target: str, opts: Options, env: dict[str, str], log_path: Path) -> None:
        super().__init__(
            "pds_relay",
            ["--target", target, "--workers", str(opts.workers), "--threads", str(opts.threads)],
            env,
            log_path,
        )

    def start(self, timeout: float = 60.0) -> None:
        """Start the relay and wait until /healthz answers."""
        for _attempt in range(3):
            self.port = free_port()
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "bench.pds_relay", "--port", str(self.port), *self.args],
                    cwd=ROOT,
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            if self._wait_ready(timeout):
                return
            self.stop()
        raise BenchError(f"the relay did not start; its log ends:\n{self.log_tail()}")

    def load(self, envelopes: dict[str, tuple[bytes, dict[str, str]]]) -> None:
        """Give the relay the envelopes the raw side posts."""
        body: dict[str, Any] = {
            n: {"body": e[0].decode("utf-8"), "headers": e[1]} for n, e in envelopes.items()
        }
        resp = requests.post(f"http://127.0.0.1:{self.port}/envelopes", json=body, timeout=30)
        if resp.status_code != 200:
            raise BenchError(f"the relay refused the envelopes ({resp.status_code})")


def mint_token(database_url: str, env: dict[str, str]) -> str:
    """Migrate the benchmark database and mint a development token on it."""
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


def capture_envelopes(pds_url: str, numbers: list[str]) -> dict[str, tuple[bytes, dict[str, str]]]:
    """Return, per NHS number, the envelope and headers the gateway's PDS connector sends."""
    from connectors.pds import build_pds_client
    from connectors.soap import HardenedTransport, SoapSettings

    captured: dict[str, tuple[bytes, dict[str, str]]] = {}

    class Recording(HardenedTransport):
        """The connector's transport, keeping what it posts."""

        last: tuple[bytes, dict[str, str]] | None = None

        def post(self, address: str, message: bytes, headers: dict[str, str]) -> Any:
            self.last = (message, dict(headers))
            return super().post(address, message, headers)

    settings = SoapSettings(address=pds_url)
    transport = Recording(
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        operation_timeout=settings.operation_timeout,
        max_response_bytes=settings.max_response_bytes,
    )
    client = build_pds_client(settings, transport=transport)
    for number in numbers:
        client.get_patient_details_by_nhs_number(number)
        assert transport.last is not None
        captured[number] = transport.last
    return captured


# -- one side ---------------------------------------------------------------------------------
@dataclass
class Side:
    """Latencies (seconds) and CPU of one side, across rounds."""

    latencies: list[float]
    round_medians: list[float]
    cpu_seconds: float = 0.0
    calls: int = 0

    def summary(self) -> dict[str, Any]:
        """Return the side's figures in milliseconds."""
        ordered = sorted(self.latencies)
        return {
            "calls": self.calls,
            "median_ms": round(statistics.median(ordered) * 1000, 3),
            "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 3),
            "round_medians_ms": [round(m * 1000, 3) for m in self.round_medians],
            "cpu_ms_per_call": round(self.cpu_seconds * 1000 / max(self.calls, 1), 3),
        }


class InProcessGateway:
    """The gateway app in the benchmark process, called through its WSGI interface.

    The same app `wraparound serve` builds (`create_app` on the same settings, logging at the
    same level, to a file through the same queue), called with a WSGI environ like the one a
    server builds for `GET /national/pds/Patient/{nhs}` with the bearer token: everything the
    broker does except the inbound TCP hop and the HTTP server's own parsing.
    """

    def __init__(self, env: dict[str, str], token: str, log_path: Path) -> None:
        import logging
        import logging.handlers
        import queue

        from gateway.app import create_app
        from gateway.config import load_settings

        settings = load_settings(env)
        records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        self._file = logging.FileHandler(log_path)
        self._listener = logging.handlers.QueueListener(records, self._file)
        self._listener.start()
        self._handler = logging.handlers.QueueHandler(records)
        root = logging.getLogger()
        self._level = root.level
        root.addHandler(self._handler)
        root.setLevel(settings.log_level)
        for noisy in ("zeep", "zeep.transports", "urllib3", "sqlalchemy", "alembic"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        self.app = create_app(settings)
        self._environ = {
            "REQUEST_METHOD": "GET",
            "SCRIPT_NAME": "",
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": "127.0.0.1",
            "HTTP_AUTHORIZATION": f"Bearer {token}",
            "HTTP_ACCEPT": "application/fhir+json",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }

    def get(self, path: str) -> tuple[str, bytes]:
        """Return (status line, body) of one GET handled by the app."""
        import io

        environ = dict(self._environ)
        environ["PATH_INFO"] = path
        environ["wsgi.input"] = io.BytesIO(b"")
        status: list[str] = []

        def start_response(line: str, headers: list[tuple[str, str]], exc_info: Any = None
                           ) -> Any:
            status.append(line)
            return None

        result = self.app(environ, start_response)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return status[0], body

    def close(self) -> None:
        """Store the queued AuditEvents, stop logging to the file, give the root logger back."""
        import logging

        services = self.app.extensions["wraparound"]
        services.audit.flush()
        services.store.engine.dispose()
        root = logging.getLogger()
        root.removeHandler(self._handler)
        root.setLevel(self._level)
        self._listener.stop()
        self._file.close()


def inprocess_call(gateway: InProcessGateway, number: str) -> None:
    """One FHIR read handled in process; raise BenchError unless it is the child asked for."""
    status, body = gateway.get(f"/national/pds/Patient/{number}")
    if not status.startswith("200 "):
        raise BenchError(f"in-process read answered {status}")
    patient = json.loads(body)
    if patient.get("resourceType") != "Patient" or patient.get("id") != number:
        raise BenchError("in-process read answered another resource")


def brokered_call(session: requests.Session, url: str, number: str) -> None:
    """One FHIR read through the gateway; raise BenchError unless it is the child asked for."""
    resp = session.get(url + number, timeout=30)
    if resp.status_code != 200 or resp.json().get("id") != number:
        raise BenchError(f"brokered read answered {resp.status_code}")


def hop_call(session: requests.Session, url: str, number: str) -> None:
    """One relayed read; raise BenchError unless the relay answered 200 for the child."""
    resp = session.get(url + number, timeout=30)
    if resp.status_code != 200 or resp.json().get("id") != number:
        raise BenchError(f"relayed read answered {resp.status_code}")


def raw_call(session: requests.Session, url: str, envelope: tuple[bytes, dict[str, str]]) -> None:
    """One raw SOAP POST and an lxml parse; raise BenchError unless PDS answered SMSP-0000."""
    resp = session.post(url, data=envelope[0], headers=envelope[1], timeout=30)
    root = etree.fromstring(resp.content, _SAFE)
    codes = root.xpath("//*[local-name()='value']/@code")
    if resp.status_code != 200 or "SMSP-0000" not in codes:
        raise BenchError(f"raw post answered {resp.status_code}")


def run_database(db: str, url: str, opts: Options, tmp: Path, log: Any) -> dict[str, Any]:
    """Run the comparison with the gateway on one database."""
    from connectors.pds import build_pds_client
    from connectors.soap import SoapSettings

    numbers = seeded_children(opts.children)
    mock = MockProcess(tmp / f"mock-{db}.log")
    mock_url = mock.start()
    pds_url = f"{mock_url}/spine/pds"
    env = {
        **os.environ,
        **SERVER_ENV,
        "WRAPAROUND_DATABASE_URL": url,
        "WRAPAROUND_DATA_DIR": str(tmp / "data"),
        "WRAPAROUND_NATIONAL_URL": mock_url,
    }
    for key in ("WRAPAROUND_BASE_URL", "WRAPAROUND_PDS_URL"):
        env.pop(key, None)
    gateway = ServerProcess(
        "gateway",
        ["--workers", str(opts.workers), "--threads", str(opts.threads)],
        env,
        tmp / f"gateway-{db}.log",
    )
    relay = RelayProcess(pds_url, opts, env, tmp / f"relay-{db}.log")
    inproc: InProcessGateway | None = None
    try:
        token = mint_token(url, env)
        gateway.start()
        relay.start()
        relay_url = f"http://127.0.0.1:{relay.port}/relay/"
        hop = requests.Session()
        read_url = f"http://127.0.0.1:{gateway.port}/national/pds/Patient/"
        fhir = requests.Session()
        fhir.headers.update({"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"})
        soap = requests.Session()
        inproc = InProcessGateway(env, token, tmp / f"inprocess-{db}.log")
        envelopes = capture_envelopes(pds_url, numbers)
        relay.load(envelopes)
        for i in range(opts.warmup):
            brokered_call(fhir, read_url, numbers[i % len(numbers)])
            raw_call(soap, pds_url, envelopes[numbers[i % len(numbers)]])
            hop_call(hop, relay_url, numbers[i % len(numbers)])
            inprocess_call(inproc, numbers[i % len(numbers)])
        sides = {name: Side([], []) for name in SIDES}
        servers = {"brokered": gateway, "hop": relay}
        pds = build_pds_client(SoapSettings(address=pds_url))

        def one(name: str, number: str) -> None:
            if name == "brokered":
                brokered_call(fhir, read_url, number)
            elif name == "raw":
                raw_call(soap, pds_url, envelopes[number])
            elif name == "hop":
                hop_call(hop, relay_url, number)
            elif name == "inprocess":
                inprocess_call(inproc, number)
            else:
                pds.get_patient_details_by_nhs_number(number)

        for i in range(opts.warmup):
            one("connector", numbers[i % len(numbers)])
        ratios: list[float] = []
        connector_ratios: list[float] = []
        hop_ratios: list[float] = []
        over_hop: list[float] = []
        inprocess_ratios: list[float] = []
        rotations = tuple(SIDES[i:] + SIDES[:i] for i in range(len(SIDES)))
        for round_no in range(opts.rounds):
            if round_no % 4 == 0:
                envelopes = capture_envelopes(pds_url, numbers)  # fresh WS-Security timestamps
                relay.load(envelopes)
            medians: dict[str, float] = {}
            for name in rotations[round_no % len(rotations)]:
                side = sides[name]
                lat: list[float] = []
                server = servers.get(name)
                cpu0 = server.cpu_seconds() if server is not None else time.process_time()
                for i in range(opts.calls):
                    number = numbers[(round_no * opts.calls + i) % len(numbers)]
                    start = time.perf_counter()
                    one(name, number)
                    lat.append(time.perf_counter() - start)
                if name == "inprocess":
                    # The audit writer's group commits belong to this side (in the gunicorn
                    # worker they run in the gateway's process too), not to the next one.
                    inproc.app.extensions["wraparound"].audit.flush()
                cpu1 = server.cpu_seconds() if server is not None else time.process_time()
                if cpu0 is not None and cpu1 is not None:
                    side.cpu_seconds += cpu1 - cpu0
                side.latencies.extend(lat)
                side.calls += len(lat)
                medians[name] = statistics.median(lat)
                side.round_medians.append(medians[name])
            ratios.append(medians["brokered"] / medians["raw"])
            connector_ratios.append(medians["connector"] / medians["raw"])
            hop_ratios.append(medians["hop"] / medians["raw"])
            over_hop.append(medians["brokered"] / medians["hop"])
            inprocess_ratios.append(medians["inprocess"] / medians["raw"])
            log(
                f"[{db}] round {round_no + 1}/{opts.rounds}: brokered "
                f"{medians['brokered'] * 1000:.2f} ms, raw {medians['raw'] * 1000:.2f} ms, "
                f"connector {medians['connector'] * 1000:.2f} ms, "
                f"hop {medians['hop'] * 1000:.2f} ms, "
                f"in-process {medians['inprocess'] * 1000:.2f} ms, ratio {ratios[-1]:.2f}, "
                f"in-process ratio {inprocess_ratios[-1]:.2f}"
            )
        summary = {name: side.summary() for name, side in sides.items()}
        b, r = summary["brokered"], summary["raw"]
        ratio = statistics.median(ratios)
        inprocess_ratio = statistics.median(inprocess_ratios)
        return {
            **summary,
            "ratio": round(ratio, 3),
            "round_ratios": [round(x, 3) for x in ratios],
            "pooled_ratio": round(b["median_ms"] / r["median_ms"], 3),
            "connector_ratio": round(statistics.median(connector_ratios), 3),
            "hop_ratio": round(statistics.median(hop_ratios), 3),
            "gateway_over_hop": round(statistics.median(over_hop), 3),
            "cpu_ratio": round(b["cpu_ms_per_call"] / r["cpu_ms_per_call"], 2)
            if r["cpu_ms_per_call"]
            else None,
            "inprocess_ratio": round(inprocess_ratio, 3),
            "inprocess_round_ratios": [round(x, 3) for x in inprocess_ratios],
            "inprocess_cpu_ratio": round(
                summary["inprocess"]["cpu_ms_per_call"] / r["cpu_ms_per_call"], 2)
            if r["cpu_ms_per_call"]
            else None,
            "target": TARGET,
            "meets_target": ratio <= TARGET,
            "inprocess_meets_target": inprocess_ratio <= TARGET,
            "failed": False,
        }
    finally:
        if inproc is not None:
            inproc.close()
        relay.stop()
        gateway.stop()
        mock.stop()


def print_table(results: dict[str, Any]) -> None:
    """Print the results."""
    print(
        f"\n{'db':<9}{'brokered ms':>12}{'raw ms':>9}{'connector ms':>14}{'hop ms':>9}"
        f"{'ratio':>8}{'rounds':>12}{'connector/raw':>15}{'hop/raw':>9}{'brokered/hop':>14}"
        f"{'cpu ms b/h/r':>20}{'in-process ms':>15}{'in-proc/raw':>13}{'rounds':>12}"
        f"{'cpu ms in-proc':>16}"
    )
    for db, data in results["databases"].items():
        if "error" in data:
            print(f"{db:<9} error: {data['error']}")
            continue
        b, r, c, h = data["brokered"], data["raw"], data["connector"], data["hop"]
        rounds = f"{min(data['round_ratios']):.2f}-{max(data['round_ratios']):.2f}"
        i, in_r = data["inprocess"], data["inprocess_round_ratios"]
        inrounds = f"{min(in_r):.2f}-{max(in_r):.2f}"
        cpu = f"{b['cpu_ms_per_call']:.2f}/{h['cpu_ms_per_call']:.2f}/{r['cpu_ms_per_call']:.2f}"
        print(
            f"{db:<9}{b['median_ms']:>12.2f}{r['median_ms']:>9.2f}{c['median_ms']:>14.2f}"
            f"{h['median_ms']:>9.2f}{data['ratio']:>8.2f}{rounds:>12}"
            f"{data['connector_ratio']:>15.2f}{data['hop_ratio']:>9.2f}"
            f"{data['gateway_over_hop']:>14.2f}{cpu:>20}"
            f"{i['median_ms']:>15.2f}{data['inprocess_ratio']:>13.2f}{inrounds:>12}"
            f"{i['cpu_ms_per_call']:>16.2f}"
        )
    print(
        f"target: brokered/raw <= {TARGET} (median over rounds of the per-round ratio); "
        "ratio ~ hop/raw x brokered/hop; in-proc/raw: the same read handled by the gateway app "
        "in the benchmark process (everything but the inbound hop)"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.national_pds",
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
    parser.add_argument("--postgres-db", default="wraparound_bench_national")
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
