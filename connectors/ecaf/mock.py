"""The mock eCAF-like assessment store: the CAF state machine, consent, team, plan, reviews.

The state machine (draft -> completed -> active -> reviewed -> closed, see
`connectors.ecaf.models.TRANSITIONS`) is enforced: any other move is an IllegalTransition fault.
Completing needs recorded consent (ConsentRequired) and at least one assessed domain; a team needs
exactly one lead professional; saving with a stale expectedVersion is a VersionConflict; a child
has at most one open CAF (AlreadyExists). Registering a CAF sets, and closing the child's last open
CAF clears, the child index's "CAF exists" indicator through the hook the server wires in.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

from lxml import etree

from connectors.contactpoint.models import IndexAccessor
from connectors.ecaf import messages as m
from connectors.ecaf.models import (
    CAF_DOMAINS,
    TRANSITIONS,
    CafConsent,
    CafRecord,
    CafReview,
    DomainAssessment,
    TeamMember,
)
from connectors.errors import ConnectorError
from connectors.mockserver.service import MockReply, MockRequest
from connectors.soap import xml
from connectors.soap.context import new_message_id
from connectors.soap.server import build_envelope, build_fault
from connectors.soap.wsse import utcnow

__all__ = ["CafIndicatorHook", "EcafMockService"]

_E = f"{{{m.ECAF_NS}}}"
_KIND_CODES = {"invalid": "ValidationError", "security": "ValidationError",
               "unsupported": "ValidationError", "injected": "ValidationError"}
# (index id, CAF exists) -> whether the index knows the child.
CafIndicatorHook = Callable[[str, bool], bool]


class _Fault(Exception):
    def __init__(self, code: str, text: str) -> None:
        super().__init__(code)
        self.code = code
        self.text = text


class EcafMockService:
    """The assessment store at one endpoint, seeded from fixtures/national/ecaf.json."""

    name = "ecaf"
    path = "/ecaf"
    wsdl_dir = m.WSDL_DIR
    wsdl_file = "ecaf.wsdl"
    require_addressing = True

    def __init__(self, seed_file: Path, index_hook: CafIndicatorHook | None = None, *,
                 clock: Callable[[], datetime] = utcnow,
                 ids: Callable[[], str] = new_message_id) -> None:
        self.seed_file = seed_file
        self.index_hook = index_hook
        self.clock = clock
        self.ids = ids
        self._lock = threading.RLock()
        self._schema = xml.load_schema(str(m.WSDL_DIR / "ecaf.xsd"))
        self.reset()

    def reset(self) -> None:
        """Reload the seeded CAFs."""
        cafs: dict[str, CafRecord] = {}
        if self.seed_file.exists():
            document = json.loads(self.seed_file.read_text(encoding="utf-8"))
            for c in document.get("cafs", []):
                lead = c.get("lead_professional")
                cafs[c["caf_id"]] = CafRecord(
                    caf_id=c["caf_id"], index_id=c["index_id"], status=c["status"], version=1,
                    registered=date.fromisoformat(c["registered"]),
                    consent=CafConsent(given=bool(c.get("consent"))),
                    team=(TeamMember(lead["name"], lead["role"], lead["organisation"], True),)
                    if lead else ())
        with self._lock:
            self.cafs = cafs
            self.next_id = max((int(k[3:]) for k in cafs), default=0) + 1
            self.transitions: list[dict[str, str]] = []

    def admin_state(self) -> dict[str, Any]:
        """Return counts by status and the transitions made since the last reset (ids only)."""
        with self._lock:
            counts: dict[str, int] = {}
            for caf in self.cafs.values():
                counts[caf.status] = counts.get(caf.status, 0) + 1
            return {"cafs": len(self.cafs), "by_status": counts,
                    "transitions": [dict(t) for t in self.transitions]}

    def operation_for(self, soap_action: str) -> str | None:
        """Map a SOAPAction to an operation."""
        if soap_action.startswith(m.ACTION_PREFIX):
            name = soap_action[len(m.ACTION_PREFIX):]
            if name in m.OPERATIONS:
                return name
        return None

    def fault(self, *, fault_code: str, text: str, service_code: str | None,
              relates_to: str | None, status: int = 500, kind: str = "invalid") -> MockReply:
        """Build an assessment store fault with an ec:FaultInfo detail."""
        info = etree.Element(_E + "FaultInfo", nsmap={"ec": m.ECAF_NS})
        etree.SubElement(info, _E + "code").text = service_code or _KIND_CODES.get(
            kind, "ValidationError")
        etree.SubElement(info, _E + "text").text = text
        envelope = build_fault(fault_code, text, detail=info, message_id=self.ids(),
                               relates_to=relates_to)
        return MockReply(status=status, envelope=envelope)

    def handle(self, request: MockRequest) -> MockReply:
        """Answer one assessment store request."""
        payload = request.message.payload
        try:
            if xml.schema_errors(self._schema, payload):
                raise _Fault("ValidationError",
                             "the request does not conform to the assessment store schema")
            accessor_node = payload.find(_E + "accessor")
            if accessor_node is None:
                raise _Fault("ValidationError", "the accessor is required")
            accessor = IndexAccessor(*(accessor_node.findtext(_E + n) or "" for n in
                                       ("userId", "name", "role", "organisation")))
            with self._lock:
                node = getattr(self, "_" + request.operation)(payload, accessor)
        except _Fault as fault:
            return self.fault(fault_code="Client", text=fault.text, service_code=fault.code,
                              relates_to=request.message_id)
        except ConnectorError:
            return self.fault(fault_code="Client", text="the request could not be read",
                              service_code="ValidationError", relates_to=request.message_id)
        envelope = build_envelope(node, action=m.ACTION_PREFIX + request.operation + "Response",
                                  message_id=self.ids(), relates_to=request.message_id)
        return MockReply(status=200, envelope=envelope)

    # --- helpers -----------------------------------------------------------------------------
    def _today(self) -> date:
        return self.clock().date()

    def _caf(self, payload: etree._Element, operation: str) -> CafRecord:
        caf = self.cafs.get((payload.findtext(_E + "cafId") or "").strip())
        if caf is None:
            raise _Fault("NotFound", "no such CAF")
        allowed, _ = TRANSITIONS.get(operation, (None, None))
        if allowed is not None and caf.status not in allowed:
            raise _Fault("IllegalTransition",
                         f"{operation} is not allowed when the CAF is {caf.status}")
        return caf

    def _store(self, caf: CafRecord, operation: str, **changes: Any) -> etree._Element:
        _, target = TRANSITIONS.get(operation, (None, None))
        if target is not None and target != caf.status:
            changes.setdefault("status", target)
            self.transitions.append({"caf_id": caf.caf_id, "from": caf.status, "to": target})
        updated = replace(caf, **changes)
        self.cafs[caf.caf_id] = updated
        return m.caf_element(updated)

    def _open_for(self, index_id: str) -> CafRecord | None:
        return next((c for c in sorted(self.cafs.values(), key=lambda c: c.caf_id, reverse=True)
                     if c.index_id == index_id and c.status != "closed"), None)

    # --- operations --------------------------------------------------------------------------
    def _checkCafExists(self, payload: etree._Element, _: IndexAccessor) -> etree._Element:
        index_id = (payload.findtext(_E + "indexId") or "").strip()
        caf = self._open_for(index_id) or next(
            (c for c in sorted(self.cafs.values(), key=lambda c: c.caf_id, reverse=True)
             if c.index_id == index_id), None)
        root = etree.Element(_E + "CafExistsResponse", nsmap={"ec": m.ECAF_NS})
        etree.SubElement(root, _E + "indexId").text = index_id
        etree.SubElement(root, _E + "exists").text = (
            "true" if caf is not None and caf.status != "closed" else "false")
        if caf is not None:
            etree.SubElement(root, _E + "cafId").text = caf.caf_id
            etree.SubElement(root, _E + "status").text = caf.status
        return root

    def _registerCaf(self, payload: etree._Element, _: IndexAccessor) -> etree._Element:
        index_id = (payload.findtext(_E + "indexId") or "").strip()
        if self._open_for(index_id) is not None:
            raise _Fault("AlreadyExists", "the child already has an open CAF")
        if self.index_hook is not None and not self.index_hook(index_id, True):
            raise _Fault("NotFound", "the child index does not hold this child")
        consent_node = payload.find(_E + "consent")
        consent = CafConsent(given=False)
        if consent_node is not None and consent_node.findtext(_E + "given") in ("true", "1"):
            consent = CafConsent(given=True, given_by=consent_node.findtext(_E + "givenBy"),
                                 date=self._today())
        caf_id = f"CAF{self.next_id:06d}"
        self.next_id += 1
        caf = CafRecord(caf_id=caf_id, index_id=index_id, status="draft", version=0,
                        registered=self._today(), consent=consent)
        self.cafs[caf_id] = caf
        self.transitions.append({"caf_id": caf_id, "from": "", "to": "draft"})
        return m.caf_element(caf)

    def _saveAssessment(self, payload: etree._Element, _: IndexAccessor) -> etree._Element:
        caf = self._caf(payload, "saveAssessment")
        expected = payload.findtext(_E + "expectedVersion")
        if expected is not None and int(expected) != caf.version:
            raise _Fault("VersionConflict", "the assessment changed since that version")
        domains = {d.code: d for d in caf.domains}
        for node in payload.findall(_E + "domain"):
            domain = m.read_domain(node)
            for element in domain.elements:
                if element.code not in CAF_DOMAINS[domain.code]:
                    raise _Fault("ValidationError", f"unknown element {element.code}")
            merged = {e.code: e for e in domains.get(domain.code, DomainAssessment(
                domain.code, ())).elements}
            merged.update({e.code: e for e in domain.elements})
            domains[domain.code] = DomainAssessment(domain.code, tuple(merged.values()))
        ordered = tuple(domains[c] for c in CAF_DOMAINS if c in domains)
        return self._store(caf, "saveAssessment", domains=ordered, version=caf.version + 1)

    def _completeAssessment(self, payload: etree._Element, _: IndexAccessor) -> etree._Element:
        caf = self._caf(payload, "completeAssessment")
        if not caf.consent.given:
            raise _Fault("ConsentRequired", "record consent before completing the assessment")
        if not caf.domains:
            raise _Fault("ValidationError", "save the assessment before completing it")
        return self._store(caf, "completeAssessment")

    def _recordConsent(self, payload: etree._Element, _: IndexAccessor) -> etree._Element:
        caf = self._caf(payload, "recordConsent")
        on = payload.findtext(_E + "date")
        consent = CafConsent(given=True, given_by=(payload.findtext(_E + "givenBy") or "").strip(),
                             date=date.fromisoformat(on) if on else self._today())
        return self._store(caf, "recordConsent", consent=consent)

    def _withdrawConsent(self, payload: etree._Element, _: IndexAccessor) -> etree._Element:
        caf = self._caf(payload, "withdrawConsent")
        return self._store(caf, "withdrawConsent",
                           consent=CafConsent(given=False, date=self._today()))

    def _setTeam(self, payload: etree._Element, _: IndexAccessor) -> etree._Element:
        caf = self._caf(payload, "setTeam")
        team = tuple(m.read_member(n) for n in payload.findall(_E + "member"))
        if sum(t.lead for t in team) != 1:
            raise _Fault("ValidationError", "the team needs exactly one lead professional")
        if not caf.consent.given:
            raise _Fault("ConsentRequired", "consent is needed to share the assessment")
        return self._store(caf, "setTeam", team=team)

    def _saveActionPlan(self, payload: etree._Element, _: IndexAccessor) -> etree._Element:
        caf = self._caf(payload, "saveActionPlan")
        actions = tuple(m.read_action(n) for n in payload.findall(_E + "action"))
        return self._store(caf, "saveActionPlan", actions=actions)

    def _recordReview(self, payload: etree._Element, _: IndexAccessor) -> etree._Element:
        caf = self._caf(payload, "recordReview")
        node = payload.find(_E + "review")
        if node is None:
            raise _Fault("ValidationError", "the review is required")
        review = CafReview(date=date.fromisoformat((node.findtext(_E + "date") or "").strip()),
                           summary=(node.findtext(_E + "summary") or "").strip())
        return self._store(caf, "recordReview", reviews=(*caf.reviews, review))

    def _closeCaf(self, payload: etree._Element, _: IndexAccessor) -> etree._Element:
        caf = self._caf(payload, "closeCaf")
        reason = (payload.findtext(_E + "reason") or "").strip()
        node = self._store(caf, "closeCaf", close_reason=reason, closed_on=self._today())
        if self.index_hook is not None and self._open_for(caf.index_id) is None:
            self.index_hook(caf.index_id, False)
        return node

    def _getCaf(self, payload: etree._Element, _: IndexAccessor) -> etree._Element:
        return m.caf_element(self._caf(payload, "getCaf"))
