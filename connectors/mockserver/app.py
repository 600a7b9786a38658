"""The mock national server: one Flask app hosting every registered national service.

Admin API (JSON, loopback only by deployment):

- ``POST /admin/faults``   add a fault: ``{"service": "pds", "operation": "*" | "<name>",
  "kind": "latency|soap_fault|http_error|malformed|hostile|hang|reset", ...}`` → 201 with the fault
- ``GET /admin/faults``    list faults;  ``DELETE /admin/faults[?service=pds]``  clear them
- ``POST /admin/reset``    restore every service's seeded state and clear faults
- ``GET /admin/services/<name>`` a service's state (counts, delivery states; no personal data)
- ``POST /admin/services/<name>/config`` change a service's run-time settings
- ``POST /admin/services/<name>/control/<action>`` run a service's control (e.g. CP-IS
  ``inactive-nhs-numbers``: push inactive-NHS-number notifications)
- ``GET /health``          liveness and the registered services
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request

from connectors.errors import ConnectorError, SecurityFailure
from connectors.mockserver.faults import FaultRegistry, FaultSpec, hostile_document
from connectors.mockserver.service import MockReply, MockRequest, MockService
from connectors.soap import xml
from connectors.soap.server import read_inbound
from connectors.soap.settings import SigningSettings
from connectors.soap.wsse import check_timestamp, utcnow

__all__ = ["MockSettings", "create_mock_app", "default_services"]

DEFAULT_SEED_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "national"
_XML = "text/xml; charset=utf-8"


@dataclass(frozen=True)
class MockSettings:
    """Settings of the mock national server."""

    seed_dir: Path = DEFAULT_SEED_DIR
    cpis_callback_url: str | None = None
    cpis_callback_username: str = "cpis-mock"
    notification_signing: SigningSettings | None = None
    max_request_bytes: int = 1_000_000
    max_depth: int = 64
    require_wsse: bool = True
    clock_skew_seconds: int = 300


def default_services(settings: MockSettings) -> list[MockService]:
    """Return the standard registrations: PDS, CP-IS, the child index and the assessment store."""
    from connectors.contactpoint.mock import ContactPointMockService
    from connectors.cpis.mock import CpisMockService
    from connectors.ecaf.mock import EcafMockService
    from connectors.pds.mock import PdsMockService

    pds = PdsMockService(settings.seed_dir / "pds.json")

    def lookup(nhs_number: str) -> tuple[str, bool]:
        record = pds.records.get(nhs_number)
        if record is not None:
            return "current", record.sensitive
        if nhs_number in pds.superseded:
            return "superseded", False
        return "missing", False

    cpis = CpisMockService(
        settings.seed_dir / "cpis.json",
        lookup,
        callback_url=settings.cpis_callback_url,
        callback_username=settings.cpis_callback_username,
        signing=settings.notification_signing,
        replacement_lookup=lambda number: pds.superseded.get(number),
    )
    index = ContactPointMockService(settings.seed_dir / "contactpoint.json")
    # Registering and closing a CAF sets the child index's "CAF exists" indicator.
    ecaf = EcafMockService(settings.seed_dir / "ecaf.json", index.set_caf_indicator)
    return [pds, cpis, index, ecaf]


class _MockServer:
    """The state shared by the app's views: services, faults and settings."""

    def __init__(self, settings: MockSettings, services: Sequence[MockService]) -> None:
        self.settings = settings
        self.services = {s.name: s for s in services}
        self.faults = FaultRegistry()

    def respond(self, reply: MockReply) -> Response:
        body = reply.body if reply.body is not None else b""
        if reply.envelope is not None:
            body = xml.to_bytes(reply.envelope)
        return Response(
            body, status=reply.status, content_type=reply.content_type, headers=reply.headers
        )

    def serve_document(self, service: MockService) -> Response:
        if "wsdl" in request.args:
            path = service.wsdl_dir / service.wsdl_file
            text = path.read_text(encoding="utf-8")
            # Point the WSDL at this server and make relative schema references fetchable here.
            text = _rewrite_addresses(text, request.base_url)
            return Response(text, content_type=_XML)
        name = request.args.get("xsd")
        allowed = {p.name for p in service.wsdl_dir.glob("*.xsd")}
        if name in allowed:
            return Response((service.wsdl_dir / name).read_bytes(), content_type=_XML)
        return Response("not found", status=404, content_type="text/plain")

    def apply_fault(
        self, spec: FaultSpec, service: MockService, relates_to: str | None
    ) -> Response | None:
        if spec.kind == "latency":
            time.sleep(spec.seconds)
            return None
        if spec.kind == "soap_fault":
            return self.respond(
                service.fault(
                    fault_code=spec.fault_code,
                    text=spec.text,
                    service_code=spec.code,
                    relates_to=relates_to,
                    status=500,
                    kind="injected",
                )
            )
        if spec.kind == "http_error":
            html = f"<html><body><h1>{spec.status}</h1></body></html>".encode()
            return Response(html, status=spec.status, content_type="text/html")
        if spec.kind == "malformed":
            broken = (
                b'<?xml version="1.0"?><soap:Envelope '
                b'xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><unclosed>'
            )
            return Response(broken, status=200, content_type=_XML)
        if spec.kind == "hostile":
            document = hostile_document(spec.variant, spec.url, spec.file_path, utf16=spec.utf16)
            return Response(document, status=200, content_type=_XML)
        if spec.kind == "hang":
            self.faults.released.wait(spec.seconds or 3600.0)
            return Response(b"", status=503, content_type="text/plain")
        if spec.kind == "reset":
            return _reset_connection()
        return None

    def dispatch(self, service: MockService) -> Response:
        soap_action = (request.headers.get("SOAPAction") or "").strip().strip('"')
        operation = service.operation_for(soap_action)
        spec = self.faults.take(service.name, operation)
        if spec is not None:
            injected = self.apply_fault(spec, service, None)
            if injected is not None:
                return injected

        def reject(text: str, kind: str = "invalid", relates_to: str | None = None) -> Response:
            return self.respond(
                service.fault(
                    fault_code="Client",
                    text=text,
                    service_code=None,
                    relates_to=relates_to,
                    kind=kind,
                )
            )

        length = request.content_length
        if length is None or length > self.settings.max_request_bytes:
            return reject("the request is too large or has no length")
        media_type = (request.mimetype or "").lower()
        if media_type not in ("text/xml", "application/soap+xml"):
            return reject("SOAP 1.1 requests are text/xml")
        if request.headers.get("Content-Encoding", "identity").lower() != "identity":
            return reject("compressed requests are not accepted")
        data = request.get_data(cache=False)
        try:
            message = read_inbound(
                data, max_bytes=self.settings.max_request_bytes, max_depth=self.settings.max_depth
            )
        except ConnectorError:
            return reject("the request was rejected as unsafe or malformed XML")
        message_id = message.addressing.get("MessageID", "")
        if operation is None:
            return reject("unknown SOAPAction", "unsupported", message_id or None)
        if service.require_addressing:
            if not message_id or message.addressing.get("Action") != soap_action:
                return reject(
                    "wsa:MessageID and a wsa:Action equal to the SOAPAction are required",
                    "unsupported",
                    message_id or None,
                )
            if self.settings.require_wsse:
                try:
                    if message.security is None:
                        raise SecurityFailure("no wsse:Security header")
                    check_timestamp(
                        message.security,
                        now=utcnow(),
                        max_skew_seconds=self.settings.clock_skew_seconds,
                    )
                except SecurityFailure:
                    return reject(
                        "WS-Security Timestamp missing or not current", "security", message_id
                    )
                except ValueError:
                    return reject("WS-Security Timestamp unreadable", "security", message_id)
        reply = service.handle(
            MockRequest(
                message=message, operation=operation, soap_action=soap_action, message_id=message_id
            )
        )
        return self.respond(reply)


