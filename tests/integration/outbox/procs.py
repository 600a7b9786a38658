"""Process control for the outbox fault tests: worker and gateway subprocesses, a private
PostgreSQL cluster, the stand-in subscriber, and counting what the outbox holds."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import requests
import sqlalchemy as sa

from connectors.mockserver import run_in_thread
from gateway.outbox.localsystem import create_subscriber_app
from gateway.store.schema import outbox_messages
from tests.conftest import free_port

# Short timeouts, leases and backoffs so that faults play out in seconds. Leases stay at 2 s:
# shorter ones expire under load on a busy machine and turn into needless re-deliveries.
FAST = {
    "WRAPAROUND_ENV": "test",
    "WRAPAROUND_LOG_LEVEL": "WARNING",
    "WRAPAROUND_NATIONAL_CONNECT_TIMEOUT": "1.0",
    "WRAPAROUND_NATIONAL_READ_TIMEOUT": "1.5",
    "WRAPAROUND_NATIONAL_CALL_TIMEOUT": "3.0",
    "WRAPAROUND_OUTBOX_LEASE_SECONDS": "2.0",
    "WRAPAROUND_OUTBOX_MAX_ATTEMPTS": "5",
    "WRAPAROUND_OUTBOX_BACKOFF_SECONDS": "0.05",
    "WRAPAROUND_OUTBOX_BACKOFF_CAP_SECONDS": "0.2",
    "WRAPAROUND_OUTBOX_BREAKER_FAILURES": "3",
    "WRAPAROUND_OUTBOX_BREAKER_SECONDS": "0.3",
    "WRAPAROUND_SUBSCRIPTION_TIMEOUT": "1.0",
    "WRAPAROUND_RATE_LIMIT_PER_MINUTE": "0",
}


def environment(db_url: str, data_dir: Path, national_url: str, **extra: str) -> dict[str, str]:
    """Return the environment of a gateway or worker process on `db_url`."""
    env = {**os.environ, **FAST, **extra}
    env.update(
        WRAPAROUND_DATABASE_URL=db_url,
        WRAPAROUND_DATA_DIR=str(data_dir),
        WRAPAROUND_NATIONAL_URL=national_url,
    )
    return env


def wait_for(check: Callable[[], bool], *, within: float, what: str, pause: float = 0.1) -> None:
    """Wait until `check()` holds; fail with `what` when it does not within `within` seconds.

    A liveness bound for a loaded machine, not a performance assertion.
    """
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(pause)
    raise AssertionError(f"timed out waiting for {what}")


# -- subprocesses ------------------------------------------------------------------------------
@dataclass
class Proc:
    """A `wraparound` subprocess in its own process group, its output in a log file."""

    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log.read_text("utf-8", errors="replace")

    def kill(self) -> None:
        """SIGKILL the whole process group (a crash: no cleanup, no settling)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)

    def terminate(self) -> None:
        """Send SIGTERM (a graceful stop) without waiting."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)

    def stop(self) -> None:
        """SIGTERM and wait (SIGKILL if it does not stop)."""
        if self.popen.poll() is not None:
            return
        self.terminate()
        try:
            self.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()


def _spawn(args: list[str], env: dict[str, str], log: Path) -> Proc:
    with log.open("ab") as out:
        popen = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", *args],
            env=env,
            start_new_session=True,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Proc(popen, log)


def start_workers(
    env: dict[str, str], logs: list[Path], *, threads: int = 2, batch: int = 5
) -> list[Proc]:
    """Start `wraparound worker` processes together and wait until their loops run."""
    args = ["worker", "--threads", str(threads), "--batch", str(batch)]
    procs = [_spawn(args, env, log) for log in logs]
    for proc in procs:
        wait_for(
            lambda proc=proc: "delivery loop" in proc.output() or proc.popen.poll() is not None,
            within=60,
            what="the worker to start",
        )
        assert proc.popen.poll() is None, proc.output()[-2000:]
    return procs


def spawn_gateway(env: dict[str, str], port: int, log: Path) -> Proc:
    """Start `wraparound serve` on a loopback port (without waiting: see `wait_ready`)."""
    return _spawn(["serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"], env, log)


def start_gateway(env: dict[str, str], port: int, log: Path) -> Proc:
    """Start `wraparound serve` on a loopback port and wait until it is ready."""
    return wait_ready(spawn_gateway(env, port, log), port)


def wait_ready(proc: Proc, port: int) -> Proc:
    """Wait until the gateway subprocess answers /readyz."""

    def ready() -> bool:
        if proc.popen.poll() is not None:
            return True
        try:
            return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    wait_for(ready, within=60, what="the gateway to be ready", pause=0.2)
    assert proc.popen.poll() is None, proc.output()[-2000:]
    return proc


def dev_token(env: dict[str, str], agency: str = "social-care") -> str:
    """Return a development bearer token from the CLI, as an operator would get one."""
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "dev-token", "--agency", agency]
        + ["--scope", "system/*.cruds"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip().splitlines()[-1]


# -- a private PostgreSQL cluster ----------------------------------------------------------------
def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise FileNotFoundError(name)
    return found[-1]


class PrivatePostgres:
    """A throwaway PostgreSQL cluster in a temporary directory, on its own free port.

    The machine's shared cluster is never touched; this one can be restarted at will. The
    server binaries refuse to run as root, so they run as the `postgres` OS user when the tests
    run as root.
    """

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="wraparound-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            self.as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.dir, "postgres")
        self.dir.chmod(0o700)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run(
            [*self.as_user, *args], check=True, capture_output=True, cwd=self.dir, timeout=120
        )

    def start(self) -> None:
        self._run(
            _pg_bin("initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
        )
        self._ctl("start")

    def _ctl(self, action: str, *extra: str) -> None:
        options = f"-p {self.port} -h 127.0.0.1 -k {self.dir} -c fsync=off -c max_connections=100"
        self._run(
            _pg_bin("pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.dir / "log"),
            "-w",
            "-t",
            "60",
            "-o",
            options,
            action,
            *extra,
        )

    def restart(self) -> None:
        """Restart fast: connections are cut, in-flight transactions roll back."""
        self._ctl("restart", "-m", "fast")

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self._ctl("stop", "-m", "immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """Start a private cluster; stop and remove it afterwards."""
    cluster = PrivatePostgres()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


# -- the stand-in subscriber -----------------------------------------------------------------------
@dataclass
class Subscriber:
    """The stand-in local system on a loopback port, driven over its admin API."""

    base: str
    stop: Callable[[], None]

    @property
    def hook(self) -> str:
        return f"{self.base}/hook"

    def fault(self, **spec: Any) -> None:
        resp = requests.post(f"{self.base}/admin/faults", json=spec, timeout=30)
        assert resp.status_code == 201, resp.text

    def clear(self) -> None:
        requests.delete(f"{self.base}/admin/faults", timeout=30).raise_for_status()

    def ids(self) -> dict[str, Any]:
        data: dict[str, Any] = requests.get(f"{self.base}/received/ids", timeout=30).json()
        return data


@contextlib.contextmanager
def subscriber() -> Iterator[Subscriber]:
    """Run the stand-in subscriber in a thread of this process."""
    app = create_subscriber_app()
    base, stop = run_in_thread("127.0.0.1", 0, app=app)
    sub = Subscriber(base, stop)
    try:
        yield sub
    finally:
        app.extensions["wraparound_subscriber_faults"].clear()
        stop()


# -- counting ------------------------------------------------------------------------------------
@dataclass
class Counts:
    """What the outbox holds: message ids by destination and state, and the payloads."""

    rows: list[dict[str, Any]] = field(default_factory=list)

    def ids(self, destination_prefix: str, state: str | None = None) -> list[str]:
        return [
            r["id"]
            for r in self.rows
            if r["destination"].startswith(destination_prefix)
            and (state is None or r["state"] == state)
        ]

    def states(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for r in self.rows:
            found[r["state"]] = found.get(r["state"], 0) + 1
        return found


def outbox_counts(db_url: str) -> Counts:
    """Read every outbox message (id, destination, state, attempts, payload) from the database."""
    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    m = outbox_messages
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    m.c.seq,
                    m.c.id,
                    m.c.destination,
                    m.c.ordering_key,
                    m.c.state,
                    m.c.attempts,
                    m.c.payload,
                    m.c.last_error,
                ).order_by(m.c.seq)
            ).all()
    finally:
        engine.dispose()
    return Counts(
        [
            {
                "seq": r.seq,
                "id": r.id,
                "destination": r.destination,
                "key": r.ordering_key,
                "state": r.state,
                "attempts": r.attempts,
                "payload": orjson.loads(r.payload),
                "error": r.last_error,
            }
            for r in rows
        ]
    )


def settled(db_url: str) -> bool:
    """True when no message is pending or in flight."""
    states = outbox_counts(db_url).states()
    return not states.get("pending") and not states.get("in-flight")


def stop_all(procs: list[Proc]) -> None:
    """Stop processes together: SIGTERM to all, then wait for each."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.stop()
