"""The receiving side of CP-IS notifications pushed to the local authority.

Two notifications arrive at the local authority's endpoint: access to service (message type 05:
health staff looked at a child's record in unscheduled care) and inactive NHS number (06: NHS
numbers on the authority's plans that PDS no longer holds as current).

`parse_notification` is what the gateway's inbound endpoint calls on the raw request body: it
parses through the hardened XML module, checks the envelope, WS-Addressing (the SOAPAction and
wsa:Action must agree and name one of the two notifications), the WS-Security Timestamp (and,
when a certificate is configured, the X.509 signature over Body and Timestamp, resisting
signature wrapping), validates the payload against the CP-IS schema and returns a dataclass.
`parse_access_notification` accepts only the first kind. `build_notification_ack` builds the
SOAP reply the endpoint sends back.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from lxml import etree

from connectors.cpis import messages as m
from connectors.cpis.models import (
    AccessNotification,
    CpisAccess,
    InactiveNhsNumber,
    InactiveNhsNumberNotification,
)
from connectors.errors import InvalidResponse, SecurityFailure, boundary
from connectors.soap import xml
from connectors.soap.context import new_message_id
from connectors.soap.server import build_envelope, read_inbound
from connectors.soap.wsse import check_timestamp, utcnow, verify_signed_envelope

__all__ = [
    "Notification",
    "build_access_notification",
    "build_inactive_nhs_number_notification",
    "build_notification_ack",
    "parse_access_notification",
    "parse_notification",
]

_C = f"{{{m.CPIS_NS}}}"
Notification = AccessNotification | InactiveNhsNumberNotification
_OPERATIONS = {
    m.NOTIFICATION_ACTION: "accessToServiceNotification",
    m.INACTIVE_NOTIFICATION_ACTION: "inactiveNhsNumberNotification",
}


def parse_notification(
    xml_bytes: bytes,
    *,
    soap_action: str | None = None,
    certificate_pem: bytes | None = None,
    require_signature: bool = False,
    now: datetime | None = None,
    max_skew_seconds: int = 300,
    max_bytes: int = 1_000_000,
    actions: tuple[str, ...] = tuple(_OPERATIONS),
) -> Notification:
    """Verify and read an inbound CP-IS notification of one of `actions`; raise if bad."""
    with boundary("cpis", "notification"):
        message = read_inbound(xml_bytes, max_bytes=max_bytes)
        action = message.addressing.get("Action") or ""
        if action not in actions or (soap_action is not None and soap_action.strip('"') != action):
            raise InvalidResponse("not a CP-IS notification this endpoint takes")
        message_id = message.addressing.get("MessageID")
        if not message_id:
            raise InvalidResponse("notification carries no wsa:MessageID")
        if message.security is None:
            raise SecurityFailure("notification carries no WS-Security header")
        moment = now or utcnow()
        if certificate_pem is not None:
            body = verify_signed_envelope(
                message.envelope,
                certificate_pem=certificate_pem,
                now=moment,
                max_skew_seconds=max_skew_seconds,
            )
            payload = next((c for c in body if isinstance(c.tag, str)), None)
            if payload is None:
                raise InvalidResponse("notification Body is empty")
        elif require_signature:
            raise SecurityFailure("a signature is required but no certificate is configured")
        else:
            check_timestamp(message.security, now=moment, max_skew_seconds=max_skew_seconds)
            payload = message.payload
        schema = xml.load_schema(str(m.WSDL_DIR / "cpis.xsd"))
        if xml.schema_errors(schema, payload):
            raise InvalidResponse("notification does not conform to the CP-IS schema")
        if action == m.INACTIVE_NOTIFICATION_ACTION:
            return m.read_inactive_notification(payload, message_id)
        return m.read_notification(payload, message_id)


def parse_access_notification(
    xml_bytes: bytes,
    *,
    soap_action: str | None = None,
    certificate_pem: bytes | None = None,
    require_signature: bool = False,
    now: datetime | None = None,
    max_skew_seconds: int = 300,
    max_bytes: int = 1_000_000,
) -> AccessNotification:
    """Verify and read an inbound access-to-service notification; raise ConnectorError if bad."""
    notification = parse_notification(
        xml_bytes,
        soap_action=soap_action,
        certificate_pem=certificate_pem,
        require_signature=require_signature,
        now=now,
        max_skew_seconds=max_skew_seconds,
        max_bytes=max_bytes,
        actions=(m.NOTIFICATION_ACTION,),
    )
    if not isinstance(notification, AccessNotification):  # the action check above ensures it
        raise InvalidResponse("not an access-to-service notification", service="cpis")
    return notification


def build_access_notification(
    *,
    notification_id: str,
    nhs_number: str,
    local_id: str | None,
    local_authority_ods_code: str,
    plan_types: tuple[str, ...],
    access: CpisAccess,
    to: str,
    from_address: str | None = None,
) -> etree._Element:
    """Build the notification envelope (WS-Security is added by the sender)."""
    node = etree.Element(_C + "AccessToServiceNotification", nsmap={"cp": m.CPIS_NS})
    etree.SubElement(node, _C + "notificationId").text = notification_id
    etree.SubElement(node, _C + "nhsNumber").text = nhs_number
    if local_id:
        etree.SubElement(node, _C + "localId").text = local_id
    etree.SubElement(node, _C + "localAuthorityOdsCode").text = local_authority_ods_code
    for plan_type in plan_types:
        etree.SubElement(node, _C + "planType").text = plan_type
    m.access_element(node, access)
    return build_envelope(
        node,
        action=m.NOTIFICATION_ACTION,
        message_id=notification_id,
        to=to,
        from_address=from_address,
    )


def build_inactive_nhs_number_notification(
    *,
    notification_id: str,
    local_authority_ods_code: str,
    notified_at: datetime,
    records: tuple[InactiveNhsNumber, ...],
    to: str,
    from_address: str | None = None,
) -> etree._Element:
    """Build the inactive-NHS-number notification envelope (WS-Security is added by the sender)."""
    node = etree.Element(_C + "InactiveNhsNumberNotification", nsmap={"cp": m.CPIS_NS})
    etree.SubElement(node, _C + "notificationId").text = notification_id
    etree.SubElement(node, _C + "localAuthorityOdsCode").text = local_authority_ods_code
    etree.SubElement(node, _C + "notificationTime").text = notified_at.isoformat()
    for record in records:
        item = etree.SubElement(node, _C + "record")
        etree.SubElement(item, _C + "nhsNumber").text = record.nhs_number
        if record.local_id:
            etree.SubElement(item, _C + "localId").text = record.local_id
        for plan_type in record.plan_types:
            etree.SubElement(item, _C + "planType").text = plan_type
        etree.SubElement(item, _C + "reason").text = record.reason
        if record.replacement_nhs_number:
            etree.SubElement(item, _C + "replacementNhsNumber").text = record.replacement_nhs_number
    return build_envelope(
        node,
        action=m.INACTIVE_NOTIFICATION_ACTION,
        message_id=notification_id,
        to=to,
        from_address=from_address,
    )


def build_notification_ack(
    notification: Notification,
    *,
    duplicate: bool = False,
    ids: Callable[[], str] = new_message_id,
) -> bytes:
    """Return the SOAP reply acknowledging a notification (status accepted or duplicate)."""
    node = etree.Element(_C + "NotificationAcknowledgement", nsmap={"cp": m.CPIS_NS})
    etree.SubElement(node, _C + "notificationId").text = notification.notification_id
    etree.SubElement(node, _C + "status").text = "duplicate" if duplicate else "accepted"
    envelope = build_envelope(
        node,
        action=(
            m.INACTIVE_NOTIFICATION_ACTION
            if isinstance(notification, InactiveNhsNumberNotification)
            else m.NOTIFICATION_ACTION
        )
        + "Response",
        message_id=ids(),
        relates_to=notification.message_id,
    )
    return xml.to_bytes(envelope)
