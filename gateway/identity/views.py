"""The identity blueprint: Patient/$match and Patient/$everything at /fhir, the review queue,
split, merge, links and history at /identity. Views parse, call the service, render."""
from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import orjson
from flask import Blueprint, Response, current_app, request

from gateway.errors import BadRequest, InvalidResource, NotAcceptable, UnsupportedMediaType
from gateway.fhir.views import JSON_TYPES, MAX_JSON_DEPTH, base_url, fhir_response, json_depth
from gateway.identity.national import NationalPart
from gateway.identity.service import IdentityService
from gateway.services import get_services
from vocab import systems

EXTENSION = "wraparound_identity"
REVIEW_STATUSES = ("open", "linked", "kept-apart", "superseded", "all")
bp = Blueprint("identity", __name__)


def get_identity() -> IdentityService:
    """Return the current app's identity service."""
    service: IdentityService = current_app.extensions[EXTENSION]
    return service


def _negotiate() -> None:
    fmt = request.args.get("_format")
    if fmt and fmt not in ("json", *JSON_TYPES):
        raise NotAcceptable("only JSON is served (_format=json)")


def _body() -> Any:
    if (request.mimetype or "").lower() not in JSON_TYPES:
        raise UnsupportedMediaType("send JSON with Content-Type application/fhir+json or "
                                   "application/json")
    raw = request.get_data(cache=False)
    if not raw:
        raise BadRequest("the request body is empty")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest("the request body is not well-formed JSON") from exc
    if json_depth(body) > MAX_JSON_DEPTH:
        raise BadRequest(f"the JSON nests deeper than {MAX_JSON_DEPTH} levels")
    return body


def _int(name: str, default: int, *, maximum: int | None = None) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit():
        raise BadRequest(f"{name} must be a non-negative integer")
    value = int(raw)
    return min(value, maximum) if maximum is not None else value


def _flag(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    raise BadRequest("boolean parameters take true or false")


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status=status, mimetype="application/json")


def _ref(value: object, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise BadRequest(f"'{name}' must name a Patient (Patient/<id> or <id>)")
    return value.removeprefix("Patient/")


def _outcome_entry(part: NationalPart) -> dict[str, Any]:
    return {"resource": part.outcome, "search": {"mode": "outcome"}}


# -- Patient/$match ---------------------------------------------------------------------------
def _match_parameters(body: Any) -> tuple[dict[str, Any], bool, int | None, bool]:
    if isinstance(body, dict) and body.get("resourceType") == "Patient":
        return body, False, None, False
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise BadRequest("$match takes Parameters with a 'resource' Patient")
    resource: Any = None
    only_certain = False
    national = False
    count: int | None = None
    for param in body.get("parameter") or ():
        if not isinstance(param, dict):
            raise BadRequest("each parameter must be a JSON object")
        name = param.get("name")
        if name == "resource":
            resource = param.get("resource")
        elif name == "onlyCertainMatches":
            only_certain = _flag(param.get("valueBoolean"))
        elif name == "count":
            value = param.get("valueInteger", param.get("valuePositiveInt"))
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise BadRequest("count must be a positive integer")
            count = value
        elif name == "national":
            national = _flag(param.get("valueBoolean"))
        else:
            raise BadRequest(f"$match has no parameter '{name}'")
    if not isinstance(resource, dict) or resource.get("resourceType") != "Patient":
        raise BadRequest("$match needs a 'resource' parameter holding a Patient")
    return resource, only_certain, count, national


@bp.post("/fhir/Patient/$match")
def match() -> Response:
    """Find the children a Patient resource may be (FHIR Patient/$match)."""
    _negotiate()
    service = get_identity()
    service.require_reader("search")
    resource, only_certain, count, national = _match_parameters(_body())
    national = national or _flag(request.args.get("national", "false"))
    fhir = get_services().fhir
    issues = [i for i in fhir.validate(resource, "Patient") if i.severity in ("error", "fatal")]
    if issues:
        raise InvalidResource("the Patient to match is not valid", issues=issues, status=400)
    limit = min(count or 10, get_services().settings.max_page_size)
    hits = service.match(resource, only_certain=only_certain, count=limit)
    base = base_url()
    entries: list[dict[str, Any]] = []
    for hit in hits:
        if hit.stored.content is None:
            continue
        entries.append({
            "fullUrl": f"{base}/Patient/{hit.stored.res_id}",
            "resource": orjson.Fragment(hit.stored.content),
            "search": {"extension": [{"url": systems.MATCH_GRADE_EXTENSION,
                                      "valueCode": hit.grade}],
                       "mode": "match", "score": round(hit.probability, 4)},
        })
    total = len(entries)
    if national:
        for part, grade in service.national_match(resource):
            for found in part.resources:
                entries.append({
                    "fullUrl": f"{found['meta']['source']}/{found['resourceType']}/{found['id']}",
                    "resource": found,
                    "search": {"extension": [{"url": systems.MATCH_GRADE_EXTENSION,
                                              "valueCode": grade}], "mode": "match"}})
            if part.outcome:
                entries.append(_outcome_entry(part))
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": total,
                              "link": [{"relation": "self", "url": f"{base}/Patient/$match"}]}
    if entries:
        bundle["entry"] = entries
    return fhir_response(bundle)


