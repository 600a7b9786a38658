"""The Dockerfile's entry point, run outside Docker with the same command and configuration."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests
from click.testing import CliRunner

from gateway.cli import main
from gateway.store import head_revision
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


def _dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def test_dockerfile_runs_serve_as_non_root_with_healthcheck() -> None:
    text = _dockerfile()
    assert re.search(r'^CMD \["wraparound", "serve"\]$', text, re.MULTILINE)
    users = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    assert "/healthz" in text.split("HEALTHCHECK", 1)[1]
    assert re.search(r"^FROM python:3\.11-slim", text, re.MULTILINE)


def _docker_env(tmp_path: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WRAPAROUND_")}
    for line in re.findall(r"^ENV (.+?)(?=^\S)", _dockerfile(), re.MULTILINE | re.DOTALL):
        for key, value in re.findall(r"(WRAPAROUND_\w+)=(\S+)", line):
            env[key] = value
    env.update(WRAPAROUND_HOST="127.0.0.1", WRAPAROUND_PORT=str(port),
               WRAPAROUND_DATA_DIR=str(tmp_path), WRAPAROUND_WORKERS="1")
    return env


def test_image_entry_point_serves_health_and_fhir(tmp_path: Path) -> None:
    port = free_port()
    env = _docker_env(tmp_path, port)
    assert env["WRAPAROUND_ENV"] == "production"
    exe = shutil.which("wraparound", path=str(Path(sys.executable).parent)) or "wraparound"
    proc = subprocess.Popen([exe, "serve"], env=env, cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "the entry point did not start"
            time.sleep(0.2)
        assert requests.get(f"{base}/readyz", timeout=5).json() == {"status": "ready"}
        meta = requests.get(f"{base}/fhir/metadata", timeout=5)
        assert meta.headers["Content-Type"].startswith("application/fhir+json")
        assert (tmp_path / "wraparound.sqlite").exists()  # the default database in the data dir
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_db_upgrade_command(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/cli.sqlite"
    result = CliRunner().invoke(main, ["db", "upgrade"], env={"WRAPAROUND_DATABASE_URL": url})
    assert result.exit_code == 0, result.output
    head = head_revision()
    assert f"schema at revision {head}" in result.output
    again = CliRunner().invoke(main, ["db", "current"], env={"WRAPAROUND_DATABASE_URL": url})
    assert again.output.strip() == head


def test_image_runs_the_outbox_worker(tmp_path: Path) -> None:
    """`wraparound worker` with the image's configuration: the same image, another command."""
    assert "wraparound worker" in _dockerfile()
    env = _docker_env(tmp_path, free_port())
    exe = shutil.which("wraparound", path=str(Path(sys.executable).parent)) or "wraparound"
    done = subprocess.run([exe, "worker", "--once"], env=env, cwd=tmp_path, timeout=120, check=False,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "handled 0 message(s)" in done.stdout
