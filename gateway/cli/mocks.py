"""`wraparound mocks`: run the mock national server (PDS, CP-IS and the placeholders)."""

from __future__ import annotations

from pathlib import Path

import click

from connectors.mockserver import MockSettings, serve_forever


@click.group()
def mocks() -> None:
    """Mock national services for the demo and tests."""


@mocks.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8090, show_default=True, type=int, help="Port to bind.")
@click.option(
    "--seed-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder with pds.json and cpis.json (default: fixtures/national).",
)
@click.option(
    "--cpis-callback-url",
    default=None,
    help="Where CP-IS pushes its notifications (the gateway's inbound endpoint).",
)
def serve(host: str, port: int, seed_dir: Path | None, cpis_callback_url: str | None) -> None:
    """Serve /spine/pds, /spine/cpis, /contactpoint and /ecaf until interrupted."""
    settings = MockSettings(cpis_callback_url=cpis_callback_url)
    if seed_dir is not None:
        settings = MockSettings(seed_dir=seed_dir, cpis_callback_url=cpis_callback_url)
    click.echo(
        f"mock national server on http://{host}:{port} (PDS at /spine/pds, CP-IS at /spine/cpis)"
    )
    serve_forever(host, port, settings=settings)


@mocks.command("subscriber")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8091, show_default=True, type=int, help="Port to bind.")
def subscriber(host: str, port: int) -> None:
    """Serve a stand-in local system receiving Subscription notifications at /hook."""
    from werkzeug.serving import make_server

    from gateway.outbox.localsystem import create_subscriber_app

    click.echo(f"stand-in subscriber on http://{host}:{port}/hook (what arrived: /received)")
    make_server(host, port, create_subscriber_app(), threaded=True).serve_forever()
