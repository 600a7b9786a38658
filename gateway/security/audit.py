"""AuditEvent for everything: who (client, agency, user), what, why, outcome, correlation id.

Writes are audited inside the transaction that makes them. Everything else (reads, searches,
denials, token requests) is queued and written by a group-commit thread: `flush_interval`
(50 ms) after the last queued event, and under sustained traffic at most `max_delay` (1 s)
after the oldest; `flush()` drains the queue (called at shutdown and by tests).
Audit records are resources like any other, but no agency may write or delete them through
the API and only the auditor reads them.
"""
from __future__ import annotations

import base64
import dataclasses
import functools
import logging
import os
import re
import threading
import time
import uuid
from collections import deque
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa

from gateway.fhir.indexing import IndexRows, date_range, extract_index, parse_reference
from gateway.fhir.registry import ResourceType
from gateway.security.context import Caller
from gateway.store.schema import stored_references
from gateway.store.sql import SqlResourceStore, to_instant, utc_now
from vocab import systems

log = logging.getLogger(__name__)

ACTIONS = {"create": "C", "read": "R", "vread": "R", "search": "E", "history": "R",
           "update": "U", "delete": "D", "transaction": "E", "batch": "E", "operation": "E",
           "token": "E", "ingest": "C", "denied": "E", "national": "E"}
OUTCOMES = {"success": "0", "minor": "4", "serious": "8", "major": "12"}


@dataclass
class AuditContext:
    """What the current request touched, filled in as it runs."""

    interaction: str
    res_type: str | None = None
    entities: list[str] = field(default_factory=list)
    query: str | None = None
    written_in_transaction: bool = False
    break_glass: bool = False
    description: str | None = None
    request_id: str | None = None

    def touch(self, reference: str) -> None:
        """Record a resource the request read or wrote (each once, at most 200)."""
        if reference not in self.entities and len(self.entities) < 200:
            self.entities.append(reference)


_context: ContextVar[AuditContext | None] = ContextVar("wraparound_audit", default=None)


def current_audit() -> AuditContext | None:
    """Return the audit context of the current request, if any."""
    return _context.get()


def begin_audit(ctx: AuditContext | None) -> object:
    """Set the audit context for the current request and return a reset token."""
    return _context.set(ctx)


def end_audit(token: object) -> None:
    """Restore the previous audit context."""
    _context.reset(token)  # type: ignore[arg-type]


# The parts every event shares, built once (never mutated: events are only serialised).
_TYPE = {"system": systems.AUDIT_EVENT_TYPE, "code": "rest", "display": "RESTful Operation"}
_AGENT_TYPE = {"coding": [{"system": systems.DICOM_AUDIT_ROLE, "code": "110153",
                           "display": "Source Role ID"}]}
_SOURCE = {"site": "wraparound", "observer": {"display": "Wraparound gateway"},
           "type": [{"system": systems.SECURITY_SOURCE_TYPE, "code": "3",
                     "display": "Web Server"}]}
_QUERY_TYPE = {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
               "code": "2", "display": "System Object"}
_BTG = [{"system": systems.ACT_REASON, "code": "BTG", "display": "break the glass"}]
_SUBTYPES: dict[str, list[dict[str, str]]] = {}


_UNAUTHENTICATED = [{"type": _AGENT_TYPE, "requestor": True,
                      "who": {"display": "unauthenticated caller"}}]


@functools.lru_cache(maxsize=1024)
def _agent(client_id: str, agency: str, user: str | None) -> list[dict[str, Any]]:
    """Return the agent list of a caller's events (built once per caller; never mutated)."""
    agent: dict[str, Any] = {"type": _AGENT_TYPE, "requestor": True,
                             "who": {"identifier": {"system": systems.CLIENT_ID,
                                                    "value": client_id},
                                     "display": f"agency {agency}"}}
    if user:
        agent["altId"] = user[:128]
    return [agent]


_second: tuple[int, str] = (-1, "")  # the last whole second formatted, and its text


