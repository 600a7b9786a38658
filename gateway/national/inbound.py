"""Inbound CP-IS notifications: verify, store as FHIR once, acknowledge.

Two kinds arrive at one endpoint, told apart by their SOAPAction / wsa:Action: access to service
(health staff looked at a child's record in unscheduled care) and inactive NHS number (NHS
numbers on the local authority's plans that PDS no longer holds as current).

A notification is authenticated by its own WS-Security header, not by a bearer token: the
Timestamp must be current, the UsernameToken (and its password) must be the configured ones when
they are configured, and when a certificate is configured the Body and Timestamp must be signed
with it (required by default in production). It is stored, acting as the local authority's
social-care agency, in one transaction: for an access, an AuditEvent (who looked, where, when)
and a Communication to the local authority about the child; for inactive NHS numbers, one
administrative Flag per number (what to correct) and a Communication to the local authority
about them. Each is linked to the child's Patient when one carries the NHS number. The
WS-Addressing MessageID fixes the ids of every resource, so a notification sent again is
acknowledged as a duplicate and stored once.

Every refusal is a SOAP Fault; nothing inbound ever gets an HTML error page.
"""
from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from connectors.cpis import (
    AccessNotification,
    InactiveNhsNumberNotification,
    Notification,
    build_notification_ack,
    parse_notification,
)
from connectors.errors import (
    ConnectorError,
    InvalidResponse,
    MalformedXml,
    SecurityFailure,
    UnsafeXml,
)
from connectors.soap import new_message_id, xml
from connectors.soap.server import build_fault, read_inbound
from connectors.soap.wsse import WSSE_NS
from gateway.errors import GatewayError
from gateway.fhir import bundles
from gateway.national.resources import (
    inactive_nhs_number_resources,
    inactive_notification_id,
    notification_ids,
    notification_resources,
)
from gateway.security.context import Caller, acting_as
from gateway.services import Services
from vocab import systems

log = logging.getLogger("wraparound.national.inbound")

MAX_BYTES = 1_000_000
SOAP_MEDIA_TYPES = ("text/xml", "application/soap+xml")
STORING_AGENCY = "social-care"
_FAULT_TEXT: tuple[tuple[type[ConnectorError], str], ...] = (
    (UnsafeXml, "the message was refused: it uses XML features that are not accepted"),
    (MalformedXml, "the message is not well-formed XML"),
    (SecurityFailure, "the message failed WS-Security verification"),
    (InvalidResponse, "the message is not a valid CP-IS notification"),
)


@dataclass(frozen=True)
class InboundReply:
    """What the endpoint answers: an HTTP status and a SOAP envelope."""

    status: int
    body: bytes
    message_id: str | None = None
    duplicate: bool = False
    kind: str | None = None  # accessToServiceNotification or inactiveNhsNumberNotification


def soap_fault(fault_code: str, text: str, relates_to: str | None = None) -> bytes:
    """Return a SOAP 1.1 Fault envelope."""
    envelope = build_fault(fault_code, text, detail=None, message_id=new_message_id(),
                           relates_to=relates_to)
    return xml.to_bytes(envelope)


def _fault_text(exc: ConnectorError) -> str:
    for klass, text in _FAULT_TEXT:
        if isinstance(exc, klass):
            return text
    return "the message could not be accepted"


def kind_of(notification: Notification) -> str:
    """Return the operation name of a notification."""
    if isinstance(notification, InactiveNhsNumberNotification):
        return "inactiveNhsNumberNotification"
    return "accessToServiceNotification"


