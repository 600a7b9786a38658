"""Ingest chunks resolved as a batch (store.Batch) end exactly as resolved one statement at a time.

The five samples are ingested twice on the same kind of database, once with the identity tables
held per chunk and once read and written a statement at a time; the links, the link history, the
blocking keys, the review queue and the golden Patients (their versions included) must be the
same. Small chunks make later chunks meet what earlier ones stored; an ingest with changed names
(and one changing them back) makes Patients move and their blocking keys change inside a chunk.
"""
from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest
from flask import Flask
from sqlalchemy import select

from gateway import create_app
from gateway.config import Settings
from gateway.identity.store import Batch
from gateway.ingest import service as ingest_service
from gateway.security.context import Caller, acting_as
from gateway.store.schema import identity_blocks, identity_history, identity_links, identity_reviews
from tests.conftest import clean_database
from tests.integration.identity.conftest import SOURCE_NAMES, SOURCES, identity_of

pytestmark = pytest.mark.slow


def _renamed_social_care() -> bytes:
    """Return the social-care sample with every third child's forename changed."""
    lines = (SOURCES / "social-care" / "sample.csv").read_bytes().decode("latin-1").split("\r\n")
    out = [lines[0]]
    for n, line in enumerate(lines[1:]):
        if line and n % 3 == 0:
            cells = line.split(",")
            cells[1] = "Zebedee"
            line = ",".join(cells)
        out.append(line)
    return "\r\n".join(out).encode("latin-1")


def _ingest(app: Flask, source: str, data: bytes) -> dict[str, int]:
    services = app.extensions["wraparound"]
    with acting_as(Caller.internal(services.ingest.agency_for(source))):
        report = services.ingest.run(source, io.BytesIO(data), None)
    return dict(report.counts)


def _snapshot(app: Flask) -> dict[str, Any]:
    def _run(tx: Any) -> dict[str, Any]:
        links = sorted(
            (r.source_id, r.source, r.golden_id, r.grade, round(r.score, 6), r.rule, r.decider,
             r.digest) for r in tx.conn.execute(select(identity_links)))
        history = sorted(
            (r.action, r.source_id or "", r.golden_id or "", r.previous_golden or "",
             r.grade or "", round(r.score or 0.0, 6), r.rule or "", r.decider)
            for r in tx.conn.execute(select(identity_history)))
        blocks = sorted((r.key, r.source_id) for r in tx.conn.execute(select(identity_blocks)))
        reviews = sorted(
            (r.source_id, r.candidate_id, round(r.score, 6), r.rule, r.levels, r.status)
            for r in tx.conn.execute(select(identity_reviews)))
        goldens = {}
        for gid in sorted({link[2] for link in links}):
            stored = tx.get("Patient", gid)
            body = orjson.loads(stored.content)
            body["meta"].pop("lastUpdated", None)
            goldens[gid] = (stored.version_id, body)
        return {"links": links, "history": history, "blocks": blocks, "reviews": reviews,
                "goldens": goldens}

    result: dict[str, Any] = app.extensions["wraparound"].store.read(_run)
    return result


def _run_all(app: Flask, *, batched: bool) -> tuple[list[dict[str, int]], dict[str, Any]]:
    identity_of(app).batched = batched
    counts = []
    for source in SOURCE_NAMES:
        counts.append(_ingest(app, source, next((SOURCES / source).glob("sample.*")).read_bytes()))
    counts.append(_ingest(app, "social-care", _renamed_social_care()))
    for _ in range(2):  # the names change back, then nothing changes
        for source in SOURCE_NAMES:
            counts.append(_ingest(app, source,
                                  next((SOURCES / source).glob("sample.*")).read_bytes()))
    return counts, _snapshot(app)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
@pytest.mark.parametrize("chunk", [200, 37])
def test_batched_resolution_matches_one_statement_at_a_time(
        request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        kind: str, chunk: int) -> None:
    monkeypatch.setattr(ingest_service, "CHUNK", chunk)
    batches: list[Batch] = []
    original = Batch.__init__

    def _counted(self: Batch, *args: Any, **kwargs: Any) -> None:
        batches.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(Batch, "__init__", _counted)
    results = []
    for batched in (True, False):
        (tmp_path / str(batched)).mkdir()
        url = clean_database(request, tmp_path / str(batched), kind)
        app = create_app(Settings(env="test", data_dir=tmp_path / str(batched),
                                  database_url=url, db_pool_size=0))
        try:
            results.append(_run_all(app, batched=batched))
        finally:
            app.extensions["wraparound"].audit.flush()
            app.extensions["wraparound"].store.dispose()
        if kind == "sqlite":
            shutil.rmtree(tmp_path / str(batched), ignore_errors=True)
    (batched_counts, batched_state), (direct_counts, direct_state) = results
    assert batches, "the batched run used store.Batch"
    assert batched_counts == direct_counts
    assert all(set(c) == {"unchanged"} for c in batched_counts[-len(SOURCE_NAMES):])
    assert batched_counts[len(SOURCE_NAMES)].get("updated", 0) > 0
    assert any(h[0] == "move" for h in batched_state["history"]) or \
        len(batched_state["history"]) > len(batched_state["links"])
    for part in ("links", "history", "blocks", "reviews", "goldens"):
        assert batched_state[part] == direct_state[part], part


def test_a_batch_composes_golden_patients_from_the_patients_it_read(
        request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rewriting the golden Patients reads again (and parses) only members outside the batch."""
    from gateway.store.sql import _SqlWriteSession

    fetched: list[tuple[str, str]] = []
    original = _SqlWriteSession.fetch

    def _fetch(self: _SqlWriteSession, keys: Any) -> Any:
        fetched.extend(keys)
        return original(self, keys)

    monkeypatch.setattr(_SqlWriteSession, "fetch", _fetch)
    url = clean_database(request, tmp_path, "sqlite")
    app = create_app(Settings(env="test", data_dir=tmp_path, database_url=url, db_pool_size=0))
    try:
        source = SOURCE_NAMES[0]
        counts = _ingest(app, source, next((SOURCES / source).glob("sample.*")).read_bytes())
        assert counts.get("created", 0) > 0
        assert not [k for k in fetched if k[0] == "Patient"]  # every member was in the batch
        state = _snapshot(app)
        assert state["goldens"] and all(
            {link["other"]["reference"] for link in body["link"]}
            <= {f"Patient/{link[0]}" for link in state["links"] if link[2] == gid}
            for gid, (_, body) in state["goldens"].items())
    finally:
        app.extensions["wraparound"].audit.flush()
        app.extensions["wraparound"].store.dispose()
