"""The national FHIR façades (/national/pds, /national/cpis) and the inbound SOAP endpoint.

Views are thin: check the caller (scopes, then the agency's national policy), note the call for
audit, call a façade service, render. Scopes per route:

| route | scopes | policy |
| --- | --- | --- |
| GET /national/pds/Patient/{nhs} | system/Patient.r | pds |
| GET /national/pds/Patient?... | system/Patient.s | pds |
| POST /national/pds/Patient/$verify | system/Patient.r | pds |
| GET /national/cpis/Flag?... | system/Flag.s, CarePlan.s, CareTeam.s, Organization.s (what it returns) | cpis |
| GET /national/cpis/AuditEvent?... | system/Flag.s, Patient.r (the access history is part of the flag view) | cpis |
| POST /national/cpis/$upload | system/Patient.r, CarePlan.s, Flag.s (what it reads and sends) | cpis-upload |

The metadata routes and `POST /inbound/cpis/notifications` are public: the inbound endpoint is
authenticated by the message's own WS-Security (see `gateway.national.inbound`).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import orjson
from flask import Blueprint, Response, g, request

from connectors.errors import ConnectorError
from connectors.soap import new_message_id
from gateway.errors import BadRequest, Forbidden, NotAcceptable, UnsupportedMediaType
from gateway.fhir.views import JSON_TYPES, MAX_JSON_DEPTH, fhir_response, json_depth
from gateway.national.calls import CallIds
from gateway.national.capability import cpis_capability, pds_capability
from gateway.national.cpis import UploadCollector, access_type_of, accessor_for, nhs_number_param
from gateway.national.errors import connector_outcome
from gateway.national.inbound import MAX_BYTES, soap_fault
from gateway.national.pds import DemographicQuery, VerifyRequest
from gateway.national.registry import get_national
from gateway.national.resources import searchset
from gateway.security.audit import AuditContext, begin_audit, current_audit
from gateway.security.context import Caller, current_caller
from gateway.security.http import PUBLIC, declare
from gateway.services import get_services

log = logging.getLogger("wraparound.national")

bp = Blueprint("national", __name__, url_prefix="/national")
inbound_bp = Blueprint("inbound", __name__, url_prefix="/inbound")

PUBLIC_ENDPOINTS = ("national.pds_metadata", "national.cpis_metadata",
                    "inbound.cpis_notifications")
DECLARED = ("pds_read", "pds_search", "pds_verify", "cpis_flags", "cpis_audit_events",
            "cpis_upload")
for _name in DECLARED:
    declare(f"national.{_name}", "national")
PUBLIC.update(PUBLIC_ENDPOINTS)

CPIS_CHILD = ("nhs-number", "patient.identifier", "patient:identifier")
SOAP_XML = "text/xml; charset=utf-8"


# -- helpers ----------------------------------------------------------------------------------
# Public roots worked out from requests, by (scheme, Host, script root): werkzeug's host_url
# decodes the host (IDNA) on every request. Bounded, as the Host header is the client's.
_ROOTS: dict[tuple[str, str, str], str] = {}
_MAX_ROOTS = 64


def _root() -> str:
    configured = get_services().settings.base_url
    if configured:
        return configured.rstrip("/")
    environ = request.environ
    key = (environ.get("wsgi.url_scheme", ""), environ.get("HTTP_HOST", ""),
           environ.get("SERVER_NAME", "") + ":" + environ.get("SERVER_PORT", "") + "|"
           + environ.get("SCRIPT_NAME", ""))
    root = _ROOTS.get(key)
    if root is None:
        root = request.host_url.rstrip("/")
        if len(_ROOTS) < _MAX_ROOTS:
            _ROOTS[key] = root
    return root


def national_base(service: str) -> str:
    """Return the public base URL of a national façade."""
    return f"{_root()}/national/{service}"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:23] + "Z"


def _authorise(service: str, needs: Sequence[tuple[str, str]]) -> Caller:
    caller = current_caller()
    policy = get_services().policy
    for res_type, interaction in needs:
        policy.require_scope(caller, res_type, interaction)
    if not policy.may_call_national(caller, service):
        raise Forbidden(f"the {caller.agency} agency may not call the national {service} service")
    return caller


def _call(service: str, operation: str, nhs_number: str | None = None) -> CallIds:
    """Return fresh ids for a national call and note the call in the request's audit."""
    call = CallIds.fresh(g.get("request_id") or new_message_id())
    ctx = current_audit()
    if ctx is not None:
        ctx.interaction = "national"
        ctx.description = (f"national {service} {operation}; correlation id "
                           f"{call.correlation_id}; message id {call.message_id}")
        if nhs_number:
            ctx.touch(f"{national_base('pds')}/Patient/{nhs_number}")
    return call