class NotificationReceiver:
    """Receive CP-IS notifications (access to service, inactive NHS number) for one app."""

    def __init__(self, services: Services, *, fhir_base: Callable[[], str],
                 certificate_pem: bytes | None = None) -> None:
        settings = services.settings
        self.services = services
        self.fhir_base = fhir_base
        self.username = settings.cpis_inbound_username
        self.password = settings.cpis_inbound_password
        self.certificate_pem = certificate_pem
        self.require_signature = settings.cpis_inbound_signature_required

    # -- receiving ----------------------------------------------------------------------------
    def receive(self, body: bytes, *, media_type: str, soap_action: str | None,
                length: int | None) -> InboundReply:
        """Verify, store and acknowledge one notification; any refusal is a SOAP Fault."""
        if length is None or length > MAX_BYTES:
            return InboundReply(500, soap_fault("Client", "the message is too large or has no "
                                                          "Content-Length"))
        if media_type not in SOAP_MEDIA_TYPES:
            return InboundReply(500, soap_fault("Client", "SOAP 1.1 messages are text/xml"))
        try:
            self.authenticate(body)
            notification = parse_notification(
                body, soap_action=soap_action, certificate_pem=self.certificate_pem,
                require_signature=self.require_signature, max_bytes=MAX_BYTES)
        except ConnectorError as exc:
            log.warning("inbound cpis notification refused: %s", exc.code)
            return InboundReply(500, soap_fault("Client", _fault_text(exc)))
        try:
            duplicate = self.store(notification)
        except GatewayError as exc:
            log.error("inbound cpis notification not stored: status=%s message_id=%s",
                      exc.status, notification.message_id)
            return InboundReply(500, soap_fault(
                "Server", "the notification could not be stored; send it again",
                notification.message_id), notification.message_id)
        kind = kind_of(notification)
        log.info("inbound cpis notification accepted kind=%s message_id=%s duplicate=%s", kind,
                 notification.message_id, duplicate)
        return InboundReply(200, build_notification_ack(notification, duplicate=duplicate),
                            notification.message_id, duplicate, kind)

    def authenticate(self, body: bytes) -> None:
        """Check the UsernameToken (and password) when they are configured."""
        if self.username is None and self.password is None:
            return
        message = read_inbound(body, max_bytes=MAX_BYTES)
        security = message.security
        tokens = security.findall(f"{{{WSSE_NS}}}UsernameToken") if security is not None else []
        if len(tokens) != 1:
            raise SecurityFailure("expected exactly one UsernameToken")
        if self.username is not None and not _same(
                tokens[0].findtext(f"{{{WSSE_NS}}}Username"), self.username):
            raise SecurityFailure("unknown UsernameToken")
        if self.password is not None:
            password = tokens[0].find(f"{{{WSSE_NS}}}Password")
            if password is None or not password.get("Type", "").endswith("#PasswordText") \
                    or not _same(password.text, self.password):
                raise SecurityFailure("wrong UsernameToken password")

    # -- storing ------------------------------------------------------------------------------
    def store(self, notification: Notification) -> bool:
        """Store the notification once; return True when it had been stored already."""
        if isinstance(notification, InactiveNhsNumberNotification):
            return self._store_inactive(notification)
        return self._store_access(notification)

    def _store_access(self, notification: AccessNotification) -> bool:
        comm_id, event_id = notification_ids(notification.message_id)
        fhir = self.services.fhir
        with acting_as(Caller.internal(STORING_AGENCY)):
            if self._exists("Communication", comm_id):
                return True
            patient = self._find_child(notification.nhs_number)
            event, communication = notification_resources(notification, patient)
            bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "transaction", "entry": [
                {"resource": event, "request": {"method": "PUT", "url": f"AuditEvent/{event_id}"}},
                {"resource": communication,
                 "request": {"method": "PUT", "url": f"Communication/{comm_id}"}},
            ]}
            try:
                response = orjson.loads(bundles.process(fhir, bundle, self.fhir_base()))
            except Exception:
                # The same notification arriving twice at once collides on the ids; the other
                # request stored it. Anything else is re-raised.
                if self._exists("Communication", comm_id):
                    return True
                raise
        # PUT answers 201 when it created the Communication, 200 when it was already there.
        return not str(response["entry"][1]["response"]["status"]).startswith("201")

    def _store_inactive(self, notification: InactiveNhsNumberNotification) -> bool:
        comm_id = inactive_notification_id(notification.message_id)
        with acting_as(Caller.internal(STORING_AGENCY)):
            if self._exists("Communication", comm_id):
                return True
            children = {r.nhs_number: self._find_child(r.nhs_number)
                        for r in notification.records}
            resources = inactive_nhs_number_resources(notification, children)
            bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "transaction", "entry": [
                {"resource": r, "request": {"method": "PUT",
                                            "url": f"{r['resourceType']}/{r['id']}"}}
                for r in resources]}
            try:
                response = orjson.loads(bundles.process(self.services.fhir, bundle,
                                                        self.fhir_base()))
            except Exception:
                if self._exists("Communication", comm_id):  # stored by a concurrent delivery
                    return True
                raise
        # The Communication is the last entry: 201 when this delivery created it.
        return not str(response["entry"][-1]["response"]["status"]).startswith("201")

    def _exists(self, res_type: str, res_id: str) -> bool:
        stored = self.services.store.read(lambda s: s.get(res_type, res_id))
        return stored is not None and not stored.deleted

    def _find_child(self, nhs_number: str) -> str | None:
        result = self.services.fhir.search(
            "Patient", [("identifier", f"{systems.NHS_NUMBER}|{nhs_number}"), ("_count", "20")])
        best: str | None = None
        for stored in result.matches:
            if stored.content is None:
                continue
            reference = f"Patient/{stored.res_id}"
            identifiers = orjson.loads(stored.content).get("identifier") or ()
            if any(i.get("system") == systems.GOLDEN_ID for i in identifiers):
                return reference  # the golden Patient links every agency's record of the child
            best = best or reference
        return best


def _same(given: str | None, expected: str) -> bool:
    return hmac.compare_digest((given or "").strip().encode("utf-8"), expected.encode("utf-8"))


__all__ = ["InboundReply", "NotificationReceiver", "soap_fault"]
