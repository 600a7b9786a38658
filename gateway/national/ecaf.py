"""The CAF assessment store façade (/national/ecaf): the CAF as Questionnaire, assessment, plan.

| route | scopes | policy |
| --- | --- | --- |
| GET /national/ecaf/Questionnaire/caf | public (the form holds no personal data) | |
| GET /national/ecaf/QuestionnaireResponse?subject={index id} | system/Patient.r | ecaf |
| GET /national/ecaf/QuestionnaireResponse/{CAF id} | system/Patient.r | ecaf |
| POST /national/ecaf/QuestionnaireResponse (register, save, complete) | system/Patient.r | ecaf |
| PUT /national/ecaf/QuestionnaireResponse/{CAF id} (save, complete) | system/Patient.r | ecaf |
| POST /national/ecaf/Consent, CareTeam, CarePlan | system/Patient.r | ecaf |
| POST .../QuestionnaireResponse/{CAF id}/$review, $close | system/Patient.r | ecaf |

The CAF lives in the national store, not in the gateway, so the scopes asked for are the ones
every practitioner agency holds; the agency's national policy decides. In FHIR: the CAF form is a
Questionnaire (`fixtures/national/caf-questionnaire.json`), an assessment a QuestionnaireResponse
(status in-progress while draft, completed after; the CAF state in an extension), the action plan
and reviews a CarePlan, consent a Consent, the team around the child a CareTeam with the lead
professional as a participant role. The store moves draft -> completed -> active -> reviewed ->
closed; an illegal move answers 409. Registering and closing a CAF changes the child index's
"CAF exists" indicator.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request

from connectors.ecaf import (
    ACTION_STATUSES,
    CAF_DOMAINS,
    CLOSE_REASONS,
    ECAF_FAULTS,
    CafAction,
    CafRecord,
    DomainAssessment,
    EcafClient,
    ElementAssessment,
    TeamMember,
    build_ecaf_client,
)
from connectors.errors import ConnectorError
from gateway.config import Settings
from gateway.errors import BadRequest
from gateway.fhir.views import fhir_response
from gateway.national.calls import CallIds
from gateway.national.capability import _param, _statement
from gateway.national.contactpoint import (
    CARE_TEAM_ROLE,
    LazyClient,
    index_accessor,
    national_error,
    parameters_of,
)
from gateway.national.resources import searchset
from gateway.national.views import _authorise, _call, _json_body, _negotiate, _now, national_base
from gateway.security.audit import current_audit
from gateway.security.context import Caller
from gateway.security.http import PUBLIC, declare
from gateway.services import get_services
from vocab import systems

EXTENSION = "wraparound_ecaf"
QUESTIONNAIRE_FILE = Path(__file__).resolve().parents[2] / "fixtures" / "national" / \
    "caf-questionnaire.json"
QUESTIONNAIRE_URL = f"{systems.BASE}/Questionnaire/caf"
CAF_STATUS_EXTENSION = f"{systems.BASE}/StructureDefinition/caf-status"
CAF_CLOSE_REASON = f"{systems.BASE}/CodeSystem/caf-close-reason"
ACTIVITY_STATUS = {"planned": "not-started", "in-progress": "in-progress", "done": "completed",
                   "cancelled": "cancelled"}
ACTION_FROM_ACTIVITY = {v: k for k, v in ACTIVITY_STATUS.items()} | {"scheduled": "planned"}

bp = Blueprint("ecaf", __name__, url_prefix="/national/ecaf")
bp.before_request(_negotiate)
DECLARED = ("search", "read", "create", "update", "consent", "team", "plan", "review", "close")
for _name in DECLARED:
    declare(f"ecaf.{_name}", "national")
PUBLIC.update(("ecaf.metadata", "ecaf.questionnaire"))


@bp.errorhandler(ConnectorError)
def _error(exc: ConnectorError) -> Response:
    return national_error(exc, ECAF_FAULTS)


def ecaf_client() -> EcafClient:
    """Return the current app's assessment store client."""
    holder: LazyClient[EcafClient] = current_app.extensions[EXTENSION]
    return holder.get()


