"""The HTTP face of security: authenticate every request, audit it, limit it, harden responses.

Every endpoint is either public (health, metadata, the token endpoint, discovery) or names the
interaction it performs in ENDPOINTS; an endpoint in neither is refused (fail closed), and a
test walks the app's route map so a new endpoint without a declaration fails the suite.
"""
from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from flask import Flask, Response, g, request

from gateway.errors import Forbidden, GatewayError, Issue, NotAuthenticated, operation_outcome
from gateway.security.audit import (
    AuditContext,
    begin_audit,
    build_event,
    current_audit,
    end_audit,
)
from gateway.security.context import Caller, reset_caller, set_caller

log = logging.getLogger("wraparound.security")

PUBLIC = {"healthz", "readyz", "fhir.metadata", "auth.token", "auth.smart_configuration",
          "auth.jwks", "static"}
ENDPOINTS: dict[str, str] = {
    "fhir.read": "read", "fhir.vread": "vread", "fhir.search": "search",
    "fhir.search_post": "search", "fhir.create": "create", "fhir.update": "update",
    "fhir.conditional_update": "update", "fhir.delete": "delete", "fhir.patch": "update",
    "fhir.instance_history": "history", "fhir.type_history": "history",
    "fhir.system_history": "history", "fhir.transaction": "transaction",
    "fhir.validate": "operation", "fhir.unknown": "read",
    "ingest.ingest": "ingest", "ingest.sources": "read",
}
BREAK_GLASS_HEADER = "X-Break-Glass-Reason"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "Cross-Origin-Resource-Policy": "same-origin",
}
WWW_AUTHENTICATE = 'Bearer realm="wraparound"'
_HEADER_ITEMS = tuple(SECURITY_HEADERS.items())
_HEADER_NAMES = tuple((name.lower(), (name, value)) for name, value in _HEADER_ITEMS)
_LOWER_NAMES = frozenset(lower for lower, _ in _HEADER_NAMES)


class SecurityHeaders:
    """WSGI middleware: every response leaves with the security headers it does not set itself.

    Working on the WSGI header list (plain tuples) costs a fraction of editing each Flask
    response's headers, and also covers responses that never reach an after_request hook.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        def _start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            present = {name.lower() for name, _ in headers}
            if present.isdisjoint(_LOWER_NAMES):  # the usual case: add them all
                headers.extend(_HEADER_ITEMS)
            else:
                headers.extend(item for lower, item in _HEADER_NAMES if lower not in present)
            return start_response(status, headers, exc_info)

        return self.app(environ, _start)


@functools.lru_cache(maxsize=4096)
def _caller(client_id: str, agency: str, scopes: tuple[str, ...], token_id: str) -> Caller:
    """Return the Caller for a verified token without break-the-glass (built once per token)."""
    return Caller(client_id=client_id, agency=agency, scopes=scopes, token_id=token_id)


def declare(endpoint: str, interaction: str) -> None:
    """Declare the interaction an endpoint performs (for authentication and audit)."""
    ENDPOINTS[endpoint] = interaction


class RateLimiter:
    """A token bucket per client (per process): `rate` requests a minute, bursts of `burst`."""

    def __init__(self, per_minute: int, burst: int | None = None) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst or max(per_minute // 6, 10))
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Take one token; return 0 when allowed, else the seconds to wait."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate


def _bearer() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthenticated("a bearer access token is required",
                               headers={"WWW-Authenticate": WWW_AUTHENTICATE})
    return token.strip()


def install(app: Flask, *, rate_limit_per_minute: int) -> None:
    """Register authentication, audit, rate limiting and security headers on the app."""
    from gateway.security.tokens import InvalidAccessToken

    limiter = RateLimiter(rate_limit_per_minute)
    services = app.extensions["wraparound"]  # built by create_app before this is called
    tokens, policy, trail = services.tokens, services.policy, services.audit

    @app.before_request
    def _authenticate() -> None:
        state = g._get_current_object()
        state.caller_token = None
        state.audit_token = None
        endpoint = request.endpoint
        if endpoint in PUBLIC:
            return
        interaction = ENDPOINTS.get(endpoint or "")
        ctx = AuditContext(interaction or "denied", request_id=state.get("request_id"))
        state.audit_token = begin_audit(ctx)
        if endpoint is None:
            return  # no such route: the 404 handler answers (and the audit records it)
        if interaction is None:
            raise Forbidden("this endpoint has no access policy")
        headers = request.headers
        try:
            token = tokens.verify(_bearer())
        except InvalidAccessToken as exc:
            raise NotAuthenticated("the access token is invalid or expired", headers={
                "WWW-Authenticate": f'{WWW_AUTHENTICATE}, error="invalid_token"'}) from exc
        reason = headers.get(BREAK_GLASS_HEADER, "").strip() or None
        if reason:
            caller = Caller(client_id=token.client_id, agency=token.agency, scopes=token.scopes,
                            break_glass_reason=reason[:200], token_id=token.jti)
        else:
            caller = _caller(token.client_id, token.agency, token.scopes, token.jti)
        state.caller_token = set_caller(caller)
        state.caller = caller
        if reason:
            if not policy.agency(caller.agency).break_glass:
                raise Forbidden("this agency may not break the glass")
            log.warning("break-the-glass request_id=%s client=%s agency=%s",
                        state.get("request_id"), caller.client_id, caller.agency)
        wait = limiter.take(caller.client_id)
        if wait:
            raise GatewayError("too many requests; slow down", status=429,
                               issues=[Issue("error", "throttled", "too many requests")],
                               headers={"Retry-After": str(max(1, int(wait + 0.999)))})

    @app.after_request
    def _audit(response: Response) -> Response:
        ctx = current_audit()
        if ctx is not None and (not ctx.written_in_transaction or response.status_code >= 400):
            status = response.status_code
            outcome = "success" if status < 400 else ("minor" if status < 500 else "serious")
            state = g._get_current_object()
            caller = state.get("caller")
            request_id = state.get("request_id")
            trail.record(build_event(caller, ctx, outcome, request_id=request_id,
                                     status=status))
            if ctx.break_glass and caller is not None:
                alert = AuditContext("break-the-glass", request_id=request_id)
                trail.record(build_event(caller, alert, outcome, request_id=request_id))
        return response

    @app.teardown_request
    def _reset(_: BaseException | None) -> None:
        state = g._get_current_object()
        if state.get("caller_token") is not None:
            reset_caller(state.caller_token)
        if state.get("audit_token") is not None:
            end_audit(state.audit_token)

    app.wsgi_app = SecurityHeaders(app.wsgi_app)  # type: ignore[method-assign]


def oauth_error(error: str, description: str, status: int) -> Response:
    """Return an OAuth 2 error response (RFC 6749 §5.2)."""
    headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
    if status == 401:
        headers["WWW-Authenticate"] = WWW_AUTHENTICATE
    return Response(orjson.dumps({"error": error, "error_description": description}),
                    status=status, mimetype="application/json", headers=headers)


def outcome_response(exc: GatewayError) -> Response:
    """Return the OperationOutcome response for an error."""
    return Response(orjson.dumps(operation_outcome(exc.issues)), status=exc.status,
                    mimetype="application/fhir+json", headers=exc.headers)


__all__ = ["BREAK_GLASS_HEADER", "ENDPOINTS", "PUBLIC", "RateLimiter", "SecurityHeaders",
           "declare", "install", "oauth_error", "outcome_response"]
