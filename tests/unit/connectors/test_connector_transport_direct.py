"""The transport's direct route (a plain session's urllib3 pool, no per-call request preparation)
behaves as the requests path does: same request on the wire, same response, same errors."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
import requests
import responses

from connectors.errors import UnsafeXml
from connectors.soap import HardenedTransport, SoapSettings, build_transport

REPLY = b"<soap:Envelope xmlns:soap='http://schemas.xmlsoap.org/soap/envelope/'/>"


class _Handler(BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[dict[str, str], bytes]]] = []
    mode = "ok"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).seen.append(({k.lower(): v for k, v in self.headers.items()}, body))
        if self.mode == "slow":
            time.sleep(0.6)
            return
        if self.mode == "redirect":
            self.send_response(302)
            self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        payload = REPLY if self.mode != "big" else b"<a>" + b"x" * 5000 + b"</a>"
        self.send_response(200)
        self.send_header("Content-Type", "text/xml; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("X-Reply", "yes")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def server() -> Iterator[str]:
    _Handler.seen = []
    _Handler.mode = "ok"
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/spine/pds"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _transport(address: str, **overrides: Any) -> HardenedTransport:
    settings = SoapSettings(address=address, read_timeout=0.3, **overrides)
    return build_transport(settings)


HEADERS = {"SOAPAction": '"urn:op"', "Content-Type": "text/xml; charset=utf-8",
           "X-Correlation-ID": "C-1"}


def test_direct_route_sends_and_answers_what_the_requests_path_does(server: str) -> None:
    direct = _transport(server)
    assert direct._route(server) is not None
    via_requests = _transport(server)
    via_requests._route = lambda address: None  # type: ignore[method-assign]
    first = direct.post(server, b"<x>1</x>", dict(HEADERS))
    second = via_requests.post(server, b"<x>1</x>", dict(HEADERS))
    (h1, b1), (h2, b2) = _Handler.seen
    assert h1 == h2 and b1 == b2 == b"<x>1</x>"
    assert h1["x-correlation-id"] == "C-1" and h1["accept-encoding"] == "identity"
    for resp in (first, second):
        assert resp.status_code == 200 and resp.content == REPLY
        assert resp.headers["x-reply"] == "yes" and resp.encoding == "utf-8"
        assert resp.request.body == b"<x>1</x>" and resp.url == server


def test_direct_route_keeps_the_connection_for_the_next_call(server: str) -> None:
    transport = _transport(server)
    for _ in range(3):
        assert transport.post(server, b"<x/>", dict(HEADERS)).content == REPLY
    assert len(_Handler.seen) == 3


@pytest.mark.parametrize("direct", [True, False])
def test_failures_are_the_requests_exceptions(server: str, direct: bool) -> None:
    transport = _transport(server)
    if not direct:
        transport._route = lambda address: None  # type: ignore[method-assign]
    _Handler.mode = "slow"
    with pytest.raises(requests.exceptions.ReadTimeout):
        transport.post(server, b"<x/>", dict(HEADERS))
    _Handler.mode = "big"
    small = _transport(server, max_response_bytes=1000)
    if not direct:
        small._route = lambda address: None  # type: ignore[method-assign]
    with pytest.raises(UnsafeXml):
        small.post(server, b"<x/>", dict(HEADERS))
    _Handler.mode = "redirect"
    with pytest.raises(requests.exceptions.TooManyRedirects):
        transport.post(server, b"<x/>", dict(HEADERS))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}/spine/pds"
    with pytest.raises(requests.exceptions.ConnectionError):
        transport.post(closed, b"<x/>", dict(HEADERS))


def test_anything_but_a_plain_session_goes_through_requests(server: str) -> None:
    assert _transport(server, trust_env=True)._route(server) is None
    proxied = _transport(server)
    proxied.session.proxies = {"http": "http://proxy.test:3128"}
    assert proxied._route(server) is None
    plain = _transport(server)
    with responses.RequestsMock() as rs:
        rs.add(responses.POST, server, body=REPLY, status=200, content_type="text/xml")
        assert plain._route(server) is None
        assert plain.post(server, b"<x/>", dict(HEADERS)).content == REPLY
    assert _Handler.seen == []
    assert plain._route(server) is not None
