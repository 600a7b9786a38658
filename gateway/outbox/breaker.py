"""A circuit breaker per destination, kept in the database so every worker process shares it.

    closed ──N consecutive transient failures──> open ──cool-down elapsed──> half-open
      ^                                            ^                            │
      └──────────── the probe succeeds ────────────┴──── the probe fails ───────┘

While a destination's breaker is open no worker claims its messages (they wait, they are not
failed). When the cool-down has elapsed exactly one worker takes the probe (an atomic update
from open to half-open) and sends one message; its outcome closes or re-opens the breaker. A
probe whose worker died is taken again once its own lease (`probe_at`) has passed. Refusals by
the service (a Client fault, a validation error) say the service is up: they do not count.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, or_, select, update

from gateway.outbox.store import timestamp
from gateway.store.schema import outbox_breakers
from gateway.store.sql import SqlResourceStore

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


class Breakers:
    """The breakers of every destination."""

    def __init__(
        self,
        store: SqlResourceStore,
        *,
        threshold: int = 5,
        cooldown: float = 30.0,
        probe_lease: float = 60.0,
    ) -> None:
        self.store = store
        self.threshold = threshold
        self.cooldown = cooldown
        self.probe_lease = probe_lease

    def blocked(self) -> list[str]:
        """Return the destinations whose messages go only as probes (open or half-open).

        Even when an open breaker's probe is due, an ordinary claim may not take its messages:
        only `take_probes` may, so that a message sent to a service that is down is always
        known to be a probe (and its failure does not use up one of its attempts).
        """
        b = outbox_breakers
        rows = self.store.read(
            lambda tx: tx.conn.execute(
                select(b.c.destination).where(b.c.state.in_((OPEN, HALF_OPEN)))
            ).all()
        )
        return [r.destination for r in rows]

    def not_closed(self) -> dict[str, bool]:
        """Return each open or half-open destination with whether its probe is due now.

        One read: a worker that finds nothing due need not open a write transaction.
        """
        b = outbox_breakers
        now = timestamp()
        rows = self.store.read(
            lambda tx: tx.conn.execute(
                select(b.c.destination, b.c.probe_at).where(b.c.state.in_((OPEN, HALF_OPEN)))
            ).all()
        )
        return {r.destination: r.probe_at is None or r.probe_at <= now for r in rows}

    def take_probes(self) -> list[str]:
        """Take the probe of every destination whose cool-down has elapsed; return them."""
        b = outbox_breakers

        def _take(tx: Any) -> list[str]:
            now = timestamp()
            due = [
                r.destination
                for r in tx.conn.execute(
                    select(b.c.destination).where(
                        b.c.state.in_((OPEN, HALF_OPEN)),
                        or_(b.c.probe_at <= now, b.c.probe_at.is_(None)),
                    )
                ).all()
            ]
            taken = []
            for destination in due:
                result = tx.conn.execute(
                    update(b)
                    .where(
                        b.c.destination == destination,
                        b.c.state.in_((OPEN, HALF_OPEN)),
                        or_(b.c.probe_at <= now, b.c.probe_at.is_(None)),
                    )
                    .values(state=HALF_OPEN, probe_at=timestamp(plus=self.probe_lease), updated=now)
                )
                if result.rowcount == 1:
                    taken.append(destination)
            return taken

        return self.store.write(_take)

    def release_probe(self, destination: str) -> None:
        """Give a probe back unused (nothing was due): the next worker may probe at once."""
        b = outbox_breakers
        self.store.write(
            lambda tx: tx.conn.execute(
                update(b)
                .where(b.c.destination == destination, b.c.state == HALF_OPEN)
                .values(state=OPEN, probe_at=timestamp(), updated=timestamp())
            )
        )

    def success_in(self, tx: Any, destination: str) -> None:
        """Close the destination's breaker (inside the settling transaction)."""
        b = outbox_breakers
        tx.conn.execute(
            update(b)
            .where(b.c.destination == destination, or_(b.c.state != CLOSED, b.c.failures != 0))
            .values(state=CLOSED, failures=0, opened=None, probe_at=None, updated=timestamp())
        )

    def failure_in(self, tx: Any, destination: str) -> str:
        """Count a transient failure; open the breaker at the threshold. Return its state."""
        b = outbox_breakers
        now = timestamp()
        row = tx.conn.execute(select(b).where(b.c.destination == destination)).first()
        if row is None:
            tx.conn.execute(
                insert(b).values(destination=destination, state=CLOSED, failures=0, updated=now)
            )
            failures, state = 0, CLOSED
        else:
            failures, state = row.failures, row.state
        failures += 1
        if state == HALF_OPEN or failures >= self.threshold:
            tx.conn.execute(
                update(b)
                .where(b.c.destination == destination)
                .values(
                    state=OPEN,
                    failures=failures,
                    opened=now,
                    probe_at=timestamp(plus=self.cooldown),
                    updated=now,
                )
            )
            return OPEN
        tx.conn.execute(
            update(b).where(b.c.destination == destination).values(failures=failures, updated=now)
        )
        return state

    def states(self) -> dict[str, dict[str, Any]]:
        """Return every breaker's state, failures and next probe time."""
        b = outbox_breakers
        rows = self.store.read(lambda tx: tx.conn.execute(select(b)).all())
        return {
            r.destination: {"state": r.state, "failures": r.failures, "probeAt": r.probe_at}
            for r in rows
        }


__all__ = ["CLOSED", "HALF_OPEN", "OPEN", "Breakers"]
