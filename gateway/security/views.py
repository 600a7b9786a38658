"""The token endpoint and SMART discovery."""
from __future__ import annotations

from flask import Blueprint, Response, g, jsonify, request

from gateway.security.audit import AuditContext, build_event
from gateway.security.context import Caller
from gateway.security.http import oauth_error
from gateway.services import get_services

bp = Blueprint("auth", __name__)


def token_url() -> str:
    """Return the exact token URL a client assertion's aud must name."""
    configured = get_services().settings.base_url
    root = configured.rstrip("/") if configured else request.host_url.rstrip("/")
    return f"{root}/auth/token"


@bp.post("/auth/token")
def token() -> Response:
    """Issue an access token for a signed client assertion (SMART Backend Services)."""
    from gateway.security.tokens import OAuthError

    services = get_services()
    form = {k: v for k, v in request.form.items()}
    ctx = AuditContext("token", request_id=g.get("request_id"))
    client_id = form.get("client_id") or "unknown"
    try:
        issued = services.tokens.issue(form, token_url())
    except OAuthError as exc:
        ctx.description = exc.error
        services.audit.record(build_event(
            Caller(client_id=client_id[:128], agency="unknown", scopes=()), ctx, "minor",
            request_id=g.get("request_id"), status=exc.status))
        return oauth_error(exc.error, exc.description, exc.status)
    services.audit.record(build_event(
        Caller(client_id=issued.get("client_id", client_id), agency=issued.get("agency", ""),
               scopes=()), ctx, "success", request_id=g.get("request_id"), status=200))
    body = {k: v for k, v in issued.items() if k in (
        "access_token", "token_type", "expires_in", "scope")}
    resp = jsonify(body)
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Pragma"] = "no-cache"
    return resp


@bp.get("/.well-known/smart-configuration")
@bp.get("/fhir/.well-known/smart-configuration")
def smart_configuration() -> Response:
    """Describe the authorisation server (SMART App Launch 2.x discovery)."""
    root = token_url().rsplit("/auth/token", 1)[0]
    return jsonify({
        "issuer": root,
        "jwks_uri": f"{root}/.well-known/jwks.json",
        "token_endpoint": token_url(),
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "grant_types_supported": ["client_credentials"],
        "scopes_supported": ["system/*.cruds", "system/*.rs"],
        "capabilities": ["client-confidential-asymmetric", "permission-v2"],
        "code_challenge_methods_supported": [],
    })


@bp.get("/.well-known/jwks.json")
def jwks() -> Response:
    """Publish the gateway's public keys for its access tokens."""
    return jsonify(get_services().tokens.jwks())
