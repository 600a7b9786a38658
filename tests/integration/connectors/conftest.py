"""The mock national server over real HTTP on a free loopback port, once per test session.

Also: canaries that prove hostile XML causes no file read and no network request, and a small
receiving endpoint that stands in for the gateway's inbound CP-IS notification endpoint.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from connectors.cpis import (
    AccessNotification,
    CpisClient,
    InactiveNhsNumberNotification,
    build_cpis_client,
    build_notification_ack,
    parse_notification,
)
from connectors.errors import ConnectorError
from connectors.pds import PdsClient, build_pds_client
from connectors.soap import SoapSettings

ROOT = Path(__file__).resolve().parents[3]
SEED = ROOT / "fixtures" / "national"


def soap_settings(url: str, **overrides: Any) -> SoapSettings:
    options: dict[str, Any] = {
        "address": url,
        "username": "wraparound-gateway",
        "connect_timeout": 1.0,
        "read_timeout": 2.0,
        "operation_timeout": 3.0,
    } | overrides
    return SoapSettings(**options)


@pytest.fixture
def settings_for() -> Callable[..., SoapSettings]:
    """Return a function building client settings with short test timeouts."""
    return soap_settings


@pytest.fixture
def pds(mock: str) -> PdsClient:
    return build_pds_client(soap_settings(f"{mock}/spine/pds"))


@pytest.fixture
def cpis(mock: str) -> CpisClient:
    return build_cpis_client(soap_settings(f"{mock}/spine/cpis"))


@pytest.fixture(scope="session")
def seed() -> dict[str, Any]:
    return {
        "pds": json.loads((SEED / "pds.json").read_text(encoding="utf-8"))["patients"],
        "cpis": json.loads((SEED / "cpis.json").read_text(encoding="utf-8")),
        "population": json.loads(
            (ROOT / "fixtures" / "population" / "children.json").read_text(encoding="utf-8")
        )["children"],
    }


# --- canaries ------------------------------------------------------------------------------


@dataclass
class CanaryFile:
    """A FIFO at `path`: any process opening it for reading is seen by a watcher thread."""

    path: Path
    opened: list[float] = field(default_factory=list)


@pytest.fixture
def canary_file(tmp_path: Path) -> Iterator[CanaryFile]:
    path = tmp_path / "canary-secret"
    os.mkfifo(path)
    canary = CanaryFile(path)
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # ENXIO: nobody has it open for reading
                    raise
                time.sleep(0.002)
                continue
            canary.opened.append(time.monotonic())
            os.write(fd, b"TOP-SECRET-CANARY")
            os.close(fd)
            time.sleep(0.05)  # let the reader see end-of-file before looking again

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    yield canary
    stop.set()
    thread.join()


@dataclass
class CanaryListener:
    """A loopback TCP listener counting every connection made to it."""

    url: str
    connections: list[float] = field(default_factory=list)


@pytest.fixture
def canary_listener() -> Iterator[CanaryListener]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.02)
    canary = CanaryListener(f"http://127.0.0.1:{server.getsockname()[1]}/canary.dtd")
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            canary.connections.append(time.monotonic())
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield canary
    stop.set()
    thread.join()
    server.close()


# --- a stand-in for the gateway's inbound notification endpoint ------------------------------


@dataclass
class Receiver:
    """Notifications received (parsed and verified) and requests refused."""

    url: str
    received: list[AccessNotification] = field(default_factory=list)
    inactive: list[InactiveNhsNumberNotification] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    seen_ids: set[str] = field(default_factory=set)

    def wait_for(self, count: int, timeout: float = 15.0) -> list[AccessNotification]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.received


class _Quiet(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Write nothing."""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    @Request.application  # type: ignore[misc]
    def app(request: Request) -> Response:
        try:
            notification = parse_notification(
                request.get_data(), soap_action=request.headers.get("SOAPAction")
            )
        except ConnectorError as exc:
            state.refused.append(exc.code)
            return Response(b"", status=400)
        duplicate = notification.message_id in state.seen_ids
        state.seen_ids.add(notification.message_id)
        if duplicate:
            pass
        elif isinstance(notification, InactiveNhsNumberNotification):
            state.inactive.append(notification)
        else:
            state.received.append(notification)
        return Response(
            build_notification_ack(notification, duplicate=duplicate), content_type="text/xml"
        )

    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_Quiet)
    state.url = f"http://127.0.0.1:{server.server_port}/national/cpis/notifications"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()
