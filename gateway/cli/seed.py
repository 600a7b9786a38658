"""`wraparound seed`: demo clients (one per agency, plus the auditor) and the sample exports.

Idempotent: clients that exist are kept, and re-ingesting the samples leaves them unchanged.
`wraparound client-assertion` signs a client assertion with a demo key, for trying the token
endpoint by hand.
"""
from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import click

from gateway.config import load_settings

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "sources"
CONTENT_TYPES = {".csv": "text/csv", ".json": "application/json", ".xml": "application/xml"}


def _demo_key(folder: Path, client_id: str) -> tuple[Any, dict[str, Any]]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    folder.mkdir(parents=True, exist_ok=True)
    pem_path = folder / f"{client_id}.pem"
    if pem_path.exists():
        key = serialization.load_pem_private_key(pem_path.read_bytes(), password=None)
    else:
        key = ec.generate_private_key(ec.SECP384R1())
        pem_path.write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        pem_path.chmod(0o600)
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid=f"{client_id}-1", alg="ES384", use="sig")
    return key, {"keys": [jwk]}


@click.command()
@click.option("--samples/--no-samples", default=True, show_default=True,
              help="Ingest the five sample exports from fixtures/sources.")
def seed(samples: bool) -> None:
    """Register demo clients (keys in <data dir>/demo-clients) and ingest the sample exports."""
    from gateway.app import configure_logging, create_app
    from gateway.security.audit import AuditContext, begin_audit, end_audit
    from gateway.security.context import Caller, acting_as
    from gateway.services import Services

    settings = load_settings()
    if settings.is_production:
        raise click.ClickException("demo data is refused in production")
    configure_logging("WARNING")
    app = create_app(settings)
    services: Services = app.extensions["wraparound"]
    key_dir = settings.data_dir / "demo-clients"
    known = {c["client_id"] for c in services.tokens.list_clients()}
    for agency in services.policy.agencies:
        client_id = f"demo-{agency}"
        if client_id in known:
            continue
        from gateway.security.policy import default_scopes

        scopes = default_scopes(agency)
        if not scopes:
            continue  # an agency that only operates the gateway (outbox, metrics) reads no data
        _, jwks = _demo_key(key_dir, client_id)
        services.tokens.add_client(client_id, agency, scopes, jwks,
                                   description=f"demo client of the {agency} agency")
        click.echo(f"registered {client_id} (private key {key_dir / (client_id + '.pem')})")
    if not samples:
        services.store.dispose()
        return
    for source in services.ingest.sources():
        sample = next((FIXTURES / source).glob("sample.*"), None)
        if sample is None:
            continue
        token = begin_audit(AuditContext("ingest", description=f"demo seed {source}"))
        try:
            with acting_as(Caller.internal(services.ingest.agency_for(source))), \
                    sample.open("rb") as stream:
                report = services.ingest.run(source, stream, CONTENT_TYPES.get(sample.suffix))
        finally:
            end_audit(token)
        counts = ", ".join(f"{k} {v}" for k, v in sorted(report.counts.items()))
        click.echo(f"ingested {source}: {counts}")
    services.audit.flush()
    from gateway.store.migrate import refresh_statistics

    refresh_statistics(services.store.engine)
    services.store.dispose()


@click.command("client-assertion")
@click.argument("client_id")
@click.option("--token-url", default="http://127.0.0.1:8080/auth/token", show_default=True)
def client_assertion(client_id: str, token_url: str) -> None:
    """Print a signed client assertion for a demo client (its key is in the data dir)."""
    import jwt

    settings = load_settings()
    if settings.is_production:
        raise click.ClickException("demo keys are refused in production")
    pem = settings.data_dir / "demo-clients" / f"{client_id}.pem"
    if not pem.exists():
        raise click.ClickException(f"no demo key for {client_id}; run `wraparound seed` first")
    key, _ = _demo_key(pem.parent, client_id)
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": token_url, "exp": now + 240,
              "iat": now, "jti": str(uuid.uuid4())}
    click.echo(jwt.encode(claims, key, algorithm="ES384", headers={"kid": f"{client_id}-1"}))
