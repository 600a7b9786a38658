"""AuditEvent for everything: who (client, agency, user), what, why, outcome, correlation id.

Writes are audited inside the transaction that makes them. Everything else (reads, searches,
denials, token requests) is queued and written by a group-commit thread within
`flush_interval` seconds; `flush()` drains the queue (called at shutdown and by tests).
Audit records are resources like any other, but no agency may write or delete them through
the API and only the auditor reads them.
"""
from __future__ import annotations

import base64
import logging
import queue
import threading
import uuid
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from gateway.security.context import Caller
from gateway.store.sql import SqlResourceStore, utc_now, to_instant
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


def build_event(caller: Caller | None, ctx: AuditContext, outcome: str, *,
                request_id: str | None, status: int | None = None) -> dict[str, Any]:
    """Return an AuditEvent for one request."""
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": {"system": systems.AUDIT_EVENT_TYPE, "code": "rest", "display": "RESTful Operation"},
        "subtype": [{"system": systems.AUDIT_EVENT_SUBTYPE, "code": ctx.interaction}],
        "action": ACTIONS.get(ctx.interaction, "E"),
        "recorded": to_instant(utc_now()),
        "outcome": OUTCOMES[outcome],
    }
    if status is not None:
        event["outcomeDesc"] = f"HTTP {status}"
    if ctx.break_glass and caller and caller.break_glass_reason:
        event["purposeOfEvent"] = [{"coding": [{"system": systems.ACT_REASON, "code": "BTG",
                                                "display": "break the glass"}],
                                    "text": caller.break_glass_reason[:200]}]
    agent: dict[str, Any] = {
        "type": {"coding": [{"system": systems.DICOM_AUDIT_ROLE, "code": "110153",
                             "display": "Source Role ID"}]},
        "requestor": True,
    }
    if caller is not None:
        agent["who"] = {"identifier": {"system": systems.CLIENT_ID, "value": caller.client_id},
                        "display": f"agency {caller.agency}"}
        if caller.user:
            agent["altId"] = caller.user[:128]
    else:
        agent["who"] = {"display": "unauthenticated caller"}
    event["agent"] = [agent]
    event["source"] = {"site": "wraparound",
                       "observer": {"display": "Wraparound gateway"},
                       "type": [{"system": systems.SECURITY_SOURCE_TYPE, "code": "3",
                                 "display": "Web Server"}]}
    entities: list[dict[str, Any]] = [{"what": {"reference": ref}} for ref in ctx.entities]
    if ctx.query is not None:
        entities.append({"type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                                  "code": "2", "display": "System Object"},
                         "description": f"{ctx.res_type or ''} search",
                         "query": base64.b64encode(ctx.query.encode("utf-8")).decode("ascii")})
    if request_id:
        entities.append({"description": (ctx.description or "request")[:200],
                         "detail": [{"type": "correlation-id", "valueString": request_id[:64]}]})
    if entities:
        event["entity"] = entities
    return event


class AuditTrail:
    """Writes AuditEvents: in a caller's transaction, or queued and group-committed."""

    def __init__(self, store: SqlResourceStore, *, flush_interval: float = 0.05,
                 max_batch: int = 500, max_queue: int = 5000) -> None:
        self.store = store
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        # Bounded: when the writer falls behind, requests wait rather than memory growing.
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()

    def write_in(self, tx: Any, event: dict[str, Any]) -> None:
        """Store an AuditEvent inside the caller's transaction."""
        tx.put("AuditEvent", str(uuid.uuid4()), event, previous=None, method="POST")

    def record(self, event: dict[str, Any]) -> None:
        """Queue an AuditEvent for the group-commit writer."""
        self._ensure_thread()
        self._idle.clear()
        self._queue.put(event)

    def flush(self, timeout: float = 10.0) -> None:
        """Block until every queued event is stored."""
        if self._thread is None:
            return
        self._queue.join()

    def _ensure_thread(self) -> None:
        # Started lazily so that each forked gunicorn worker gets its own writer.
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="audit-writer",
                                                daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            batch = [first]
            try:
                while len(batch) < self.max_batch:
                    batch.append(self._queue.get(timeout=self.flush_interval))
            except queue.Empty:
                pass
            items = [("AuditEvent", str(uuid.uuid4()), event) for event in batch]
            try:
                self.store.write(lambda tx, items=items: tx.insert_many(items))
            except Exception:  # keep the writer alive; the failure itself is logged, no content
                log.exception("could not store %d audit events", len(batch))
            finally:
                for _ in batch:
                    self._queue.task_done()