@lru_cache(maxsize=1)
def caf_questionnaire() -> dict[str, Any]:
    """Return the CAF form as a Questionnaire (shipped in fixtures/national)."""
    data: dict[str, Any] = json.loads(QUESTIONNAIRE_FILE.read_text(encoding="utf-8"))
    return data


# --- FHIR shapes -----------------------------------------------------------------------------
def _caf_identifier(caf_id: str) -> dict[str, str]:
    return {"system": systems.CAF_REFERENCE, "value": caf_id}


def _subject(caf: CafRecord) -> dict[str, Any]:
    return {"reference": f"Patient/{caf.index_id}",
            "identifier": {"system": systems.CHILD_INDEX_ID, "value": caf.index_id}}


def questionnaire_response(caf: CafRecord) -> dict[str, Any]:
    """Return a CAF's assessment as a QuestionnaireResponse."""
    titles = {g["linkId"]: g for g in caf_questionnaire()["item"]}
    groups = []
    for domain in caf.domains:
        elements = {i["linkId"]: i for i in titles.get(domain.code, {}).get("item", [])}
        items = []
        for element in domain.elements:
            link = f"{domain.code}.{element.code}"
            answers = [{"linkId": f"{link}.{field}", "text": field.capitalize(),
                        "answer": [{"valueString": value}]}
                       for field, value in (("strengths", element.strengths),
                                            ("needs", element.needs)) if value]
            item: dict[str, Any] = {"linkId": link}
            if link in elements:
                item["text"] = elements[link]["text"]
            if answers:
                item["item"] = answers
            items.append(item)
        group: dict[str, Any] = {"linkId": domain.code, "item": items}
        if domain.code in titles:
            group["text"] = titles[domain.code]["text"]
        groups.append(group)
    response: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse", "id": caf.caf_id,
        "meta": {"versionId": str(caf.version)},
        "extension": [{"url": CAF_STATUS_EXTENSION, "valueCode": caf.status}],
        "identifier": _caf_identifier(caf.caf_id),
        "questionnaire": QUESTIONNAIRE_URL,
        "status": "in-progress" if caf.status == "draft" else "completed",
        "subject": _subject(caf), "authored": caf.registered.isoformat(),
    }
    if groups:
        response["item"] = groups
    return response


def consent_resource(caf: CafRecord) -> dict[str, Any]:
    """Return a CAF's consent as a Consent."""
    consent: dict[str, Any] = {
        "resourceType": "Consent", "id": f"{caf.caf_id}-consent",
        "status": "active" if caf.consent.given else "inactive",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                              "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0",
                                  "display": "Patient Consent"}]}],
        "patient": _subject(caf),
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                   "code": "OPTIN", "display": "opt-in"}]},
        "sourceReference": {"reference": f"QuestionnaireResponse/{caf.caf_id}"},
    }
    if caf.consent.date:
        consent["dateTime"] = caf.consent.date.isoformat()
    if caf.consent.given_by:
        consent["performer"] = [{"display": caf.consent.given_by}]
    return consent


def care_team_resource(caf: CafRecord) -> dict[str, Any]:
    """Return the team around the child as a CareTeam (the lead professional as a role)."""
    participants = []
    for member in caf.team:
        roles: list[dict[str, Any]] = [{"text": member.role}]
        if member.lead:
            roles.append({"coding": [{"system": CARE_TEAM_ROLE, "code": "lead-professional",
                                      "display": "Lead professional"}]})
        participants.append({"role": roles, "member": {"display": member.name},
                             "onBehalfOf": {"display": member.organisation}})
    team: dict[str, Any] = {
        "resourceType": "CareTeam", "id": f"{caf.caf_id}-team",
        "identifier": [_caf_identifier(caf.caf_id)],
        "status": "inactive" if caf.status == "closed" else "active",
        "name": "Team around the child", "subject": _subject(caf)}
    if participants:
        team["participant"] = participants
    return team


