"""`wraparound clients add|list|revoke` and `wraparound dev-token`: the Backend Services registry."""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from gateway.config import load_settings

FALLBACK_SCOPES = ("system/*.rs",)


def policy_default_scopes(agency: str) -> list[str]:
    """Return every scope the agency's policy allows."""
    from gateway.security.policy import default_scopes

    return default_scopes(agency) or list(FALLBACK_SCOPES)


@contextmanager
def _token_service() -> Iterator[Any]:
    from gateway.security.tokens import TokenService
    from gateway.store import make_engine, upgrade

    settings = load_settings()
    engine = make_engine(settings.database_url)
    try:
        upgrade(engine)
        yield TokenService(engine, settings)
    finally:
        engine.dispose()


@click.group()
def clients() -> None:
    """Manage the SMART Backend Services clients allowed to ask for tokens."""


@clients.command("add")
@click.argument("client_id")
@click.option("--agency", required=True, help="The agency the client acts for.")
@click.option("--scope", "scopes", multiple=True, required=True,
              help="A SMART v2 system scope the client may ask for; repeat for more.")
@click.option("--jwks", "jwks_file", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A file holding the client's public keys as a JWKS.")
@click.option("--description", default=None, help="Who runs the client and why.")
def add(client_id: str, agency: str, scopes: tuple[str, ...], jwks_file: Path,
        description: str | None) -> None:
    """Register CLIENT_ID with its agency, scopes and public keys."""
    from gateway.security.tokens import ClientRegistryError

    try:
        jwks = json.loads(jwks_file.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise click.ClickException(f"cannot read the JWKS file: {exc}") from None
    with _token_service() as service:
        try:
            service.add_client(client_id, agency, list(scopes), jwks, description)
        except ClientRegistryError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"registered {client_id} for {agency}")


@clients.command("list")
def list_() -> None:
    """List registered clients (no key material)."""
    with _token_service() as service:
        rows = service.list_clients()
    click.echo("client_id\tagency\tscopes\tkids\tcreated\trevoked")
    for row in rows:
        click.echo("\t".join((row["client_id"], row["agency"], " ".join(row["scopes"]),
                              " ".join(row["kids"]), row["created"], row["revoked"] or "-")))


@clients.command("revoke")
@click.argument("client_id")
def revoke(client_id: str) -> None:
    """Revoke CLIENT_ID: no new tokens, and its current tokens stop working within seconds."""
    from gateway.security.tokens import UnknownClient

    with _token_service() as service:
        try:
            service.revoke_client(client_id)
        except UnknownClient as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"revoked {client_id}")


@click.command("dev-token")
@click.option("--agency", required=True, help="The agency the token acts for.")
@click.option("--scope", "scopes", multiple=True,
              help="A SMART v2 system scope; repeat for more (default: what the policy allows).")
@click.pass_context
def dev_token(ctx: click.Context, agency: str, scopes: tuple[str, ...]) -> None:
    """Print a bearer token for demos and tests; refused in production."""
    settings = load_settings()
    if settings.is_production:
        raise click.ClickException("dev-token is refused in production")
    hook: Callable[[str], Sequence[str]] = policy_default_scopes
    if isinstance(ctx.obj, dict) and "default_scopes" in ctx.obj:
        hook = ctx.obj["default_scopes"]
    wanted = list(scopes) or list(hook(agency))
    with _token_service() as service:
        try:
            token = service.dev_token(agency, wanted)
        except PermissionError as exc:
            raise click.ClickException(str(exc)) from None
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--scope") from None
    click.echo(token)


__all__ = ["clients", "dev_token", "policy_default_scopes"]
