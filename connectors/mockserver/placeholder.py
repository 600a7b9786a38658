"""A registered service whose mock is not built yet: every request gets a 501 SOAP Fault."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lxml import etree

from connectors.mockserver.service import MockReply, MockRequest
from connectors.soap.context import new_message_id
from connectors.soap.server import build_fault

__all__ = ["PlaceholderService"]

_WSDL_DIR = Path(__file__).resolve().parent / "wsdl"


class PlaceholderService:
    """Answers every operation with faultcode Server and HTTP 501 (not implemented)."""

    wsdl_dir = _WSDL_DIR
    wsdl_file = "placeholder.wsdl"
    require_addressing = False

    def __init__(self, name: str, path: str) -> None:
        self.name = name
        self.path = path

    def operation_for(self, soap_action: str) -> str | None:
        """Accept any SOAPAction: the answer is the same."""
        return soap_action or "*"

    def handle(self, request: MockRequest) -> MockReply:
        """Answer not implemented."""
        return self.fault(
            fault_code="Server",
            text=f"the {self.name} service is not implemented by this mock yet",
            service_code="NOT-IMPLEMENTED",
            relates_to=request.message_id or None,
            status=501,
        )

    def fault(
        self,
        *,
        fault_code: str,
        text: str,
        service_code: str | None,
        relates_to: str | None,
        status: int = 501,
        kind: str = "invalid",
    ) -> MockReply:
        """Build a plain SOAP Fault with a code in its detail."""
        detail = etree.Element("{urn:wraparound:placeholder:1}FaultInfo")
        etree.SubElement(detail, "{urn:wraparound:placeholder:1}code").text = (
            service_code or "NOT-IMPLEMENTED"
        )
        envelope = build_fault(
            fault_code, text, detail=detail, message_id=new_message_id(), relates_to=relates_to
        )
        return MockReply(status=status, envelope=envelope)

    def reset(self) -> None:
        """Hold no state."""

    def admin_state(self) -> dict[str, Any]:
        """Say that this is a placeholder."""
        return {"placeholder": True}
