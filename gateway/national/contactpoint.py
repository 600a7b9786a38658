"""The child index façade (/national/contactpoint): search, a child's record, involvements.

| route | scopes | policy |
| --- | --- | --- |
| GET /national/contactpoint/Patient?... | system/Patient.s | contactpoint |
| GET /national/contactpoint/Patient/{index id} (X-Access-Reason) | system/Patient.r | contactpoint (+ contactpoint-shield and X-Break-Glass-Reason to override a shield) |
| POST .../Patient/{index id}/$record-involvement, $end-involvement | system/Patient.r | contactpoint |
| POST .../Patient/{index id}/$set-lead-professional | system/Patient.r | contactpoint |
| POST .../Patient/{index id}/$shield, $unshield | system/Patient.r | contactpoint-shield |
| POST /national/contactpoint/$feed (Bundle of Patients, or Parameters naming stored ones) | system/Patient.r | contactpoint-feed |
| GET /national/contactpoint/AuditEvent?patient={index id} | system/AuditEvent.s | contactpoint-audit |

A record is a Bundle of the Patient, RelatedPersons (carers), a CareTeam (the involvements; the
lead professional as a participant role; a sensitive service without consent as "contact the
index team"), Organizations and Practitioners. A shielded child is answered with identity only
(meta.security R): no address, no carers, no involvements, unless a shielding role overrides the
shield with a break-the-glass reason, which the index investigates and the audit marks.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any, Generic, TypeVar

import orjson
from flask import Blueprint, Flask, Response, current_app, request

from connectors.contactpoint import (
    CONTACTPOINT_FAULTS,
    SERVICES,
    AccessLogEntry,
    ChildRecord,
    ChildSummary,
    ContactPointClient,
    IndexAccessor,
    InvolvementRequest,
    SearchQuery,
    build_contactpoint_client,
)
from connectors.errors import ConnectorError
from connectors.soap import SoapSettings
from gateway.config import Settings
from gateway.errors import BadRequest, Forbidden
from gateway.fhir.views import fhir_response
from gateway.national import feed as feeds
from gateway.national.capability import _param, _statement
from gateway.national.clients import soap_settings
from gateway.national.resources import searchset
from gateway.national.views import (
    _authorise,
    _call,
    _connector_error,
    _json_body,
    _negotiate,
    _now,
    national_base,
)
from gateway.security.audit import current_audit
from gateway.security.context import Caller
from gateway.security.http import PUBLIC, declare
from gateway.services import get_services
from vocab import systems

log = logging.getLogger("wraparound.national")

EXTENSION = "wraparound_contactpoint"
SERVICE_SYSTEM = f"{systems.BASE}/CodeSystem/child-index-service"
FAULT_SYSTEM = f"{systems.BASE}/CodeSystem/national-fault"
CARE_TEAM_ROLE = f"{systems.BASE}/CodeSystem/care-team-role"
CAF_EXISTS_EXTENSION = f"{systems.BASE}/StructureDefinition/caf-exists"
CONTACT_INDEX_TEAM_EXTENSION = f"{systems.BASE}/StructureDefinition/contact-index-team"
R_LABEL = {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R",
           "display": "restricted"}
SHIELD_ROLE = "shielding-officer"
FEED_ROLE = "la-data-feed"
REASON_HEADER = "X-Access-Reason"
MAX_COUNT = 100

bp = Blueprint("contactpoint", __name__, url_prefix="/national/contactpoint")
bp.before_request(_negotiate)
DECLARED = ("search", "read", "record_involvement", "end_involvement", "shield", "unshield",
            "audit_events", "set_lead_professional", "feed")
for _name in DECLARED:
    declare(f"contactpoint.{_name}", "national")
PUBLIC.add("contactpoint.metadata")

C = TypeVar("C")


class LazyClient(Generic[C]):
    """A national client built once, on first use, from the gateway settings."""

    def __init__(self, factory: Callable[[SoapSettings], C], settings: Settings,
                 address: str) -> None:
        self._factory = factory
        self._settings = settings
        self._address = address
        self._client: C | None = None
        self._lock = threading.Lock()

    def get(self) -> C:
        """Return the client, building it the first time."""
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._factory(soap_settings(self._settings, self._address))
                client = self._client
        return client


def national_error(exc: ConnectorError, faults: dict[str, Any]) -> Response:
    """Render a connector error; a service fault named in `faults` is coded as such."""
    response = _connector_error(exc)
    code = getattr(exc, "service_code", None)
    if code not in faults:
        return response
    body = orjson.loads(response.get_data())
    body["issue"][0]["details"] = {"coding": [{"system": FAULT_SYSTEM, "code": code}],
                                   "text": exc.code}
    return fhir_response(body, response.status_code)


@bp.errorhandler(ConnectorError)
def _error(exc: ConnectorError) -> Response:
    return national_error(exc, CONTACTPOINT_FAULTS)


def contactpoint_client() -> ContactPointClient:
    """Return the current app's child index client."""
    holder: LazyClient[ContactPointClient] = current_app.extensions[EXTENSION]
    return holder.get()


