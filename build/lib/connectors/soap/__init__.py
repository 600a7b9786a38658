"""The shared SOAP layer: client factory, hardened XML, transport, WS-Addressing, WS-Security."""

from __future__ import annotations

from connectors.soap.client import ServiceSpec, SoapClient, SoapReply, build_soap_client, load_wsdl
from connectors.soap.context import CallContext, call_context, new_message_id
from connectors.soap.plugins import CallObserver, CallRecord, CorrelationTimingPlugin
from connectors.soap.settings import SigningSettings, SoapSettings, hardened_zeep_settings
from connectors.soap.transport import HardenedTransport, build_transport
from connectors.soap.wsa import StableWsAddressing
from connectors.soap.wsse import WsSecurity, verify_signed_envelope

__all__ = [
    "CallContext",
    "CallObserver",
    "CallRecord",
    "CorrelationTimingPlugin",
    "HardenedTransport",
    "ServiceSpec",
    "SigningSettings",
    "SoapClient",
    "SoapReply",
    "SoapSettings",
    "StableWsAddressing",
    "WsSecurity",
    "build_soap_client",
    "build_transport",
    "call_context",
    "hardened_zeep_settings",
    "load_wsdl",
    "new_message_id",
    "verify_signed_envelope",
]
