"""Shared benchmark plumbing: free ports, server subprocesses, scratch databases, results."""
from __future__ import annotations

import http.client
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench" / "results"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


class BenchError(RuntimeError):
    """Raised when a benchmark cannot be set up or run."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(port: int, path: str, timeout: float = 10.0,
             headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """Return (status, body) of one GET on a fresh connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Accept": "application/fhir+json", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


class ServerProcess:
    """A server started as `python -m bench.servers KIND ...` on a free port, logging to a file."""

    def __init__(self, kind: str, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.kind = kind
        self.args = args
        self.env = env
        self.log_path = log_path
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        """Start the server and wait until /healthz answers; retry once if the port was taken."""
        for _attempt in range(3):
            self.port = free_port()
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "bench.servers", self.kind, "--port", str(self.port),
                     *self.args],
                    cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True)
            if self._wait_ready(timeout):
                return
            self.stop()
        raise BenchError(f"the {self.kind} server did not start; its log ends:\n{self.log_tail()}")

    def cpu_seconds(self) -> float | None:
        """Return the CPU time used so far by the server: its arbiter and current workers."""
        if self.proc is None:
            return None
        return process_tree_cpu(self.proc.pid)

    def log_tail(self, lines: int = 15) -> str:
        """Return the last lines the server logged."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            try:
                if http_get(self.port, "/healthz", timeout=2)[0] == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        """Stop the server (SIGTERM to its gunicorn arbiter, SIGKILL after a grace period)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: the arbiter and its workers
            proc.wait(timeout=10)


def _stat(pid: str) -> tuple[int, float] | None:
    """Return (parent pid, user+system CPU seconds) from /proc/<pid>/stat, or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_tree_cpu(root: int) -> float | None:
    """Return the CPU seconds of a process and its direct children (Linux /proc), or None."""
    if not os.path.isdir("/proc"):
        return None
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _stat(entry)
        if stat is not None and (int(entry) == root or stat[0] == root):
            total += stat[1]
    return total


class PostgresScratch:
    """A scratch PostgreSQL database created for one run and dropped afterwards."""

    def __init__(self, admin_url: str, name: str) -> None:
        from sqlalchemy.engine import make_url

        self.admin = make_url(admin_url)
        if self.admin.drivername == "postgresql":
            self.admin = self.admin.set(drivername="postgresql+psycopg")
        self.name = name
        self.url = self.admin.set(database=name).render_as_string(hide_password=False)

    def _execute(self, sql: str) -> None:
        import psycopg

        conninfo = self.admin.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql)

    def create(self) -> str:
        """(Re)create the database and return its SQLAlchemy URL."""
        self.drop()
        self._execute(f'CREATE DATABASE "{self.name}"')
        return self.url

    def drop(self) -> None:
        """Drop the database if it exists, closing any connection still open to it."""
        self._execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def machine_info() -> dict[str, Any]:
    """Return what the results depend on: Python, CPU count, platform and key libraries."""
    from importlib.metadata import PackageNotFoundError, version

    libs: dict[str, str | None] = {}
    for name in ("flask", "werkzeug", "gunicorn", "sqlalchemy", "psycopg", "orjson"):
        try:
            libs[name] = version(name)
        except PackageNotFoundError:
            libs[name] = None
    return {"python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count(), "libraries": libs,
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def write_results(name: str, data: dict[str, Any]) -> Path:
    """Write a benchmark's results as JSON under bench/results/ and return the path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path