def index_accessor(caller: Caller, role: str | None = None) -> IndexAccessor:
    """Return who is calling, as the national services record it."""
    user = (caller.user or caller.client_id)[:200]
    return IndexAccessor(user_id=user, name=user, role=role or f"{caller.agency} practitioner",
                         organisation=get_services().settings.la_name[:200])


# --- FHIR shapes -----------------------------------------------------------------------------
def patient_resource(child: ChildSummary) -> dict[str, Any]:
    """Return a child index entry as a Patient (no location for a shielded child)."""
    identifiers = [{"system": systems.CHILD_INDEX_ID, "value": child.index_id}]
    if child.nhs_number:
        identifiers.append({"system": systems.NHS_NUMBER, "value": child.nhs_number})
    if child.upn:
        identifiers.append({"system": systems.UPN, "value": child.upn})
    patient: dict[str, Any] = {
        "resourceType": "Patient", "id": child.index_id,
        "extension": [{"url": CAF_EXISTS_EXTENSION, "valueBoolean": child.caf_exists}],
        "identifier": identifiers,
        "name": [{"use": "official", "family": child.family, "given": list(child.given)}],
        "gender": child.gender, "birthDate": child.birth_date.isoformat(),
    }
    if child.shielded:
        patient["meta"] = {"security": [R_LABEL]}
    elif child.address_lines or child.postcode:
        address: dict[str, Any] = {"use": "home", "line": list(child.address_lines)}
        if child.postcode:
            address["postalCode"] = child.postcode
        patient["address"] = [address]
    return patient


