"""`wraparound worker` (deliver the outbox) and `wraparound outbox status|list|replay`."""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

import click
import orjson


def _app() -> Any:
    from gateway.app import configure_logging, create_app
    from gateway.config import load_settings

    settings = load_settings()
    configure_logging(settings.log_level)
    return create_app(settings)


def build_workers(
    app: Any, threads: int, *, batch: int = 10, owner: str | None = None, idle: float = 0.25
) -> Any:
    """Return a WorkerPool of `threads` workers over an app's outbox (not started)."""
    from gateway.national.clients import NationalClients
    from gateway.outbox import EXTENSION
    from gateway.outbox.delivery import DeliveryContext
    from gateway.outbox.worker import Worker, WorkerPool, default_owner

    services = app.extensions["wraparound"]
    parts = app.extensions[EXTENSION]
    settings = services.settings
    base = owner or default_owner()
    clients = NationalClients(settings)  # one set per process: WSDLs parsed once

    def make(i: int) -> Worker:
        ctx = DeliveryContext(
            settings=settings, store=services.store, policy=services.policy, clients=clients
        )
        return Worker(
            parts.outbox,
            parts.breakers,
            ctx,
            owner=f"{base}/{i}",
            batch=batch,
            max_attempts=settings.outbox_max_attempts,
            backoff=settings.outbox_backoff_seconds,
            backoff_cap=settings.outbox_backoff_cap_seconds,
            error_after=settings.subscription_error_after,
        )

    return WorkerPool(make, threads, idle=idle)


@click.command()
@click.option(
    "--threads", type=int, default=4, show_default=True, help="Delivery loops in this process."
)
@click.option(
    "--batch", type=int, default=10, show_default=True, help="Messages each loop claims at a time."
)
@click.option(
    "--idle",
    type=click.FloatRange(min=0.005, max=60.0),
    default=0.1,
    show_default=True,
    help="Seconds an idle loop waits before looking for new messages again.",
)
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit.")
def worker(threads: int, batch: int, idle: float, once: bool) -> None:
    """Deliver outbox messages (run any number of these processes against PostgreSQL)."""
    app = _app()
    pool = build_workers(app, max(1, threads), batch=batch, idle=idle)
    if once:
        total = 0
        while True:
            handled = sum(w.run_once() for w in pool.workers)
            total += handled
            if not handled:
                break
        click.echo(f"handled {total} message(s)")
        return
    stopped = threading.Event()

    def _stop(*_: Any) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    pool.start()
    click.echo(f"outbox worker: {len(pool.workers)} delivery loop(s)", err=True)
    stopped.wait()
    pool.join(timeout=30)
    sys.exit(0)


@click.group()
def outbox() -> None:
    """Inspect and replay the outbox."""


@outbox.command("status")
def status() -> None:
    """Print counts by state and destination, the oldest pending age and the breakers."""
    from gateway.outbox import EXTENSION

    parts = _app().extensions[EXTENSION]
    stats = parts.outbox.stats()
    stats.pop("recentLatencySeconds", None)
    click.echo(orjson.dumps(stats, option=orjson.OPT_INDENT_2).decode())


@outbox.command("list")
@click.option("--state", type=click.Choice(["pending", "in-flight", "delivered", "failed"]))
@click.option("--destination")
@click.option("--count", type=int, default=20, show_default=True)
def list_messages(state: str | None, destination: str | None, count: int) -> None:
    """Print the most recent messages' delivery records (no payloads)."""
    from gateway.outbox import EXTENSION

    parts = _app().extensions[EXTENSION]
    for row in parts.outbox.list(state=state, destination=destination, limit=count):
        click.echo(orjson.dumps(row).decode())


@outbox.command("replay")
@click.option("--id", "ids", multiple=True, help="A message id (repeatable).")
@click.option("--destination")
@click.option("--error", help="Text the last error contains.")
@click.option("--since", help="Queued at or after (FHIR instant).")
@click.option("--until", help="Queued before (FHIR instant).")
@click.option("--all", "everything", is_flag=True, help="Every dead letter.")
def replay(
    ids: tuple[str, ...],
    destination: str | None,
    error: str | None,
    since: str | None,
    until: str | None,
    everything: bool,
) -> None:
    """Put dead letters back to pending (they keep their message ids)."""
    from gateway.outbox import EXTENSION
    from gateway.store.sql import from_instant

    if not (ids or destination or error or since or until or everything):
        raise click.UsageError("name --id, a filter, or --all")
    parts = _app().extensions[EXTENSION]
    try:
        replayed = parts.outbox.replay(
            ids=ids,
            destination=destination,
            error=error,
            since=from_instant(since) if since else None,
            until=from_instant(until) if until else None,
        )
    except ValueError as exc:
        raise click.UsageError("--since/--until must be FHIR instants") from exc
    click.echo(f"replayed {len(replayed)} message(s)")
