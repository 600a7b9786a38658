"""The ContactPoint-like child index client: search, records, involvements, indicators, audit."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any, TypeVar

from lxml import etree
from zeep import Plugin
from zeep.wsdl import Document

from connectors.contactpoint import messages as m
from connectors.contactpoint.errors import CONTACTPOINT_FAULTS, ReasonRequired, refined
from connectors.contactpoint.models import (
    FEED_ACTIONS,
    MAX_FEED_RECORDS,
    SERVICES,
    AccessLogEntry,
    ChildRecord,
    FeedAcknowledgement,
    FeedRecord,
    IndexAccessor,
    IndicatorState,
    Involvement,
    InvolvementRequest,
    SearchQuery,
    SearchResult,
)
from connectors.errors import ConnectorError, InvalidRequest
from connectors.soap.client import ServiceSpec, SoapClient, build_soap_client
from connectors.soap.context import new_message_id
from connectors.soap.settings import SoapSettings
from connectors.soap.transport import HardenedTransport
from connectors.soap.wsse import WsSecurity, utcnow

__all__ = ["CONTACTPOINT_SPEC", "ContactPointClient", "build_contactpoint_client"]

CONTACTPOINT_SPEC = ServiceSpec(
    name="contactpoint",
    wsdl_path=m.WSDL_DIR / "contactpoint.wsdl",
    binding="{urn:wraparound:contactpoint:1}ContactPointServiceBinding",
)
GENDERS = ("male", "female", "other", "unknown")
T = TypeVar("T")


def _accessor(accessor: IndexAccessor) -> dict[str, str]:
    return {
        "userId": accessor.user_id[:200],
        "name": accessor.name[:200],
        "role": accessor.role[:200],
        "organisation": accessor.organisation[:200],
    }


def _invalid(text: str, operation: str) -> InvalidRequest:
    return InvalidRequest(text, service="contactpoint", operation=operation)


def _check_index_id(index_id: str, operation: str) -> None:
    if not (len(index_id) == 10 and index_id.startswith("CP") and index_id[2:].isdigit()):
        raise _invalid("an index id is CP followed by eight digits", operation)


def _optional(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v not in (None, "")}


class ContactPointClient:
    """Typed access to the child index; every failure is a ConnectorError."""

    def __init__(self, soap: SoapClient) -> None:
        self.soap = soap

    def _call(
        self,
        operation: str,
        reader: Callable[[etree._Element], T],
        *,
        message_id: str | None,
        correlation_id: str | None,
        **body: Any,
    ) -> T:
        with refined(CONTACTPOINT_FAULTS):
            reply = self.soap.call(
                operation, message_id=message_id, correlation_id=correlation_id, **body
            )
            try:
                return reader(reply.payload)
            except ConnectorError as exc:
                raise exc.with_context(service="contactpoint", operation=operation)

    def search(
        self,
        query: SearchQuery,
        *,
        accessor: IndexAccessor,
        message_id: str | None = None,
        correlation_id: str | None = None,
    ) -> SearchResult:
        """Search the index; a shielded child is never matched on or returned with a location."""
        operation = "searchChildren"
        if query.is_empty():
            raise _invalid("give at least one search criterion", operation)
        if query.gender is not None and query.gender not in GENDERS:
            raise _invalid("gender must be male, female, other or unknown", operation)
        if query.index_id is not None:
            _check_index_id(query.index_id, operation)
        if (
            query.birth_date_from is not None
            and query.birth_date_to is not None
            and query.birth_date_from > query.birth_date_to
        ):
            raise _invalid("the date of birth range ends before it starts", operation)
        if not 1 <= query.max_results <= 100:
            raise _invalid("max results must be 1 to 100", operation)
        body = _optional(
            family=query.family,
            given=query.given,
            phonetic=True if query.phonetic else None,
            birthDateFrom=query.birth_date_from,
            birthDateTo=query.birth_date_to,
            gender=query.gender,
            postcode=query.postcode,
            indexId=query.index_id,
            nhsNumber=query.nhs_number,
            upn=query.upn,
        )
        return self._call(
            operation,
            m.read_search_response,
            message_id=message_id,
            correlation_id=correlation_id,
            accessor=_accessor(accessor),
            maxResults=query.max_results,
            **body,
        )

    def get_record(
        self,
        index_id: str,
        *,
        accessor: IndexAccessor,
        reason: str,
        override_shield: bool = False,
        message_id: str | None = None,
        correlation_id: str | None = None,
    ) -> ChildRecord:
        """Read a child's record; the reason is mandatory and recorded by the index."""
        operation = "getChildRecord"
        _check_index_id(index_id, operation)
        if not reason or not reason.strip():
            raise ReasonRequired(
                "a reason for access is required",
                service_code="ReasonRequired",
                service="contactpoint",
                operation=operation,
            )
        return self._call(
            operation,
            m.read_child_record,
            message_id=message_id,
            correlation_id=correlation_id,
            accessor=_accessor(accessor),
            indexId=index_id,
            accessReason=reason.strip()[:500],
            **({"overrideShield": True} if override_shield else {}),
        )

    def record_involvement(
        self,
        index_id: str,
        involvement: InvolvementRequest,
        *,
        accessor: IndexAccessor,
        message_id: str | None = None,
        correlation_id: str | None = None,
    ) -> Involvement:
        """Record a service's or practitioner's involvement (lead=True sets the lead professional)."""
        operation = "recordInvolvement"
        _check_index_id(index_id, operation)
        if involvement.service not in SERVICES:
            raise _invalid("unknown service; use one of " + ", ".join(SERVICES), operation)
        body = _optional(
            organisationCode=involvement.organisation_code,
            organisationName=involvement.organisation_name,
            practitionerName=involvement.practitioner_name,
            phone=involvement.phone,
            startDate=involvement.start_date,
        )
        return self._call(
            operation,
            m.read_involvement_ack,
            message_id=message_id,
            correlation_id=correlation_id,
            accessor=_accessor(accessor),
            indexId=index_id,
            service=involvement.service,
            lead=involvement.lead,
            consentRecorded=involvement.consent_recorded,
            **body,
        )

    def end_involvement(
        self,
        index_id: str,
        involvement_id: str,
        *,
        accessor: IndexAccessor,
        end_date: date | None = None,
        message_id: str | None = None,
        correlation_id: str | None = None,
    ) -> Involvement:
        """End an involvement (today unless end_date is given)."""
        operation = "endInvolvement"
        _check_index_id(index_id, operation)
        if not involvement_id.strip():
            raise _invalid("the involvement id is required", operation)
        return self._call(
            operation,
            m.read_involvement_ack,
            message_id=message_id,
            correlation_id=correlation_id,
            accessor=_accessor(accessor),
            indexId=index_id,
            involvementId=involvement_id.strip()[:200],
            **_optional(endDate=end_date),
        )

    def set_caf_indicator(
        self,
        index_id: str,
        caf_exists: bool,
        *,
        accessor: IndexAccessor,
        message_id: str | None = None,
        correlation_id: str | None = None,
    ) -> IndicatorState:
        """Set the "CAF exists" indicator."""
        operation = "setCafIndicator"
        _check_index_id(index_id, operation)
        return self._call(
            operation,
            m.read_indicators,
            message_id=message_id,
            correlation_id=correlation_id,
            accessor=_accessor(accessor),
            indexId=index_id,
            cafExists=caf_exists,
        )

    def set_shielding(
        self,
        index_id: str,
        shielded: bool,
        *,
        accessor: IndexAccessor,
        reason: str | None = None,
        message_id: str | None = None,
        correlation_id: str | None = None,
    ) -> IndicatorState:
        """Shield or unshield a child (the index refuses roles that may not: NotAuthorised)."""
        operation = "setShielding"
        _check_index_id(index_id, operation)
        return self._call(
            operation,
            m.read_indicators,
            message_id=message_id,
            correlation_id=correlation_id,
            accessor=_accessor(accessor),
            indexId=index_id,
            shielded=shielded,
            **_optional(reason=(reason or "").strip()[:500]),
        )

    def access_log(
        self,
        index_id: str,
        *,
        accessor: IndexAccessor,
        message_id: str | None = None,
        correlation_id: str | None = None,
    ) -> tuple[AccessLogEntry, ...]:
        """Return who looked at a child's record, most recent first."""
        operation = "getAccessLog"
        _check_index_id(index_id, operation)
        return self._call(
            operation,
            m.read_access_log,
            message_id=message_id,
            correlation_id=correlation_id,
            accessor=_accessor(accessor),
            indexId=index_id,
        )


    def set_lead_professional(
        self,
        index_id: str,
        involvement_id: str,
        *,
        accessor: IndexAccessor,
        message_id: str | None = None,
        correlation_id: str | None = None,
    ) -> Involvement:
        """Make an open involvement the child's lead professional (the others stop being lead)."""
        operation = "setLeadProfessional"
        _check_index_id(index_id, operation)
        if not involvement_id.strip():
            raise _invalid("the involvement id is required", operation)
        return self._call(
            operation,
            m.read_involvement_ack,
            message_id=message_id,
            correlation_id=correlation_id,
            accessor=_accessor(accessor),
            indexId=index_id,
            involvementId=involvement_id.strip()[:200],
        )

    def feed(
        self,
        feed_id: str,
        records: Sequence[FeedRecord],
        *,
        accessor: IndexAccessor,
        message_id: str | None = None,
        correlation_id: str | None = None,
    ) -> FeedAcknowledgement:
        """Send the local authority's feed: each record is created or updated and acknowledged
        on its own (a rejected record is in the acknowledgement, not a fault)."""
        operation = "feedChildren"
        if not feed_id.strip():
            raise _invalid("the feed id is required", operation)
        if not 1 <= len(records) <= MAX_FEED_RECORDS:
            raise _invalid(f"a feed carries 1 to {MAX_FEED_RECORDS} records", operation)
        return self._call(
            operation,
            m.read_feed_ack,
            message_id=message_id,
            correlation_id=correlation_id,
            accessor=_accessor(accessor),
            feedId=feed_id.strip()[:200],
            record=[_feed_record(r, operation) for r in records],
        )