def record_bundle(record: ChildRecord, base: str, now: str) -> dict[str, Any]:
    """Return a child's record as a collection Bundle."""
    child = record.child
    index_id = child.index_id
    subject = {"reference": f"Patient/{index_id}"}
    resources: list[dict[str, Any]] = [patient_resource(child)]
    for n, carer in enumerate(record.carers, 1):
        person: dict[str, Any] = {
            "resourceType": "RelatedPerson", "id": f"{index_id}-carer-{n}", "patient": subject,
            "relationship": [{"text": carer.relationship}],
            "name": [{"family": carer.family, "given": [carer.given]}]}
        if carer.parental_responsibility:
            person["relationship"].append({"coding": [{
                "system": systems.PARENTAL_RESPONSIBILITY, "code": "PR"}],
                "text": "parental responsibility"})
        if carer.phone:
            person["telecom"] = [{"system": "phone", "value": carer.phone}]
        resources.append(person)
    participants: list[dict[str, Any]] = []
    others: list[dict[str, Any]] = []
    for inv in record.involvements:
        roles = [{"coding": [{"system": SERVICE_SYSTEM, "code": inv.service}]}]
        participant: dict[str, Any] = {"role": roles}
        if inv.contact_index_team:
            participant["extension"] = [{"url": CONTACT_INDEX_TEAM_EXTENSION,
                                         "valueBoolean": True}]
            participant["member"] = {"display": "contact the index team"}
            participants.append(participant)
            continue
        if inv.lead:
            roles.append({"coding": [{"system": CARE_TEAM_ROLE, "code": "lead-professional",
                                      "display": "Lead professional"}]})
        org_ref = None
        if inv.organisation_name:
            org: dict[str, Any] = {"resourceType": "Organization",
                                   "id": f"{index_id}-org-{inv.involvement_id.rsplit('-', 1)[1]}",
                                   "name": inv.organisation_name}
            if inv.organisation_code:
                org["identifier"] = [{"system": systems.SCHOOL_URN if inv.service == "school"
                                      else systems.ODS_ORGANIZATION_CODE,
                                      "value": inv.organisation_code}]
            if inv.phone and not inv.practitioner_name:
                org["telecom"] = [{"system": "phone", "value": inv.phone}]
            others.append(org)
            org_ref = {"reference": f"Organization/{org['id']}", "display": org["name"]}
        if inv.practitioner_name:
            prac: dict[str, Any] = {
                "resourceType": "Practitioner",
                "id": f"{index_id}-prac-{inv.involvement_id.rsplit('-', 1)[1]}",
                "name": [{"text": inv.practitioner_name}]}
            if inv.phone:
                prac["telecom"] = [{"system": "phone", "value": inv.phone}]
            others.append(prac)
            participant["member"] = {"reference": f"Practitioner/{prac['id']}",
                                     "display": inv.practitioner_name}
            if org_ref:
                participant["onBehalfOf"] = org_ref
        elif org_ref:
            participant["member"] = org_ref
        if inv.start_date or inv.end_date:
            participant["period"] = {k: v.isoformat() for k, v in
                                     (("start", inv.start_date), ("end", inv.end_date)) if v}
        participant["id"] = inv.involvement_id
        participants.append(participant)
    if participants:
        resources.append({"resourceType": "CareTeam", "id": f"{index_id}-involvements",
                          "status": "active", "name": "Services and practitioners involved",
                          "subject": subject, "participant": participants})
    resources.extend(others)
    return {"resourceType": "Bundle", "type": "collection", "timestamp": now,
            "entry": [{"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r}
                      for r in resources]}


def access_log_event(index_id: str, entry: AccessLogEntry) -> dict[str, Any]:
    """Return one access to a child's index record as an AuditEvent."""
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": f"{index_id}-{entry.time.strftime('%Y%m%d%H%M%S')}-{entry.operation}",
        "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110110",
                 "display": "Patient Record"},
        "subtype": [{"system": f"{systems.BASE}/CodeSystem/child-index-operation",
                     "code": entry.operation}],
        "action": "R" if entry.operation in ("getChildRecord", "getAccessLog") else "U",
        "recorded": entry.time.isoformat(),
        "agent": [{"requestor": True, "name": entry.accessor.name,
                   "altId": entry.accessor.user_id,
                   "role": [{"text": entry.accessor.role}],
                   "who": {"display": entry.accessor.organisation}}],
        "source": {"observer": {"display": "national child index"}},
        "entity": [{"what": {"reference": f"Patient/{index_id}"}}],
    }
    if entry.reason:
        event["purposeOfEvent"] = [{"text": entry.reason}]
    if entry.shield_overridden:
        event["purposeOfEvent"] = [*event.get("purposeOfEvent", []), {"coding": [{
            "system": systems.ACT_REASON, "code": "BTG", "display": "break the glass"}]}]
    return event


# --- parameters ------------------------------------------------------------------------------
def _birthdates(values: Sequence[str]) -> tuple[date | None, date | None]:
    low: date | None = None
    high: date | None = None
    for value in values:
        prefix, rest = (value[:2], value[2:]) if value[:2] in ("eq", "ge", "le", "gt", "lt") \
            else ("eq", value)
        try:
            day = date.fromisoformat(rest)
        except ValueError as exc:
            raise BadRequest("birthdate must be a full date, optionally prefixed ge, le or eq") \
                from exc
        if prefix in ("eq", "ge", "gt"):
            low = day if low is None or day > low else low
        if prefix in ("eq", "le", "lt"):
            high = day if high is None or day < high else high
    return low, high


