"""The product's own conformance: the demo stack (gateway + mock national services, as the README
runs them) passes every shipped suite, driven by the `wraparound conformance run` command."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import free_port


def _wait(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "a server of the stack exited"
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not come up")


@pytest.mark.slow
def test_every_shipped_suite_passes_against_the_demo_stack(tmp_path: Path) -> None:
    gw, mock = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WRAPAROUND_")}
    env.update(WRAPAROUND_DATA_DIR=str(tmp_path / "data"), WRAPAROUND_LOG_LEVEL="WARNING",
               WRAPAROUND_NATIONAL_URL=f"http://127.0.0.1:{mock}")
    cli = [sys.executable, "-m", "gateway.cli"]
    procs = [
        subprocess.Popen([*cli, "mocks", "serve", "--host", "127.0.0.1", "--port", str(mock),
                          "--cpis-callback-url",
                          f"http://127.0.0.1:{gw}/inbound/cpis/notifications"],
                         env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL),
        subprocess.Popen([*cli, "serve", "--host", "127.0.0.1", "--port", str(gw),
                          "--workers", "2"], env=env, start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]
    try:
        _wait(f"http://127.0.0.1:{mock}/health", procs[0])
        _wait(f"http://127.0.0.1:{gw}/readyz", procs[1])
        out = tmp_path / "conformance"
        result = subprocess.run(
            [*cli, "conformance", "run", "all", "--base-url", f"http://127.0.0.1:{gw}/fhir",
             "--token-from-cli", "--soap-url", f"http://127.0.0.1:{mock}", "--out", str(out)],
            check=False, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
        junit = (out / "junit.xml").read_text()
        assert 'failures="0"' in junit and 'errors="0"' in junit
        assert "gateway-core" in result.stdout
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
