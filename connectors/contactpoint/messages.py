"""Child index message shapes: element builders and readers shared by the client and the mock."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

from lxml import etree

from connectors.contactpoint.models import (
    AccessLogEntry,
    Carer,
    ChildRecord,
    ChildSummary,
    FeedAcknowledgement,
    FeedRecordAck,
    IndexAccessor,
    IndicatorState,
    Involvement,
    SearchResult,
)
from connectors.errors import InvalidResponse

__all__ = [
    "ACTION_PREFIX",
    "CP_NS",
    "OPERATIONS",
    "WSDL_DIR",
    "accessor_element",
    "child_element",
    "involvement_element",
    "read_access_log",
    "read_accessor",
    "read_child_record",
    "read_feed_ack",
    "read_indicators",
    "read_involvement_ack",
    "read_search_response",
]

CP_NS = "urn:wraparound:contactpoint:1"
ACTION_PREFIX = CP_NS + ":"
WSDL_DIR = Path(__file__).resolve().parent / "wsdl"
OPERATIONS = (
    "searchChildren",
    "getChildRecord",
    "recordInvolvement",
    "endInvolvement",
    "setCafIndicator",
    "setShielding",
    "getAccessLog",
    "setLeadProfessional",
    "feedChildren",
)
_X = f"{{{CP_NS}}}"


def _text(parent: etree._Element, name: str) -> str | None:
    node = parent.find(_X + name)
    value = (node.text or "").strip() if node is not None else ""
    return value or None


def _req(parent: etree._Element, name: str) -> str:
    value = _text(parent, name)
    if value is None:
        raise InvalidResponse(f"child index message lacks {name}")
    return value


def _bool(parent: etree._Element, name: str) -> bool:
    value = _text(parent, name)
    if value not in ("true", "false", "1", "0", None):
        raise InvalidResponse(f"child index message has a bad boolean in {name}")
    return value in ("true", "1")


def _date(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError as exc:
        raise InvalidResponse("child index message carries an invalid date") from exc


def _sub(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    node = etree.SubElement(parent, _X + name)
    if text is not None:
        node.text = text
    return node


def _flag(value: bool) -> str:
    return "true" if value else "false"


# --- builders (the mock) ---------------------------------------------------------------------
def accessor_element(parent: etree._Element, accessor: IndexAccessor) -> etree._Element:
    """Append an accessor element."""
    node = _sub(parent, "accessor")
    _sub(node, "userId", accessor.user_id)
    _sub(node, "name", accessor.name)
    _sub(node, "role", accessor.role)
    _sub(node, "organisation", accessor.organisation)
    return node


def child_element(parent: etree._Element, child: ChildSummary, name: str) -> etree._Element:
    """Append a ChildSummary element; the caller has already removed a shielded child's location."""
    node = _sub(parent, name)
    _sub(node, "indexId", child.index_id)
    for given in child.given[:3]:
        _sub(node, "given", given)
    _sub(node, "family", child.family)
    _sub(node, "birthDate", child.birth_date.isoformat())
    _sub(node, "gender", child.gender)
    if child.nhs_number:
        _sub(node, "nhsNumber", child.nhs_number)
    if child.upn:
        _sub(node, "upn", child.upn)
    if child.address_lines and not child.shielded:
        address = _sub(node, "address")
        for line in child.address_lines[:5]:
            _sub(address, "line", line)
        if child.postcode:
            _sub(address, "postcode", child.postcode)
    _sub(node, "shielded", _flag(child.shielded))
    _sub(node, "cafExists", _flag(child.caf_exists))
    return node


def involvement_element(parent: etree._Element, inv: Involvement) -> etree._Element:
    """Append an Involvement element."""
    node = _sub(parent, "involvement")
    _sub(node, "involvementId", inv.involvement_id)
    _sub(node, "service", inv.service)
    _sub(node, "contactIndexTeam", _flag(inv.contact_index_team))
    for name, value in (
        ("organisationCode", inv.organisation_code),
        ("organisationName", inv.organisation_name),
        ("practitionerName", inv.practitioner_name),
        ("phone", inv.phone),
    ):
        if value:
            _sub(node, name, value)
    _sub(node, "lead", _flag(inv.lead))
    if inv.start_date:
        _sub(node, "startDate", inv.start_date.isoformat())
    if inv.end_date:
        _sub(node, "endDate", inv.end_date.isoformat())
    return node


# --- readers ---------------------------------------------------------------------------------
def read_accessor(node: etree._Element) -> IndexAccessor:
    """Read an accessor element."""
    return IndexAccessor(
        user_id=_req(node, "userId"),
        name=_req(node, "name"),
        role=_req(node, "role"),
        organisation=_req(node, "organisation"),
    )