def _rewrite_addresses(text: str, base_url: str) -> str:
    import re

    text = re.sub(r'location="http://localhost/[^"]*"', f'location="{base_url}"', text)
    return re.sub(
        r'schemaLocation="([A-Za-z0-9_.\-]+\.xsd)"', rf'schemaLocation="{base_url}?xsd=\1"', text
    )


def _reset_connection() -> Response:
    """Drop the client's connection without answering (RST on close)."""
    sock = request.environ.get("werkzeug.socket")
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def abort() -> Iterator[bytes]:
        # Runs while the server iterates the body, before anything is written: shut the socket
        # down (the server then sees end-of-file and closes it, with RST because of SO_LINGER 0)
        # and report a dropped connection, which the server handles silently.
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        raise ConnectionResetError("connection reset injected by the mock")
        yield b""  # pragma: no cover - makes this a generator

    return Response(abort(), status=200, content_type=_XML)


def create_mock_app(
    settings: MockSettings | None = None, *, services: Sequence[MockService] | None = None
) -> Flask:
    """Create the mock national server app; a service is one registration in `services`."""
    settings = settings or MockSettings()
    server = _MockServer(settings, services if services is not None else default_services(settings))
    app = Flask("connectors.mockserver")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.extensions["wraparound_mock"] = server

    for service in server.services.values():

        def view(service: MockService = service) -> Response:
            if request.method == "GET":
                return server.serve_document(service)
            return server.dispatch(service)

        app.add_url_rule(
            service.path,
            endpoint=f"service_{service.name}",
            view_func=view,
            methods=["GET", "POST"],
        )

    @app.get("/health")
    def health() -> Response:
        return jsonify(
            status="ok",
            services={name: s.path for name, s in server.services.items()},
        )

    @app.post("/admin/faults")
    def add_fault() -> Response | tuple[Response, int]:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            return jsonify(error="a JSON object is required"), 400
        if data.get("service") not in server.services:
            return jsonify(error="unknown service"), 400
        try:
            spec = server.faults.add(data)
        except (ValueError, TypeError) as exc:
            return jsonify(error=str(exc)), 400
        return jsonify(spec.to_json()), 201

    @app.get("/admin/faults")
    def list_faults() -> Response:
        return jsonify([f.to_json() for f in server.faults.list()])

    @app.delete("/admin/faults")
    def clear_faults() -> Response:
        removed = server.faults.clear(request.args.get("service"))
        return jsonify(removed=removed)

    @app.post("/admin/reset")
    def reset() -> Response:
        server.faults.clear()
        for service in server.services.values():
            service.reset()
        return jsonify(status="reset")

    @app.get("/admin/services/<name>")
    def service_state(name: str) -> Response | tuple[Response, int]:
        service = server.services.get(name)
        if service is None:
            return jsonify(error="unknown service"), 404
        return jsonify(service.admin_state())

    @app.post("/admin/services/<name>/config")
    def service_config(name: str) -> Response | tuple[Response, int]:
        service = server.services.get(name)
        configure = getattr(service, "configure", None)
        if service is None or configure is None:
            return jsonify(error="service has no run-time settings"), 404
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            return jsonify(error="a JSON object is required"), 400
        try:
            configure(data)
        except ValueError as exc:
            return jsonify(error=str(exc)), 400
        return jsonify(service.admin_state())

    @app.post("/admin/services/<name>/control/<action>")
    def service_control(name: str, action: str) -> Response | tuple[Response, int]:
        service = server.services.get(name)
        control = getattr(service, "control", None)
        if service is None or control is None:
            return jsonify(error="service has no controls"), 404
        data = request.get_json(silent=True) if request.content_length else {}
        if not isinstance(data, dict):
            return jsonify(error="a JSON object is required"), 400
        try:
            return jsonify(control(action, data))
        except ValueError as exc:
            return jsonify(error=str(exc)), 400

    @app.errorhandler(413)
    def too_large(_: Any) -> Response:
        return Response(
            json.dumps({"error": "request too large"}), status=413, content_type="application/json"
        )

    return app
