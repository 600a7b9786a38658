"""The outbox over real parts: the mock national server, a recording subscriber, workers in-process."""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from flask import Flask, Request, Response
from werkzeug.serving import make_server

from gateway.cli.outbox import build_workers
from gateway.config import Settings
from gateway.outbox import EXTENSION, OutboxServices
from gateway.outbox.worker import Worker
from tests.conftest import free_port


@pytest.fixture
def settings(db_url: str, tmp_path: Path, mock: str) -> Settings:
    """Clean database, the session's mock, short timeouts and backoffs."""
    return Settings(env="test", data_dir=tmp_path, database_url=db_url, db_pool_size=0,
                    national_url=mock, national_connect_timeout=1.0,
                    national_read_timeout=1.5, national_call_timeout=3.0,
                    outbox_backoff_seconds=0.05, outbox_backoff_cap_seconds=0.2,
                    outbox_breaker_failures=3, outbox_breaker_seconds=0.3,
                    outbox_lease_seconds=10.0, subscription_timeout=1.0)


@dataclass
class Received:
    """One request a subscriber received."""

    method: str
    path: str
    message_id: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A subscriber endpoint over real HTTP that records what it is sent.

    `answers` is a list of statuses to answer in turn (then 200 for ever).
    """

    url: str = ""
    received: list[Received] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, request: Request) -> Response:
        with self.lock:
            status = self.answers.pop(0) if self.answers else 200
            self.received.append(Received(request.method, request.path,
                                          request.headers.get("X-Message-ID", ""),
                                          dict(request.headers), request.get_data()))
        return Response(b"", status=status)

    def ok(self) -> list[Received]:
        """Return the requests answered 2xx, in order."""
        return list(self.received)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """Start a recording subscriber on a free loopback port."""
    target = Receiver()
    app = Flask("receiver")

    @app.route("/", defaults={"path": ""}, methods=["GET", "POST", "PUT"])
    @app.route("/<path:path>", methods=["GET", "POST", "PUT"])
    def catch(path: str) -> Response:
        from flask import request

        return target.handle(request)

    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    target.url = f"http://127.0.0.1:{port}/hook"
    yield target
    server.shutdown()
    thread.join(5)


def parts(app: Flask) -> OutboxServices:
    """Return the app's outbox parts."""
    found: OutboxServices = app.extensions[EXTENSION]
    return found


def worker(app: Flask) -> Worker:
    """Return one in-process worker over the app's outbox."""
    found: Worker = build_workers(app, 1).workers[0]
    return found


def drain(app: Flask, *, rounds: int = 200, until: Callable[[], bool] | None = None,
          pause: float = 0.05) -> Worker:
    """Run a worker until nothing is due (or `until()` holds); return it for its stats."""
    import time

    w = worker(app)
    for _ in range(rounds):
        handled = w.run_once()
        if until is not None and until():
            break
        if not handled:
            if until is None and not _waiting(app):
                break
            time.sleep(pause)
    return w


def _waiting(app: Flask) -> bool:
    states = parts(app).outbox.stats()["states"]
    return bool(states["pending"] or states["in-flight"])