def _json_body() -> Any:
    if (request.mimetype or "").lower() not in JSON_TYPES:
        raise UnsupportedMediaType("send FHIR JSON with Content-Type application/fhir+json")
    raw = request.get_data(cache=False)
    if not raw:
        raise BadRequest("the request body is empty")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest("the request body is not well-formed JSON") from exc
    if json_depth(body) > MAX_JSON_DEPTH:
        raise BadRequest(f"the JSON nests deeper than {MAX_JSON_DEPTH} levels")
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object holding a FHIR resource")
    return body


@bp.before_request
def _negotiate() -> None:
    fmt = request.args.get("_format")
    if fmt and fmt not in ("json", *JSON_TYPES):
        raise NotAcceptable("only FHIR JSON is served (_format=json)")


@bp.errorhandler(ConnectorError)
def _connector_error(exc: ConnectorError) -> Response:
    status, body = connector_outcome(exc, g.get("request_id"))
    ctx = current_audit()
    if ctx is not None and ctx.description:
        ctx.description += f"; failed: {exc.code}"
    log.warning("national call failed service=%s operation=%s error=%s status=%s "
                "correlation=%s", exc.service, exc.operation, exc.code, status,
                g.get("request_id"))
    return fhir_response(body, status)


# -- PDS --------------------------------------------------------------------------------------
@bp.get("/pds/metadata")
def pds_metadata() -> Response:
    return fhir_response(pds_capability(national_base("pds")))


# The variable is named like the FHIR routes' (`res_id`); here it is the NHS number.
@bp.get("/pds/Patient/<res_id>")
def pds_read(res_id: str) -> Response:
    _authorise("pds", (("Patient", "read"),))
    call = _call("pds", "getPatientDetailsByNHSNumber-v1-0", res_id)
    patient = get_national().pds.read(res_id, call)
    headers = {}
    if patient["id"] != res_id:  # superseded: PDS answered the current record
        headers["Content-Location"] = f"{national_base('pds')}/Patient/{patient['id']}"
        _touch_patient(patient["id"])
    return fhir_response(patient, headers=headers)


@bp.get("/pds/Patient")
def pds_search() -> Response:
    _authorise("pds", (("Patient", "search"),))
    pairs = list(request.args.items(multi=True))
    query = DemographicQuery.parse(pairs)
    ctx = current_audit()
    if ctx is not None:
        ctx.res_type = "Patient"
        ctx.query = urlencode(pairs)
    call = _call("pds", "getPatientDetailsBySearch-v1-0")
    patient = get_national().pds.search(query, call)
    if patient is not None:
        _touch_patient(patient["id"])
    return fhir_response(searchset(national_base("pds"), request.url,
                                   [patient] if patient else [], now=_now()))


@bp.post("/pds/Patient/$verify")
def pds_verify() -> Response:
    _authorise("pds", (("Patient", "read"),))
    parameters = get_services().fhir.check_valid(_json_body(), "Parameters")
    verify = VerifyRequest.parse(parameters)
    call = _call("pds", "verifyNHSNumber-v1-0", verify.nhs_number)
    return fhir_response(get_national().pds.verify(verify, call))


def _touch_patient(nhs_number: str) -> None:
    ctx = current_audit()
    if ctx is not None:
        ctx.touch(f"{national_base('pds')}/Patient/{nhs_number}")