def _feed_record(record: FeedRecord, operation: str) -> dict[str, Any]:
    if record.action not in FEED_ACTIONS:
        raise _invalid("a feed record's action is create or update", operation)
    if record.action == "update" and record.index_id is None:
        raise _invalid("an update names the child by index id", operation)
    if record.index_id is not None:
        _check_index_id(record.index_id, operation)
    if record.gender not in GENDERS:
        raise _invalid("gender must be male, female, other or unknown", operation)
    if not record.given or not record.family.strip() or not record.record_id.strip():
        raise _invalid("a feed record needs its id, a given and a family name", operation)
    body: dict[str, Any] = {
        "recordId": record.record_id.strip()[:200],
        "action": record.action,
        **_optional(indexId=record.index_id),
        "given": [g[:200] for g in record.given[:3]],
        "family": record.family[:200],
        "birthDate": record.birth_date,
        "gender": record.gender,
        **_optional(nhsNumber=record.nhs_number, upn=record.upn),
    }
    if record.address_lines:
        body["address"] = {
            "line": [line[:200] for line in record.address_lines[:5]],
            **_optional(postcode=record.postcode),
        }
    if record.carers:
        body["carer"] = [
            {
                "given": c.given[:200],
                "family": c.family[:200],
                "relationship": c.relationship[:200],
                "parentalResponsibility": c.parental_responsibility,
                **_optional(phone=c.phone),
            }
            for c in record.carers[:10]
        ]
    return body


def build_contactpoint_client(
    settings: SoapSettings,
    *,
    wsdl: Document | str | None = None,
    transport: HardenedTransport | None = None,
    wsse: WsSecurity | None = None,
    plugins: Sequence[Plugin] | None = None,
    clock: Callable[[], datetime] = utcnow,
    ids: Callable[[], str] = new_message_id,
) -> ContactPointClient:
    """Build a ContactPointClient; every collaborator is injectable and has a hardened default."""
    soap = build_soap_client(
        CONTACTPOINT_SPEC,
        settings,
        wsdl=wsdl,
        transport=transport,
        wsse=wsse,
        plugins=plugins,
        clock=clock,
        ids=ids,
    )
    return ContactPointClient(soap)
