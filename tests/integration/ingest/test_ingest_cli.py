"""`wraparound ingest SOURCE FILE [--dry-run]` against the configured database (both kinds)."""
from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from ingest_support import AGENCIES, sample

from gateway.cli.ingest import ingest
from gateway.store import make_engine
from gateway.store.schema import resource_history, resources
from vocab import systems

SUFFIXES = {"text/csv": ".csv", "application/json": ".json", "application/xml": ".xml"}


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> dict[str, str]:
    """Return the environment that points the CLI at the clean test database."""
    return {"WRAPAROUND_DATABASE_URL": db_url, "WRAPAROUND_DATA_DIR": str(tmp_path / "data"),
            "WRAPAROUND_ENV": "test"}


def _rows(db_url: str) -> dict[str, int]:
    """Return the number of current resources per type (audit events left out)."""
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(resources.c.res_type, sa.func.count())
                                .where(resources.c.res_type != "AuditEvent",
                                       resources.c.content.not_like("%urn:wraparound:identity%"))
                                .group_by(resources.c.res_type)).all()
            versions = conn.execute(sa.select(sa.func.count()).select_from(resource_history)
                                    .where(resource_history.c.res_type != "AuditEvent",
                                           resource_history.c.content.not_like(
                                               "%urn:wraparound:identity%"))
                                    ).scalar_one()
    finally:
        engine.dispose()
    return {**{t: int(n) for t, n in rows}, "(versions)": int(versions)}


def _owner_tags(db_url: str) -> set[str]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            contents = conn.execute(sa.select(resources.c.content)
                                    .where(resources.c.res_type != "AuditEvent",
                                           resources.c.content.not_like(
                                               "%urn:wraparound:identity%"))).scalars().all()
    finally:
        engine.dispose()
    return {t["code"] for c in contents for t in orjson.loads(c)["meta"]["tag"]
            if t["system"] == systems.AGENCY}


def _write_sample(tmp_path: Path, source: str) -> Path:
    data, content_type = sample(source)
    path = tmp_path / f"export{SUFFIXES[content_type]}"  # the CLI picks the reader by suffix
    path.write_bytes(data)
    return path


def test_cli_ingests_a_sample_then_finds_it_unchanged(env: dict[str, str], db_url: str,
                                                     tmp_path: Path) -> None:
    path = _write_sample(tmp_path, "youth-support")
    runner = CliRunner()
    result = runner.invoke(ingest, ["youth-support", str(path), "--quiet"], env=env)
    assert result.exit_code == 0, result.output
    assert "youth-support: created 58, updated 0, unchanged 0, rejected 0" in result.output
    first = _rows(db_url)
    assert first["Patient"] == 58 and first["Provenance"] == 58
    assert _owner_tags(db_url) == {AGENCIES["youth-support"]}  # owned by the source's agency

    result = runner.invoke(ingest, ["youth-support", str(path), "--quiet"], env=env)
    assert result.exit_code == 0, result.output
    assert "created 0, updated 0, unchanged 58, rejected 0" in result.output
    assert _rows(db_url) == first


def test_cli_exits_1_when_a_record_is_rejected(env: dict[str, str], db_url: str,
                                              tmp_path: Path) -> None:
    data, _ = sample("youth-support")
    header, *rows = [line for line in data.split(b"\r\n") if line]
    bad = rows[1].split(b",")
    bad[3] = b"31/02/2010"  # DOB
    path = tmp_path / "export.csv"
    path.write_bytes(b"\r\n".join([header, rows[0], b",".join(bad), rows[2]]) + b"\r\n")
    # the progress bar is drawn when stderr is a terminal: pretend it is one
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("gateway.cli.ingest.os.isatty", lambda fd: True)
        result = CliRunner().invoke(ingest, ["youth-support", str(path)], env=env)
    assert result.exit_code == 1, result.output
    assert "created 2, updated 0, unchanged 0, rejected 1" in result.output
    assert "error: row 3, field DOB: not a valid date" in result.output
    assert _rows(db_url)["Patient"] == 2


def test_cli_dry_run_stores_nothing(env: dict[str, str], db_url: str, tmp_path: Path) -> None:
    path = _write_sample(tmp_path, "school")
    result = CliRunner().invoke(ingest, ["school", str(path), "--dry-run", "--quiet"], env=env)
    assert result.exit_code == 0, result.output
    assert "school: created 0, updated 0, unchanged 0, rejected 0, valid 70 (dry run)" in (
        result.output)
    assert _rows(db_url) == {"(versions)": 0}


def test_cli_refuses_an_unknown_source(env: dict[str, str], tmp_path: Path) -> None:
    path = _write_sample(tmp_path, "youth-support")
    result = CliRunner().invoke(ingest, ["no-such-source", str(path)], env=env)
    assert result.exit_code == 2
    assert "unknown source" in result.output