# -- CP-IS ------------------------------------------------------------------------------------
@bp.get("/cpis/metadata")
def cpis_metadata() -> Response:
    return fhir_response(cpis_capability(national_base("cpis")))


@bp.get("/cpis/Flag")
def cpis_flags() -> Response:
    caller = _authorise("cpis", (("Flag", "search"), ("CarePlan", "search"),
                                 ("CareTeam", "search"), ("Organization", "search")))
    pairs = list(request.args.items(multi=True))
    nhs_number = nhs_number_param(pairs, CPIS_CHILD, allowed=("access-type",))
    access_type = access_type_of(request.headers.get("X-Access-Type"),
                                 request.args.get("access-type"))
    care_setting = (request.headers.get("X-Care-Setting") or "").strip()[:200] or None
    call = _call("cpis", f"queryChildProtection ({access_type})", nhs_number)
    flags, included = get_national().cpis.flags(
        nhs_number, access_type=access_type, accessor=accessor_for(caller, get_services().settings),
        care_setting=care_setting, call=call)
    return fhir_response(searchset(national_base("cpis"), request.url, flags, included,
                                   now=_now()))


@bp.get("/cpis/AuditEvent")
def cpis_audit_events() -> Response:
    _authorise("cpis", (("Flag", "search"), ("Patient", "read")))
    pairs = list(request.args.items(multi=True))
    nhs_number = nhs_number_param(pairs, ("patient", *CPIS_CHILD))
    call = _call("cpis", "getAccessHistory", nhs_number)
    events = get_national().cpis.access_history(nhs_number, call)
    return fhir_response(searchset(national_base("cpis"), request.url, events, now=_now()))


@bp.post("/cpis/$upload")
def cpis_upload() -> Response:
    _authorise("cpis-upload", (("Patient", "read"), ("CarePlan", "search"), ("Flag", "search")))
    body = _json_body()
    services = get_services()
    national = get_national()
    collector = UploadCollector(services.fhir, national.cpis.today)
    kind = body.get("resourceType")
    if kind == "Parameters":
        batch = collector.from_parameters(services.fhir.check_valid(body, "Parameters"))
    elif kind == "Bundle":
        batch = collector.from_bundle(services.fhir.check_valid(body, "Bundle"))
    else:
        raise BadRequest("$upload takes a Parameters resource (patient references) or a Bundle "
                         "of Flag and CarePlan resources")
    ctx = current_audit()
    if ctx is not None:
        ctx.query = None  # the reads made to collect the plans are recorded as entities
    call = _call("cpis", "uploadLocalAuthorityRecords")
    status, outcome = national.cpis.upload(batch, call)
    return fhir_response(outcome, status)


# -- inbound ----------------------------------------------------------------------------------
@inbound_bp.post("/cpis/notifications")
def cpis_notifications() -> Response:
    # Public (no bearer token), so the security layer opened no audit context: open one here;
    # the security layer's teardown closes it and its after-request hook writes it.
    ctx = AuditContext("national", request_id=g.get("request_id"),
                       description="inbound cpis notification")
    g.audit_token = begin_audit(ctx)
    try:
        length = request.content_length
        body = request.get_data(cache=False) if length is not None and length <= MAX_BYTES \
            else b""
        reply = get_national().receiver.receive(
            body, media_type=(request.mimetype or "").lower(),
            soap_action=request.headers.get("SOAPAction"), length=length)
    except Exception as exc:  # the peer gets a SOAP Fault, never an HTML page
        log.error("inbound cpis notification failed: %s request_id=%s", type(exc).__name__,
                  g.get("request_id"), exc_info=exc)
        return Response(soap_fault("Server", "internal error; send the message again"),
                        status=500, content_type=SOAP_XML)
    if reply.message_id:
        ctx.description = (f"inbound cpis {reply.kind or 'notification'}; message id "
                           f"{reply.message_id}" + ("; duplicate" if reply.duplicate else ""))
    return Response(reply.body, status=reply.status, content_type=SOAP_XML)


__all__ = ["DECLARED", "PUBLIC_ENDPOINTS", "bp", "inbound_bp", "national_base"]
