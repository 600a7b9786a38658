"""Assessment store message shapes: element builders and readers shared by client and mock."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from lxml import etree

from connectors.ecaf.models import (
    CafAction,
    CafCheck,
    CafConsent,
    CafRecord,
    CafReview,
    DomainAssessment,
    ElementAssessment,
    TeamMember,
)
from connectors.errors import InvalidResponse

__all__ = ["ACTION_PREFIX", "ECAF_NS", "OPERATIONS", "WSDL_DIR", "caf_element", "read_caf",
           "read_check", "read_domain"]

ECAF_NS = "urn:wraparound:ecaf:1"
ACTION_PREFIX = ECAF_NS + ":"
WSDL_DIR = Path(__file__).resolve().parent / "wsdl"
OPERATIONS = ("checkCafExists", "registerCaf", "saveAssessment", "completeAssessment",
              "recordConsent", "withdrawConsent", "setTeam", "saveActionPlan", "recordReview",
              "closeCaf", "getCaf")
_E = f"{{{ECAF_NS}}}"


def _text(parent: etree._Element, name: str) -> str | None:
    node = parent.find(_E + name)
    value = (node.text or "").strip() if node is not None else ""
    return value or None


def _req(parent: etree._Element, name: str) -> str:
    value = _text(parent, name)
    if value is None:
        raise InvalidResponse(f"assessment store message lacks {name}")
    return value


def _date(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError as exc:
        raise InvalidResponse("assessment store message carries an invalid date") from exc


def _req_date(parent: etree._Element, name: str) -> date:
    value = _date(_req(parent, name))
    if value is None:  # _req refuses a missing value first; this keeps the type narrow
        raise InvalidResponse(f"assessment store message lacks {name}")
    return value


def _bool(parent: etree._Element, name: str) -> bool:
    return _text(parent, name) in ("true", "1")


def _sub(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    node = etree.SubElement(parent, _E + name)
    if text is not None:
        node.text = text
    return node


def _flag(value: bool) -> str:
    return "true" if value else "false"


def domain_element(parent: etree._Element, domain: DomainAssessment) -> None:
    """Append a domain element."""
    node = _sub(parent, "domain")
    _sub(node, "code", domain.code)
    for element in domain.elements:
        e = _sub(node, "element")
        _sub(e, "code", element.code)
        if element.strengths:
            _sub(e, "strengths", element.strengths)
        if element.needs:
            _sub(e, "needs", element.needs)


def member_element(parent: etree._Element, member: TeamMember) -> None:
    """Append a team member element."""
    node = _sub(parent, "member")
    _sub(node, "name", member.name)
    _sub(node, "role", member.role)
    _sub(node, "organisation", member.organisation)
    _sub(node, "lead", _flag(member.lead))


def action_element(parent: etree._Element, action: CafAction) -> None:
    """Append an action element."""
    node = _sub(parent, "action")
    _sub(node, "description", action.description)
    _sub(node, "who", action.who)
    _sub(node, "byWhen", action.by_when.isoformat())
    _sub(node, "status", action.status)


def caf_element(record: CafRecord) -> etree._Element:
    """Build a CafRecord element."""
    root = etree.Element(_E + "CafRecord", nsmap={"ec": ECAF_NS})
    _sub(root, "cafId", record.caf_id)
    _sub(root, "indexId", record.index_id)
    _sub(root, "status", record.status)
    _sub(root, "version", str(record.version))
    _sub(root, "registered", record.registered.isoformat())
    consent = _sub(root, "consent")
    _sub(consent, "given", _flag(record.consent.given))
    if record.consent.given_by:
        _sub(consent, "givenBy", record.consent.given_by)
    if record.consent.date:
        _sub(consent, "date", record.consent.date.isoformat())
    for domain in record.domains:
        domain_element(root, domain)
    for member in record.team:
        member_element(root, member)
    for action in record.actions:
        action_element(root, action)
    for review in record.reviews:
        node = _sub(root, "review")
        _sub(node, "date", review.date.isoformat())
        _sub(node, "summary", review.summary)
    if record.close_reason:
        _sub(root, "closeReason", record.close_reason)
    if record.closed_on:
        _sub(root, "closedOn", record.closed_on.isoformat())
    return root


def read_domain(node: etree._Element) -> DomainAssessment:
    """Read a domain element."""
    return DomainAssessment(
        code=_req(node, "code"),
        elements=tuple(
            ElementAssessment(code=_req(e, "code"), strengths=_text(e, "strengths"),
                              needs=_text(e, "needs"))
            for e in node.findall(_E + "element")))


def read_member(node: etree._Element) -> TeamMember:
    """Read a team member element."""
    return TeamMember(name=_req(node, "name"), role=_req(node, "role"),
                      organisation=_req(node, "organisation"), lead=_bool(node, "lead"))


def read_action(node: etree._Element) -> CafAction:
    """Read an action element."""
    return CafAction(description=_req(node, "description"), who=_req(node, "who"),
                     by_when=_req_date(node, "byWhen"), status=_req(node, "status"))


def read_caf(node: etree._Element) -> CafRecord:
    """Read a CafRecord."""
    if node.tag != _E + "CafRecord":
        raise InvalidResponse("expected a CafRecord")
    consent = node.find(_E + "consent")
    if consent is None:
        raise InvalidResponse("CafRecord lacks consent")
    try:
        version = int(_req(node, "version"))
    except ValueError as exc:
        raise InvalidResponse("CafRecord version is not an integer") from exc
    return CafRecord(
        caf_id=_req(node, "cafId"),
        index_id=_req(node, "indexId"),
        status=_req(node, "status"),
        version=version,
        registered=_req_date(node, "registered"),
        consent=CafConsent(given=_bool(consent, "given"), given_by=_text(consent, "givenBy"),
                           date=_date(_text(consent, "date"))),
        domains=tuple(read_domain(d) for d in node.findall(_E + "domain")),
        team=tuple(read_member(m) for m in node.findall(_E + "member")),
        actions=tuple(read_action(a) for a in node.findall(_E + "action")),
        reviews=tuple(CafReview(date=_req_date(r, "date"), summary=_req(r, "summary"))
                      for r in node.findall(_E + "review")),
        close_reason=_text(node, "closeReason"),
        closed_on=_date(_text(node, "closedOn")),
    )


def read_check(node: etree._Element) -> CafCheck:
    """Read a CafExistsResponse."""
    if node.tag != _E + "CafExistsResponse":
        raise InvalidResponse("expected a CafExistsResponse")
    return CafCheck(index_id=_req(node, "indexId"), exists=_bool(node, "exists"),
                    caf_id=_text(node, "cafId"), status=_text(node, "status"))
