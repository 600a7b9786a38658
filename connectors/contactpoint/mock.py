"""The mock ContactPoint-like child index: search, records with a reason, involvements, shielding.

Rules the mock enforces (and the tests rely on):

- search needs at least one criterion; names match by prefix (case-insensitive) or, with
  `phonetic`, by the Soundex code of the family name and the given name's first letter; a date of
  birth range; a shielded child is never matched by postcode and never returned with a location;
  archived records are not found;
- getChildRecord needs a reason (ReasonRequired) and records the access; an archived record
  answers RecordArchived; a shielded child's record holds identity only unless the shield is
  overridden by a role that may (NotAuthorised otherwise), which raises an investigation event;
- a sensitive service is recorded only with consent (ConsentRequired) and shown only where
  consent was recorded (otherwise as "contact the index team");
- involvements of a shielded child change only by the index team (RecordShielded);
- shielding and unshielding need a shielding role (NotAuthorised);
- recording an involvement that is already open (same service, organisation and practitioner)
  answers the open one, so a repeated delivery records nothing twice;
- setLeadProfessional makes one open involvement the lead (the others stop being lead); an
  ended one is a ValidationError, a sensitive one without consent ConsentRequired;
- feedChildren needs a feed role (NotAuthorised); each record is created (matched first on NHS
  number, then UPN: a match is updated), updated by index id, left unchanged when nothing
  differs, or rejected with its own code (NotFound, RecordArchived, ValidationError) while the
  other records are applied.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

from lxml import etree

from connectors.contactpoint import messages as m
from connectors.contactpoint.models import (
    FAULT_CODES,
    SENSITIVE_SERVICES,
    AccessLogEntry,
    ChildSummary,
    IndexAccessor,
    Involvement,
)
from connectors.errors import ConnectorError
from connectors.mockserver.service import MockReply, MockRequest
from connectors.soap import xml
from connectors.soap.context import new_message_id
from connectors.soap.server import build_envelope, build_fault
from connectors.soap.wsse import utcnow

__all__ = ["FEED_ROLES", "SHIELD_ROLES", "ContactPointMockService", "soundex"]

_X = f"{{{m.CP_NS}}}"
SHIELD_ROLES = frozenset({"shielding-officer", "index-team"})
FEED_ROLES = frozenset({"la-data-feed", "index-team"})
MAX_LOG = 200
_KIND_CODES = {"invalid": "ValidationError", "security": "NotAuthorised",
               "unsupported": "ValidationError", "injected": "ValidationError"}
_SOUNDEX = {c: d for d, letters in (("1", "BFPV"), ("2", "CGJKQSXZ"), ("3", "DT"), ("4", "L"),
                                    ("5", "MN"), ("6", "R")) for c in letters}


def soundex(name: str) -> str:
    """Return the American Soundex code of a name ('' for a name without letters)."""
    letters = [c for c in name.upper() if "A" <= c <= "Z"]
    if not letters:
        return ""
    code = letters[0]
    last = _SOUNDEX.get(letters[0], "")
    for c in letters[1:]:
        digit = _SOUNDEX.get(c, "")
        if digit and digit != last:
            code += digit
            if len(code) == 4:
                break
        if c not in "HW":
            last = digit
    return code.ljust(4, "0")


def _postcode(value: str | None) -> str:
    return "".join((value or "").split()).upper()


def _day(value: str | None) -> date | None:
    return date.fromisoformat(value[:10]) if value else None


class _Fault(Exception):
    def __init__(self, code: str, text: str | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.text = text or FAULT_CODES[code]


@dataclass
class _Child:
    summary: ChildSummary
    carers: list[dict[str, Any]]
    involvements: list[dict[str, Any]]
    archived: bool
    log: deque[AccessLogEntry] = field(default_factory=lambda: deque(maxlen=MAX_LOG))


class ContactPointMockService:
    """The child index at one endpoint, seeded from fixtures/national/contactpoint.json."""

    name = "contactpoint"
    path = "/contactpoint"
    wsdl_dir = m.WSDL_DIR
    wsdl_file = "contactpoint.wsdl"
    require_addressing = True

    def __init__(
        self,
        seed_file: Path,
        *,
        clock: Callable[[], datetime] = utcnow,
        ids: Callable[[], str] = new_message_id,
    ) -> None:
        self.seed_file = seed_file
        self.clock = clock
        self.ids = ids
        self._lock = threading.RLock()
        self._schema = xml.load_schema(str(m.WSDL_DIR / "contactpoint.xsd"))
        self.reset()

    # --- state -------------------------------------------------------------------------------
    def reset(self) -> None:
        """Reload the seeded children; forget accesses, changes and investigations."""
        children: dict[str, _Child] = {}
        if self.seed_file.exists():
            document = json.loads(self.seed_file.read_text(encoding="utf-8"))
            for c in document.get("children", []):
                address = c.get("address") or {}
                summary = ChildSummary(
                    index_id=c["index_id"],
                    given=tuple(c["given"]),
                    family=c["family"],
                    birth_date=date.fromisoformat(c["birth_date"]),
                    gender=c["gender"],
                    nhs_number=c.get("nhs_number"),
                    upn=c.get("upn"),
                    address_lines=tuple(address.get("lines") or ()),
                    postcode=address.get("postcode"),
                    shielded=bool(c.get("shielded")),
                    caf_exists=bool(c.get("caf_exists")),
                )
                children[summary.index_id] = _Child(
                    summary=summary,
                    carers=list(c.get("carers") or ()),
                    involvements=[dict(i, end_date=None) for i in c.get("involvements") or ()],
                    archived=bool(c.get("archived")),
                )
        with self._lock:
            self.children = children
            self.investigations: list[dict[str, Any]] = []
            self.involvement_seq = 0
            self.feeds = 0
            # (operation, WS-Addressing MessageID) of the requests answered, most recent last
            self.message_ids: deque[tuple[str, str]] = deque(maxlen=MAX_LOG)
            self.feed_records = {"created": 0, "updated": 0, "unchanged": 0, "rejected": 0}
            self.next_index = max((int(i[2:]) for i in children), default=0) + 1

    def admin_state(self) -> dict[str, Any]:
        """Return counts (no personal data)."""
        with self._lock:
            return {
                "children": len(self.children),
                "shielded": sum(c.summary.shielded for c in self.children.values()),
                "caf_indicators": sum(c.summary.caf_exists for c in self.children.values()),
                "accesses": sum(len(c.log) for c in self.children.values()),
                "investigations": [dict(i) for i in self.investigations],
                "involvements": sum(len(c.involvements) for c in self.children.values()),
                "feeds": self.feeds,
                "message_ids": [list(pair) for pair in self.message_ids],
                "feed_records": dict(self.feed_records),
            }

    def caf_indicator(self, index_id: str) -> bool | None:
        """Return the child's "CAF exists" indicator (None for an unknown child)."""
        with self._lock:
            child = self.children.get(index_id)
            return None if child is None else child.summary.caf_exists

    def set_caf_indicator(self, index_id: str, exists: bool) -> bool:
        """Set the indicator from the assessment store; return False for an unknown child."""
        with self._lock:
            child = self.children.get(index_id)
            if child is None or child.archived:
                return False
            child.summary = replace(child.summary, caf_exists=exists)
            return True

    # --- protocol ----------------------------------------------------------------------------
    def operation_for(self, soap_action: str) -> str | None:
        """Map a SOAPAction to an operation."""
        if soap_action.startswith(m.ACTION_PREFIX):
            name = soap_action[len(m.ACTION_PREFIX) :]
            if name in m.OPERATIONS:
                return name
        return None

    def fault(
        self,
        *,
        fault_code: str,
        text: str,
        service_code: str | None,
        relates_to: str | None,
        status: int = 500,
        kind: str = "invalid",
    ) -> MockReply:
        """Build a child index fault with an ix:FaultInfo detail."""
        info = etree.Element(_X + "FaultInfo", nsmap={"ix": m.CP_NS})
        etree.SubElement(info, _X + "code").text = service_code or _KIND_CODES.get(
            kind, "ValidationError"
        )
        etree.SubElement(info, _X + "text").text = text
        envelope = build_fault(
            fault_code, text, detail=info, message_id=self.ids(), relates_to=relates_to
        )
        return MockReply(status=status, envelope=envelope)

    def handle(self, request: MockRequest) -> MockReply:
        """Answer one child index request."""
        with self._lock:
            self.message_ids.append((request.operation, request.message_id))
        payload = request.message.payload
        if xml.schema_errors(self._schema, payload):
            return self._fault(request, _Fault("ValidationError", "the request does not "
                                               "conform to the child index schema"))
        try:
            accessor_node = payload.find(_X + "accessor")
            if accessor_node is None:
                raise _Fault("ValidationError")
            accessor = m.read_accessor(accessor_node)
            handler = getattr(self, "_" + request.operation)
            node: etree._Element = handler(payload, accessor)
        except _Fault as fault:
            return self._fault(request, fault)
        except ConnectorError:
            return self._fault(request, _Fault("ValidationError", "the request could not be read"))
        envelope = build_envelope(
            node,
            action=m.ACTION_PREFIX + request.operation + "Response",
            message_id=self.ids(),
            relates_to=request.message_id,
        )
        return MockReply(status=200, envelope=envelope)

    def _fault(self, request: MockRequest, fault: _Fault) -> MockReply:
        return self.fault(
            fault_code="Client",
            text=fault.text,
            service_code=fault.code,
            relates_to=request.message_id,
        )

    # --- helpers -----------------------------------------------------------------------------
    def _child(self, payload: etree._Element, *, allow_archived: bool = False) -> _Child:
        index_id = (payload.findtext(_X + "indexId") or "").strip()
        child = self.children.get(index_id)
        if child is None:
            raise _Fault("NotFound")
        if child.archived and not allow_archived:
            raise _Fault("RecordArchived")
        return child

    def _log(self, child: _Child, accessor: IndexAccessor, operation: str,
             reason: str | None = None, overridden: bool = False) -> None:
        child.log.appendleft(AccessLogEntry(
            time=self.clock().replace(microsecond=0), accessor=accessor, operation=operation,
            reason=reason, shield_overridden=overridden))

    @staticmethod
    def _root(name: str) -> etree._Element:
        return etree.Element(_X + name, nsmap={"ix": m.CP_NS})

    @staticmethod
    def _involvement(raw: dict[str, Any]) -> Involvement:
        if raw["service"] in SENSITIVE_SERVICES and not raw.get("consent"):
            return Involvement(involvement_id=raw["id"], service=raw["service"],
                               contact_index_team=True)
        return Involvement(
            involvement_id=raw["id"], service=raw["service"],
            organisation_code=raw.get("organisation_code"),
            organisation_name=raw.get("organisation_name"),
            practitioner_name=raw.get("practitioner_name"), phone=raw.get("phone"),
            lead=bool(raw.get("lead")),
            start_date=date.fromisoformat(raw["start_date"]) if raw.get("start_date") else None,
            end_date=date.fromisoformat(raw["end_date"]) if raw.get("end_date") else None)

    # --- operations --------------------------------------------------------------------------
    def _searchChildren(self, payload: etree._Element, accessor: IndexAccessor) -> etree._Element:
        def text(name: str) -> str | None:
            return (payload.findtext(_X + name) or "").strip() or None

        family, given, postcode = text("family"), text("given"), _postcode(text("postcode"))
        phonetic = text("phonetic") in ("true", "1")
        born_from = _day(text("birthDateFrom"))
        born_to = _day(text("birthDateTo"))
        criteria = (family, given, postcode, born_from, born_to, text("gender"), text("indexId"),
                    text("nhsNumber"), text("upn"))
        if not any(criteria):
            raise _Fault("ValidationError", "give at least one search criterion")
        if born_from and born_to and born_from > born_to:
            raise _Fault("ValidationError", "the date of birth range ends before it starts")
        limit = min(int(text("maxResults") or "50"), 100)
        found: list[ChildSummary] = []
        with self._lock:
            for child in self.children.values():
                s = child.summary
                if child.archived:
                    continue
                if postcode and (s.shielded or not _postcode(s.postcode).startswith(postcode)):
                    continue  # a shielded child is never matched on location
                if family:
                    if phonetic:
                        if soundex(s.family) != soundex(family):
                            continue
                    elif not s.family.lower().startswith(family.lower()):
                        continue
                if given:
                    first = s.given[0].lower() if s.given else ""
                    if phonetic:
                        if first[:1] != given.lower()[:1]:
                            continue
                    elif not any(g.lower().startswith(given.lower()) for g in s.given):
                        continue
                if born_from and s.birth_date < born_from or born_to and s.birth_date > born_to:
                    continue
                if text("gender") and s.gender != text("gender"):
                    continue
                if text("indexId") and s.index_id != text("indexId"):
                    continue
                if text("nhsNumber") and s.nhs_number != text("nhsNumber"):
                    continue
                if text("upn") and s.upn != text("upn"):
                    continue
                found.append(s)
        found.sort(key=lambda s: (s.family, s.given, s.birth_date, s.index_id))
        response = self._root("SearchChildrenResponse")
        etree.SubElement(response, _X + "totalMatches").text = str(len(found))
        for s in found[:limit]:
            m.child_element(response, s, "child")
        return response

    def _getChildRecord(self, payload: etree._Element, accessor: IndexAccessor) -> etree._Element:
        reason = (payload.findtext(_X + "accessReason") or "").strip()
        override = (payload.findtext(_X + "overrideShield") or "").strip() in ("true", "1")
        with self._lock:
            child = self._child(payload, allow_archived=True)
            if not reason:
                raise _Fault("ReasonRequired")
            if child.archived:
                self._log(child, accessor, "getChildRecord", reason)
                raise _Fault("RecordArchived")
            shielded = child.summary.shielded
            overridden = shielded and override
            if overridden and accessor.role not in SHIELD_ROLES:
                raise _Fault("NotAuthorised", "only a shielding role may override a shield")
            self._log(child, accessor, "getChildRecord", reason, overridden)
            if overridden:
                self.investigations.append({"index_id": child.summary.index_id,
                                            "user": accessor.user_id,
                                            "time": self.clock().isoformat()})
            record = self._root("ChildRecord")
            summary = child.summary
            if overridden:
                summary = replace(summary, shielded=False)  # the override shows the location
            m.child_element(record, summary, "child")
            if not shielded or overridden:
                for c in child.carers:
                    node = etree.SubElement(record, _X + "carer")
                    etree.SubElement(node, _X + "given").text = c["given"]
                    etree.SubElement(node, _X + "family").text = c["family"]
                    etree.SubElement(node, _X + "relationship").text = c["relationship"]
                    etree.SubElement(node, _X + "parentalResponsibility").text = (
                        "true" if c.get("parental_responsibility") else "false")
                    if c.get("phone"):
                        etree.SubElement(node, _X + "phone").text = c["phone"]
                for raw in child.involvements:
                    if not raw.get("end_date"):
                        m.involvement_element(record, self._involvement(raw))
            etree.SubElement(record, _X + "shieldOverridden").text = (
                "true" if overridden else "false")
        return record

    def _recordInvolvement(self, payload: etree._Element,
                           accessor: IndexAccessor) -> etree._Element:
        def text(name: str) -> str | None:
            return (payload.findtext(_X + name) or "").strip() or None

        service = text("service") or ""
        consent = text("consentRecorded") in ("true", "1")
        lead = text("lead") in ("true", "1")
        with self._lock:
            child = self._child(payload)
            if child.summary.shielded and accessor.role not in SHIELD_ROLES:
                raise _Fault("RecordShielded")
            if service in SENSITIVE_SERVICES and not consent:
                raise _Fault("ConsentRequired")
            if not (text("organisationName") or text("practitionerName")):
                raise _Fault("ValidationError", "name the organisation or the practitioner")
            same = next((i for i in child.involvements if not i.get("end_date")
                         and i["service"] == service
                         and i.get("organisation_name") == text("organisationName")
                         and i.get("practitioner_name") == text("practitionerName")), None)
            if lead:
                for raw in child.involvements:
                    raw["lead"] = False
            if same is not None:  # already recorded: answer the open involvement
                same["lead"] = lead or bool(same.get("lead"))
                same["consent"] = consent or bool(same.get("consent"))
                self._log(child, accessor, "recordInvolvement")
                return self._ack(child, same)
            self.involvement_seq += 1
            raw = {"id": f"{child.summary.index_id}-N{self.involvement_seq}", "service": service,
                   "organisation_code": text("organisationCode"),
                   "organisation_name": text("organisationName"),
                   "practitioner_name": text("practitionerName"), "phone": text("phone"),
                   "lead": lead, "consent": consent,
                   "start_date": text("startDate") or self.clock().date().isoformat(),
                   "end_date": None}
            child.involvements.append(raw)
            self._log(child, accessor, "recordInvolvement")
            return self._ack(child, raw)

    def _ack(self, child: _Child, raw: dict[str, Any]) -> etree._Element:
        ack = self._root("InvolvementAcknowledgement")
        etree.SubElement(ack, _X + "indexId").text = child.summary.index_id
        m.involvement_element(ack, self._involvement(raw))
        return ack

    def _endInvolvement(self, payload: etree._Element, accessor: IndexAccessor) -> etree._Element:
        involvement_id = (payload.findtext(_X + "involvementId") or "").strip()
        end = (payload.findtext(_X + "endDate") or "").strip()
        with self._lock:
            child = self._child(payload)
            if child.summary.shielded and accessor.role not in SHIELD_ROLES:
                raise _Fault("RecordShielded")
            raw = next((i for i in child.involvements if i["id"] == involvement_id), None)
            if raw is None:
                raise _Fault("NotFound", "no such involvement")
            if raw.get("end_date"):
                raise _Fault("ValidationError", "the involvement has already ended")
            raw["end_date"] = end or self.clock().date().isoformat()
            raw["lead"] = False
            self._log(child, accessor, "endInvolvement")
            return self._ack(child, raw)

    def _indicators(self, child: _Child) -> etree._Element:
        ack = self._root("IndicatorAcknowledgement")
        etree.SubElement(ack, _X + "indexId").text = child.summary.index_id
        etree.SubElement(ack, _X + "shielded").text = (
            "true" if child.summary.shielded else "false")
        etree.SubElement(ack, _X + "cafExists").text = (
            "true" if child.summary.caf_exists else "false")
        return ack

    def _setCafIndicator(self, payload: etree._Element, accessor: IndexAccessor) -> etree._Element:
        exists = (payload.findtext(_X + "cafExists") or "").strip() in ("true", "1")
        with self._lock:
            child = self._child(payload)
            child.summary = replace(child.summary, caf_exists=exists)
            self._log(child, accessor, "setCafIndicator")
            return self._indicators(child)

    def _setShielding(self, payload: etree._Element, accessor: IndexAccessor) -> etree._Element:
        shielded = (payload.findtext(_X + "shielded") or "").strip() in ("true", "1")
        with self._lock:
            child = self._child(payload)
            if accessor.role not in SHIELD_ROLES:
                raise _Fault("NotAuthorised", "only a shielding role may shield or unshield")
            child.summary = replace(child.summary, shielded=shielded)
            reason = (payload.findtext(_X + "reason") or "").strip() or None
            self._log(child, accessor, "setShielding", reason)
            return self._indicators(child)

    def _getAccessLog(self, payload: etree._Element, accessor: IndexAccessor) -> etree._Element:
        with self._lock:
            child = self._child(payload, allow_archived=True)
            log = self._root("AccessLog")
            etree.SubElement(log, _X + "indexId").text = child.summary.index_id
            for entry in child.log:
                node = etree.SubElement(log, _X + "entry")
                etree.SubElement(node, _X + "time").text = entry.time.isoformat()
                m.accessor_element(node, entry.accessor)
                etree.SubElement(node, _X + "operation").text = entry.operation
                if entry.reason:
                    etree.SubElement(node, _X + "reason").text = entry.reason
                etree.SubElement(node, _X + "shieldOverridden").text = (
                    "true" if entry.shield_overridden else "false")
            return log

    def _setLeadProfessional(self, payload: etree._Element,
                             accessor: IndexAccessor) -> etree._Element:
        involvement_id = (payload.findtext(_X + "involvementId") or "").strip()
        with self._lock:
            child = self._child(payload)
            if child.summary.shielded and accessor.role not in SHIELD_ROLES:
                raise _Fault("RecordShielded")
            raw = next((i for i in child.involvements if i["id"] == involvement_id), None)
            if raw is None:
                raise _Fault("NotFound", "no such involvement")
            if raw.get("end_date"):
                raise _Fault("ValidationError", "the involvement has ended")
            if raw["service"] in SENSITIVE_SERVICES and not raw.get("consent"):
                raise _Fault("ConsentRequired")
            for other in child.involvements:
                other["lead"] = False
            raw["lead"] = True
            self._log(child, accessor, "setLeadProfessional")
            return self._ack(child, raw)

    def _feedChildren(self, payload: etree._Element, accessor: IndexAccessor) -> etree._Element:
        if accessor.role not in FEED_ROLES:
            raise _Fault("NotAuthorised", "only the local authority's data feed may send a feed")
        ack = self._root("FeedAcknowledgement")
        etree.SubElement(ack, _X + "feedId").text = (payload.findtext(_X + "feedId") or "").strip()
        accepted = etree.SubElement(ack, _X + "accepted")
        rejected = etree.SubElement(ack, _X + "rejected")
        counts = {"accepted": 0, "rejected": 0}
        with self._lock:
            self.feeds += 1
            for node in payload.findall(_X + "record"):
                record_id = (node.findtext(_X + "recordId") or "").strip()
                try:
                    status, index_id = self._feed_one(node, accessor)
                    code = text = None
                except _Fault as fault:
                    status, index_id, code, text = "rejected", None, fault.code, fault.text
                self.feed_records[status] += 1
                counts["rejected" if status == "rejected" else "accepted"] += 1
                out = etree.SubElement(ack, _X + "record")
                etree.SubElement(out, _X + "recordId").text = record_id
                etree.SubElement(out, _X + "status").text = status
                if index_id:
                    etree.SubElement(out, _X + "indexId").text = index_id
                if code:
                    etree.SubElement(out, _X + "code").text = code
                    etree.SubElement(out, _X + "text").text = text
        accepted.text = str(counts["accepted"])
        rejected.text = str(counts["rejected"])
        return ack

    def _feed_one(self, node: etree._Element, accessor: IndexAccessor) -> tuple[str, str]:
        def text(name: str, parent: etree._Element = node) -> str | None:
            return (parent.findtext(_X + name) or "").strip() or None

        action = text("action")
        nhs, upn = text("nhsNumber"), text("upn")
        if action == "update":
            index_id = text("indexId")
            child = self.children.get(index_id or "")
            if child is None:
                raise _Fault("NotFound")
        else:
            child = next((c for c in self.children.values()
                          if nhs and c.summary.nhs_number == nhs), None) or next(
                (c for c in self.children.values() if upn and c.summary.upn == upn), None)
        if child is not None and child.archived:
            raise _Fault("RecordArchived")
        address = node.find(_X + "address")
        lines = tuple((n.text or "").strip() for n in address.findall(_X + "line")) \
            if address is not None else ()
        postcode = text("postcode", address) if address is not None else None
        birth = _day(text("birthDate"))
        if birth is None or birth > self.clock().date():
            raise _Fault("ValidationError", "the date of birth is missing or in the future")
        carers = [{"given": text("given", c), "family": text("family", c),
                   "relationship": text("relationship", c),
                   "parental_responsibility": text("parentalResponsibility", c) in ("true", "1"),
                   "phone": text("phone", c)} for c in node.findall(_X + "carer")]
        fields: dict[str, Any] = {
            "given": tuple((n.text or "").strip() for n in node.findall(_X + "given")),
            "family": text("family") or "", "birth_date": birth,
            "gender": text("gender") or "unknown"}
        if child is None:
            index_id = f"CP{self.next_index:08d}"
            self.next_index += 1
            summary = ChildSummary(index_id=index_id, nhs_number=nhs, upn=upn,
                                   address_lines=lines, postcode=postcode, shielded=False,
                                   caf_exists=False, **fields)
            self.children[index_id] = _Child(summary=summary, carers=carers, involvements=[],
                                             archived=False)
            self._log(self.children[index_id], accessor, "feedChildren")
            return "created", index_id
        changes: dict[str, Any] = dict(fields)
        if nhs:
            changes["nhs_number"] = nhs
        if upn:
            changes["upn"] = upn
        if address is not None:
            changes["address_lines"], changes["postcode"] = lines, postcode
        updated = replace(child.summary, **changes)
        new_carers = carers or child.carers
        if updated == child.summary and new_carers == child.carers:
            return "unchanged", child.summary.index_id
        child.summary, child.carers = updated, new_carers
        self._log(child, accessor, "feedChildren")
        return "updated", child.summary.index_id
