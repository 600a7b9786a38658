"""The servers a benchmark compares, each run as its own process under the same gunicorn settings.

    python -m bench.servers gateway   --port P [--workers 2 --threads 4]
    python -m bench.servers unsecured --port P [--agency social-care] [--workers 2 --threads 4]
    python -m bench.servers baseline  --port P --fixture search.json [--workers 2 --threads 4]

All read the database from WRAPAROUND_DATABASE_URL and are served by
`gateway.cli.serve.run_wsgi(loader, gunicorn_options(host, port, workers, threads))`, exactly as
`wraparound serve` serves the gateway.

The baseline is a bare Flask app with no FHIR logic: for each request it runs one SQLAlchemy Core
query on an engine from `gateway.store.make_engine` and returns bytes.

- `GET /fhir/Patient/<id>`: `SELECT content FROM resources WHERE res_type='Patient' AND
  res_id=:id`, then returns the content column as the body (404 when no row).
- `GET /fhir/Patient?<query>`: looks the query string up in the fixture (the response bytes the
  gateway gave for that query, and the ids on its page, captured before the run), runs
  `SELECT content FROM resources WHERE res_type='Patient' AND res_id IN (:ids of that page)`,
  then returns the captured bytes.

The unsecured server is the gateway with its security layer taken out (see `remove_security`):
the same `create_app`, minus the three request hooks `gateway.security.http.install` registers
(bearer-token check, audit, context reset) and its security-headers middleware, with every
request run as `Caller.internal(agency)`, which skips scope and policy checks. `bench/security_cost.py` compares
it with the gateway.
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Any

HOST = "127.0.0.1"
FHIR_JSON = "application/fhir+json"


def gateway_loader() -> Any:
    """Build the gateway exactly as `wraparound serve` does in each worker."""
    from gateway.app import configure_logging, create_app
    from gateway.config import load_settings

    settings = load_settings()
    configure_logging(settings.log_level)
    return create_app(settings)


SECURITY_HOOKS = {
    "before_request": "_authenticate",
    "after_request": "_audit",
    "teardown_request": "_reset",
}


def remove_security(app: Any, agency: str) -> Any:
    """Take the security layer out of a gateway app, in place, and return the app.

    Drops the hooks `gateway.security.http.install` registered (matched by function name; each
    must be found exactly once, so a renamed hook fails loudly instead of being measured) and
    the `SecurityHeaders` middleware it wraps `app.wsgi_app` in, then wraps `app.wsgi_app` so
    each request runs as `Caller.internal(agency)`: no token check, no scope, policy or label
    filtering, no audit, no security headers.
    """
    from gateway.security.context import Caller, reset_caller, set_caller
    from gateway.security.http import SecurityHeaders

    for kind, name in SECURITY_HOOKS.items():
        registry = getattr(app, f"{kind}_funcs")
        hooks = registry.get(None, [])
        kept = [f for f in hooks if getattr(f, "__name__", "") != name]
        if len(hooks) - len(kept) != 1:
            raise RuntimeError(f"expected one {kind} hook named {name}, found "
                               f"{len(hooks) - len(kept)}")
        registry[None] = kept
    if not isinstance(app.wsgi_app, SecurityHeaders):
        raise TypeError("expected the app's wsgi_app to be the SecurityHeaders middleware")
    app.wsgi_app = app.wsgi_app.app
    caller = Caller.internal(agency)
    inner = app.wsgi_app

    def wsgi_app(environ: Any, start_response: Any) -> Any:
        token = set_caller(caller)
        try:
            return inner(environ, start_response)
        finally:
            reset_caller(token)

    app.wsgi_app = wsgi_app
    return app


def baseline_app(database_url: str, fixture: dict[str, dict[str, Any]]) -> Any:
    """Return the bare Flask baseline app (see the module docstring for what it does)."""
    from flask import Flask, Response, request
    from sqlalchemy import select

    from gateway.store import make_engine
    from gateway.store.schema import resources

    engine = make_engine(database_url)
    res = resources.c
    app = Flask("baseline")

    def _one(rid: str) -> str | None:
        with engine.connect() as conn:
            return conn.execute(
                select(res.content).where(res.res_type == "Patient", res.res_id == rid)
            ).scalar_one_or_none()

    @app.get("/healthz")
    def healthz() -> Response:
        return Response(b'{"status":"ok"}', mimetype="application/json")

    @app.get("/fhir/Patient/<rid>")
    def read(rid: str) -> Response:
        content = _one(rid)
        if content is None:
            return Response(b"{}", status=404, mimetype=FHIR_JSON)
        return Response(content.encode("utf-8"), mimetype=FHIR_JSON)

    @app.get("/fhir/Patient")
    def search() -> Response:
        entry = fixture.get(request.query_string.decode("latin-1"))
        if entry is None:
            return Response(b"{}", status=404, mimetype=FHIR_JSON)
        with engine.connect() as conn:
            conn.execute(
                select(res.content).where(res.res_type == "Patient", res.res_id.in_(entry["ids"]))
            ).all()
        return Response(entry["body"], mimetype=FHIR_JSON)

    return app


def main(argv: list[str] | None = None) -> None:
    """Serve the gateway or the baseline until SIGTERM."""
    from gateway.cli.serve import gunicorn_options, run_wsgi

    parser = argparse.ArgumentParser(prog="python -m bench.servers")
    parser.add_argument("kind", choices=("gateway", "unsecured", "baseline"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--fixture", help="search fixture (JSON) for the baseline")
    parser.add_argument("--agency", default="social-care",
                        help="agency the unsecured server acts as (default social-care)")
    args = parser.parse_args(argv)
    options = gunicorn_options(HOST, args.port, args.workers, args.threads)
    if args.kind == "gateway":
        run_wsgi(gateway_loader, options)
        return
    if args.kind == "unsecured":
        run_wsgi(lambda: remove_security(gateway_loader(), args.agency), options)
        return
    database_url = os.environ["WRAPAROUND_DATABASE_URL"]
    fixture: dict[str, dict[str, Any]] = {}
    if args.fixture:
        with open(args.fixture, encoding="utf-8") as fh:
            raw = json.load(fh)
        fixture = {q: {"ids": e["ids"], "body": e["body"].encode("utf-8")} for q, e in raw.items()}
    run_wsgi(lambda: baseline_app(database_url, fixture), options)


if __name__ == "__main__":
    main()