def read_child(node: etree._Element) -> ChildSummary:
    """Read a ChildSummary element."""
    birth = _date(_req(node, "birthDate"))
    if birth is None:
        raise InvalidResponse("child lacks a birth date")
    address = node.find(_X + "address")
    lines: tuple[str, ...] = ()
    postcode = None
    shielded = _bool(node, "shielded")
    if address is not None:
        if shielded:
            raise InvalidResponse("the index returned a shielded child's location")
        lines = tuple((n.text or "").strip() for n in address.findall(_X + "line"))
        postcode = _text(address, "postcode")
    given = tuple((n.text or "").strip() for n in node.findall(_X + "given"))
    if not given:
        raise InvalidResponse("child lacks a given name")
    return ChildSummary(
        index_id=_req(node, "indexId"),
        given=given,
        family=_req(node, "family"),
        birth_date=birth,
        gender=_req(node, "gender"),
        nhs_number=_text(node, "nhsNumber"),
        upn=_text(node, "upn"),
        address_lines=lines,
        postcode=postcode,
        shielded=shielded,
        caf_exists=_bool(node, "cafExists"),
    )


def read_involvement(node: etree._Element) -> Involvement:
    """Read an Involvement element."""
    return Involvement(
        involvement_id=_req(node, "involvementId"),
        service=_req(node, "service"),
        contact_index_team=_bool(node, "contactIndexTeam"),
        organisation_code=_text(node, "organisationCode"),
        organisation_name=_text(node, "organisationName"),
        practitioner_name=_text(node, "practitionerName"),
        phone=_text(node, "phone"),
        lead=_bool(node, "lead"),
        start_date=_date(_text(node, "startDate")),
        end_date=_date(_text(node, "endDate")),
    )


def _expect(node: etree._Element, name: str) -> None:
    if node.tag != _X + name:
        raise InvalidResponse(f"expected a {name}")


def read_search_response(node: etree._Element) -> SearchResult:
    """Read a SearchChildrenResponse."""
    _expect(node, "SearchChildrenResponse")
    try:
        total = int(_req(node, "totalMatches"))
    except ValueError as exc:
        raise InvalidResponse("totalMatches is not an integer") from exc
    return SearchResult(
        total=total, children=tuple(read_child(c) for c in node.findall(_X + "child"))
    )


def read_child_record(node: etree._Element) -> ChildRecord:
    """Read a ChildRecord."""
    _expect(node, "ChildRecord")
    child = node.find(_X + "child")
    if child is None:
        raise InvalidResponse("ChildRecord lacks the child")
    carers = tuple(
        Carer(
            given=_req(c, "given"),
            family=_req(c, "family"),
            relationship=_req(c, "relationship"),
            parental_responsibility=_bool(c, "parentalResponsibility"),
            phone=_text(c, "phone"),
        )
        for c in node.findall(_X + "carer")
    )
    return ChildRecord(
        child=read_child(child),
        carers=carers,
        involvements=tuple(read_involvement(i) for i in node.findall(_X + "involvement")),
        shield_overridden=_bool(node, "shieldOverridden"),
    )


def read_involvement_ack(node: etree._Element) -> Involvement:
    """Read an InvolvementAcknowledgement."""
    _expect(node, "InvolvementAcknowledgement")
    inv = node.find(_X + "involvement")
    if inv is None:
        raise InvalidResponse("acknowledgement lacks the involvement")
    return read_involvement(inv)


def read_indicators(node: etree._Element) -> IndicatorState:
    """Read an IndicatorAcknowledgement."""
    _expect(node, "IndicatorAcknowledgement")
    return IndicatorState(
        index_id=_req(node, "indexId"),
        shielded=_bool(node, "shielded"),
        caf_exists=_bool(node, "cafExists"),
    )


def read_access_log(node: etree._Element) -> tuple[AccessLogEntry, ...]:
    """Read an AccessLog."""
    _expect(node, "AccessLog")
    entries = []
    for entry in node.findall(_X + "entry"):
        accessor = entry.find(_X + "accessor")
        if accessor is None:
            raise InvalidResponse("access log entry lacks the accessor")
        try:
            when = datetime.fromisoformat(_req(entry, "time"))
        except ValueError as exc:
            raise InvalidResponse("access log entry has a bad time") from exc
        entries.append(
            AccessLogEntry(
                time=when,
                accessor=read_accessor(accessor),
                operation=_req(entry, "operation"),
                reason=_text(entry, "reason"),
                shield_overridden=_bool(entry, "shieldOverridden"),
            )
        )
    return tuple(entries)


def read_feed_ack(node: etree._Element) -> FeedAcknowledgement:
    """Read a FeedAcknowledgement."""
    _expect(node, "FeedAcknowledgement")
    try:
        accepted = int(_req(node, "accepted"))
        rejected = int(_req(node, "rejected"))
    except ValueError as exc:
        raise InvalidResponse("feed acknowledgement counts are not integers") from exc
    records = tuple(
        FeedRecordAck(
            record_id=_req(r, "recordId"),
            status=_req(r, "status"),
            index_id=_text(r, "indexId"),
            code=_text(r, "code"),
            text=_text(r, "text"),
        )
        for r in node.findall(_X + "record")
    )
    if accepted + rejected != len(records):
        raise InvalidResponse("feed acknowledgement counts do not match its records")
    return FeedAcknowledgement(
        feed_id=_req(node, "feedId"), accepted=accepted, rejected=rejected, records=records
    )
