"""What a mock national service is to the mock server: a registration with a path and handlers.

A service registers a path, its package WSDL directory, how SOAPActions map to operations, a
handler and a fault builder in the service's own shape. The server does the rest: serving the WSDL
at `?wsdl`, size limits, hardened parsing, WS-Addressing and WS-Security checks, fault injection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from lxml import etree

from connectors.soap.server import InboundMessage

__all__ = ["MockReply", "MockRequest", "MockService"]


@dataclass(frozen=True)
class MockRequest:
    """One inbound request, parsed and checked, handed to a service."""

    message: InboundMessage
    operation: str
    soap_action: str
    message_id: str


@dataclass(frozen=True)
class MockReply:
    """What the server sends back."""

    status: int
    envelope: etree._Element | None = None
    body: bytes | None = None
    content_type: str = "text/xml; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


class MockService(Protocol):
    """A mock national service hosted by the mock server."""

    name: str
    path: str
    wsdl_dir: Path
    wsdl_file: str
    # Whether requests must carry wsa:MessageID/Action and a fresh wsse:Timestamp.
    require_addressing: bool

    def operation_for(self, soap_action: str) -> str | None:
        """Return the operation a SOAPAction names, or None when it names none of ours."""

    def handle(self, request: MockRequest) -> MockReply:
        """Answer one request (its envelope already parsed and checked)."""

    def fault(
        self,
        *,
        fault_code: str,
        text: str,
        service_code: str | None,
        relates_to: str | None,
        status: int = 500,
        kind: str = "invalid",
    ) -> MockReply:
        """Build this service's SOAP Fault; kind is invalid, security, unsupported or injected."""

    def reset(self) -> None:
        """Restore the state seeded from fixtures."""

    def admin_state(self) -> dict[str, Any]:
        """Return a small JSON view of the state for tests and operators (no personal data)."""
