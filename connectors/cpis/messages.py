"""CP-IS message shapes: element names, builders and readers shared by client, mock and helper."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

from lxml import etree

from connectors.cpis.models import (
    AccessNotification,
    Accessor,
    CpisAccess,
    CpisPlan,
    InactiveNhsNumber,
    InactiveNhsNumberNotification,
    LocalAuthority,
    RecordAcknowledgement,
    UploadAcknowledgement,
    UploadRecord,
)
from connectors.errors import InvalidResponse

__all__ = [
    "ACTION_PREFIX",
    "CPIS_NS",
    "INACTIVE_NOTIFICATION_ACTION",
    "NOTIFICATION_ACTION",
    "WSDL_DIR",
    "access_element",
    "accessor_element",
    "local_authority_element",
    "read_access",
    "read_acknowledgement",
    "read_inactive_notification",
    "read_local_authority",
    "read_notification",
    "read_plan",
    "read_upload_record",
]

CPIS_NS = "urn:wraparound:spine:cpis:1"
ACTION_PREFIX = "urn:wraparound:spine:cpis:1:"
NOTIFICATION_ACTION = ACTION_PREFIX + "accessToServiceNotification"
INACTIVE_NOTIFICATION_ACTION = ACTION_PREFIX + "inactiveNhsNumberNotification"
WSDL_DIR = Path(__file__).resolve().parent / "wsdl"
_C = f"{{{CPIS_NS}}}"


def _text(parent: etree._Element, name: str, *, required: bool = True) -> str | None:
    node = parent.find(_C + name)
    value = (node.text or "").strip() if node is not None else ""
    if not value:
        if required:
            raise InvalidResponse(f"CP-IS message lacks {name}")
        return None
    return value


def _req(parent: etree._Element, name: str) -> str:
    value = _text(parent, name)
    if value is None:  # _text raises first; this keeps the type narrow
        raise InvalidResponse(f"CP-IS message lacks {name}")
    return value


def _date(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError as exc:
        raise InvalidResponse("CP-IS message carries an invalid date") from exc


def _datetime(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value)  # Python 3.11 reads a trailing Z
    except ValueError as exc:
        raise InvalidResponse("CP-IS message carries an invalid time") from exc


def _sub(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    node = etree.SubElement(parent, _C + name)
    if text is not None:
        node.text = text
    return node


def local_authority_element(
    parent: etree._Element, la: LocalAuthority, name: str = "localAuthority"
) -> etree._Element:
    """Append a localAuthority element."""
    node = _sub(parent, name)
    _sub(node, "odsCode", la.ods_code)
    _sub(node, "name", la.name)
    _sub(node, "officeHoursPhone", la.office_hours_phone)
    _sub(node, "emergencyDutyPhone", la.emergency_duty_phone)
    return node


def accessor_element(parent: etree._Element, accessor: Accessor) -> etree._Element:
    """Append an accessor element."""
    node = _sub(parent, "accessor")
    _sub(node, "userId", accessor.user_id)
    _sub(node, "name", accessor.name)
    _sub(node, "role", accessor.role)
    _sub(node, "organisationOdsCode", accessor.organisation_ods_code)
    _sub(node, "organisationName", accessor.organisation_name)
    return node


def access_element(
    parent: etree._Element, access: CpisAccess, name: str = "access"
) -> etree._Element:
    """Append an access element."""
    node = _sub(parent, name)
    _sub(node, "accessTime", access.access_time.isoformat())
    accessor_element(node, access.accessor)
    if access.care_setting:
        _sub(node, "careSetting", access.care_setting)
    return node


def read_local_authority(node: etree._Element) -> LocalAuthority:
    """Read a localAuthority element."""
    return LocalAuthority(
        ods_code=_req(node, "odsCode"),
        name=_req(node, "name"),
        office_hours_phone=_req(node, "officeHoursPhone"),
        emergency_duty_phone=_req(node, "emergencyDutyPhone"),
    )


def _read_accessor(node: etree._Element) -> Accessor:
    return Accessor(
        user_id=_req(node, "userId"),
        name=_req(node, "name"),
        role=_req(node, "role"),
        organisation_ods_code=_req(node, "organisationOdsCode"),
        organisation_name=_req(node, "organisationName"),
    )


def read_access(node: etree._Element) -> CpisAccess:
    """Read an access element."""
    accessor = node.find(_C + "accessor")
    if accessor is None:
        raise InvalidResponse("CP-IS access lacks accessor")
    return CpisAccess(
        access_time=_datetime(_req(node, "accessTime")),
        accessor=_read_accessor(accessor),
        care_setting=_text(node, "careSetting", required=False),
    )


def read_plan(node: etree._Element) -> CpisPlan:
    """Read a plan element."""
    la = node.find(_C + "localAuthority")
    start = _date(_req(node, "startDate"))
    if la is None or start is None:
        raise InvalidResponse("CP-IS plan is incomplete")
    return CpisPlan(
        plan_type=_req(node, "planType"),
        start_date=start,
        end_date=_date(_text(node, "endDate", required=False)),
        local_authority=read_local_authority(la),
        expected_delivery_date=_date(_text(node, "expectedDeliveryDate", required=False)),
    )


def read_upload_record(node: etree._Element) -> UploadRecord:
    """Read one record of an upload (used by the mock)."""
    nhs = node.find(_C + "nhsNumber")
    start = _date(_req(node, "startDate"))
    if nhs is None or start is None:
        raise InvalidResponse("CP-IS upload record is incomplete")
    return UploadRecord(
        local_id=_req(node, "localId"),
        nhs_number=(nhs.text or "").strip(),
        nhs_number_verified=nhs.get("verified") in ("true", "1"),
        plan_type=_req(node, "planType"),
        start_date=start,
        end_date=_date(_text(node, "endDate", required=False)),
        delete_date=_date(_text(node, "deleteDate", required=False)),
        expected_delivery_date=_date(_text(node, "expectedDeliveryDate", required=False)),
    )


def read_acknowledgement(node: etree._Element) -> UploadAcknowledgement:
    """Read a LocalAuthorityAcknowledgement."""
    if node.tag != _C + "LocalAuthorityAcknowledgement":
        raise InvalidResponse("expected a LocalAuthorityAcknowledgement")
    file_response = node.find(_C + "fileResponse")
    if file_response is None or not file_response.get("code"):
        raise InvalidResponse("acknowledgement lacks the file response code")
    records = []
    for rr in node.findall(_C + "recordResponse"):
        response = rr.find(_C + "response")
        if response is None or not response.get("code"):
            raise InvalidResponse("record acknowledgement lacks its code")
        records.append(
            RecordAcknowledgement(
                local_id=_req(rr, "localId"),
                nhs_number=_text(rr, "nhsNumber", required=False) or "",
                code=response.get("code") or "",
                detail=_text(rr, "detail", required=False),
            )
        )
    try:
        sequence = int(_req(node, "fileSequenceNumber"))
        quantity = int(_req(node, "transmissionQuantity"))
    except ValueError as exc:
        raise InvalidResponse("acknowledgement numbers are not integers") from exc
    return UploadAcknowledgement(
        file_sequence_number=sequence,
        file_code=file_response.get("code") or "",
        transmission_quantity=quantity,
        records=tuple(records),
    )


def read_notification(node: etree._Element, message_id: str) -> AccessNotification:
    """Read an AccessToServiceNotification."""
    if node.tag != _C + "AccessToServiceNotification":
        raise InvalidResponse("expected an AccessToServiceNotification")
    access = node.find(_C + "access")
    if access is None:
        raise InvalidResponse("notification lacks the access")
    return AccessNotification(
        notification_id=_req(node, "notificationId"),
        message_id=message_id,
        nhs_number=_req(node, "nhsNumber"),
        local_id=_text(node, "localId", required=False),
        local_authority_ods_code=_req(node, "localAuthorityOdsCode"),
        plan_types=tuple((p.text or "").strip() for p in node.findall(_C + "planType")),
        access=read_access(access),
    )


def read_inactive_notification(
    node: etree._Element, message_id: str
) -> InactiveNhsNumberNotification:
    """Read an InactiveNhsNumberNotification."""
    if node.tag != _C + "InactiveNhsNumberNotification":
        raise InvalidResponse("expected an InactiveNhsNumberNotification")
    records = tuple(
        InactiveNhsNumber(
            nhs_number=_req(r, "nhsNumber"),
            local_id=_text(r, "localId", required=False),
            plan_types=tuple((p.text or "").strip() for p in r.findall(_C + "planType")),
            reason=_req(r, "reason"),
            replacement_nhs_number=_text(r, "replacementNhsNumber", required=False),
        )
        for r in node.findall(_C + "record")
    )
    if not records:
        raise InvalidResponse("the notification names no NHS number")
    return InactiveNhsNumberNotification(
        notification_id=_req(node, "notificationId"),
        message_id=message_id,
        local_authority_ods_code=_req(node, "localAuthorityOdsCode"),
        notified_at=_datetime(_req(node, "notificationTime")),
        records=records,
    )
