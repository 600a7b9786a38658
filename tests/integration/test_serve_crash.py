"""The production entry point (`wraparound serve`, gunicorn) loses no acknowledged write when killed."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

from tests.conftest import FHIR_JSON, free_port, make_patient


def _env(db_url: str, data_dir: Path) -> dict[str, str]:
    return dict(os.environ, WRAPAROUND_DATABASE_URL=db_url, WRAPAROUND_DATA_DIR=str(data_dir),
                WRAPAROUND_LOG_LEVEL="WARNING")


def dev_token(db_url: str, data_dir: Path) -> str:
    """Return a development bearer token from the CLI, as an operator would get one."""
    out = subprocess.run([sys.executable, "-m", "gateway.cli", "dev-token", "--agency",
                          "social-care", "--scope", "system/*.cruds"], env=_env(db_url, data_dir),
                         check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def _start(db_url: str, port: int, data_dir: Path) -> subprocess.Popen[bytes]:
    env = _env(db_url, data_dir)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "--host", "127.0.0.1", "--port",
         str(port), "--workers", "2"], env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except requests.RequestException:
            time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError("the gateway did not become ready")


def test_kill_mid_write_loses_no_acknowledged_write(db_url: str, tmp_path: Path) -> None:
    port = free_port()
    proc = _start(db_url, port, tmp_path)
    base = f"http://127.0.0.1:{port}/fhir"
    headers = {"Content-Type": FHIR_JSON, "Authorization": f"Bearer {dev_token(db_url, tmp_path)}"}
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(n: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                resp = requests.post(f"{base}/Patient", json=make_patient(family=f"W{n}x{i}"),
                                     headers=headers, timeout=5)
            except requests.RequestException:
                continue
            if resp.status_code == 201:
                with lock:
                    acknowledged.append(resp.json()["id"])

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(acknowledged) < 40 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # master and workers, mid-write
    stop.set()
    for t in threads:
        t.join()
    proc.wait()
    assert len(acknowledged) >= 40

    restarted = _start(db_url, port, tmp_path)
    try:
        missing = [rid for rid in acknowledged
                   if requests.get(f"{base}/Patient/{rid}", headers=headers, timeout=5).status_code != 200]
        assert missing == []
        total = requests.get(f"{base}/Patient?_summary=count", headers=headers, timeout=5).json()["total"]
        assert total >= len(acknowledged)
    finally:
        os.killpg(restarted.pid, signal.SIGTERM)
        restarted.wait(timeout=30)
