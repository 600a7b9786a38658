"""Outbox workers: claim, deliver, settle — with retries, backoff, breakers and an audit trail.

One `Worker` is one delivery loop; `wraparound worker --threads N` runs N in one process, and
any number of processes on any number of hosts may run against one PostgreSQL database. Each
outcome is settled in one transaction together with its AuditEvent and the breaker's state:

- delivered → `delivered`, breaker closed, the Subscription (if any) back to `active`;
- a retryable failure (timeout, unreachable, HTTP 5xx, a Server fault) → `pending` again after an
  exponential backoff with jitter, counted against the breaker; after `max_attempts` → `failed`;
- a permanent failure (a Client fault, a validation rejection, HTTP 4xx) → `failed` at once.

Waiting for a breaker never uses up a message's attempts, so a service that is down for hours
dead-letters nothing: the messages of a batch that are still unsent when their destination's
breaker opens go back unsent (`pending`, their attempt given back), and a failed probe of a
destination that is still unreachable or timing out gives its attempt back too. A probe that
the service answers with a fault of its own (a retryable SOAP Server fault) counts as usual.
Likewise a claimed message is sent only within the first half of its lease: when slow deliveries
ahead of it in the batch used that up, it goes back unsent rather than risk being sent twice.

A worker whose lease expired before it settled finds its settle refused (fencing): nothing it
would have written is kept, and the message is delivered again — with the same message id — by
whoever re-claimed it.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import select, update

from connectors.errors import ConfigurationError, ConnectorError, Timeout, Unavailable
from gateway.outbox.breaker import OPEN, Breakers
from gateway.outbox.delivery import Deliverer, DeliveryContext, deliverer_for
from gateway.outbox.store import Claimed, Outbox, timestamp
from gateway.store.schema import subscriptions
from gateway.store.sql import to_instant, utc_now
from vocab import systems

log = logging.getLogger("wraparound.outbox")


class LeaseLost(Exception):
    """The worker's lease expired before it settled the message; its outcome is discarded."""


@dataclass
class WorkerStats:
    """What one worker did (for logs, tests and benchmarks)."""

    delivered: int = 0
    retried: int = 0
    failed: int = 0
    fenced: int = 0
    held: int = 0
    latencies: list[float] = field(default_factory=list)