def parse_search(pairs: Sequence[tuple[str, str]]) -> SearchQuery:
    """Turn FHIR search parameters into an index search, or raise 400."""
    fields: dict[str, Any] = {}
    birthdates: list[str] = []
    allowed = ("family", "given", "phonetic", "birthdate", "gender", "address-postalcode",
               "identifier", "_count", "_format")
    for name, raw in pairs:
        value = raw.strip()
        if name not in allowed:
            raise BadRequest(f"unknown search parameter '{name}'; use one of "
                             + ", ".join(allowed[:-1]))
        if not value:
            raise BadRequest(f"search parameter '{name}' is empty")
        if name in ("family", "given") and len(value) <= 200:
            fields[name] = value
        elif name == "phonetic":
            fields["family"], fields["phonetic"] = value[:200], True
        elif name == "birthdate":
            birthdates.append(value)
        elif name == "gender":
            fields["gender"] = value
        elif name == "address-postalcode":
            fields["postcode"] = value[:200]
        elif name == "identifier":
            system, _, ident = value.rpartition("|")
            target = {systems.CHILD_INDEX_ID: "index_id", systems.NHS_NUMBER: "nhs_number",
                      systems.UPN: "upn"}.get(system)
            if target is None:
                raise BadRequest("identifier takes the index id, NHS number or UPN system: "
                                 f"{systems.CHILD_INDEX_ID}|..., {systems.NHS_NUMBER}|..., "
                                 f"{systems.UPN}|...")
            fields[target] = ident[:200]
        elif name == "_count":
            if not value.isdigit() or not 1 <= int(value) <= MAX_COUNT:
                raise BadRequest(f"_count must be 1 to {MAX_COUNT}")
            fields["max_results"] = int(value)
    fields["birth_date_from"], fields["birth_date_to"] = _birthdates(birthdates)
    query = SearchQuery(**fields)
    if query.is_empty():
        raise BadRequest("give at least one of family, given, phonetic, birthdate, gender, "
                         "address-postalcode or identifier")
    return query


def parameters_of(body: dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """Return the value[x] of each named parameter of a Parameters body (400 for others)."""
    if body.get("resourceType") != "Parameters":
        raise BadRequest("send a Parameters resource")
    get_services().fhir.check_valid(body, "Parameters")
    out: dict[str, Any] = {}
    for param in body.get("parameter") or ():
        name = param.get("name")
        if name not in names:
            raise BadRequest(f"unknown parameter '{name}'; use " + ", ".join(names))
        values = [v for k, v in param.items() if k.startswith("value")]
        if len(values) != 1:
            raise BadRequest(f"parameter '{name}' needs one value")
        out[name] = values[0]
    return out


def _text(params: dict[str, Any], name: str) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"parameter '{name}' must be a non-empty string")
    return value.strip()[:200]


def _flag(params: dict[str, Any], name: str) -> bool:
    value = params.get(name, False)
    if not isinstance(value, bool):
        raise BadRequest(f"parameter '{name}' must be a boolean")
    return value


def _day(params: dict[str, Any], name: str) -> date | None:
    value = _text(params, name)
    try:
        return date.fromisoformat(value) if value else None
    except ValueError as exc:
        raise BadRequest(f"parameter '{name}' must be a date") from exc


def _index_id(res_id: str) -> str:
    if not (len(res_id) == 10 and res_id.startswith("CP") and res_id[2:].isdigit()):
        raise BadRequest("a child index id is CP followed by eight digits")
    return res_id


def _note(call_text: str, index_id: str | None = None) -> None:
    ctx = current_audit()
    if ctx is not None:
        ctx.description = call_text[:200]
        if index_id:
            ctx.touch(f"{national_base('contactpoint')}/Patient/{index_id}")


