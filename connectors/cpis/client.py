"""The health-spine-like CP-IS client: upload plans, query a child, read the access history."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from lxml import etree
from zeep import Plugin
from zeep.wsdl import Document

from connectors.cpis import messages as m
from connectors.cpis.models import (
    PLAN_TYPES,
    Accessor,
    CpisAccess,
    CpisQueryResult,
    LocalAuthority,
    UploadAcknowledgement,
    UploadRecord,
)
from connectors.errors import ConnectorError, InvalidRequest, InvalidResponse
from connectors.soap.client import ServiceSpec, SoapClient, build_soap_client
from connectors.soap.context import new_message_id
from connectors.soap.settings import SoapSettings
from connectors.soap.transport import HardenedTransport
from connectors.soap.wsse import WsSecurity, utcnow
from vocab import is_valid_nhs_number

__all__ = ["ACCESS_TYPES", "CPIS_SPEC", "CpisClient", "build_cpis_client"]

CPIS_SPEC = ServiceSpec(
    name="cpis",
    wsdl_path=m.WSDL_DIR / "cpis.wsdl",
    binding="{urn:wraparound:spine:cpis:1}CpisBinding",
)
ACCESS_TYPES = ("scheduled", "unscheduled")
_C = f"{{{m.CPIS_NS}}}"
T = TypeVar("T")


def _check_nhs_number(nhs_number: str, operation: str) -> None:
    if not is_valid_nhs_number(nhs_number):
        raise InvalidRequest(
            "NHS number fails the format or Modulus 11 check",
            service_code="invalid-nhs-number",
            service="cpis",
            operation=operation,
        )


def _accessor(accessor: Accessor) -> dict[str, str]:
    return {
        "userId": accessor.user_id,
        "name": accessor.name,
        "role": accessor.role,
        "organisationOdsCode": accessor.organisation_ods_code,
        "organisationName": accessor.organisation_name,
    }


def _record(record: UploadRecord) -> dict[str, Any]:
    if record.plan_type not in PLAN_TYPES:
        raise InvalidRequest("plan type must be CPP, LAC or UCPP", service="cpis")
    data: dict[str, Any] = {
        "localId": record.local_id,
        "nhsNumber": {"_value_1": record.nhs_number, "verified": record.nhs_number_verified},
        "planType": record.plan_type,
        "startDate": record.start_date,
    }
    if record.end_date is not None:
        data["endDate"] = record.end_date
    if record.delete_date is not None:
        data["deleteDate"] = record.delete_date
    if record.expected_delivery_date is not None:
        data["expectedDeliveryDate"] = record.expected_delivery_date
    return data


class CpisClient:
    """Typed access to the CP-IS operations; every failure is a ConnectorError."""

    def __init__(self, soap: SoapClient, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.soap = soap
        self.clock = clock

    def upload(
        self,
        records: Sequence[UploadRecord],
        *,
        file_sequence_number: int,
        local_authority: LocalAuthority,
        message_id: str | None = None,
        correlation_id: str | None = None,
    ) -> UploadAcknowledgement:
        """Upload plan records; reuse message_id on retry so the service answers once."""
        operation = "uploadLocalAuthorityRecords"
        if file_sequence_number < 1:
            raise InvalidRequest(
                "file sequence numbers start at 1", service="cpis", operation=operation
            )
        reply = self.soap.call(
            operation,
            message_id=message_id,
            correlation_id=correlation_id,
            fileSequenceNumber=file_sequence_number,
            creationTime=self.clock().replace(microsecond=0),
            localAuthority={
                "odsCode": local_authority.ods_code,
                "name": local_authority.name,
                "officeHoursPhone": local_authority.office_hours_phone,
                "emergencyDutyPhone": local_authority.emergency_duty_phone,
            },
            record=[_record(r) for r in records],
        )
        return self._read(reply.payload, operation, m.read_acknowledgement)

    def query(
        self,
        nhs_number: str,
        *,
        access_type: str,
        accessor: Accessor,
        care_setting: str | None = None,
        message_id: str | None = None,
        correlation_id: str | None = None,
    ) -> CpisQueryResult:
        """Ask whether a child is on a plan; an unscheduled access is recorded and notified."""
        operation = "queryChildProtection"
        _check_nhs_number(nhs_number, operation)
        if access_type not in ACCESS_TYPES:
            raise InvalidRequest("access type must be scheduled or unscheduled", service="cpis")
        body: dict[str, Any] = {
            "nhsNumber": nhs_number,
            "accessType": access_type,
            "accessor": _accessor(accessor),
        }
        if care_setting:
            body["careSetting"] = care_setting
        reply = self.soap.call(
            operation, message_id=message_id, correlation_id=correlation_id, **body
        )
        return self._read(reply.payload, operation, _read_query_response)

    def access_history(
        self,
        nhs_number: str,
        *,
        message_id: str | None = None,
        correlation_id: str | None = None,
    ) -> tuple[CpisAccess, ...]:
        """Return the 25 most recent unscheduled accesses to a child's record (a silent read)."""
        operation = "getAccessHistory"
        _check_nhs_number(nhs_number, operation)
        reply = self.soap.call(
            operation, message_id=message_id, correlation_id=correlation_id, nhsNumber=nhs_number
        )
        return self._read(reply.payload, operation, _read_history)

    def _read(
        self, payload: etree._Element, operation: str, reader: Callable[[etree._Element], T]
    ) -> T:
        try:
            return reader(payload)
        except ConnectorError as exc:
            raise exc.with_context(service="cpis", operation=operation)


def _read_query_response(node: etree._Element) -> CpisQueryResult:
    if node.tag != _C + "NhsQueryResponse":
        raise InvalidResponse("expected an NhsQueryResponse")
    code = (node.findtext(_C + "queryResponseCode") or "").strip()
    if code not in ("OK", "NF"):
        raise InvalidResponse("unknown query response code")
    return CpisQueryResult(
        nhs_number=(node.findtext(_C + "nhsNumber") or "").strip(),
        found=code == "OK",
        plans=tuple(m.read_plan(p) for p in node.findall(_C + "plan")),
        recent_accesses=tuple(m.read_access(a) for a in node.findall(_C + "access")),
    )


def _read_history(node: etree._Element) -> tuple[CpisAccess, ...]:
    if node.tag != _C + "AccessHistoryResponse":
        raise InvalidResponse("expected an AccessHistoryResponse")
    return tuple(m.read_access(a) for a in node.findall(_C + "access"))


def build_cpis_client(
    settings: SoapSettings,
    *,
    wsdl: Document | str | None = None,
    transport: HardenedTransport | None = None,
    wsse: WsSecurity | None = None,
    plugins: Sequence[Plugin] | None = None,
    clock: Callable[[], datetime] = utcnow,
    ids: Callable[[], str] = new_message_id,
) -> CpisClient:
    """Build a CpisClient; every collaborator is injectable and has a hardened default."""
    soap = build_soap_client(
        CPIS_SPEC,
        settings,
        wsdl=wsdl,
        transport=transport,
        wsse=wsse,
        plugins=plugins,
        clock=clock,
        ids=ids,
    )
    return CpisClient(soap, clock=clock)