def _recorded() -> str:
    """Return the current time as a FHIR instant with milliseconds (what to_instant gives)."""
    global _second
    second, millis = divmod(time.time_ns() // 1_000_000, 1000)
    cached = _second  # one tuple, replaced whole: threads never see half an update
    if cached[0] != second:
        cached = _second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{cached[1]}.{millis:03d}Z"


def build_event(caller: Caller | None, ctx: AuditContext, outcome: str, *,
                request_id: str | None, status: int | None = None) -> dict[str, Any]:
    """Return an AuditEvent for one request."""
    subtype = _SUBTYPES.get(ctx.interaction)
    if subtype is None:
        subtype = _SUBTYPES.setdefault(ctx.interaction, [{
            "system": systems.AUDIT_EVENT_SUBTYPE, "code": ctx.interaction}])
        _share_tokens("subtype", subtype)
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": _TYPE,
        "subtype": subtype,
        "action": ACTIONS.get(ctx.interaction, "E"),
        "recorded": _recorded(),
        "outcome": OUTCOMES[outcome],
    }
    if status is not None:
        event["outcomeDesc"] = f"HTTP {status}"
    if ctx.break_glass and caller and caller.break_glass_reason:
        event["purposeOfEvent"] = [{"coding": _BTG, "text": caller.break_glass_reason[:200]}]
    event["agent"] = (_agent(caller.client_id, caller.agency, caller.user)
                      if caller is not None else _UNAUTHENTICATED)
    event["source"] = _SOURCE
    entities: list[dict[str, Any]] = [{"what": {"reference": ref}} for ref in ctx.entities]
    if ctx.query is not None:
        entities.append({"type": _QUERY_TYPE,
                         "description": f"{ctx.res_type or ''} search",
                         "query": base64.b64encode(ctx.query.encode("utf-8")).decode("ascii")})
    if request_id:
        entities.append({"description": (ctx.description or "request")[:200],
                         "detail": [{"type": "correlation-id", "valueString": request_id[:64]}]})
    if entities:
        event["entity"] = entities
    return event


# -- index rows -------------------------------------------------------------------------------
# The AuditEvent search parameters (resource_types.yaml) read these elements; an event with any
# other element is indexed by the generic extractor instead.
_INDEXED_KEYS = frozenset({"resourceType", "type", "subtype", "action", "recorded", "outcome",
                           "outcomeDesc", "purposeOfEvent", "agent", "source", "entity", "meta"})
_AGENT_TARGETS = frozenset({"Practitioner", "PractitionerRole", "RelatedPerson", "Patient",
                            "Device", "Organization"})
_OWN_INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


def _pairs(value: Any) -> list[tuple[str | None, str]]:
    """Return the (system, code) pairs a token parameter indexes for one value."""
    if isinstance(value, bool):
        return [(None, "true" if value else "false")]
    if isinstance(value, str):
        return [(None, value)]
    if not isinstance(value, dict):
        return []
    if "coding" in value:
        return [(c.get("system"), c["code"]) for c in value.get("coding") or ()
                if isinstance(c, dict) and isinstance(c.get("code"), str)]
    for key in ("code", "value"):
        if isinstance(value.get(key), str):
            return [(value.get("system"), value[key])]
    return []


# Token rows of the elements build_event shares between events (module constants that live as
# long as the process, so their ids are stable), computed once: id -> (the object, its rows).
_SHARED_TOKENS: dict[int, tuple[Any, tuple[tuple[str, str | None, str], ...]]] = {}


def _share_tokens(param: str, value: Any) -> None:
    rows = tuple((param, system, code) for one in _each(value) for system, code in _pairs(one))
    _SHARED_TOKENS[id(value)] = (value, rows)