# --- routes ----------------------------------------------------------------------------------
def capability(base: str) -> dict[str, Any]:
    """Return the CapabilityStatement of the child index façade."""
    patient = {
        "type": "Patient",
        "documentation": "The id is the child index id. A read needs the X-Access-Reason header "
                         "and answers a Bundle of Patient, RelatedPerson, CareTeam, Organization "
                         "and Practitioner. A shielded child (meta.security R) is never matched "
                         "by postcode and never returned with a location.",
        "interaction": [{"code": "read"}, {"code": "search-type"}],
        "searchParam": [
            _param("family", "string", "Family name (prefix)"),
            _param("given", "string", "Given name (prefix)"),
            _param("phonetic", "string", "Family name, matched by sound"),
            _param("birthdate", "date", "Date of birth; ge and le give a range"),
            _param("gender", "token", "male, female, other or unknown"),
            _param("address-postalcode", "string", "Postcode (prefix)"),
            _param("identifier", "token", "Index id, NHS number or UPN (system|value)"),
        ],
        "operation": [
            {"name": n, "definition": f"{systems.BASE}/OperationDefinition/contactpoint-{n}"}
            for n in ("record-involvement", "end-involvement", "set-lead-professional", "shield",
                      "unshield", "feed")],
    }
    audit = {"type": "AuditEvent", "documentation": "Who looked at a child's index record",
             "interaction": [{"code": "search-type"}],
             "searchParam": [_param("patient", "reference", "The child index id")]}
    return _statement(base, "Wraparound façade for the ContactPoint-like national child index",
                      "Bearer token; search needs system/Patient.s, read and the operations "
                      "system/Patient.r, the access log system/AuditEvent.s; the agency's policy "
                      "must allow contactpoint (contactpoint-shield to shield, unshield or "
                      "override a shield; contactpoint-audit for the access log; "
                      "contactpoint-feed for the local authority's $feed)",
                      [patient, audit])


@bp.get("/metadata")
def metadata() -> Response:
    return fhir_response(capability(national_base("contactpoint")))


@bp.get("/Patient")
def search() -> Response:
    caller = _authorise("contactpoint", (("Patient", "search"),))
    query = parse_search(list(request.args.items(multi=True)))
    ctx = current_audit()
    if ctx is not None:
        ctx.res_type = "Patient"
    call = _call("contactpoint", "searchChildren")
    result = contactpoint_client().search(query, accessor=index_accessor(caller),
                                          message_id=call.message_id,
                                          correlation_id=call.correlation_id)
    patients = [patient_resource(c) for c in result.children]
    for patient in patients:
        if ctx is not None:
            ctx.touch(f"{national_base('contactpoint')}/Patient/{patient['id']}")
    bundle = searchset(national_base("contactpoint"), request.url, patients, now=_now())
    bundle["total"] = result.total
    return fhir_response(bundle)


@bp.get("/Patient/<res_id>")
def read(res_id: str) -> Response:
    caller = _authorise("contactpoint", (("Patient", "read"),))
    index_id = _index_id(res_id)
    reason = (request.headers.get(REASON_HEADER) or "").strip()
    override = caller.break_glass_reason is not None
    role = None
    if override:
        if not get_services().policy.may_call_national(caller, "contactpoint-shield"):
            raise Forbidden(f"the {caller.agency} agency may not override a shield")
        role = SHIELD_ROLE
    call = _call("contactpoint", "getChildRecord", None)
    _note(f"national contactpoint getChildRecord; reason: {reason[:60]}"
          + ("; shield override requested" if override else "")
          + f"; correlation id {call.correlation_id}", index_id)
    ctx = current_audit()
    if override:
        if ctx is not None:
            ctx.break_glass = True
        log.warning("child index shield override requested request_id=%s client=%s agency=%s",
                    call.correlation_id, caller.client_id, caller.agency)
    record = contactpoint_client().get_record(
        index_id, accessor=index_accessor(caller, role), reason=reason,
        override_shield=override, message_id=call.message_id,
        correlation_id=call.correlation_id)
    return fhir_response(record_bundle(record, national_base("contactpoint"), _now()))