def care_plan_resource(caf: CafRecord) -> dict[str, Any]:
    """Return the action plan and reviews as a CarePlan."""
    plan: dict[str, Any] = {
        "resourceType": "CarePlan", "id": f"{caf.caf_id}-plan",
        "identifier": [_caf_identifier(caf.caf_id)],
        "status": "completed" if caf.status == "closed" else (
            "active" if caf.status in ("active", "reviewed") else "draft"),
        "intent": "plan", "title": "CAF action plan", "subject": _subject(caf),
        "supportingInfo": [{"reference": f"QuestionnaireResponse/{caf.caf_id}"}],
    }
    if caf.actions:
        plan["activity"] = [{"detail": {
            "status": ACTIVITY_STATUS[a.status], "description": a.description,
            "performer": [{"display": a.who}],
            "scheduledPeriod": {"end": a.by_when.isoformat()}}} for a in caf.actions]
    notes = [{"time": r.date.isoformat(), "text": f"Review: {r.summary}"} for r in caf.reviews]
    if caf.close_reason:
        notes.append({"time": (caf.closed_on or caf.registered).isoformat(),
                      "text": f"Closed: {caf.close_reason}"})
    if notes:
        plan["note"] = notes
    return plan


# --- FHIR input ------------------------------------------------------------------------------
def _walk(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for item in items:
        yield item
        yield from _walk(item.get("item") or [])


def domains_of(response: dict[str, Any]) -> list[DomainAssessment]:
    """Read the CAF domains from a QuestionnaireResponse's answers (linkId domain.element.field)."""
    found: dict[str, dict[str, dict[str, str]]] = {}
    for item in _walk(response.get("item") or []):
        parts = str(item.get("linkId", "")).split(".")
        if len(parts) != 3 or parts[2] not in ("strengths", "needs"):
            continue
        domain, element, field = parts
        if element not in CAF_DOMAINS.get(domain, ()):
            raise BadRequest(f"item {item['linkId']} is not an element of the CAF form")
        answers = [a.get("valueString") for a in item.get("answer") or ()]
        text = "\n".join(a for a in answers if isinstance(a, str)).strip()
        if text:
            found.setdefault(domain, {}).setdefault(element, {})[field] = text[:4000]
    return [DomainAssessment(d, tuple(ElementAssessment(e, v.get("strengths"), v.get("needs"))
                                      for e, v in elements.items()))
            for d, elements in found.items()]


def _index_of(resource: dict[str, Any]) -> str:
    subject = resource.get("subject") or {}
    identifier = subject.get("identifier") or {}
    if identifier.get("system") == systems.CHILD_INDEX_ID and identifier.get("value"):
        return str(identifier["value"])
    ref = subject.get("reference")
    if isinstance(ref, str) and ref.startswith("Patient/CP"):
        return ref.split("/", 1)[1]
    raise BadRequest("subject must name the child by index id: an identifier with system "
                     f"{systems.CHILD_INDEX_ID} or a reference Patient/<index id>")


def _caf_of(resource: dict[str, Any]) -> str:
    for identifier in resource.get("identifier") or ():
        if identifier.get("system") == systems.CAF_REFERENCE and identifier.get("value"):
            return _caf_id(str(identifier["value"]))
    refs = [resource.get("sourceReference") or {}, *(resource.get("supportingInfo") or ())]
    for ref in refs:
        value = ref.get("reference") if isinstance(ref, dict) else None
        if isinstance(value, str) and value.startswith("QuestionnaireResponse/"):
            return _caf_id(value.split("/", 1)[1])
    raise BadRequest("name the CAF: an identifier with system "
                     f"{systems.CAF_REFERENCE} or a reference QuestionnaireResponse/<CAF id>")


def _caf_id(value: str) -> str:
    if not (len(value) == 9 and value.startswith("CAF") and value[3:].isdigit()):
        raise BadRequest("a CAF id is CAF followed by six digits")
    return value


def _valid(body: dict[str, Any], rtype: str) -> dict[str, Any]:
    if body.get("resourceType") != rtype:
        raise BadRequest(f"send a {rtype} resource")
    return get_services().fhir.check_valid(body, rtype)


def _begin(operation: str, caf_or_child: str | None = None) -> CallIds:
    call = _call("ecaf", operation)
    ctx = current_audit()
    if ctx is not None and caf_or_child:
        kind = "Patient" if caf_or_child.startswith("CP") else "QuestionnaireResponse"
        ctx.touch(f"{national_base('ecaf')}/{kind}/{caf_or_child}")
    return call


def _ids(call: CallIds) -> dict[str, str]:
    return {"message_id": call.message_id, "correlation_id": call.correlation_id}


# --- routes ----------------------------------------------------------------------------------
def capability(base: str) -> dict[str, Any]:
    """Return the CapabilityStatement of the assessment store façade."""
    resources = [
        {"type": "Questionnaire", "documentation": "The CAF form (id caf)",
         "interaction": [{"code": "read"}]},
        {"type": "QuestionnaireResponse",
         "documentation": "A CAF assessment; id the CAF id. create registers (and saves; "
                          "status completed also completes), update saves a new version",
         "interaction": [{"code": "read"}, {"code": "search-type"}, {"code": "create"},
                         {"code": "update"}],
         "searchParam": [_param("subject", "reference", "The child index id")],
         "operation": [{"name": n, "definition": f"{systems.BASE}/OperationDefinition/caf-{n}"}
                       for n in ("review", "close")]},
        {"type": "Consent", "documentation": "Record (active) or withdraw (inactive) consent",
         "interaction": [{"code": "create"}]},
        {"type": "CareTeam", "documentation": "The team around the child; one participant has "
                                              "the lead-professional role",
         "interaction": [{"code": "create"}]},
        {"type": "CarePlan", "documentation": "The action plan: action, who, by when, status",
         "interaction": [{"code": "create"}]},
    ]
    return _statement(base, "Wraparound façade for the eCAF-like national assessment store",
                      "Bearer token with system/Patient.r; the agency's policy must allow ecaf",
                      resources)


@bp.get("/metadata")
def metadata() -> Response:
    return fhir_response(capability(national_base("ecaf")))


@bp.get("/Questionnaire/caf")
def questionnaire() -> Response:
    return fhir_response(caf_questionnaire())


def _caller() -> Caller:
    return _authorise("ecaf", (("Patient", "read"),))


@bp.get("/QuestionnaireResponse")
def search() -> Response:
    caller = _caller()
    pairs = [(n, v) for n, v in request.args.items(multi=True) if n != "_format"]
    if len(pairs) != 1 or pairs[0][0] not in ("subject", "patient"):
        raise BadRequest("give the child once: subject=<index id>")
    index_id = pairs[0][1].removeprefix("Patient/").strip()
    if not (len(index_id) == 10 and index_id.startswith("CP") and index_id[2:].isdigit()):
        raise BadRequest("a child index id is CP followed by eight digits")
    call = _begin("checkCafExists", index_id)
    client = ecaf_client()
    accessor = index_accessor(caller)
    check = client.check(index_id, accessor=accessor, **_ids(call))
    matches: list[dict[str, Any]] = []
    included: list[dict[str, Any]] = []
    if check.caf_id:
        caf = client.get(check.caf_id, accessor=accessor, **_ids(CallIds.fresh(
            call.correlation_id)))
        matches.append(questionnaire_response(caf))
        included = [consent_resource(caf), care_team_resource(caf), care_plan_resource(caf)]
    return fhir_response(searchset(national_base("ecaf"), request.url, matches, included,
                                   now=_now()))


@bp.get("/QuestionnaireResponse/<res_id>")
def read(res_id: str) -> Response:
    caller = _caller()
    caf_id = _caf_id(res_id)
    call = _begin("getCaf", caf_id)
    caf = ecaf_client().get(caf_id, accessor=index_accessor(caller), **_ids(call))
    return fhir_response(questionnaire_response(caf))


def _save(caller: Caller, caf: CafRecord, body: dict[str, Any],
          correlation_id: str) -> CafRecord:
    client = ecaf_client()
    accessor = index_accessor(caller)
    domains = domains_of(body)
    if domains:
        expected = (body.get("meta") or {}).get("versionId")
        version = int(expected) if isinstance(expected, str) and expected.isdigit() else None
        caf = client.save_assessment(caf.caf_id, domains, accessor=accessor,
                                     expected_version=version,
                                     **_ids(CallIds.fresh(correlation_id)))
    if body.get("status") == "completed" and caf.status == "draft":
        caf = client.complete(caf.caf_id, accessor=accessor,
                              **_ids(CallIds.fresh(correlation_id)))
    return caf


@bp.post("/QuestionnaireResponse")
def create() -> Response:
    caller = _caller()
    body = _valid(_json_body(), "QuestionnaireResponse")
    if body.get("status") not in ("in-progress", "completed"):
        raise BadRequest("status must be in-progress (draft) or completed")
    index_id = _index_of(body)
    call = _begin("registerCaf", index_id)
    caf = ecaf_client().register(index_id, accessor=index_accessor(caller), **_ids(call))
    caf = _save(caller, caf, body, call.correlation_id)
    location = f"{national_base('ecaf')}/QuestionnaireResponse/{caf.caf_id}"
    return fhir_response(questionnaire_response(caf), 201, headers={"Location": location})


@bp.put("/QuestionnaireResponse/<res_id>")
def update(res_id: str) -> Response:
    caller = _caller()
    caf_id = _caf_id(res_id)
    body = _valid(_json_body(), "QuestionnaireResponse")
    if body.get("id") not in (None, caf_id):
        raise BadRequest("the resource id must match the URL")
    call = _begin("saveAssessment", caf_id)
    caf = ecaf_client().get(caf_id, accessor=index_accessor(caller), **_ids(call))
    caf = _save(caller, caf, body, call.correlation_id)
    return fhir_response(questionnaire_response(caf))


@bp.post("/Consent")
def consent() -> Response:
    caller = _caller()
    body = _valid(_json_body(), "Consent")
    caf_id = _caf_of(body)
    call = _begin("recordConsent", caf_id)
    client = ecaf_client()
    accessor = index_accessor(caller)
    if body.get("status") == "active":
        performers = [p.get("display") for p in body.get("performer") or ()]
        given_by = next((p for p in performers if isinstance(p, str) and p.strip()), None)
        if given_by is None:
            raise BadRequest("performer[0].display must say who gave consent")
        day = body.get("dateTime")
        caf = client.record_consent(caf_id, given_by, accessor=accessor,
                                    on=date.fromisoformat(day[:10]) if day else None,
                                    **_ids(call))
    elif body.get("status") in ("inactive", "rejected"):
        caf = client.withdraw_consent(caf_id, accessor=accessor, **_ids(call))
    else:
        raise BadRequest("status active records consent; inactive or rejected withdraws it")
    return fhir_response(consent_resource(caf), 201)


@bp.post("/CareTeam")
def team() -> Response:
    caller = _caller()
    body = _valid(_json_body(), "CareTeam")
    caf_id = _caf_of(body)
    members = []
    for participant in body.get("participant") or ():
        roles = participant.get("role") or []
        lead = any(c.get("code") == "lead-professional" for r in roles
                   for c in r.get("coding") or ())
        role = next((r.get("text") for r in roles if r.get("text")), None) or (
            "Lead professional" if lead else None)
        name = (participant.get("member") or {}).get("display")
        org = (participant.get("onBehalfOf") or {}).get("display") or "not given"
        if not name or not role:
            raise BadRequest("each participant needs member.display and a role text")
        members.append(TeamMember(name=name, role=role, organisation=org, lead=lead))
    call = _begin("setTeam", caf_id)
    caf = ecaf_client().set_team(caf_id, members, accessor=index_accessor(caller), **_ids(call))
    return fhir_response(care_team_resource(caf), 201)


@bp.post("/CarePlan")
def plan() -> Response:
    caller = _caller()
    body = _valid(_json_body(), "CarePlan")
    caf_id = _caf_of(body)
    actions = []
    for activity in body.get("activity") or ():
        detail = activity.get("detail") or {}
        status = ACTION_FROM_ACTIVITY.get(detail.get("status", ""))
        who = next((p.get("display") for p in detail.get("performer") or ()
                    if p.get("display")), None)
        end = (detail.get("scheduledPeriod") or {}).get("end")
        if not detail.get("description") or not who or not end or status is None:
            raise BadRequest("each activity needs detail.description, performer[0].display, "
                             "scheduledPeriod.end and a status of "
                             + ", ".join(ACTIVITY_STATUS.values()))
        actions.append(CafAction(description=detail["description"], who=who,
                                 by_when=date.fromisoformat(end[:10]), status=status))
    if not actions or any(a.status not in ACTION_STATUSES for a in actions):
        raise BadRequest("the action plan needs at least one activity")
    call = _begin("saveActionPlan", caf_id)
    caf = ecaf_client().save_action_plan(caf_id, actions, accessor=index_accessor(caller),
                                         **_ids(call))
    return fhir_response(care_plan_resource(caf), 201)


@bp.post("/QuestionnaireResponse/<res_id>/$review")
def review(res_id: str) -> Response:
    caller = _caller()
    caf_id = _caf_id(res_id)
    params = parameters_of(_json_body(), ("date", "summary"))
    summary, day = params.get("summary"), params.get("date")
    if not isinstance(summary, str) or not summary.strip() or not isinstance(day, str):
        raise BadRequest("$review needs parameters date (valueDate) and summary (valueString)")
    call = _begin("recordReview", caf_id)
    caf = ecaf_client().review(caf_id, summary.strip(), accessor=index_accessor(caller),
                               on=date.fromisoformat(day[:10]), **_ids(call))
    return fhir_response(care_plan_resource(caf))


@bp.post("/QuestionnaireResponse/<res_id>/$close")
def close(res_id: str) -> Response:
    caller = _caller()
    caf_id = _caf_id(res_id)
    params = parameters_of(_json_body(), ("reason", "note"))
    reason, note = params.get("reason"), params.get("note")
    if reason not in CLOSE_REASONS:
        raise BadRequest("parameter 'reason' (valueCode) must be one of "
                         + ", ".join(CLOSE_REASONS))
    call = _begin("closeCaf", caf_id)
    caf = ecaf_client().close(caf_id, str(reason), accessor=index_accessor(caller),
                              note=note if isinstance(note, str) else None, **_ids(call))
    return fhir_response(questionnaire_response(caf))


def init_app(app: Flask, settings: Settings) -> None:
    """Register the assessment store façade and its client (built on first use)."""
    app.extensions[EXTENSION] = LazyClient(build_ecaf_client, settings, settings.ecaf_address)
    app.register_blueprint(bp)


__all__ = ["CAF_CLOSE_REASON", "DECLARED", "EXTENSION", "bp", "care_plan_resource",
           "care_team_resource", "consent_resource", "domains_of", "ecaf_client", "init_app",
           "questionnaire_response"]