def default_owner() -> str:
    """Return a worker name that is unique across hosts and processes."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Worker:
    """One delivery loop."""

    def __init__(
        self,
        outbox: Outbox,
        breakers: Breakers,
        ctx: DeliveryContext,
        *,
        owner: str | None = None,
        batch: int = 10,
        max_attempts: int = 12,
        backoff: float = 1.0,
        backoff_cap: float = 600.0,
        error_after: int = 3,
        deliverers: dict[str, Deliverer] | None = None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.outbox = outbox
        self.breakers = breakers
        self.ctx = ctx
        self.owner = owner or default_owner()
        self.batch = batch
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.backoff_cap = backoff_cap
        self.error_after = error_after
        self.deliverers = deliverers or {}
        self.rng = rng
        self.stats = WorkerStats()
        self._opened: set[str] = set()  # destinations whose breaker opened in this batch

    # -- the loop ------------------------------------------------------------------------------
    def run_once(self) -> int:
        """Claim and handle one batch (and any breaker probes); return how many were handled."""
        claimed: list[Claimed] = []
        probes: set[int] = set()
        not_closed = self.breakers.not_closed()
        probing = self.breakers.take_probes() if any(not_closed.values()) else []
        for destination in probing:
            probe = self.outbox.claim(self.owner, 1, only=destination)
            if probe:
                claimed += probe
                probes.update(m.seq for m in probe)
            else:
                self.breakers.release_probe(destination)
        blocked = sorted(set(not_closed) | set(probing))
        claimed_at = time.monotonic()  # no later than the lease's start in the database
        claimed += self.outbox.claim(self.owner, self.batch, blocked=blocked)
        self._opened = set()
        for message in claimed:
            if message.destination in self._opened:
                self.hold(message)
            elif time.monotonic() - claimed_at > self.outbox.lease_seconds / 2:
                # Slow deliveries ahead of it used up half its lease: sending it now could
                # outlive the lease, and another worker would send it again. It goes back.
                self.hold(message)
            else:
                self.handle(message, probe=message.seq in probes)
        return len(claimed)

    def run(self, stop: threading.Event, *, idle: float = 0.25) -> None:
        """Deliver until `stop` is set; sleep `idle` seconds when there is nothing to do.

        After a batch that found work the loop claims again at once; `idle` bounds how long a
        newly queued message waits for an idle worker to notice it.
        """
        while not stop.is_set():
            try:
                handled = self.run_once()
            except Exception:
                log.warning(
                    "outbox worker %s: claim failed; retrying",
                    self.owner,
                    exc_info=log.isEnabledFor(logging.DEBUG),
                )
                stop.wait(1.0)
                continue
            if not handled:
                stop.wait(idle)

    # -- one message ---------------------------------------------------------------------------
    def hold(self, message: Claimed) -> None:
        """Put back unsent a claimed message (its breaker opened, or its lease is running out)."""
        if self.ctx.store.write(lambda tx: self.outbox.release_in(tx, message)):
            self.stats.held += 1
        else:
            self.stats.fenced += 1

    def handle(self, message: Claimed, *, probe: bool = False) -> str:
        """Deliver one claimed message and settle it; return the state it was left in.

        `probe`: the message is its destination's breaker probe.
        """
        deliverer = self.deliverers.get(message.destination.split(":", 1)[0]) or deliverer_for(
            message.destination
        )
        error: ConnectorError | None = None
        detail = ""
        try:
            if deliverer is None:
                raise ConfigurationError(f"no deliverer for destination {message.destination}")
            detail = deliverer(message, self.ctx)
        except ConnectorError as exc:
            error = exc
        except Exception as exc:  # noqa: BLE001 - unknown failures are retried, then dead-lettered
            log.warning("outbox delivery raised %s (message %s)", type(exc).__name__, message.id)
            error = Unavailable(f"delivery raised {type(exc).__name__}")
        try:
            state = self.ctx.store.write(
                lambda tx: self._settle(tx, message, error, detail, probe=probe)
            )
        except LeaseLost:
            self.stats.fenced += 1
            log.warning(
                "outbox worker %s lost the lease of message %s; its outcome is discarded",
                self.owner,
                message.id,
            )
            return "fenced"
        if state == "delivered":
            self.stats.delivered += 1
        elif state == "failed":
            self.stats.failed += 1
        else:
            self.stats.retried += 1
        return state

    def _settle(
        self,
        tx: Any,
        message: Claimed,
        error: ConnectorError | None,
        detail: str,
        *,
        probe: bool = False,
    ) -> str:
        if error is None:
            if not self.outbox.complete_in(tx, message):
                raise LeaseLost(message.id)
            self.breakers.success_in(tx, message.destination)
            self._subscription_outcome(tx, message, ok=True)
            self._audit(tx, message, "0", f"delivered: {detail}"[:200])
            self.stats.latencies.append(time.time() - _epoch(message.created))
            return "delivered"
        text = str(error)[:500]
        # A probe that finds the service still down tells nothing about the message itself.
        counted = not (probe and isinstance(error, (Timeout, Unavailable)))
        if error.retryable and (message.attempts < self.max_attempts or not counted):
            delay = self.delay(message.attempts)
            if not self.outbox.retry_in(tx, message, text, delay, counted=counted):
                raise LeaseLost(message.id)
            if self.breakers.failure_in(tx, message.destination) == OPEN:
                self._opened.add(message.destination)
            self._subscription_outcome(tx, message, ok=False, error=text)
            note = "" if counted else " (breaker probe: the attempt is not counted)"
            self._audit(
                tx, message, "4", f"attempt {message.attempts} failed, retrying{note}: {text}"
            )
            return "pending"
        if not self.outbox.dead_letter_in(tx, message, text):
            raise LeaseLost(message.id)
        if error.retryable and self.breakers.failure_in(tx, message.destination) == OPEN:
            self._opened.add(message.destination)
        self._subscription_outcome(tx, message, ok=False, error=text)
        self._audit(tx, message, "8", f"dead letter after {message.attempts} attempt(s): {text}")
        return "failed"

    def delay(self, attempts: int) -> float:
        """Return the backoff before the next attempt: exponential, capped, half of it jittered."""
        ceiling = min(self.backoff_cap, self.backoff * 2.0 ** max(attempts - 1, 0))
        return ceiling / 2 + self.rng() * ceiling / 2

    # -- Subscriptions: error after repeated failures, active again on success --------------------
    def _subscription_outcome(
        self, tx: Any, message: Claimed, *, ok: bool, error: str = ""
    ) -> None:
        if not message.destination.startswith("subscription:"):
            return
        sub_id = message.destination.split(":", 1)[1]
        t = subscriptions
        row = tx.conn.execute(select(t.c.status, t.c.failures).where(t.c.id == sub_id)).first()
        if row is None:
            return
        failures = 0 if ok else row.failures + 1
        tx.conn.execute(update(t).where(t.c.id == sub_id).values(failures=failures))
        if ok and row.status == "error":
            self._set_subscription_status(tx, sub_id, "active", None)
        elif not ok and row.status == "active" and failures >= self.error_after:
            self._set_subscription_status(
                tx, sub_id, "error", f"{failures} notifications in a row failed; last: {error}"
            )

    @staticmethod
    def _set_subscription_status(tx: Any, sub_id: str, status: str, error: str | None) -> None:
        stored = tx.get_for_update("Subscription", sub_id)
        if stored is None or stored.content is None:
            return
        resource = orjson.loads(stored.content)
        resource["status"] = status
        if error:
            resource["error"] = error[:500]
        else:
            resource.pop("error", None)
        tx.put("Subscription", sub_id, resource, previous=stored, method="PUT")

    # -- audit -----------------------------------------------------------------------------------
    def _audit(self, tx: Any, message: Claimed, outcome: str, description: str) -> None:
        entities: list[dict[str, Any]] = [
            {
                "what": {
                    "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{message.id}"}
                },
                "description": f"{message.destination} {message.operation}"[:200],
                "detail": [{"type": "attempt", "valueString": str(message.attempts)}],
            }
        ]
        ref = message.payload.get("resource") or (
            f"{message.payload['type']}/{message.payload['id']}"
            if message.payload.get("type") and message.payload.get("id")
            else None
        )
        if ref:
            entities.append({"what": {"reference": str(ref)}})
        if message.request_id:
            entities.append(
                {
                    "description": "caused by request",
                    "detail": [{"type": "correlation-id", "valueString": message.request_id}],
                }
            )
        event = {
            "resourceType": "AuditEvent",
            "type": {"system": systems.DICOM_AUDIT_ROLE, "code": "110106", "display": "Export"},
            "subtype": [{"system": systems.AUDIT_EVENT_SUBTYPE, "code": "outbox-delivery"}],
            "action": "E",
            "recorded": to_instant(utc_now()),
            "outcome": outcome,
            "outcomeDesc": description[:500],
            "agent": [
                {
                    "type": {
                        "coding": [
                            {
                                "system": systems.DICOM_AUDIT_ROLE,
                                "code": "110153",
                                "display": "Source Role ID",
                            }
                        ]
                    },
                    "who": {"display": "Wraparound outbox worker"},
                    "altId": self.owner[:128],
                    "requestor": False,
                }
            ],
            "source": {
                "site": "wraparound",
                "observer": {"display": "Wraparound outbox"},
                "type": [
                    {
                        "system": systems.SECURITY_SOURCE_TYPE,
                        "code": "4",
                        "display": "Application Server",
                    }
                ],
            },
            "entity": entities,
        }
        tx.insert_many([("AuditEvent", str(uuid.uuid4()), event)])


def _epoch(stored: str) -> float:
    from gateway.outbox.store import parse_timestamp

    return float(parse_timestamp(stored).timestamp())


class WorkerPool:
    """N workers on threads of one process, stopped together."""

    def __init__(self, make: Callable[[int], Worker], threads: int, *, idle: float = 0.25) -> None:
        self.workers = [make(i) for i in range(threads)]
        self.idle = idle
        self.stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start every worker's loop on its own thread."""
        for i, worker in enumerate(self.workers):
            thread = threading.Thread(
                target=worker.run,
                args=(self.stop,),
                kwargs={"idle": self.idle},
                name=f"outbox-worker-{i}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def join(self, timeout: float | None = None) -> None:
        """Stop the loops (each finishes the message in hand) and wait for them."""
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout)


__all__ = ["LeaseLost", "Worker", "WorkerPool", "WorkerStats", "default_owner", "timestamp"]
