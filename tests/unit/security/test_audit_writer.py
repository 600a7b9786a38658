"""The audit writer's direct path: the same stored JSON and index rows as the generic write path."""
from __future__ import annotations

import dataclasses
import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from gateway.fhir.indexing import extract_index
from gateway.fhir.registry import load_registry
from gateway.security.audit import (
    AuditContext,
    AuditTrail,
    audit_index,
    build_event,
    time_ordered_ids,
)
from gateway.security.context import Caller
from gateway.store import SqlResourceStore, make_engine
from gateway.store.schema import (
    idx_audit_reference,
    idx_reference,
    index_tables,
    resource_history,
    resources,
    stored_references,
)

REGISTRY = load_registry()
AUDIT = REGISTRY.get("AuditEvent")
CALLER = Caller("dev:health", "health", ("system/*.rs",), token_id="t1")


def _ctx(interaction: str, **fields: Any) -> AuditContext:
    ctx = AuditContext(interaction, request_id=fields.pop("request_id", None))
    for ref in fields.pop("touch", ()):
        ctx.touch(ref)
    for name, value in fields.items():
        setattr(ctx, name, value)
    return ctx


def _events() -> list[dict[str, Any]]:
    glass = Caller("dev:health", "health", ("system/*.rs",), break_glass_reason="emergency",
                   user="dr-1")
    events = [
        build_event(CALLER, _ctx("read", touch=["Patient/p1"], request_id="r1"), "success",
                    request_id="r1", status=200),
        build_event(CALLER, _ctx("search", touch=["Patient/p1", "Observation/o1",
                                                   "https://x.example/fhir/Flag/f1/_history/2"],
                                  query="family=smith&_count=5", res_type="Patient"),
                    "success", request_id="r2", status=200),
        build_event(None, _ctx("denied"), "minor", request_id="r3", status=401),
        build_event(glass, _ctx("read", touch=["Patient/p2"], break_glass=True), "success",
                    request_id=None, status=200),
        build_event(glass, _ctx("break-the-glass"), "success", request_id="r4"),
        build_event(CALLER, _ctx("token", description="invalid_client"), "minor",
                    request_id="r5", status=401),
        build_event(CALLER, _ctx("create", touch=["#contained", "urn:uuid:1"]), "serious",
                    request_id="r6", status=500),
    ]
    # Shapes the gateway's own events do not have, still indexed as the generic path does.
    events.append({**events[0], "agent": [{"who": {"reference": "Practitioner/pr1"}},
                                          {"who": {"reference": "Basic/b1"}}],
                   "source": {"observer": {"reference": "Device/d1"}},
                   "recorded": "2026-01-02T03:04:05+01:00",
                   "meta": {"tag": [{"system": "urn:s", "code": "t"}],
                            "security": [{"system": "urn:c", "code": "R"}],
                            "profile": ["http://example.org/p"]}})
    events.append({**events[1], "purposeOfEvent": [{"coding": [{"code": "TREAT"}]}, {"text": "x"}],
                   "action": True})
    events.append({**events[0], "period": {"start": "2026-01-01"}})  # an element not indexed
    return events


def _kept(rows: Any) -> Any:
    """The rows of the generic extractor that are stored (`patient` is read from `entity`)."""
    assert any(p == "patient" for p, _, _ in rows.references) == any(
        p == "entity" and t == "Patient" for p, t, _ in rows.references)
    return dataclasses.replace(rows, references=stored_references("AuditEvent", rows.references))


def _sorted(rows: Any) -> dict[str, list[Any]]:
    return {name: sorted(getattr(rows, name), key=repr)
            for name in ("tokens", "strings", "dates", "references", "numbers", "uris")}


@pytest.mark.parametrize("index", range(len(_events())))
def test_audit_index_equals_the_generic_extractor(index: int) -> None:
    assert AUDIT is not None
    event = _events()[index]
    direct = _sorted(audit_index(event, AUDIT))
    assert direct == _sorted(_kept(extract_index(AUDIT, event)))
    assert direct["tokens"] and direct["dates"]


