"""The SOAP client core: one factory per service, one call path, one reply reader.

A call goes: zeep builds the envelope from the package WSDL (hardened settings) → plugins add
WS-Addressing (stable MessageID) and the correlation header → WS-Security adds Timestamp and
UsernameToken (and signs) → the hardened transport posts with timeouts and a bounded read → our
hardened parser reads the reply → SOAP Faults and HTTP errors become connector errors → the reply
signature is verified when configured → the caller gets the Body's payload element.

`SoapClient.send` is the same path for a Body the connector built itself with lxml (the
PDS connector on its hot path): only zeep's serialisation is skipped; the operation's SOAPAction
comes from the WSDL binding, and plugins, WS-Security, transport and reader are the same.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
import zeep
from lxml import etree
from zeep import Plugin
from zeep.plugins import apply_egress, apply_ingress
from zeep.wsdl import Document

from connectors.errors import (
    ConfigurationError,
    ConnectorError,
    InvalidResponse,
    SoapFault,
    Unavailable,
    boundary,
)
from connectors.soap import xml
from connectors.soap.context import CallContext, call_context, new_message_id
from connectors.soap.plugins import CallObserver, CallRecord, CorrelationTimingPlugin
from connectors.soap.settings import SoapSettings, hardened_zeep_settings
from connectors.soap.transport import HardenedTransport, build_transport
from connectors.soap.wsa import SOAP11_NS, StableWsAddressing, read_addressing
from connectors.soap.wsse import WsSecurity, utcnow

__all__ = [
    "ServiceSpec",
    "SoapClient",
    "SoapReply",
    "build_soap_client",
    "load_wsdl",
    "read_fault",
]

_XML_MEDIA_TYPES = ("text/xml", "application/soap+xml", "application/xml")
_FAULT_CODE_NAMES = ("ErrorCode", "code", "faultCode")


@dataclass(frozen=True)
class ServiceSpec:
    """What identifies a service to the SOAP layer: its name, package WSDL and binding."""

    name: str
    wsdl_path: Path
    binding: str


@dataclass(frozen=True)
class SoapReply:
    """A successful reply: the parsed envelope, its (verified) Body payload and addressing."""

    envelope: etree._Element
    payload: etree._Element
    addressing: dict[str, str]
    http_status: int
    message_id: str
    correlation_id: str


@functools.lru_cache(maxsize=16)
def load_wsdl(path: str) -> Document:
    """Load a WSDL and its XSDs from package files, once per process; never over the network."""
    resolved = Path(path).resolve()
    if not resolved.is_file():
        raise ConfigurationError(f"WSDL {resolved.name} not found")
    loader = HardenedTransport(
        connect_timeout=1.0, read_timeout=1.0, operation_timeout=1.0, max_response_bytes=1
    )
    with boundary("wsdl", resolved.name):
        settings = hardened_zeep_settings()
        return Document(str(resolved), loader, settings=settings)  # type: ignore[arg-type]


def read_fault(fault: etree._Element, http_status: int) -> SoapFault:
    """Read a soap:Fault element into a SoapFault (code, string, service code from detail)."""
    code = (fault.findtext("faultcode") or "").strip()
    string = (fault.findtext("faultstring") or "").strip()
    service_code = None
    detail = fault.find("detail")
    if detail is not None:
        for element in detail.iter():
            if isinstance(element.tag, str) and etree.QName(element).localname in _FAULT_CODE_NAMES:
                service_code = (element.text or "").strip() or None
                break
    return SoapFault(code or "Server", string, service_code=service_code, http_status=http_status)


class SoapClient:
    """Send operations of one service and read replies; every failure is a ConnectorError."""

    def __init__(
        self,
        spec: ServiceSpec,
        settings: SoapSettings,
        *,
        zeep_client: zeep.Client,
        wsse: WsSecurity | None,
        observers: Sequence[CallObserver] = (),
        clock: Callable[[], datetime] = utcnow,
        ids: Callable[[], str] = new_message_id,
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.zeep = zeep_client
        self.wsse = wsse
        self.observers = tuple(observers)
        self.clock = clock
        self.ids = ids
        with boundary(spec.name):
            self._service = zeep_client.create_service(  # type: ignore[no-untyped-call]
                spec.binding, settings.address
            )
        self._operations: dict[str, Any] = {}

    def call(
        self,
        operation: str,
        *,
        message_id: str | None = None,
        correlation_id: str | None = None,
        **body: Any,
    ) -> SoapReply:
        """Send one operation; reuse message_id when retrying the same logical message."""
        return self._run(
            operation, message_id, correlation_id, lambda: self._service[operation](**body)
        )

    def send(
        self,
        operation: str,
        content: etree._Element,
        *,
        message_id: str | None = None,
        correlation_id: str | None = None,
    ) -> SoapReply:
        """Send one operation whose Body content is already built; reuse message_id on retry.

        `content` (moved into the envelope) must be what the WSDL's message for the operation
        describes; the connector's tests check it against zeep's own rendering and the schemas.
        """
        return self._run(
            operation, message_id, correlation_id, lambda: self._post_content(operation, content)
        )

    def _operation(self, operation: str) -> Any:
        found = self._operations.get(operation)
        if found is None:
            found = self._service._binding.get(operation)
            self._operations[operation] = found
        return found

    def _post_content(self, operation: str, content: etree._Element) -> requests.Response:
        operation_obj = self._operation(operation)
        envelope = etree.Element(f"{{{SOAP11_NS}}}Envelope", nsmap={"soap-env": SOAP11_NS})
        etree.SubElement(envelope, f"{{{SOAP11_NS}}}Body").append(content)
        action = operation_obj.soapaction
        headers = {
            "SOAPAction": f'"{action}"' if action else '""',
            "Content-Type": "text/xml; charset=utf-8",
        }
        options = self._service._binding_options
        envelope, headers = apply_egress(  # type: ignore[no-untyped-call]
            self.zeep, envelope, headers, operation_obj, options
        )
        if self.wsse is not None:
            envelope, headers = self.wsse.apply(envelope, headers)
        if self.zeep.settings.extra_http_headers:
            headers.update(self.zeep.settings.extra_http_headers)
        response: requests.Response = self.zeep.transport.post_xml(
            options["address"], envelope, headers
        )
        return response

    def _run(
        self,
        operation: str,
        message_id: str | None,
        correlation_id: str | None,
        post: Callable[[], requests.Response],
    ) -> SoapReply:
        message_id = message_id or self.ids()
        correlation_id = correlation_id or message_id
        context = CallContext(
            service=self.spec.name,
            operation=operation,
            message_id=message_id,
            correlation_id=correlation_id,
            to=self.settings.address,
        )
        started_at = self.clock()
        start = time.perf_counter()
        outcome = "ok"
        response: requests.Response | None = None
        try:
            with call_context(context), boundary(self.spec.name, operation, correlation_id):
                response = post()
                return self._read(response, operation, context)
        except ConnectorError as exc:
            outcome = exc.code
            raise
        finally:
            self._notify(context, started_at, start, outcome, response)

    def _notify(
        self,
        context: CallContext,
        started_at: datetime,
        start: float,
        outcome: str,
        response: requests.Response | None,
    ) -> None:
        if not self.observers:
            return
        request_body = response.request.body if response is not None else None
        record = CallRecord(
            service=context.service,
            operation=context.operation,
            message_id=context.message_id,
            correlation_id=context.correlation_id,
            started_at=started_at,
            duration_ms=(time.perf_counter() - start) * 1000.0,
            outcome=outcome,
            http_status=response.status_code if response is not None else None,
            request_bytes=len(request_body) if isinstance(request_body, bytes | str) else 0,
            response_bytes=len(response.content) if response is not None else 0,
        )
        for observer in self.observers:
            observer.record(record)

    def _read(self, response: requests.Response, operation: str, context: CallContext) -> SoapReply:
        status = response.status_code
        content = response.content or b""
        media_type = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if not content.strip() or media_type not in _XML_MEDIA_TYPES:
            if status >= 500:
                raise Unavailable(f"HTTP {status} without a SOAP envelope")
            raise InvalidResponse(f"HTTP {status} without a SOAP envelope")
        envelope = xml.parse(
            content, max_bytes=self.settings.max_response_bytes, max_depth=self.settings.max_depth
        )
        if envelope.tag != f"{{{SOAP11_NS}}}Envelope":
            raise InvalidResponse("reply is not a SOAP 1.1 envelope")
        bodies = envelope.findall(f"{{{SOAP11_NS}}}Body")
        if len(bodies) != 1:
            raise InvalidResponse("reply must have exactly one soap:Body")
        fault = bodies[0].find(f"{{{SOAP11_NS}}}Fault")
        if fault is not None:
            raise read_fault(fault, status)
        if status != 200:
            if status >= 500:
                raise Unavailable(f"HTTP {status}")
            raise InvalidResponse(f"HTTP {status}")
        body = self.wsse.verify(envelope) if self.wsse is not None else bodies[0]
        operation_obj = self._operation(operation)
        apply_ingress(  # type: ignore[no-untyped-call]
            self.zeep, envelope, dict(response.headers), operation_obj
        )
        payload = next((child for child in body if isinstance(child.tag, str)), None)
        if payload is None:
            raise InvalidResponse("reply Body is empty")
        return SoapReply(
            envelope=envelope,
            payload=payload,
            addressing=read_addressing(envelope),
            http_status=status,
            message_id=context.message_id,
            correlation_id=context.correlation_id,
        )


def build_soap_client(
    spec: ServiceSpec,
    settings: SoapSettings,
    *,
    wsdl: Document | Path | str | None = None,
    transport: HardenedTransport | None = None,
    wsse: WsSecurity | None = None,
    plugins: Sequence[Plugin] | None = None,
    zeep_settings: zeep.Settings | None = None,
    clock: Callable[[], datetime] = utcnow,
    ids: Callable[[], str] = new_message_id,
) -> SoapClient:
    """Build a service client; every collaborator has a hardened default and can be injected."""
    zeep_settings = zeep_settings or hardened_zeep_settings()
    if not (
        zeep_settings.raw_response
        and zeep_settings.forbid_dtd
        and zeep_settings.forbid_entities
        and zeep_settings.forbid_external
        and zeep_settings.strict
        and not zeep_settings.xml_huge_tree
    ):
        raise ConfigurationError("zeep settings must keep every XML protection and raw_response")
    if isinstance(wsdl, Document):
        document = wsdl
    else:
        document = load_wsdl(str(wsdl or settings.wsdl_path or spec.wsdl_path))
    transport = transport or build_transport(settings)
    if wsse is None:
        wsse = WsSecurity(
            settings.username,
            settings.password,
            ttl_seconds=settings.timestamp_ttl_seconds,
            signing=settings.signing,
            clock=clock,
        )
    if plugins is None:
        plugins = [StableWsAddressing(settings.from_address), CorrelationTimingPlugin()]
    observers = [p for p in plugins if isinstance(p, CallObserver)]
    client = zeep.Client(  # type: ignore[no-untyped-call]
        document, wsse=wsse, transport=transport, plugins=list(plugins), settings=zeep_settings
    )
    return SoapClient(
        spec, settings, zeep_client=client, wsse=wsse, observers=observers, clock=clock, ids=ids
    )