@bp.post("/Patient/<res_id>/$record-involvement")
def record_involvement(res_id: str) -> Response:
    caller = _authorise("contactpoint", (("Patient", "read"),))
    index_id = _index_id(res_id)
    params = parameters_of(_json_body(), ("service", "organization-code", "organization-name",
                                          "practitioner-name", "phone", "lead", "consent",
                                          "start"))
    service = _text(params, "service")
    if service not in SERVICES:
        raise BadRequest("parameter 'service' must be one of " + ", ".join(SERVICES))
    involvement = InvolvementRequest(
        service=service, organisation_code=_text(params, "organization-code"),
        organisation_name=_text(params, "organization-name"),
        practitioner_name=_text(params, "practitioner-name"), phone=_text(params, "phone"),
        lead=_flag(params, "lead"), consent_recorded=_flag(params, "consent"),
        start_date=_day(params, "start"))
    call = _call("contactpoint", "recordInvolvement")
    _note(f"national contactpoint recordInvolvement {service}; correlation id "
          f"{call.correlation_id}", index_id)
    done = contactpoint_client().record_involvement(
        index_id, involvement, accessor=index_accessor(caller), message_id=call.message_id,
        correlation_id=call.correlation_id)
    return fhir_response(_involvement_parameters(index_id, done.involvement_id, done.service,
                                                 done.lead, done.start_date, done.end_date))


def _involvement_parameters(index_id: str, involvement_id: str, service: str, lead: bool,
                            start: date | None, end: date | None) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": "patient", "valueReference": {"reference": f"Patient/{index_id}"}},
        {"name": "involvement-id", "valueString": involvement_id},
        {"name": "service", "valueCoding": {"system": SERVICE_SYSTEM, "code": service}},
        {"name": "lead", "valueBoolean": lead}]
    if start:
        params.append({"name": "start", "valueDate": start.isoformat()})
    if end:
        params.append({"name": "end", "valueDate": end.isoformat()})
    return {"resourceType": "Parameters", "parameter": params}


@bp.post("/Patient/<res_id>/$end-involvement")
def end_involvement(res_id: str) -> Response:
    caller = _authorise("contactpoint", (("Patient", "read"),))
    index_id = _index_id(res_id)
    params = parameters_of(_json_body(), ("involvement-id", "end"))
    involvement_id = _text(params, "involvement-id")
    if involvement_id is None:
        raise BadRequest("parameter 'involvement-id' is required")
    call = _call("contactpoint", "endInvolvement")
    _note(f"national contactpoint endInvolvement; correlation id {call.correlation_id}",
          index_id)
    done = contactpoint_client().end_involvement(
        index_id, involvement_id, accessor=index_accessor(caller), end_date=_day(params, "end"),
        message_id=call.message_id, correlation_id=call.correlation_id)
    return fhir_response(_involvement_parameters(index_id, done.involvement_id, done.service,
                                                 done.lead, done.start_date, done.end_date))


@bp.post("/Patient/<res_id>/$set-lead-professional")
def set_lead_professional(res_id: str) -> Response:
    caller = _authorise("contactpoint", (("Patient", "read"),))
    index_id = _index_id(res_id)
    params = parameters_of(_json_body(), ("involvement-id",))
    involvement_id = _text(params, "involvement-id")
    if involvement_id is None:
        raise BadRequest("parameter 'involvement-id' is required")
    call = _call("contactpoint", "setLeadProfessional")
    _note(f"national contactpoint setLeadProfessional; correlation id {call.correlation_id}",
          index_id)
    done = contactpoint_client().set_lead_professional(
        index_id, involvement_id, accessor=index_accessor(caller), message_id=call.message_id,
        correlation_id=call.correlation_id)
    return fhir_response(_involvement_parameters(index_id, done.involvement_id, done.service,
                                                 done.lead, done.start_date, done.end_date))


