"""The eCAF-like assessment store client: register, assess, consent, team, plan, review, close."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any, TypeVar

from lxml import etree
from zeep import Plugin
from zeep.wsdl import Document

from connectors.contactpoint.errors import refined
from connectors.contactpoint.models import IndexAccessor
from connectors.ecaf import messages as m
from connectors.ecaf.errors import ECAF_FAULTS
from connectors.ecaf.models import (
    ACTION_STATUSES,
    CAF_DOMAINS,
    CLOSE_REASONS,
    CafAction,
    CafCheck,
    CafRecord,
    DomainAssessment,
    TeamMember,
)
from connectors.errors import ConnectorError, InvalidRequest
from connectors.soap.client import ServiceSpec, SoapClient, build_soap_client
from connectors.soap.context import new_message_id
from connectors.soap.settings import SoapSettings
from connectors.soap.transport import HardenedTransport
from connectors.soap.wsse import WsSecurity, utcnow

__all__ = ["ECAF_SPEC", "EcafClient", "build_ecaf_client"]

ECAF_SPEC = ServiceSpec(
    name="ecaf",
    wsdl_path=m.WSDL_DIR / "ecaf.wsdl",
    binding="{urn:wraparound:ecaf:1}EcafServiceBinding",
)
T = TypeVar("T")


def _accessor(accessor: IndexAccessor) -> dict[str, str]:
    return {"userId": accessor.user_id[:200], "name": accessor.name[:200],
            "role": accessor.role[:200], "organisation": accessor.organisation[:200]}


def _invalid(text: str, operation: str) -> InvalidRequest:
    return InvalidRequest(text, service="ecaf", operation=operation)


def _check_caf_id(caf_id: str, operation: str) -> None:
    if not (len(caf_id) == 9 and caf_id.startswith("CAF") and caf_id[3:].isdigit()):
        raise _invalid("a CAF id is CAF followed by six digits", operation)


def _check_domains(domains: Sequence[DomainAssessment], operation: str) -> None:
    if not domains or len(domains) > 3:
        raise _invalid("an assessment has one to three domains", operation)
    for domain in domains:
        elements = CAF_DOMAINS.get(domain.code)
        if elements is None:
            raise _invalid("unknown CAF domain; use " + ", ".join(CAF_DOMAINS), operation)
        if not domain.elements:
            raise _invalid(f"domain {domain.code} has no elements", operation)
        for element in domain.elements:
            if element.code not in elements:
                raise _invalid(f"unknown element {element.code} of domain {domain.code}",
                               operation)


class EcafClient:
    """Typed access to the assessment store; every failure is a ConnectorError."""

    def __init__(self, soap: SoapClient) -> None:
        self.soap = soap

    def _call(self, operation: str, reader: Callable[[etree._Element], T], *,
              accessor: IndexAccessor, message_id: str | None, correlation_id: str | None,
              **body: Any) -> T:
        with refined(ECAF_FAULTS):
            reply = self.soap.call(operation, message_id=message_id,
                                   correlation_id=correlation_id,
                                   accessor=_accessor(accessor), **body)
            try:
                return reader(reply.payload)
            except ConnectorError as exc:
                raise exc.with_context(service="ecaf", operation=operation)

    def check(self, index_id: str, *, accessor: IndexAccessor, message_id: str | None = None,
              correlation_id: str | None = None) -> CafCheck:
        """Return whether the child has a CAF (the open one, else the latest)."""
        return self._call("checkCafExists", m.read_check, accessor=accessor,
                          message_id=message_id, correlation_id=correlation_id, indexId=index_id)

    def register(self, index_id: str, *, accessor: IndexAccessor,
                 consent_given_by: str | None = None, message_id: str | None = None,
                 correlation_id: str | None = None) -> CafRecord:
        """Register a new (draft) CAF; the index's "CAF exists" indicator is set."""
        body: dict[str, Any] = {"indexId": index_id}
        if consent_given_by:
            body["consent"] = {"given": True, "givenBy": consent_given_by[:200]}
        return self._call("registerCaf", m.read_caf, accessor=accessor, message_id=message_id,
                          correlation_id=correlation_id, **body)

    def save_assessment(self, caf_id: str, domains: Sequence[DomainAssessment], *,
                        accessor: IndexAccessor, expected_version: int | None = None,
                        message_id: str | None = None,
                        correlation_id: str | None = None) -> CafRecord:
        """Save a new version of the assessment (draft only)."""
        operation = "saveAssessment"
        _check_caf_id(caf_id, operation)
        _check_domains(domains, operation)
        body: dict[str, Any] = {"cafId": caf_id, "domain": [
            {"code": d.code, "element": [
                {k: v for k, v in (("code", e.code), ("strengths", e.strengths),
                                   ("needs", e.needs)) if v}
                for e in d.elements]} for d in domains]}
        if expected_version is not None:
            body["expectedVersion"] = expected_version
        return self._call(operation, m.read_caf, accessor=accessor, message_id=message_id,
                          correlation_id=correlation_id, **body)

    def _simple(self, operation: str, caf_id: str, accessor: IndexAccessor,
                message_id: str | None, correlation_id: str | None, **body: Any) -> CafRecord:
        _check_caf_id(caf_id, operation)
        return self._call(operation, m.read_caf, accessor=accessor, message_id=message_id,
                          correlation_id=correlation_id, cafId=caf_id, **body)

    def complete(self, caf_id: str, *, accessor: IndexAccessor, message_id: str | None = None,
                 correlation_id: str | None = None) -> CafRecord:
        """Complete the assessment (needs recorded consent)."""
        return self._simple("completeAssessment", caf_id, accessor, message_id, correlation_id)

    def get(self, caf_id: str, *, accessor: IndexAccessor, message_id: str | None = None,
            correlation_id: str | None = None) -> CafRecord:
        """Read a CAF."""
        return self._simple("getCaf", caf_id, accessor, message_id, correlation_id)

    def record_consent(self, caf_id: str, given_by: str, *, accessor: IndexAccessor,
                       on: date | None = None, message_id: str | None = None,
                       correlation_id: str | None = None) -> CafRecord:
        """Record consent to the assessment and to sharing it."""
        if not given_by.strip():
            raise _invalid("say who gave consent", "recordConsent")
        extra: dict[str, Any] = {"date": on} if on else {}
        return self._simple("recordConsent", caf_id, accessor, message_id, correlation_id,
                            givenBy=given_by.strip()[:200], **extra)

    def withdraw_consent(self, caf_id: str, *, accessor: IndexAccessor,
                         reason: str | None = None, message_id: str | None = None,
                         correlation_id: str | None = None) -> CafRecord:
        """Withdraw consent."""
        extra = {"reason": reason.strip()[:4000]} if reason and reason.strip() else {}
        return self._simple("withdrawConsent", caf_id, accessor, message_id, correlation_id,
                            **extra)

    def set_team(self, caf_id: str, team: Sequence[TeamMember], *, accessor: IndexAccessor,
                 message_id: str | None = None, correlation_id: str | None = None) -> CafRecord:
        """Set the team around the child; exactly one member is the lead professional."""
        if not team or sum(member.lead for member in team) != 1:
            raise _invalid("the team needs exactly one lead professional", "setTeam")
        members = [{"name": t.name[:200], "role": t.role[:200],
                    "organisation": t.organisation[:200], "lead": t.lead} for t in team]
        return self._simple("setTeam", caf_id, accessor, message_id, correlation_id,
                            member=members)

    def save_action_plan(self, caf_id: str, actions: Sequence[CafAction], *,
                         accessor: IndexAccessor, message_id: str | None = None,
                         correlation_id: str | None = None) -> CafRecord:
        """Replace the action plan (action, who, by when, status)."""
        if not actions or any(a.status not in ACTION_STATUSES for a in actions):
            raise _invalid("an action plan has actions with status "
                           + ", ".join(ACTION_STATUSES), "saveActionPlan")
        items = [{"description": a.description[:200], "who": a.who[:200],
                  "byWhen": a.by_when, "status": a.status} for a in actions]
        return self._simple("saveActionPlan", caf_id, accessor, message_id, correlation_id,
                            action=items)

    def review(self, caf_id: str, summary: str, *, accessor: IndexAccessor, on: date,
               message_id: str | None = None, correlation_id: str | None = None) -> CafRecord:
        """Record a review."""
        return self._simple("recordReview", caf_id, accessor, message_id, correlation_id,
                            review={"date": on, "summary": summary[:4000]})

    def close(self, caf_id: str, reason: str, *, accessor: IndexAccessor,
              note: str | None = None, message_id: str | None = None,
              correlation_id: str | None = None) -> CafRecord:
        """Close the CAF with a reason; the index's "CAF exists" indicator is cleared."""
        if reason not in CLOSE_REASONS:
            raise _invalid("close reason must be one of " + ", ".join(CLOSE_REASONS), "closeCaf")
        extra = {"note": note[:4000]} if note else {}
        return self._simple("closeCaf", caf_id, accessor, message_id, correlation_id,
                            reason=reason, **extra)


def build_ecaf_client(
    settings: SoapSettings,
    *,
    wsdl: Document | str | None = None,
    transport: HardenedTransport | None = None,
    wsse: WsSecurity | None = None,
    plugins: Sequence[Plugin] | None = None,
    clock: Callable[[], datetime] = utcnow,
    ids: Callable[[], str] = new_message_id,
) -> EcafClient:
    """Build an EcafClient; every collaborator is injectable and has a hardened default."""
    soap = build_soap_client(ECAF_SPEC, settings, wsdl=wsdl, transport=transport, wsse=wsse,
                             plugins=plugins, clock=clock, ids=ids)
    return EcafClient(soap)
