"""The outbox table: enqueue inside the data's transaction, claim with a lease, settle fenced.

States:

    pending ──claim──> in-flight ──complete──> delivered
       ^                  │  │
       └──retry (backoff)─┘  └──dead letter──> failed ──replay──> pending

- A message is claimed only when no earlier message with the same ordering key is still pending
  or in flight, so the messages for one child to one service go in order. A dead letter does
  not hold up the messages behind it (an operator replays it).
- On PostgreSQL claims use `SELECT ... FOR UPDATE SKIP LOCKED`, so any number of workers on any
  number of hosts share the queue; on SQLite every write transaction is already exclusive
  (`BEGIN IMMEDIATE`), which makes the same statements safe for a single writer at a time.
- Every claim increments `lease_token`; completing, retrying or dead-lettering names the token
  and the lease must still be current. A worker whose lease expired (and whose message another
  worker may have re-claimed) cannot settle it: its outcome is discarded (fencing).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import and_, exists, func, insert, or_, select, update
from sqlalchemy.orm import aliased

from gateway.store.schema import outbox_breakers, outbox_messages
from gateway.store.sql import SqlResourceStore

PENDING, IN_FLIGHT, DELIVERED, FAILED = "pending", "in-flight", "delivered", "failed"
STATES = (PENDING, IN_FLIGHT, DELIVERED, FAILED)
TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"


def timestamp(moment: datetime | None = None, *, plus: float = 0.0) -> str:
    """Return a stored-format UTC timestamp, optionally `plus` seconds later."""
    moment = moment or datetime.now(UTC)
    return (moment + timedelta(seconds=plus)).strftime(TS_FORMAT)


def parse_timestamp(value: str) -> datetime:
    """Return a stored-format timestamp as an aware datetime."""
    return datetime.strptime(value, TS_FORMAT).replace(tzinfo=UTC)


@dataclass(frozen=True)
class Message:
    """A message to queue: where it goes, what it asks, in which order, and its content."""

    destination: str
    operation: str
    key: str
    payload: dict[str, Any]
    agency: str | None = None
    request_id: str | None = None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass(frozen=True)
class Claimed:
    """A message a worker holds under a lease."""

    seq: int
    id: str
    destination: str
    operation: str
    key: str
    payload: dict[str, Any]
    attempts: int
    lease_token: int
    created: str
    agency: str | None
    request_id: str | None


class Outbox:
    """Queue, claim and settle messages in the gateway's database."""

    def __init__(self, store: SqlResourceStore, *, lease_seconds: float = 30.0) -> None:
        self.store = store
        self.lease_seconds = lease_seconds

    # -- enqueue -------------------------------------------------------------------------------
    @staticmethod
    def enqueue_in(tx: Any, messages: Sequence[Message]) -> list[str]:
        """Queue messages inside the caller's transaction (one multi-row insert)."""
        if not messages:
            return []
        now = timestamp()
        tx.conn.execute(
            insert(outbox_messages),
            [
                {
                    "id": m.id,
                    "destination": m.destination[:128],
                    "operation": m.operation[:64],
                    "ordering_key": m.key[:200],
                    "payload": orjson.dumps(m.payload).decode(),
                    "state": PENDING,
                    "attempts": 0,
                    "created": now,
                    "next_attempt": now,
                    "updated": now,
                    "lease_token": 0,
                    "agency": m.agency,
                    "request_id": (m.request_id or "")[:64] or None,
                }
                for m in messages
            ],
        )
        return [m.id for m in messages]

    def enqueue(self, messages: Sequence[Message]) -> list[str]:
        """Queue messages in a transaction of their own."""
        return self.store.write(lambda tx: self.enqueue_in(tx, messages))

    # -- claim ---------------------------------------------------------------------------------
    def claim(
        self, owner: str, limit: int = 10, *, blocked: Sequence[str] = (), only: str | None = None
    ) -> list[Claimed]:
        """Lease up to `limit` deliverable messages to `owner` (oldest first).

        `blocked` names destinations whose circuit breaker is open; `only` restricts the claim
        to one destination (a breaker's probe).
        """
        m = outbox_messages
        earlier = aliased(outbox_messages)

        def deliverable(now: str, count: int) -> Any:
            due = or_(
                and_(m.c.state == PENDING, m.c.next_attempt <= now),
                and_(m.c.state == IN_FLIGHT, m.c.lease_until < now),
            )
            ahead = exists().where(
                earlier.c.ordering_key == m.c.ordering_key,
                earlier.c.seq < m.c.seq,
                earlier.c.state.in_((PENDING, IN_FLIGHT)),
            )
            stmt = select(m.c.seq).where(due, ~ahead).order_by(m.c.seq).limit(count)
            if blocked:
                stmt = stmt.where(m.c.destination.not_in(list(blocked)))
            if only is not None:
                stmt = stmt.where(m.c.destination == only)
            return stmt

        if self.store.engine.dialect.name == "sqlite":
            # Look first, outside the write lock: idle workers polling a queue with nothing due
            # do not take SQLite's single write lock from the worker settling a delivery.
            found = self.store.read(lambda tx: tx.conn.execute(deliverable(timestamp(), 1)).first())
            if found is None:
                return []

        def _claim(tx: Any) -> list[Claimed]:
            now = timestamp()
            stmt = deliverable(now, limit)
            if tx.conn.dialect.name == "postgresql":
                stmt = stmt.with_for_update(skip_locked=True, of=m)
            seqs = [row.seq for row in tx.conn.execute(stmt)]
            if not seqs:
                return []
            tx.conn.execute(
                update(m)
                .where(m.c.seq.in_(seqs))
                .values(
                    state=IN_FLIGHT,
                    lease_owner=owner[:128],
                    lease_until=timestamp(plus=self.lease_seconds),
                    lease_token=m.c.lease_token + 1,
                    attempts=m.c.attempts + 1,
                    updated=now,
                )
            )
            rows = tx.conn.execute(select(m).where(m.c.seq.in_(seqs)).order_by(m.c.seq))
            return [
                Claimed(
                    row.seq,
                    row.id,
                    row.destination,
                    row.operation,
                    row.ordering_key,
                    orjson.loads(row.payload),
                    row.attempts,
                    row.lease_token,
                    row.created,
                    row.agency,
                    row.request_id,
                )
                for row in rows
            ]

        return self.store.write(_claim)

    # -- settle (fenced) -----------------------------------------------------------------------
    def _settle(self, tx: Any, message: Claimed, **values: Any) -> bool:
        m = outbox_messages
        now = timestamp()
        result = tx.conn.execute(
            update(m)
            .where(
                m.c.seq == message.seq,
                m.c.lease_token == message.lease_token,
                m.c.state == IN_FLIGHT,
                m.c.lease_until >= now,
            )
            .values(updated=now, lease_owner=None, lease_until=None, **values)
        )
        return bool(result.rowcount == 1)

    def complete_in(self, tx: Any, message: Claimed) -> bool:
        """Mark delivered; False when the lease was lost (the outcome is discarded)."""
        return self._settle(tx, message, state=DELIVERED, delivered=timestamp(), last_error=None)

    def retry_in(
        self, tx: Any, message: Claimed, error: str, delay: float, *, counted: bool = True
    ) -> bool:
        """Put back for another attempt after `delay` seconds; False when the lease was lost.

        `counted=False` gives the attempt back: it does not count towards the message's limit
        (a failed breaker probe of a destination that is down says nothing about the message).
        """
        extra: dict[str, Any] = {} if counted else {"attempts": outbox_messages.c.attempts - 1}
        return self._settle(
            tx,
            message,
            state=PENDING,
            next_attempt=timestamp(plus=delay),
            last_error=error[:512],
            **extra,
        )

    def release_in(self, tx: Any, message: Claimed) -> bool:
        """Put a claimed message back unsent, due now and its attempt given back.

        For messages a worker holds when their destination's breaker opens: they wait for the
        breaker (which keeps them from being claimed) instead of being sent to a service that is
        down. False when the lease was lost.
        """
        return self._settle(
            tx,
            message,
            state=PENDING,
            next_attempt=timestamp(),
            attempts=outbox_messages.c.attempts - 1,
        )

    def dead_letter_in(self, tx: Any, message: Claimed, error: str) -> bool:
        """Mark failed (dead letter); False when the lease was lost."""
        return self._settle(tx, message, state=FAILED, last_error=error[:512])

    # -- operate -------------------------------------------------------------------------------
    def replay(
        self,
        *,
        ids: Sequence[str] = (),
        destination: str | None = None,
        error: str | None = None,
        since: str | None = None,
        until: str | None = None,
        states: Sequence[str] = (FAILED,),
    ) -> list[str]:
        """Put matching dead letters (or other settled messages) back to pending; return ids.

        A replayed message keeps its id, so a receiver that saw an earlier attempt can
        de-duplicate it; its attempt count starts again.
        """
        m = outbox_messages
        replayable = [s for s in states if s in (FAILED, DELIVERED)]

        def _replay(tx: Any) -> list[str]:
            stmt = select(m.c.seq, m.c.id).where(m.c.state.in_(replayable))
            if ids:
                stmt = stmt.where(m.c.id.in_(list(ids)))
            if destination:
                stmt = stmt.where(m.c.destination == destination)
            if error:
                stmt = stmt.where(m.c.last_error.contains(error, autoescape=True))
            if since:
                stmt = stmt.where(m.c.created >= since)
            if until:
                stmt = stmt.where(m.c.created < until)
            rows = tx.conn.execute(stmt.order_by(m.c.seq)).all()
            if rows:
                now = timestamp()
                tx.conn.execute(
                    update(m)
                    .where(m.c.seq.in_([r.seq for r in rows]))
                    .values(
                        state=PENDING, attempts=0, next_attempt=now, updated=now, delivered=None
                    )
                )
            return [r.id for r in rows]

        return self.store.write(_replay)

    def get(self, message_id: str) -> dict[str, Any] | None:
        """Return one message's delivery record (no payload), or None."""
        m = outbox_messages
        row = self.store.read(
            lambda tx: tx.conn.execute(select(m).where(m.c.id == message_id)).first()
        )
        return _describe(row) if row is not None else None

    def list(
        self, *, state: str | None = None, destination: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """Return recent messages' delivery records (no payloads), newest first."""
        m = outbox_messages
        stmt = select(m).order_by(m.c.seq.desc()).limit(limit)
        if state:
            stmt = stmt.where(m.c.state == state)
        if destination:
            stmt = stmt.where(m.c.destination == destination)
        rows = self.store.read(lambda tx: tx.conn.execute(stmt).all())
        return [_describe(r) for r in rows]

    def stats(self) -> dict[str, Any]:
        """Return counts by state and destination, the oldest pending age, and the breakers."""
        m = outbox_messages

        def _stats(tx: Any) -> dict[str, Any]:
            counts = tx.conn.execute(
                select(m.c.destination, m.c.state, func.count(), func.sum(m.c.attempts)).group_by(
                    m.c.destination, m.c.state
                )
            ).all()
            oldest = tx.conn.execute(
                select(func.min(m.c.created)).where(m.c.state.in_((PENDING, IN_FLIGHT)))
            ).scalar()
            latency = tx.conn.execute(
                select(m.c.destination, m.c.created, m.c.delivered)
                .where(m.c.state == DELIVERED)
                .order_by(m.c.seq.desc())
                .limit(1000)
            ).all()
            breakers = tx.conn.execute(select(outbox_breakers)).all()
            return {"counts": counts, "oldest": oldest, "latency": latency, "breakers": breakers}

        raw = self.store.read(_stats)
        by_destination: dict[str, dict[str, int]] = {}
        by_state = dict.fromkeys(STATES, 0)
        attempts: dict[str, int] = {}
        for destination, state, count, tries in raw["counts"]:
            by_destination.setdefault(destination, dict.fromkeys(STATES, 0))[state] = int(count)
            by_state[state] = by_state.get(state, 0) + int(count)
            attempts[destination] = attempts.get(destination, 0) + int(tries or 0)
        now = datetime.now(UTC)
        oldest_age = (
            (now - parse_timestamp(raw["oldest"])).total_seconds() if raw["oldest"] else 0.0
        )
        latencies: dict[str, list[float]] = {}
        for destination, created, delivered in raw["latency"]:
            latencies.setdefault(destination, []).append(
                (parse_timestamp(delivered) - parse_timestamp(created)).total_seconds()
            )
        return {
            "states": by_state,
            "destinations": by_destination,
            "attempts": attempts,
            "oldestPendingSeconds": round(max(oldest_age, 0.0), 3),
            "recentLatencySeconds": latencies,
            "breakers": {
                b.destination: {"state": b.state, "failures": b.failures, "probeAt": b.probe_at}
                for b in raw["breakers"]
            },
        }


def _describe(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "destination": row.destination,
        "operation": row.operation,
        "orderingKey": row.ordering_key,
        "state": row.state,
        "attempts": row.attempts,
        "created": row.created,
        "nextAttempt": row.next_attempt,
        "updated": row.updated,
        "delivered": row.delivered,
        "lastError": row.last_error,
    }


__all__ = [
    "DELIVERED",
    "FAILED",
    "IN_FLIGHT",
    "PENDING",
    "STATES",
    "Claimed",
    "Message",
    "Outbox",
    "parse_timestamp",
    "timestamp",
]