# -- Patient/$everything ----------------------------------------------------------------------
@bp.get("/fhir/Patient/<res_id>/$everything")
def everything(res_id: str) -> Response:
    """Return every agency's resources for a child, as the caller may see them, paged."""
    _negotiate()
    service = get_identity()
    service.require_reader("read")
    settings = get_services().settings
    count = _int("_count", settings.default_page_size, maximum=settings.max_page_size)
    offset = _int("_offset", 0)
    types = [t.strip() for raw in request.args.getlist("_type") for t in raw.split(",")
             if t.strip()]
    national = _flag(request.args.get("national", "false"))
    page = service.everything(res_id, since=request.args.get("_since"), types=types or None,
                              count=count, offset=offset)
    base = base_url()
    entries: list[dict[str, Any]] = [{
        "fullUrl": f"{base}/{item.res_type}/{item.res_id}",
        "resource": orjson.Fragment(item.content or "{}"),
        "search": {"mode": "match"},
    } for item in page.entries]
    if national and offset == 0 and page.entries and page.entries[0].res_id == res_id:
        for part in service.national_view(page.entries[0]):
            for found in part.resources:
                entries.append({
                    "fullUrl": f"{found['meta']['source']}/{found['resourceType']}/{found['id']}",
                    "resource": found, "search": {"mode": "include"}})
            if part.outcome:
                entries.append(_outcome_entry(part))
    keep = [(k, v) for k, v in request.args.items(multi=True) if k not in ("_offset",)]
    here = f"{base}/Patient/{res_id}/$everything"

    def url(at: int) -> str:
        return f"{here}?{urlencode([*keep, ('_offset', str(at))])}"

    links = [{"relation": "self", "url": url(offset)}]
    if offset + count < page.total:
        links.append({"relation": "next", "url": url(offset + count)})
    if offset > 0:
        links.append({"relation": "previous", "url": url(max(offset - count, 0))})
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset",
                              "total": page.total, "link": links}
    if entries:
        bundle["entry"] = entries
    return fhir_response(bundle)


# -- review queue, split, merge, links, history -----------------------------------------------
@bp.get("/identity/review")
def review_queue() -> Response:
    """List possible matches waiting for a person (or, by status, those decided)."""
    service = get_identity()
    service.require_reader("read")
    status = request.args.get("status", "open")
    if status not in REVIEW_STATUSES:
        raise BadRequest(f"status must be one of {', '.join(REVIEW_STATUSES)}")
    settings = get_services().settings
    count = _int("_count", settings.default_page_size, maximum=settings.max_page_size)
    offset = _int("_offset", 0)
    items, total = service.review_queue(None if status == "all" else status, count, offset)
    return _json({"status": status, "total": total, "offset": offset, "count": count,
                  "items": items})


@bp.post("/identity/review/<res_id>")
def review_decide(res_id: str) -> Response:
    """Decide a review item: {"decision": "link" | "keep-apart", "reason": "..."}."""
    service = get_identity()
    service.require_steward()
    body = _body()
    if not isinstance(body, dict) or not isinstance(body.get("decision"), str):
        raise BadRequest("send {\"decision\": \"link\" or \"keep-apart\", \"reason\": ...}")
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise BadRequest("reason must be a string")
    return _json(service.decide(res_id, body["decision"], reason))


@bp.post("/identity/split")
def split() -> Response:
    """Take a source Patient out of its golden Patient: {"patient": "Patient/<id>"}."""
    service = get_identity()
    service.require_steward()
    body = _body()
    if not isinstance(body, dict):
        raise BadRequest("send {\"patient\": \"Patient/<source id>\", \"reason\": ...}")
    source = _ref(body.get("patient"), "patient")
    golden = service.split(source, body.get("reason") if isinstance(body.get("reason"), str)
                           else None)
    return _json({"patient": f"Patient/{source}", "golden": f"Patient/{golden}"})


@bp.post("/identity/merge")
def merge() -> Response:
    """Merge one golden Patient into another: {"from": "Patient/<id>", "into": "Patient/<id>"}."""
    service = get_identity()
    service.require_steward()
    body = _body()
    if not isinstance(body, dict):
        raise BadRequest("send {\"from\": \"Patient/<id>\", \"into\": \"Patient/<id>\"}")
    source = _ref(body.get("from"), "from")
    target = _ref(body.get("into"), "into")
    service.merge(source, target, body.get("reason") if isinstance(body.get("reason"), str)
                  else None)
    return _json({"golden": f"Patient/{target}", "retired": f"Patient/{source}"})


@bp.get("/identity/links")
def links() -> Response:
    """Show the links of a golden Patient (or of a source Patient's golden Patient)."""
    service = get_identity()
    service.require_reader("read")
    patient = _ref(request.args.get("patient"), "patient")
    return _json({"patient": f"Patient/{patient}", "links": service.links(patient)})


@bp.get("/identity/history")
def history() -> Response:
    """Show how a source or golden Patient's links changed, newest first."""
    service = get_identity()
    service.require_reader("read")
    patient = _ref(request.args.get("patient"), "patient")
    settings = get_services().settings
    count = _int("_count", settings.default_page_size, maximum=settings.max_page_size)
    offset = _int("_offset", 0)
    entries, total = service.history(patient, count, offset)
    return _json({"patient": f"Patient/{patient}", "total": total, "offset": offset,
                  "count": count, "entries": entries})


ENDPOINTS = {
    "identity.match": "operation", "identity.everything": "operation",
    "identity.review_queue": "read", "identity.review_decide": "update",
    "identity.split": "update", "identity.merge": "update",
    "identity.links": "read", "identity.history": "read",
}

__all__ = ["ENDPOINTS", "EXTENSION", "bp", "get_identity"]