@bp.post("/$feed")
def feed() -> Response:
    caller = _authorise("contactpoint-feed", (("Patient", "read"),))
    body = _json_body()
    services = get_services()
    kind = body.get("resourceType")
    if kind == "Bundle":
        batch = feeds.from_bundle(services.fhir.check_valid(body, "Bundle"))
    elif kind == "Parameters":
        batch = feeds.from_parameters(services.fhir.check_valid(body, "Parameters"),
                                      services.fhir)
    else:
        raise BadRequest("$feed takes a Bundle of Patients (and their RelatedPersons) or a "
                         "Parameters resource naming stored Patients")
    ctx = current_audit()
    if ctx is not None:
        ctx.query = None  # the Patients read to build the feed are recorded as entities
    call = _call("contactpoint", "feedChildren")
    _note(f"national contactpoint feedChildren ({len(batch.slots)} records); correlation id "
          f"{call.correlation_id}")
    ack = None
    if batch.records:
        ack = contactpoint_client().feed(
            call.message_id, batch.records, accessor=index_accessor(caller, FEED_ROLE),
            message_id=call.message_id, correlation_id=call.correlation_id)
    base = national_base("contactpoint")
    if ctx is not None and ack is not None:
        for answer in ack.records:
            if answer.index_id:
                ctx.touch(f"{base}/Patient/{answer.index_id}")
    return fhir_response(feeds.feed_response(batch, ack, base, _now()))


def _shielding(res_id: str, shielded: bool) -> Response:
    caller = _authorise("contactpoint-shield", (("Patient", "read"),))
    index_id = _index_id(res_id)
    params = parameters_of(_json_body(), ("reason",))
    reason = _text(params, "reason")
    if reason is None:
        raise BadRequest("parameter 'reason' is required")
    operation = "shield" if shielded else "unshield"
    call = _call("contactpoint", "setShielding")
    _note(f"national contactpoint setShielding ({operation}); correlation id "
          f"{call.correlation_id}", index_id)
    state = contactpoint_client().set_shielding(
        index_id, shielded, accessor=index_accessor(caller, SHIELD_ROLE), reason=reason,
        message_id=call.message_id, correlation_id=call.correlation_id)
    return fhir_response({"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueReference": {"reference": f"Patient/{state.index_id}"}},
        {"name": "shielded", "valueBoolean": state.shielded},
        {"name": "caf-exists", "valueBoolean": state.caf_exists}]})


@bp.post("/Patient/<res_id>/$shield")
def shield(res_id: str) -> Response:
    return _shielding(res_id, True)


@bp.post("/Patient/<res_id>/$unshield")
def unshield(res_id: str) -> Response:
    return _shielding(res_id, False)


@bp.get("/AuditEvent")
def audit_events() -> Response:
    caller = _authorise("contactpoint-audit", (("AuditEvent", "search"),))
    pairs = list(request.args.items(multi=True))
    names = [n for n, _ in pairs if n != "_format"]
    if names != ["patient"]:
        raise BadRequest("give the child once: patient=<index id>")
    index_id = _index_id(request.args["patient"].removeprefix("Patient/").strip())
    call = _call("contactpoint", "getAccessLog")
    _note(f"national contactpoint getAccessLog; correlation id {call.correlation_id}", index_id)
    entries = contactpoint_client().access_log(index_id, accessor=index_accessor(caller),
                                               message_id=call.message_id,
                                               correlation_id=call.correlation_id)
    events = [access_log_event(index_id, e) for e in entries]
    return fhir_response(searchset(national_base("contactpoint"), request.url, events,
                                   now=_now()))


def init_app(app: Flask, settings: Settings) -> None:
    """Register the child index façade and its client (built on first use)."""
    app.extensions[EXTENSION] = LazyClient(build_contactpoint_client, settings,
                                           settings.contactpoint_address)
    app.register_blueprint(bp)


__all__ = ["DECLARED", "EXTENSION", "LazyClient", "access_log_event", "bp",
           "contactpoint_client", "index_accessor", "init_app", "national_error",
           "parameters_of", "parse_search", "patient_resource", "record_bundle"]
