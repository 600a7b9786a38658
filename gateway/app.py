"""The application factory."""
from __future__ import annotations

import atexit
import logging
import logging.handlers
import queue
import time
import uuid
from typing import Any

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from connectors.soap.context import new_uuid
from gateway.config import Settings, check_settings, load_settings
from gateway.errors import (
    GatewayError,
    Issue,
    MethodNotAllowed,
    PayloadTooLarge,
    ResourceNotFound,
    operation_outcome,
)
from gateway.fhir.registry import load_registry
from gateway.fhir.service import FhirService
from gateway.ingest.service import IngestService, builtin_mappings
from gateway.security.audit import AuditTrail
from gateway.security.http import install as install_security
from gateway.security.policy import Policy
from gateway.services import Services, get_services
from gateway.store import (
    SqlResourceStore,
    StoreUnavailable,
    current_revision,
    head_revision,
    make_engine,
    upgrade,
)

log = logging.getLogger("wraparound")


_listener: logging.handlers.QueueListener | None = None


def configure_logging(level: str) -> None:
    """Configure process logging: writes happen on a background thread, off the request path.

    Third-party loggers that can print payloads stay quiet.
    """
    global _listener
    if _listener is None:
        # The format uses none of the caller's file, line, thread or process: do not collect
        # them for every record (the logging HOWTO's "Optimization" settings).
        logging._srcfile = None  # type: ignore[attr-defined]
        logging.logThreads = False
        logging.logProcesses = False
        logging.logMultiprocessing = False
        stream = logging.StreamHandler()
        stream.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        _listener = logging.handlers.QueueListener(records, stream)
        _listener.start()
        atexit.register(_listener.stop)
        root = logging.getLogger()
        # Replace plain console handlers only; capture handlers (e.g. a test runner's) stay.
        root.handlers[:] = [h for h in root.handlers if type(h) is not logging.StreamHandler]
        root.addHandler(logging.handlers.QueueHandler(records))
    logging.getLogger().setLevel(level)
    # zeep logs whole SOAP envelopes at DEBUG and SQLAlchemy logs statements with their
    # parameters at INFO: both would put children's personal data in the logs.
    for noisy in ("zeep", "zeep.transports", "urllib3", "sqlalchemy", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def create_app(settings: Settings | None = None, **overrides: Any) -> Flask:
    """Build the gateway: defaults, then environment, then what the caller passes."""
    settings = settings or load_settings()
    if overrides:
        settings = settings.replace(**overrides)
    check_settings(settings)
    app = Flask("gateway")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]

    from gateway.fhir.validation import validate_resource

    engine = make_engine(settings.database_url, pool_size=settings.db_pool_size)
    if current_revision(engine) != head_revision():
        upgrade(engine)
    registry = load_registry()
    store = SqlResourceStore(engine, registry, search_cache_seconds=settings.search_cache_seconds)
    policy = Policy.load()
    audit = AuditTrail(store)
    fhir = FhirService(store, registry, validate_resource, policy=policy, audit=audit,
                       default_count=settings.default_page_size,
                       max_count=settings.max_page_size, max_includes=settings.max_includes)
    ingest = IngestService(builtin_mappings(), fhir, policy)
    from gateway.security.tokens import TokenService

    tokens = TokenService(engine, settings, allowed_scopes_for=lambda agency: policy.default_scopes(
        agency, registry.names()))
    app.extensions["wraparound"] = Services(settings, registry, store, fhir, ingest, policy,
                                            audit, tokens)

    from gateway.fhir.views import bp as fhir_bp
    from gateway.ingest.views import bp as ingest_bp
    from gateway.security.views import bp as auth_bp

    app.register_blueprint(fhir_bp)
    app.register_blueprint(ingest_bp)
    app.register_blueprint(auth_bp)
    from gateway import identity, national

    national.init_app(app)
    identity.init_app(app)
    from gateway import outbox

    outbox.init_app(app)
    _register_health(app)
    _register_errors(app)
    _register_request_log(app)
    install_security(app, rate_limit_per_minute=settings.rate_limit_per_minute)
    return app


def _outcome_response(status: int, issues: list[Issue],
                      headers: dict[str, str] | None = None) -> Response:
    import orjson

    return Response(orjson.dumps(operation_outcome(issues)), status=status,
                    mimetype="application/fhir+json", headers=headers or {})


def _register_errors(app: Flask) -> None:
    @app.errorhandler(GatewayError)
    def _gateway_error(exc: GatewayError) -> Response:
        return _outcome_response(exc.status, exc.issues, exc.headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        mapped: GatewayError
        if status == 404:
            mapped = ResourceNotFound("no such endpoint")
        elif status == 405:
            mapped = MethodNotAllowed("this method is not allowed here")
        elif status == 413:
            mapped = PayloadTooLarge(
                f"the request body exceeds {get_services().settings.max_body_bytes} bytes")
        else:
            mapped = GatewayError(exc.name, status=status)
        return _outcome_response(mapped.status, mapped.issues)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        correlation = getattr(g, "request_id", str(uuid.uuid4()))
        log.error("unhandled %s request_id=%s", type(exc).__name__, correlation, exc_info=exc)
        return _outcome_response(500, [Issue(
            "error", "exception", f"internal error; quote correlation id {correlation}")])


def _register_health(app: Flask) -> None:
    @app.get("/healthz")
    def healthz() -> Response:
        return Response(b'{"status":"ok"}', mimetype="application/json")

    @app.get("/readyz")
    def readyz() -> Response:
        try:
            get_services().store.ping()
        except StoreUnavailable:
            return Response(b'{"status":"database unavailable"}', status=503,
                            mimetype="application/json")
        return Response(b'{"status":"ready"}', mimetype="application/json")


def _register_request_log(app: Flask) -> None:
    @app.before_request
    def _start() -> None:
        g.request_id = request.headers.get("X-Request-ID", "")[:64] or new_uuid()
        g.started = time.perf_counter()

    @app.after_request
    def _finish(response: Response) -> Response:
        response.headers["X-Request-ID"] = g.get("request_id", "")
        # The route template, never the URL: query strings and ids can carry personal data.
        rule = request.url_rule.rule if request.url_rule else "-"
        log.info("request_id=%s %s %s %s %.1fms", g.get("request_id"), request.method, rule,
                 response.status_code, (time.perf_counter() - g.get("started", 0)) * 1000)
        return response