def _each(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _reference(value: Any) -> tuple[str | None, str] | None:
    if isinstance(value, dict) and isinstance(value.get("reference"), str):
        return parse_reference(value["reference"])
    return None


# The token rows of the codes build_event writes, made once.
_ACTION_ROWS = {code: ("action", None, code) for code in set(ACTIONS.values())}
_OUTCOME_ROWS = {code: ("outcome", None, code) for code in OUTCOMES.values()}
_BTG_ROWS = tuple(("purpose", c["system"], c["code"]) for c in _BTG)


def _own_event_rows(event: dict[str, Any]) -> IndexRows | None:
    """Return the index rows of an event as build_event makes it, or None for any other shape.

    Such an event is recognised by the parts it shares with every other (type and source, the
    same objects) and by having no other elements than build_event writes; its agent carries
    an identifier, never a reference. The rows are those `audit_index` gives, without walking.
    """
    if (event.get("type") is not _TYPE or event.get("source") is not _SOURCE
            or not event.keys() <= _OWN_KEYS):
        return None
    subtype = _SHARED_TOKENS.get(id(event.get("subtype")))
    action = _ACTION_ROWS.get(event.get("action"))  # type: ignore[arg-type]
    outcome = _OUTCOME_ROWS.get(event.get("outcome"))  # type: ignore[arg-type]
    recorded = event.get("recorded")
    if (subtype is None or subtype[0] is not event["subtype"] or action is None
            or outcome is None or not isinstance(recorded, str)
            or not _OWN_INSTANT.fullmatch(recorded)):
        return None
    tokens = [*_TYPE_ROWS, *subtype[1], action, outcome]
    purpose = event.get("purposeOfEvent")
    if purpose is not None:
        if not (isinstance(purpose, list) and len(purpose) == 1
                and purpose[0].get("coding") is _BTG):
            return None
        tokens.extend(_BTG_ROWS)
    instant = recorded[:23] + "000"
    refs: list[tuple[str, str | None, str]] = []
    for entity in event.get("entity", ()):
        what = entity.get("what")
        if what is not None:
            ref = parse_reference(what["reference"])
            if ref is not None:
                refs.append(("entity", ref[0], ref[1]))
    return IndexRows(tokens, [], [("date", instant, instant)], refs, [], [])


def audit_index(event: dict[str, Any], rtype: ResourceType) -> IndexRows:
    """Return the index rows stored for an AuditEvent: the rows `extract_index(rtype, event)`
    returns less the derived ones (`stored_references`), read straight from the elements the
    AuditEvent search parameters use."""
    own = _own_event_rows(event)
    if own is not None:
        return own
    if not event.keys() <= _INDEXED_KEYS:
        rows = extract_index(rtype, event)
        return dataclasses.replace(
            rows, references=stored_references("AuditEvent", rows.references))
    tokens: list[tuple[str, str | None, str]] = []
    for param, key in (("type", "type"), ("subtype", "subtype"), ("action", "action"),
                       ("outcome", "outcome"), ("purpose", "purposeOfEvent")):
        if key in event:
            value = event[key]
            shared = _SHARED_TOKENS.get(id(value)) if isinstance(value, (dict, list)) else None
            if shared is not None and shared[0] is value:
                tokens.extend(shared[1])
                continue
            for one in _each(value):
                tokens.extend((param, system, code) for system, code in _pairs(one))
    meta = event.get("meta")
    uris: list[tuple[str, str]] = []
    if isinstance(meta, dict):
        for param, key in (("_tag", "tag"), ("_security", "security")):
            for value in _each(meta.get(key, [])):
                tokens.extend((param, system, code) for system, code in _pairs(value))
        uris = [("_profile", v[:1024]) for v in _each(meta.get("profile", []))
                if isinstance(v, str)]
    dates: list[tuple[str, str, str]] = []
    recorded = event.get("recorded")
    if isinstance(recorded, str):
        if _OWN_INSTANT.fullmatch(recorded):
            instant = recorded[:23] + "000"
            dates.append(("date", instant, instant))
        else:
            rng = date_range(recorded)
            if rng:
                dates.append(("date", rng[0], rng[1]))
    refs: list[tuple[str, str | None, str]] = []
    for agent in _each(event.get("agent", [])):
        ref = _reference(agent.get("who")) if isinstance(agent, dict) else None
        if ref and ref[0] in _AGENT_TARGETS:
            refs.append(("agent", ref[0], ref[1]))
    entity_refs = []
    for entity in _each(event.get("entity", [])):
        ref = _reference(entity.get("what")) if isinstance(entity, dict) else None
        if ref:
            entity_refs.append(ref)
    refs.extend(("entity", t, i) for t, i in entity_refs)  # `patient` is read from these
    source = event.get("source")
    ref = _reference(source.get("observer")) if isinstance(source, dict) else None
    if ref:
        refs.append(("source", ref[0], ref[1]))
    return IndexRows(tokens, [], dates, refs, [], uris)


_share_tokens("type", _TYPE)
_TYPE_ROWS = _SHARED_TOKENS[id(_TYPE)][1]
_OWN_KEYS = frozenset({"resourceType", "type", "subtype", "action", "recorded", "outcome",
                       "outcomeDesc", "purposeOfEvent", "agent", "source", "entity"})


# An AuditEvent as the writer queues it: the JSON of its meta elements other than versionId and
# lastUpdated (without braces), the JSON of its other elements, and its index rows as tuples in
# IndexRows' field order. Strings and tuples of strings only: the garbage collector stops
# tracking such tuples, so queued events add nothing to its collections.
Prepared = tuple[str, str, tuple[tuple[Any, ...], ...]]
_SERVER_KEYS = ("resourceType", "id", "meta")


def prepare(event: dict[str, Any], rtype: ResourceType) -> Prepared:
    """Return an AuditEvent in the form the writer queues (raises when it cannot be stored)."""
    rows = audit_index(event, rtype)
    meta = event.get("meta") or {}
    extra = orjson.dumps({k: v for k, v in meta.items()
                          if k not in ("versionId", "lastUpdated")}).decode("utf-8")[1:-1]
    body = orjson.dumps({k: v for k, v in event.items() if k not in _SERVER_KEYS}
                        ).decode("utf-8")[1:-1]
    return (extra, body, (tuple(rows.tokens), tuple(rows.strings), tuple(rows.dates),
                          tuple(rows.references), tuple(rows.numbers), tuple(rows.uris)))


def stamp_prepared(prepared: Prepared, res_id: str, now: str) -> str:
    """Return the stored JSON of a prepared AuditEvent: what `stamp` gives for it (version 1)."""
    extra, body, _ = prepared
    meta = (f"{extra}," if extra else "") + f'"versionId":"1","lastUpdated":"{to_instant(now)}"'
    return (f'{{"resourceType":"AuditEvent","id":"{res_id}","meta":{{{meta}}}'
            + (f",{body}}}" if body else "}"))


def time_ordered_ids(count: int) -> list[str]:
    """Return `count` new ids in the UUID version 7 layout (RFC 9562): the Unix time in
    milliseconds, a counter within the call, then 62 random bits.

    Events are appended in id order, so their rows go to the right-hand edge of every index
    keyed by id instead of a random page each (which a commit must then write out whole).
    """
    millis = time.time_ns() // 1_000_000
    raw = os.urandom(8 * count)
    head = (millis << 80) | (0x7 << 76)
    variant = 0b10 << 62
    return [str(uuid.UUID(int=head | ((n & 0xFFF) << 64) | variant
                          | (int.from_bytes(raw[8 * n:8 * n + 8], "big") >> 2)))
            for n in range(count)]


class _EventBuffer:
    """A bounded buffer between request threads (many producers) and the writer (one consumer).

    A put is one lock and an append; a request waits only when the buffer is full. The writer
    takes everything queued in one step, and `join` waits until every event put is stored.
    """

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: deque[Prepared] = deque()
        self._lock = threading.Lock()
        self._not_full = threading.Condition(self._lock)
        self._not_empty = threading.Condition(self._lock)
        self._all_done = threading.Condition(self._lock)
        self._unfinished = 0
        self._consumer_waiting = False

    def put(self, item: Prepared) -> None:
        with self._lock:
            while len(self._items) >= self.maxsize:
                self._not_full.wait()
            self._items.append(item)
            self._unfinished += 1
            if self._consumer_waiting:
                self._not_empty.notify()

    def get(self) -> Prepared:
        """Wait for one event and take it."""
        with self._lock:
            while not self._items:
                self._consumer_waiting = True
                self._not_empty.wait()
            self._consumer_waiting = False
            item = self._items.popleft()
            self._not_full.notify()
            return item

    def take(self, limit: int) -> list[Prepared]:
        """Take up to `limit` queued events without waiting."""
        with self._lock:
            items = self._items
            taken = [items.popleft() for _ in range(min(limit, len(items)))]
            if taken:
                self._not_full.notify(len(taken))
            return taken

    def done(self, count: int) -> None:
        """Mark `count` taken events as stored (or given up)."""
        with self._lock:
            self._unfinished -= count
            if self._unfinished <= 0:
                self._all_done.notify_all()

    def join(self) -> None:
        with self._lock:
            while self._unfinished:
                self._all_done.wait()


class AuditTrail:
    """Writes AuditEvents: in a caller's transaction, or queued and group-committed."""

    def __init__(self, store: SqlResourceStore, *, flush_interval: float = 0.05,
                 max_delay: float = 1.0, max_batch: int = 500, max_queue: int = 5000,
                 retry_delay: float = 0.1) -> None:
        self.store = store
        self.retry_delay = retry_delay
        self.flush_interval = flush_interval
        self.max_delay = max_delay
        self.max_batch = max_batch
        # Bounded: when the writer falls behind, requests wait rather than memory growing.
        self._queue: _EventBuffer = _EventBuffer(max_queue)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def write_in(self, tx: Any, event: dict[str, Any]) -> None:
        """Store an AuditEvent inside the caller's transaction."""
        tx.put("AuditEvent", time_ordered_ids(1)[0], event, previous=None, method="POST")

    def record(self, event: dict[str, Any]) -> None:
        """Queue an AuditEvent for the group-commit writer.

        The event is queued as its JSON text and index rows (strings and tuples of strings),
        not as the dicts it was built from: queued events live long enough to be promoted by
        the garbage collector, and containers promoted by the thousand made the full
        collections that walk every object in the process run several times as often.
        """
        try:
            prepared = prepare(event, self._rtype)
        except Exception:  # noqa: BLE001 - counted in the log, without content
            log.error("could not store 1 audit events: the event cannot be serialised")
            return
        thread = self._thread
        if thread is None or not thread.is_alive():
            self._start_thread()
        self._queue.put(prepared)

    def flush(self, timeout: float = 10.0) -> None:
        """Block until every queued event is stored."""
        if self._thread is None:
            return
        self._queue.join()

    def _start_thread(self) -> None:
        # Started lazily so that each forked gunicorn worker gets its own writer.
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="audit-writer",
                                                daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            oldest = time.monotonic()
            # Group commit: keep gathering while events keep coming, and store the batch once
            # a flush_interval passes with none, or it is max_delay old, or max_batch long.
            # Sleeping and then draining (rather than waiting on the queue for each event)
            # means a request that queues an event never has to wake this thread.
            while len(batch) < self.max_batch:
                time.sleep(max(0.0, min(self.flush_interval,
                                        oldest + self.max_delay - time.monotonic())))
                more = self._queue.take(self.max_batch - len(batch))
                batch.extend(more)
                if not more or time.monotonic() - oldest >= self.max_delay:
                    break
            try:
                self._store_durably(batch)
            finally:
                self._queue.done(len(batch))

    def _store_durably(self, batch: list[Prepared]) -> None:
        """Store a batch, waiting out a database that is down or busy; never lose it to one.

        The ids are drawn once, so a retry after a commit whose answer was lost cannot store an
        event twice (the second try conflicts on the id). While the database is unreachable the
        writer keeps trying and the bounded queue fills, so requests wait rather than go
        unaudited. An error that is not about the connection (an event the store refuses) is
        isolated: the batch is stored event by event and only the refused ones are left out,
        counted in the log (no content).
        """
        ids = time_ordered_ids(len(batch))
        delay = self.retry_delay
        while True:
            try:
                self._store_prepared(batch, ids)
                return
            except (sa.exc.OperationalError, sa.exc.InterfaceError):
                log.warning("audit store unavailable; %d events kept, retrying in %.1fs",
                            len(batch), delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
            except Exception:  # noqa: BLE001 - isolated below, logged without content
                break
        refused = 0
        for one, rid in zip(batch, ids, strict=True):
            try:
                self._store_prepared([one], [rid])
            except Exception:  # noqa: BLE001 - counted; the rest of the batch is stored
                refused += 1
        if refused:
            log.error("could not store %d audit events: refused by the store (the other %d "
                      "stored)", refused, len(batch) - refused)

    @property
    def _rtype(self) -> ResourceType:
        rtype = self.store.registry.get("AuditEvent")
        assert rtype is not None
        return rtype

    def store_batch(self, events: list[dict[str, Any]], ids: list[str] | None = None) -> None:
        """Store AuditEvents in one transaction: stored JSON and index rows built directly.

        `ids` (new ones, one per event) are drawn when not given.
        """
        rtype = self._rtype
        self._store_prepared([prepare(event, rtype) for event in events],
                             ids or time_ordered_ids(len(events)))

    def _store_prepared(self, batch: list[Prepared], ids: list[str]) -> None:
        now = utc_now()
        records = [(rid, stamp_prepared(one, rid, now), one[2])
                   for rid, one in zip(ids, batch, strict=True)]
        self.store.write(lambda tx: tx.append_records("AuditEvent", now, records))