def test_events_the_gateway_builds_take_the_direct_path_and_others_do_not() -> None:
    from gateway.security.audit import _own_event_rows

    events = _events()
    built, other = events[:7], events[7:]
    assert all(_own_event_rows(event) is not None for event in built)
    assert all(_own_event_rows(event) is None for event in other)
    # A built event changed afterwards is no longer recognised as one.
    changed = [{**built[0], "meta": {"tag": [{"code": "x"}]}}, {**built[0], "action": "Z"},
               {**built[0], "recorded": "2026-01-01"}, {**built[3], "purposeOfEvent": []},
               {**built[0], "subtype": [{"code": "read"}]}]
    assert all(_own_event_rows(event) is None for event in changed)
    assert AUDIT is not None
    for event in changed:
        assert _sorted(audit_index(event, AUDIT)) == _sorted(_kept(extract_index(AUDIT, event)))


def test_recorded_is_an_instant_with_milliseconds() -> None:
    from datetime import UTC, datetime, timedelta

    from gateway.security.audit import _recorded

    recorded = _events()[0]["recorded"]
    assert len(recorded) == 24 and recorded.endswith("Z") and recorded[19] == "."
    for _ in range(3):  # across the cache of the formatted second
        before = datetime.now(UTC) - timedelta(milliseconds=1)
        value = datetime.strptime(_recorded(), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        after = datetime.now(UTC)
        assert before <= value <= after
        time.sleep(0.4)


@pytest.fixture
def store(db_url: str) -> Iterator[SqlResourceStore]:
    engine = make_engine(db_url, pool_size=0)
    yield SqlResourceStore(engine, REGISTRY)
    engine.dispose()


def _stored(engine: sa.Engine, ids: list[str]) -> tuple[list[tuple[Any, ...]], ...]:
    """Return every row the ids have in resources, history and each index table, with the id
    replaced by its position in `ids` and the timestamps dropped."""
    pos = {rid: n for n, rid in enumerate(ids)}
    out = []
    with engine.connect() as conn:
        for table in (resources, resource_history, *index_tables("AuditEvent")):
            rows = conn.execute(sa.select(table).where(table.c.res_type == "AuditEvent",
                                                       table.c.res_id.in_(ids))).mappings()
            found = []
            for row in rows:
                data = dict(row)
                data["res_id"] = pos[data["res_id"]]
                data.pop("last_updated", None)
                if data.get("content"):
                    content = json.loads(data["content"])
                    assert content["id"] in pos and content["meta"]["versionId"] == "1"
                    content["id"] = pos[content["id"]]
                    content["meta"].pop("lastUpdated")
                    data["content"] = content
                found.append(tuple(sorted((k, repr(v)) for k, v in data.items())))
            out.append(sorted(found))
    return tuple(out)


def test_batch_stores_what_the_generic_write_path_stores(store: SqlResourceStore) -> None:
    events = _events()
    direct_ids = [str(uuid.uuid4()) for _ in events]
    AuditTrail(store).store_batch(events, ids=direct_ids)
    generic_ids = [str(uuid.uuid4()) for _ in events]
    store.write(lambda tx: tx.insert_many([("AuditEvent", rid, event)
                                           for rid, event in zip(generic_ids, events)]))
    direct = _stored(store.engine, direct_ids)
    assert direct == _stored(store.engine, generic_ids)
    resources_rows, history_rows, *index_rows = direct
    # Append-only: the one version is the current row, and no history row repeats it.
    assert len(resources_rows) == len(events) and history_rows == []
    assert sum(len(rows) for rows in index_rows) > 5 * len(events)


def test_batch_ids_are_time_ordered_version_7_uuids(store: SqlResourceStore) -> None:
    before = time.time_ns() // 1_000_000
    AuditTrail(store).store_batch(_events()[:3])
    AuditTrail(store).store_batch(_events()[:3])
    after = time.time_ns() // 1_000_000
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(resources.c.res_id, resources.c.content).where(
            resources.c.res_type == "AuditEvent")).all()
    ids = [uuid.UUID(rid) for rid, _ in rows]
    assert len(set(ids)) == 6
    assert all(one.version == 7 and one.variant == uuid.RFC_4122 for one in ids)
    assert all(before <= one.int >> 80 <= after for one in ids)
    # Within a batch the ids follow the order of the events; each stored event has its id.
    by_content = {json.loads(content)["id"]: rid for rid, content in rows}
    assert by_content == {rid: rid for rid, _ in rows}
    first = sorted(str(one) for one in ids)[:3]
    assert first == sorted(first) and len({one[:14] for one in first}) <= 2


