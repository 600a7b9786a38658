"""WS-Addressing headers with a stable MessageID per logical message.

zeep's own `WsAddressingPlugin` makes a new uuid on every send, so a retry looks like a new
message to the receiver. This plugin writes the id of the current call (see `call_context`),
which the caller chooses and reuses on retry, so receivers can de-duplicate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lxml import etree
from zeep import Plugin

from connectors.soap.context import current_call, new_message_id

__all__ = ["SOAP11_NS", "WSA_NS", "StableWsAddressing", "ensure_header", "read_addressing"]

SOAP11_NS = "http://schemas.xmlsoap.org/soap/envelope/"
WSA_NS = "http://www.w3.org/2005/08/addressing"


def ensure_header(envelope: etree._Element) -> etree._Element:
    """Return the envelope's soap:Header, creating it as the first child when missing."""
    header = envelope.find(f"{{{SOAP11_NS}}}Header")
    if header is None:
        header = etree.Element(f"{{{SOAP11_NS}}}Header")
        envelope.insert(0, header)
    return header


class StableWsAddressing(Plugin):
    """Add wsa:MessageID, Action, To and From; the MessageID comes from the current call."""

    def __init__(
        self,
        from_address: str | None = None,
        *,
        fallback_ids: Callable[[], str] = new_message_id,
    ) -> None:
        self.from_address = from_address
        self.fallback_ids = fallback_ids

    def egress(
        self,
        envelope: etree._Element,
        http_headers: dict[str, str],
        operation: Any,
        binding_options: dict[str, Any],
    ) -> tuple[etree._Element, dict[str, str]]:
        """Write the addressing headers before the message is secured and sent."""
        call = current_call()
        message_id = call.message_id if call is not None else self.fallback_ids()
        to = (call.to if call is not None else None) or binding_options.get("address", "")
        action = operation.soapaction or ""
        header = ensure_header(envelope)
        for name in ("MessageID", "Action", "To", "From"):
            for old in header.findall(f"{{{WSA_NS}}}{name}"):
                header.remove(old)
        nodes = [
            _text("MessageID", message_id),
            _text("Action", action),
            _text("To", to),
        ]
        if self.from_address:
            sender = etree.Element(f"{{{WSA_NS}}}From", nsmap={"wsa": WSA_NS})
            etree.SubElement(sender, f"{{{WSA_NS}}}Address").text = self.from_address
            nodes.append(sender)
        for index, node in enumerate(nodes):
            header.insert(index, node)
        return envelope, http_headers


def _text(name: str, value: str) -> etree._Element:
    node = etree.Element(f"{{{WSA_NS}}}{name}", nsmap={"wsa": WSA_NS})
    node.text = value
    return node


def read_addressing(envelope: etree._Element) -> dict[str, str]:
    """Return the WS-Addressing values of an envelope (MessageID, Action, To, RelatesTo)."""
    header = envelope.find(f"{{{SOAP11_NS}}}Header")
    values: dict[str, str] = {}
    if header is None:
        return values
    for name in ("MessageID", "Action", "To", "RelatesTo"):
        node = header.find(f"{{{WSA_NS}}}{name}")
        if node is not None:
            values[name] = (node.text or "").strip()
    return values
