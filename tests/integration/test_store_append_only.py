"""Append-only resources (AuditEvent): one version, in `resources` only, read back by vread and
every level of _history as if a history row held it."""
from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from gateway.fhir.registry import load_registry
from gateway.security.audit import AuditContext, AuditTrail, build_event
from gateway.security.context import Caller
from gateway.store import SqlResourceStore, make_engine
from gateway.store.schema import resource_history

REGISTRY = load_registry()
CALLER = Caller("dev:auditor", "auditor", ("system/AuditEvent.rs",))


@pytest.fixture
def store(db_url: str) -> Iterator[SqlResourceStore]:
    engine = make_engine(db_url, pool_size=0)
    yield SqlResourceStore(engine, REGISTRY)
    engine.dispose()


def _patient(n: int) -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": f"F{n}"}]}


def _event(n: int) -> dict[str, Any]:
    ctx = AuditContext("read", request_id=f"r{n}")
    ctx.touch(f"Patient/p{n}")
    return build_event(CALLER, ctx, "success", request_id=f"r{n}", status=200)


def _write_mixed(store: SqlResourceStore) -> list[tuple[str, str, int]]:
    """Interleave Patient versions and AuditEvents; return (type, id, version) newest first."""
    trail = AuditTrail(store)
    written: list[tuple[str, str, int, str]] = []
    previous: dict[str, Any] = {}
    for n in range(6):
        for pid in ("a", "b"):
            stored = store.write(lambda tx, pid=pid, n=n: tx.put(
                "Patient", pid, _patient(n), previous=previous.get(pid), method="PUT"))
            previous[pid] = stored
            written.append(("Patient", pid, stored.version_id, stored.last_updated))
            time.sleep(0.002)
        trail.store_batch([_event(n)], ids=[f"e{n}"])
        (event,) = store.read(lambda tx, n=n: tx.fetch([("AuditEvent", f"e{n}")]))
        written.append(("AuditEvent", f"e{n}", 1, event.last_updated))
        time.sleep(0.002)
    written.sort(key=lambda w: (w[0], w[1], -w[2]))
    written.sort(key=lambda w: w[3], reverse=True)
    return [(t, i, v) for t, i, v, _ in written]


def _page(store: SqlResourceStore, **kwargs: Any) -> tuple[list[tuple[str, str, int]], int]:
    args = {"res_type": None, "res_id": None, "since": None, "before": None, **kwargs}
    entries, total = store.read(lambda tx: tx.history(**args))
    return [(e.res_type, e.res_id, e.version_id) for e in entries], total


def test_audit_events_have_no_history_rows_but_read_back_as_version_1(
        store: SqlResourceStore) -> None:
    _write_mixed(store)
    with store.engine.connect() as conn:
        kinds = set(conn.execute(sa.select(resource_history.c.res_type).distinct()).scalars())
    assert kinds == {"Patient"}
    one = store.read(lambda tx: tx.get_version("AuditEvent", "e3", 1))
    assert one is not None and one.method == "POST" and '"id":"e3"' in (one.content or "")
    assert store.read(lambda tx: tx.get_version("AuditEvent", "e3", 2)) is None
    assert store.read(lambda tx: tx.get_version("AuditEvent", "nope", 1)) is None
    assert _page(store, res_type="AuditEvent", res_id="e3", count=10, offset=0) == (
        [("AuditEvent", "e3", 1)], 1)


@pytest.mark.parametrize(("count", "offset"), [(50, 0), (5, 0), (5, 5), (7, 10), (4, 16)])
def test_system_history_merges_both_kinds_in_order(store: SqlResourceStore, count: int,
                                                   offset: int) -> None:
    expected = _write_mixed(store)
    assert len(expected) == 18
    assert _page(store, count=count, offset=offset) == (expected[offset:offset + count], 18)
    events = [e for e in expected if e[0] == "AuditEvent"]
    assert _page(store, res_type="AuditEvent", count=count, offset=offset) == (
        events[offset:offset + count], 6)
    assert _page(store, types=["AuditEvent", "Patient"], count=count, offset=offset) == (
        expected[offset:offset + count], 18)
    patients = [e for e in expected if e[0] == "Patient"]
    assert _page(store, types=["Patient"], count=count, offset=offset) == (
        patients[offset:offset + count], 12)
    assert _page(store, types=[], count=count, offset=offset) == ([], 0)


def test_append_only_resources_cannot_be_changed(store: SqlResourceStore) -> None:
    AuditTrail(store).store_batch([_event(1)], ids=["e1"])
    (current,) = store.read(lambda tx: tx.fetch([("AuditEvent", "e1")]))
    with pytest.raises(ValueError, match="append-only"):
        store.write(lambda tx: tx.put("AuditEvent", "e1", _event(2), previous=current,
                                      method="PUT"))
    with pytest.raises(ValueError, match="append-only"):
        store.write(lambda tx: tx.delete(current))
    (after,) = store.read(lambda tx: tx.fetch([("AuditEvent", "e1")]))
    assert after == current