def test_time_ordered_ids_sort_in_the_order_they_were_drawn() -> None:
    drawn = [rid for _ in range(50) for rid in time_ordered_ids(7)]
    assert len(set(drawn)) == len(drawn)
    assert [rid[:13] for rid in drawn] == sorted(rid[:13] for rid in drawn)  # by millisecond
    batch = time_ordered_ids(300)
    assert batch == sorted(batch)


def test_audit_references_stay_out_of_the_shared_reference_index(
        store: SqlResourceStore) -> None:
    AuditTrail(store).store_batch(_events()[:2])
    with store.engine.connect() as conn:
        shared = conn.execute(sa.select(sa.func.count()).select_from(idx_reference).where(
            idx_reference.c.res_type == "AuditEvent")).scalar_one()
        own = conn.execute(sa.select(idx_audit_reference.c.param,
                                     idx_audit_reference.c.target_id)).all()
    assert shared == 0
    assert sorted(own) == [("entity", "f1"), ("entity", "o1"), ("entity", "p1"),
                           ("entity", "p1")]


def test_writer_groups_queued_events_and_flush_waits_for_them(store: SqlResourceStore) -> None:
    trail = AuditTrail(store, flush_interval=0.05)
    for n in range(30):
        ctx = _ctx("read", touch=[f"Patient/p{n}"])
        trail.record(build_event(CALLER, ctx, "success", request_id=f"r{n}", status=200))
    trail.flush()
    with store.engine.connect() as conn:
        refs = sorted(conn.execute(sa.select(idx_audit_reference.c.target_id).where(
            idx_audit_reference.c.res_type == "AuditEvent",
            idx_audit_reference.c.param == "entity",
            idx_audit_reference.c.target_type == "Patient")).scalars())
        stamps = set(conn.execute(sa.select(resources.c.last_updated).where(
            resources.c.res_type == "AuditEvent")).scalars())
    assert refs == sorted(f"p{n}" for n in range(30))
    assert len(stamps) < 30  # group-committed: fewer transactions than events


def test_sustained_traffic_is_stored_by_max_delay_not_held_back(store: SqlResourceStore) -> None:
    # Events keep arriving closer together than flush_interval, so only max_delay ends a batch.
    trail = AuditTrail(store, flush_interval=0.05, max_delay=0.1)
    for n in range(30):
        trail.record(build_event(CALLER, _ctx("read", touch=[f"Patient/q{n}"]), "success",
                                 request_id=f"q{n}", status=200))
        time.sleep(0.02)
    trail.flush()
    with store.engine.connect() as conn:
        stamps = list(conn.execute(sa.select(resources.c.last_updated).where(
            resources.c.res_type == "AuditEvent")).scalars())
    assert len(stamps) == 30
    assert len(set(stamps)) >= 2  # more than one transaction: the batch did not wait for a gap


class _FlakyStore:
    """The real store, whose first `failures` writes fail as a dropped connection would."""

    def __init__(self, store: SqlResourceStore, failures: int) -> None:
        self._store = store
        self.failures = failures
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def write(self, fn: Any) -> Any:
        self.calls += 1
        if self.calls <= self.failures:
            raise sa.exc.OperationalError("INSERT", {}, Exception("connection lost"))
        return self._store.write(fn)


def _audited_patients(store: SqlResourceStore) -> list[str]:
    with store.engine.connect() as conn:
        return sorted(conn.execute(sa.select(idx_audit_reference.c.target_id).where(
            idx_audit_reference.c.res_type == "AuditEvent",
            idx_audit_reference.c.param == "entity",
            idx_audit_reference.c.target_type == "Patient")).scalars())


def test_a_database_outage_delays_audit_events_but_loses_none(store: SqlResourceStore) -> None:
    flaky = _FlakyStore(store, failures=3)
    trail = AuditTrail(flaky, flush_interval=0.01, retry_delay=0.01)  # type: ignore[arg-type]
    for n in range(10):
        trail.record(build_event(CALLER, _ctx("read", touch=[f"Patient/o{n}"]), "success",
                                 request_id=f"o{n}", status=200))
    trail.flush()
    assert flaky.calls > 3  # it failed, waited and tried again
    assert _audited_patients(store) == sorted(f"o{n}" for n in range(10))


