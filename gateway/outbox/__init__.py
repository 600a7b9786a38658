"""Reliable delivery: the transactional outbox, its workers, Subscriptions, and operating them.

- `gateway.outbox.store` — the queue (enqueue in the data's transaction, leased claims, fenced
  settles, replay, statistics);
- `gateway.outbox.router` — the commit hook deriving messages from every write transaction;
- `gateway.outbox.delivery` — the destinations (CP-IS uploads, rest-hook notifications);
- `gateway.outbox.subscriptions` — FHIR R4 Subscriptions (criteria subset, activation, matching);
- `gateway.outbox.breaker` — one circuit breaker per destination, shared through the database;
- `gateway.outbox.worker` — `wraparound worker`: claim, deliver, retry, dead-letter, audit;
- `gateway.outbox.views` — `GET /admin/outbox`, `$replay`, and `/metrics` (Prometheus text).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app

from gateway.outbox.breaker import Breakers
from gateway.outbox.router import Router
from gateway.outbox.store import Message, Outbox
from gateway.outbox.subscriptions import SubscriptionIndex

EXTENSION = "wraparound.outbox"


@dataclass
class OutboxServices:
    """The outbox parts of one app."""

    outbox: Outbox
    breakers: Breakers
    router: Router
    index: SubscriptionIndex


def build(services: Any) -> OutboxServices:
    """Build the outbox parts over an app's services and hook the router into its store."""
    settings = services.settings
    outbox = Outbox(services.store, lease_seconds=settings.outbox_lease_seconds)
    breakers = Breakers(services.store, threshold=settings.outbox_breaker_failures,
                        cooldown=settings.outbox_breaker_seconds,
                        probe_lease=max(settings.outbox_lease_seconds,
                                        settings.national_call_timeout * 2))
    index = SubscriptionIndex(services.registry, settings.subscription_allowed_hosts)
    router = Router(settings, services.policy, index, outbox)
    from gateway.national.push import producer  # the national updates stored changes imply

    router.add_producer(producer(settings))
    services.store.add_commit_hook(router)
    return OutboxServices(outbox, breakers, router, index)


def init_app(app: Flask) -> None:
    """Build the outbox for the app and register its operating endpoints."""
    from gateway.outbox.views import bp

    app.extensions[EXTENSION] = build(app.extensions["wraparound"])
    app.register_blueprint(bp)


def get_outbox() -> OutboxServices:
    """Return the current app's outbox parts."""
    parts: OutboxServices = current_app.extensions[EXTENSION]
    return parts


__all__ = ["EXTENSION", "Message", "Outbox", "OutboxServices", "build", "get_outbox",
           "init_app"]
