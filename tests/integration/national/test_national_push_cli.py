"""`wraparound national push` against the configured database and the mock national server."""

from __future__ import annotations

from pathlib import Path

import orjson
import requests
from click.testing import CliRunner
from flask import Flask

from gateway.cli.national import national
from gateway.config import Settings
from gateway.security.context import Caller, acting_as

SAMPLE = Path(__file__).resolve().parents[3] / "fixtures" / "sources" / "social-care" / "sample.csv"


def _involvements(mock: str) -> int:
    count: int = requests.get(f"{mock}/admin/services/contactpoint", timeout=30).json()[
        "involvements"
    ]
    return count


def test_push_sends_the_stored_allocations_once(app: Flask, settings: Settings, mock: str) -> None:
    services = app.extensions["wraparound"]
    with acting_as(Caller.internal("social-care")), SAMPLE.open("rb") as f:
        assert services.ingest.run("social-care", f, "text/csv", collect=False).rejected == 0
    env = {
        "WRAPAROUND_DATABASE_URL": settings.database_url,
        "WRAPAROUND_ENV": "test",
        "WRAPAROUND_DATA_DIR": str(settings.data_dir),
        "WRAPAROUND_NATIONAL_URL": mock,
    }
    runner = CliRunner()
    before = _involvements(mock)
    dry = runner.invoke(national, ["push", "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    planned = [orjson.loads(line) for line in dry.stdout.splitlines()]
    assert planned and {p["destination"] for p in planned} == {"contactpoint:involvement"}
    assert _involvements(mock) == before  # a dry run sends nothing
    sent = runner.invoke(national, ["push", "--type", "EpisodeOfCare"], env=env)
    assert sent.exit_code == 0, sent.output
    results = [orjson.loads(line) for line in sent.stdout.splitlines()]
    assert len(results) == len(planned)
    delivered = [r for r in results if "result" in r]
    assert delivered and all("recorded for CP" in r["result"] for r in delivered)
    # The index holds no such child, or shields it (only the index team changes those).
    assert all(
        r["error"].startswith(("not-found", "record-shielded")) for r in results if "error" in r
    )
    after = _involvements(mock)
    assert after > before
    again = runner.invoke(national, ["push"], env=env)
    assert again.exit_code == 0, again.output
    assert _involvements(mock) == after  # already open involvements are not recorded twice