def test_an_event_the_store_refuses_does_not_take_its_batch_with_it(
        store: SqlResourceStore) -> None:
    trail = AuditTrail(store, flush_interval=0.05)
    events = [build_event(CALLER, _ctx("read", touch=[f"Patient/b{n}"]), "success",
                          request_id=f"b{n}", status=200) for n in range(5)]
    events[2]["extension"] = [{"url": "urn:x", "valueString": object()}]  # not storable
    for event in events:
        trail.record(event)
    trail.flush()
    assert _audited_patients(store) == ["b0", "b1", "b3", "b4"]


def test_a_full_queue_makes_requests_wait_and_every_event_is_stored(
        store: SqlResourceStore) -> None:
    # A queue of 3 and a writer that needs three tries: the producers must wait, none may drop.
    flaky = _FlakyStore(store, failures=2)
    trail = AuditTrail(flaky, flush_interval=0.01, retry_delay=0.05,  # type: ignore[arg-type]
                       max_queue=3, max_batch=2)
    recorded: list[float] = []

    def produce(first: int) -> None:
        for n in range(first, first + 6):
            trail.record(build_event(CALLER, _ctx("read", touch=[f"Patient/w{n}"]), "success",
                                     request_id=f"w{n}", status=200))
            recorded.append(time.monotonic())

    started = time.monotonic()
    threads = [threading.Thread(target=produce, args=(k * 6,)) for k in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    trail.flush()
    assert len(recorded) == 18
    assert max(recorded) - started >= 0.1  # the outage held the producers back
    assert _audited_patients(store) == sorted(f"w{n}" for n in range(18))


def test_flush_returns_only_once_the_last_event_is_stored(store: SqlResourceStore) -> None:
    trail = AuditTrail(store, flush_interval=0.2)
    trail.record(build_event(CALLER, _ctx("read", touch=["Patient/f1"]), "success",
                             request_id="f1", status=200))
    trail.flush()  # the writer sleeps 0.2 s before storing: flush must wait for it
    assert _audited_patients(store) == ["f1"]
    trail.flush()  # nothing queued: returns at once


@pytest.mark.parametrize("index", range(len(_events())))
def test_a_prepared_event_is_stored_as_stamp_would_store_it(index: int) -> None:
    from gateway.security.audit import prepare, stamp_prepared
    from gateway.store.sql import stamp

    assert AUDIT is not None
    event = _events()[index]
    prepared = prepare(event, AUDIT)
    now = "2026-11-27T06:30:00.123456"
    assert stamp_prepared(prepared, "a-1", now) == stamp(event, "a-1", 1, now)
    rows = audit_index(event, AUDIT)
    assert prepared[2] == (tuple(rows.tokens), tuple(rows.strings), tuple(rows.dates),
                           tuple(rows.references), tuple(rows.numbers), tuple(rows.uris))


def test_queued_events_are_not_tracked_by_the_garbage_collector() -> None:
    import gc

    from gateway.security.audit import prepare

    assert AUDIT is not None
    prepared = [prepare(event, AUDIT) for event in _events()[:7]]

    def containers(value: Any) -> list[Any]:
        inner = [part for item in value for part in containers(item)] if isinstance(
            value, tuple) else []
        return [value, *inner] if not isinstance(value, (str, float, int, type(None))) else []

    # Only tuples of strings: the collector stops tracking each once it has seen its items.
    assert {type(c) for one in prepared for c in containers(one)} == {tuple}
    for _ in range(5):
        gc.collect()
    assert not any(gc.is_tracked(one) for one in prepared)
    assert all(isinstance(part, str) for one in prepared for part in one[:2])


def test_an_event_that_cannot_be_serialised_is_logged_not_raised(
        store: SqlResourceStore, caplog: pytest.LogCaptureFixture) -> None:
    trail = AuditTrail(store, flush_interval=0.01)
    event = build_event(CALLER, _ctx("read", touch=["Patient/z1"]), "success",
                        request_id="z1", status=200)
    trail.record({**event, "extension": [{"url": "urn:x", "valueString": object()}]})
    trail.record(event)
    trail.flush()
    assert _audited_patients(store) == ["z1"]
    assert "could not store 1 audit events" in caplog.text
