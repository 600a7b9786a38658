"""The commit hook that turns a transaction's changes into outbox messages, in that transaction.

It runs inside every write transaction, after the unit of work and before the commit, so a
message exists if and only if the change that caused it was committed: an ingest that creates a
child protection plan and the plan's CP-IS upload commit together or not at all.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.config import Settings
from gateway.outbox.delivery import cpis_uploads_in
from gateway.outbox.store import Message, Outbox
from gateway.outbox.subscriptions import SubscriptionIndex
from gateway.security.audit import current_audit
from gateway.security.context import _current as _current_caller
from gateway.security.policy import Policy
from gateway.store.base import Change

# Records of what happened (audit, provenance) never cause messages of their own.
QUIET_TYPES = frozenset({"AuditEvent", "Provenance"})
Producer = Callable[[Any, list[Change]], list[Message]]


class Router:
    """Derive messages from changes: CP-IS uploads, Subscription notifications, and more."""

    def __init__(self, settings: Settings, policy: Policy, index: SubscriptionIndex,
                 outbox: Outbox) -> None:
        self.settings = settings
        self.policy = policy
        self.index = index
        self.outbox = outbox
        self.producers: list[Producer] = []

    def add_producer(self, producer: Producer) -> None:
        """Add a function (session, changes) -> messages, called in every write transaction."""
        self.producers.append(producer)

    def __call__(self, tx: Any) -> None:
        changes = [c for c in tx.changes if c.res_type not in QUIET_TYPES]
        if not changes:
            return
        caller = _current_caller.get()
        for change in changes:
            if change.res_type == "Subscription":
                self.index.sync_in(tx, change, strict=caller is not None and not caller.system)
        audit = current_audit()
        agency = caller.agency if caller is not None else None
        request_id = audit.request_id if audit is not None else None
        data = [c for c in changes if c.res_type != "Subscription"]
        if not data:
            return
        messages: list[Message] = []
        if self.settings.outbox_cpis_upload:
            messages += cpis_uploads_in(tx, data, settings=self.settings, policy=self.policy,
                                        agency=agency, request_id=request_id)
        messages += self.index.notifications_in(tx, data, agency=agency, request_id=request_id)
        for producer in self.producers:
            messages += producer(tx, data)
        self.outbox.enqueue_in(tx, messages)


__all__ = ["QUIET_TYPES", "Router"]
