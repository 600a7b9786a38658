"""Staged writes (ingest's batched path) store exactly what one-by-one `put`s store."""
from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from gateway.store import RetryableConflict
from gateway.store.schema import idx_string, resource_history, resources


def _patient(pid: str, family: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "name": [{"family": family}]}


def _families(tx: Any, pid: str) -> list[str]:
    s = idx_string.c
    rows = tx.conn.execute(select(s.value).where(s.res_type == "Patient", s.res_id == pid,
                                                 s.param == "family"))
    return sorted(r.value for r in rows)


def test_staged_writes_keep_versions_history_index_and_changes(app: Flask) -> None:
    store = app.extensions["wraparound"].store
    seen_by_hook: list[int] = []

    def hook(tx: Any) -> None:  # a commit hook reads the database: staged rows are there
        seen_by_hook.append(tx.conn.execute(
            select(func.count()).select_from(resources)
            .where(resources.c.res_id.in_(["st-a", "st-b"]))).scalar_one())

    store.write(lambda tx: tx.put("Patient", "st-a", _patient("st-a", "Old"), previous=None,
                                  method="PUT"))
    store.add_commit_hook(hook)

    def batch(tx: Any) -> list[Any]:
        current = tx.get_many_for_update([("Patient", "st-a"), ("Patient", "st-b"),
                                          ("Patient", "st-a")])
        assert set(current) == {("Patient", "st-a")}
        a2 = tx.stage("Patient", "st-a", _patient("st-a", "Newer"),
                      previous=current[("Patient", "st-a")], method="PUT")
        b1 = tx.stage("Patient", "st-b", _patient("st-b", "First"), previous=None, method="PUT")
        b2 = tx.stage("Patient", "st-b", _patient("st-b", "Second"), previous=b1, method="PUT")
        assert [(c.res_id, c.version_id, c.previous_version) for c in tx.changes] == [
            ("st-a", 2, 1), ("st-b", 1, None), ("st-b", 2, 1)]
        # Reading through the session flushes what was staged first.
        assert _families(tx, "st-b") == ["Second"]
        assert _families(tx, "st-a") == ["Newer"]
        return [a2, b1, b2]

    a2, b1, b2 = store.write(batch)
    assert seen_by_hook == [2]
    assert (a2.version_id, b1.version_id, b2.version_id) == (2, 1, 2)
    assert b2.last_updated >= b1.last_updated

    def check(tx: Any) -> None:
        current = tx.get_many_for_update([("Patient", "st-a"), ("Patient", "st-b")])
        assert current[("Patient", "st-a")].version_id == 2
        assert '"Second"' in (current[("Patient", "st-b")].content or "")
        h = resource_history.c
        versions = tx.conn.execute(select(h.res_id, h.version_id, h.method, h.last_updated)
                                   .where(h.res_id.in_(["st-a", "st-b"]))
                                   .order_by(h.res_id, h.version_id)).all()
        assert [tuple(v)[:3] for v in versions] == [("st-a", 1, "PUT"), ("st-a", 2, "PUT"),
                                                    ("st-b", 1, "PUT"), ("st-b", 2, "PUT")]
        assert versions[3].last_updated > versions[2].last_updated  # stored time increases
        assert tx.get_version("Patient", "st-b", 1).content.count('"First"') == 1
        assert _families(tx, "st-a") == ["Newer"]

    store.write(check)


def test_staging_from_a_stale_version_is_a_conflict(app: Flask) -> None:
    store = app.extensions["wraparound"].store
    store.write(lambda tx: tx.put("Patient", "st-c", _patient("st-c", "One"), previous=None,
                                  method="PUT"))

    def stale_in_batch(tx: Any) -> None:
        b1 = tx.stage("Patient", "st-d", _patient("st-d", "A"), previous=None, method="PUT")
        tx.stage("Patient", "st-d", _patient("st-d", "B"), previous=b1, method="PUT")
        tx.stage("Patient", "st-d", _patient("st-d", "C"), previous=b1, method="PUT")

    def changed_underneath(tx: Any) -> None:
        first = tx.get_many_for_update([("Patient", "st-c")])[("Patient", "st-c")]
        tx.put("Patient", "st-c", _patient("st-c", "Two"), previous=first, method="PUT")
        tx.stage("Patient", "st-c", _patient("st-c", "Three"), previous=first, method="PUT")
        tx.flush()

    def created_underneath(tx: Any) -> None:  # enough rows for PostgreSQL's COPY
        for n in range(20):
            tx.stage("Patient", f"st-n{n}", _patient(f"st-n{n}", "N"), previous=None,
                     method="PUT")
        tx.stage("Patient", "st-c", _patient("st-c", "Again"), previous=None, method="PUT")
        tx.flush()

    for unit in (stale_in_batch, changed_underneath, created_underneath):
        with pytest.raises(RetryableConflict):
            store.write(unit)
    stored = store.read(lambda tx: tx.get("Patient", "st-c"))
    assert stored.version_id == 1 and '"One"' in stored.content
    assert store.read(lambda tx: tx.get("Patient", "st-d")) is None
    assert store.read(lambda tx: tx.get("Patient", "st-n0")) is None
