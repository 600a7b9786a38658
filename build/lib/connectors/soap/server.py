"""The receiving side of SOAP: read an inbound envelope safely, build replies and faults.

Used by the mock national services and by the helpers that read messages national services push
to the gateway. Everything inbound goes through the hardened XML module.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from connectors.errors import InvalidResponse
from connectors.soap import xml
from connectors.soap.wsa import SOAP11_NS, WSA_NS, read_addressing
from connectors.soap.wsse import WSSE_NS

__all__ = [
    "FAULT_ACTION",
    "InboundMessage",
    "build_envelope",
    "build_fault",
    "read_inbound",
]

FAULT_ACTION = "http://www.w3.org/2005/08/addressing/soap/fault"


@dataclass(frozen=True)
class InboundMessage:
    """A parsed inbound SOAP 1.1 message."""

    envelope: etree._Element
    body: etree._Element
    payload: etree._Element
    addressing: dict[str, str]
    security: etree._Element | None


def read_inbound(
    data: bytes, *, max_bytes: int = xml.DEFAULT_MAX_BYTES, max_depth: int = xml.DEFAULT_MAX_DEPTH
) -> InboundMessage:
    """Parse and check the envelope structure of an inbound message (not its content)."""
    envelope = xml.parse(data, max_bytes=max_bytes, max_depth=max_depth)
    if envelope.tag != f"{{{SOAP11_NS}}}Envelope":
        raise InvalidResponse("not a SOAP 1.1 envelope")
    bodies = envelope.findall(f"{{{SOAP11_NS}}}Body")
    if len(bodies) != 1 or len(envelope.findall(f".//{{{SOAP11_NS}}}Body")) != 1:
        raise InvalidResponse("a message must have exactly one soap:Body")
    headers = envelope.findall(f"{{{SOAP11_NS}}}Header")
    if len(headers) > 1:
        raise InvalidResponse("a message may have at most one soap:Header")
    elements = [child for child in bodies[0] if isinstance(child.tag, str)]
    if len(elements) != 1:
        raise InvalidResponse("the soap:Body must hold exactly one element")
    securities = envelope.findall(f"{{{SOAP11_NS}}}Header/{{{WSSE_NS}}}Security")
    if len(securities) > 1:
        raise InvalidResponse("at most one wsse:Security header")
    return InboundMessage(
        envelope=envelope,
        body=bodies[0],
        payload=elements[0],
        addressing=read_addressing(envelope),
        security=securities[0] if securities else None,
    )


def _wsa(header: etree._Element, name: str, value: str | None) -> None:
    if value is None:
        return
    etree.SubElement(header, f"{{{WSA_NS}}}{name}").text = value


def build_envelope(
    payload: etree._Element | None,
    *,
    action: str,
    message_id: str,
    relates_to: str | None = None,
    to: str | None = "",
    from_address: str | None = None,
) -> etree._Element:
    """Build a SOAP 1.1 envelope with WS-Addressing headers around a payload."""
    envelope = etree.Element(f"{{{SOAP11_NS}}}Envelope", nsmap={"soap": SOAP11_NS, "wsa": WSA_NS})
    header = etree.SubElement(envelope, f"{{{SOAP11_NS}}}Header")
    _wsa(header, "MessageID", message_id)
    _wsa(header, "Action", action)
    _wsa(header, "To", to)
    if from_address:
        sender = etree.SubElement(header, f"{{{WSA_NS}}}From")
        etree.SubElement(sender, f"{{{WSA_NS}}}Address").text = from_address
    _wsa(header, "RelatesTo", relates_to)
    body = etree.SubElement(envelope, f"{{{SOAP11_NS}}}Body")
    if payload is not None:
        body.append(payload)
    return envelope


def build_fault(
    fault_code: str,
    fault_string: str,
    *,
    detail: etree._Element | None,
    message_id: str,
    relates_to: str | None = None,
) -> etree._Element:
    """Build a SOAP 1.1 Fault envelope (faultcode Client or Server) with an optional detail."""
    envelope = build_envelope(
        None, action=FAULT_ACTION, message_id=message_id, relates_to=relates_to
    )
    body = envelope[-1]  # build_envelope always ends with the Body
    fault = etree.SubElement(body, f"{{{SOAP11_NS}}}Fault")
    etree.SubElement(fault, "faultcode").text = f"soap:{fault_code}"
    etree.SubElement(fault, "faultstring").text = fault_string
    if detail is not None:
        etree.SubElement(fault, "detail").append(detail)
    return envelope
