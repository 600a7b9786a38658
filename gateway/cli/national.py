"""`wraparound national push`: send the national updates the stored data implies, directly."""

from __future__ import annotations

from typing import Any

import click
import orjson


def _app() -> Any:
    from gateway.app import configure_logging, create_app
    from gateway.config import load_settings

    settings = load_settings()
    configure_logging(settings.log_level)
    return create_app(settings)


@click.group()
def national() -> None:
    """Work with the national services."""


@national.command("push")
@click.option(
    "--type",
    "types",
    multiple=True,
    type=click.Choice(["EpisodeOfCare", "QuestionnaireResponse"]),
    help="Only updates implied by this resource type (repeatable).",
)
@click.option("--dry-run", is_flag=True, help="List the updates without sending them.")
def push(types: tuple[str, ...], dry_run: bool) -> None:
    """Send the child index involvements and CAFs implied by what the gateway holds.

    Each update goes straight to the national service (not through the outbox), with a message
    id derived from the resource version. Running it again changes nothing: the index answers
    an involvement already open with that one, and a completed CAF is left alone.
    """
    from connectors.errors import ConnectorError
    from gateway.national.clients import NationalClients
    from gateway.national.push import (
        CAF_DESTINATION,
        PUSH_TYPES,
        send_caf,
        send_involvement,
        stored_updates,
    )

    app = _app()
    services = app.extensions["wraparound"]
    updates = services.store.read(lambda tx: stored_updates(tx, types or PUSH_TYPES))
    clients = NationalClients(services.settings)
    sent = failed = 0
    for update in updates:
        line = {
            "destination": update.destination,
            "operation": update.operation,
            "resource": update.payload["resource"],
            "messageId": update.stable_id,
        }
        if dry_run:
            click.echo(orjson.dumps(line).decode())
            continue
        try:
            if update.destination == CAF_DESTINATION:
                line["result"] = send_caf(
                    clients.contactpoint,
                    clients.ecaf,
                    update.payload,
                    settings=services.settings,
                    message_id=update.stable_id,
                )
            else:
                line["result"] = send_involvement(
                    clients.contactpoint,
                    update.payload,
                    settings=services.settings,
                    message_id=update.stable_id,
                )
            sent += 1
        except ConnectorError as exc:
            line["error"] = f"{exc.code}: {exc}"[:300]
            failed += 1
        click.echo(orjson.dumps(line).decode())
    if dry_run:
        click.echo(f"{len(updates)} update(s) would be sent", err=True)
        return
    click.echo(f"sent {sent}, failed {failed}", err=True)
    if failed and not sent:
        raise SystemExit(1)
