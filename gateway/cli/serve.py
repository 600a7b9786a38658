"""`wraparound serve`, `wraparound db upgrade` and `wraparound demo`."""
from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from gateway.config import load_settings


def _load_gateway() -> Any:
    from gateway.app import configure_logging, create_app

    settings = load_settings()
    configure_logging(settings.log_level)
    return create_app(settings)


def gunicorn_options(host: str, port: int, workers: int, threads: int) -> dict[str, Any]:
    """Return the gunicorn settings the gateway is served with (benchmarks reuse them)."""
    return {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "timeout": 60,
        "graceful_timeout": 20,
        "keepalive": 5,
        "accesslog": None,  # request logs come from the app, without query strings
        "loglevel": load_settings().log_level.lower(),
        "limit_request_line": 8190,
    }


def load_frozen(loader: Callable[[], Any]) -> Any:
    """Build the app, then move every object alive so far out of the garbage collector's sight.

    The app, its registry, policy, mappings and code tables (some 130,000 objects) live as long
    as the worker; without this, each full collection walked all of them again, and a worker
    serving reads and writing their audit trail ran one every few seconds (tens of
    milliseconds each). Collections still find every cycle made after start-up.
    """
    app = loader()
    gc.collect()
    gc.freeze()
    return app


def run_wsgi(loader: Callable[[], Any], options: dict[str, Any]) -> None:
    """Serve the WSGI app that loader builds (in each worker) under gunicorn until stopped."""
    from gunicorn.app.base import BaseApplication

    class _App(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return load_frozen(loader)

    _App().run()


def run_gunicorn(host: str, port: int, workers: int, *, threads: int = 4) -> None:
    """Migrate the schema once, then serve the gateway with gunicorn."""
    from gateway.store import make_engine, upgrade
    from gateway.store.migrate import refresh_statistics

    settings = load_settings()
    engine = make_engine(settings.database_url)
    upgrade(engine)
    refresh_statistics(engine)
    engine.dispose()
    run_wsgi(_load_gateway, gunicorn_options(host, port, workers, threads))


@click.command()
@click.option("--host", default=None, help="Bind address (default WRAPAROUND_HOST or 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Bind port (default WRAPAROUND_PORT or 8080).")
@click.option("--workers", type=int, default=None, help="gunicorn workers (WRAPAROUND_WORKERS).")
@click.option("--threads", type=int, default=4, show_default=True, help="Threads per worker.")
def serve(host: str | None, port: int | None, workers: int | None, threads: int) -> None:
    """Serve the gateway (gunicorn) on the database named by WRAPAROUND_DATABASE_URL."""
    settings = load_settings()
    run_gunicorn(host or settings.host, port if port is not None else settings.port,
                 workers or settings.workers, threads=threads)


@click.group()
def db() -> None:
    """Manage the database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Create or upgrade the schema to the latest revision."""
    from gateway.store import current_revision, make_engine, upgrade

    settings = load_settings()
    engine = make_engine(settings.database_url)
    try:
        upgrade(engine)
        click.echo(f"schema at revision {current_revision(engine)}")
    finally:
        engine.dispose()


@db.command("current")
def db_current() -> None:
    """Print the schema revision of the configured database."""
    from gateway.store import current_revision, make_engine

    engine = make_engine(load_settings().database_url)
    try:
        click.echo(current_revision(engine) or "none")
    finally:
        engine.dispose()


def _wait_http(url: str, timeout: float = 30.0) -> bool:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code < 500:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.2)
    return False


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8080, show_default=True)
@click.option("--mocks-port", type=int, default=8090, show_default=True)
@click.option("--subscriber-port", type=int, default=8091, show_default=True,
              help="Port of the stand-in local system that receives Subscription notifications.")
@click.option("--workers", type=int, default=2, show_default=True)
def demo(host: str, port: int, mocks_port: int, subscriber_port: int, workers: int) -> None:
    """Run the demo: mock national services, the gateway on SQLite, an outbox worker, a
    stand-in subscriber, and seeded data."""
    from gateway.cli import main

    env = dict(os.environ)
    env.setdefault("WRAPAROUND_NATIONAL_URL", f"http://127.0.0.1:{mocks_port}")
    # Stored episodes and completed CAF forms reach the child index and the CAF store.
    env.setdefault("WRAPAROUND_OUTBOX_NATIONAL_PUSH", "true")
    children: list[subprocess.Popen[bytes]] = []
    if "mocks" in main.commands:
        mocks = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "mocks", "serve", "--host", "127.0.0.1",
             "--port", str(mocks_port), "--cpis-callback-url",
             f"http://{host}:{port}/inbound/cpis/notifications"], env=env)
        children.append(mocks)
        if not _wait_http(f"http://127.0.0.1:{mocks_port}/health"):
            click.echo("the mock national services did not start", err=True)
        else:
            click.echo(f"Mock national services: http://127.0.0.1:{mocks_port}")
        subscriber = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "mocks", "subscriber", "--host", "127.0.0.1",
             "--port", str(subscriber_port)], env=env)
        children.append(subscriber)
        if _wait_http(f"http://127.0.0.1:{subscriber_port}/health"):
            click.echo(f"Stand-in subscriber: http://127.0.0.1:{subscriber_port}/hook")
    if "seed" in main.commands:
        subprocess.run([sys.executable, "-m", "gateway.cli", "seed"], env=env, check=False)
    gateway = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "--host", host, "--port", str(port),
         "--workers", str(workers)], env=env)
    children.append(gateway)
    if "worker" in main.commands:
        children.append(subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "worker", "--threads", "2"], env=env))
    if _wait_http(f"http://{host}:{port}/healthz"):
        click.echo(f"Wraparound gateway: http://{host}:{port}/fhir (Ctrl-C stops)")
        click.echo("A token for trying it: TOKEN=$(.venv/bin/wraparound dev-token "
                   "--agency social-care)")

    def _stop(*_: Any) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, _stop)
    try:
        gateway.wait()
    except KeyboardInterrupt:
        pass
    finally:
        _stop()
        for child in children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
