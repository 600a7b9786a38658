"""The FHIR REST blueprint at /fhir: parse the request, call the service, render the answer."""
from __future__ import annotations

from typing import Any

import orjson
from flask import Blueprint, Response, request

from gateway.errors import (
    BadRequest,
    MethodNotAllowed,
    NotAcceptable,
    ResourceNotFound,
    UnsupportedMediaType,
    operation_outcome,
)
from gateway.fhir import bundles, render
from gateway.fhir.capability import capability_statement
from gateway.fhir.service import FhirService, WriteResult
from gateway.services import get_services
from gateway.store.base import StoredResource

FHIR_JSON = "application/fhir+json"
MAX_JSON_DEPTH = 64
JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")
bp = Blueprint("fhir", __name__, url_prefix="/fhir")


def fhir_response(body: bytes | dict[str, Any], status: int = 200,
                  headers: dict[str, str] | None = None) -> Response:
    """Return a FHIR JSON response."""
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return Response(data, status=status, content_type=f"{FHIR_JSON}; charset=utf-8",
                    headers=headers or {})


def base_url() -> str:
    """Return the public base URL of the FHIR endpoint."""
    configured = get_services().settings.base_url
    root = configured.rstrip("/") if configured else request.host_url.rstrip("/")
    return f"{root}/fhir"


def _service() -> FhirService:
    return get_services().fhir


@bp.before_request
def _negotiate() -> None:
    fmt = request.args.get("_format")
    if fmt and fmt not in ("json", *JSON_TYPES):
        raise NotAcceptable("only FHIR JSON is served (_format=json)")
    accept = request.headers.get("Accept")
    if accept and not fmt:
        offered = {value.split(";")[0].strip().lower() for value in accept.split(",")}
        if not offered & {*JSON_TYPES, "*/*", "application/*"}:
            raise NotAcceptable("only application/fhir+json is served")
    if request.method in ("POST", "PUT", "PATCH") and not request.path.endswith("/_search"):
        ctype = (request.mimetype or "").lower()
        if ctype not in JSON_TYPES:
            raise UnsupportedMediaType("send FHIR JSON with Content-Type application/fhir+json")


def _json_body() -> Any:
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


def json_depth(value: Any) -> int:
    """Return the nesting depth of parsed JSON (iteratively: no recursion limit to hit)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in node if isinstance(v, (dict, list)))
    return deepest


def _resource_headers(stored: StoredResource, *, location: bool = False) -> dict[str, str]:
    headers = {"ETag": stored.etag, "Last-Modified": render.http_date(stored.last_updated)}
    if location:
        headers["Location"] = (
            f"{base_url()}/{stored.res_type}/{stored.res_id}/_history/{stored.version_id}")
    return headers


def _stored_response(stored: StoredResource, status: int = 200, *, location: bool = False) -> Response:
    assert stored.content is not None
    prefer = request.headers.get("Prefer", "")
    headers = _resource_headers(stored, location=location)
    if "return=minimal" in prefer and request.method != "GET":
        return Response(status=status, headers=headers)
    if "return=OperationOutcome" in prefer and request.method != "GET":
        return fhir_response(operation_outcome([]), status, headers)
    return fhir_response(stored.content.encode("utf-8"), status, headers)


def _write_response(result: WriteResult) -> Response:
    return _stored_response(result.stored, result.status, location=True)


def _lenient() -> bool:
    return "handling=lenient" in request.headers.get("Prefer", "")


@bp.get("/metadata")
def metadata() -> Response:
    return fhir_response(capability_statement(get_services().registry, base_url()))


@bp.post("")
@bp.post("/")
def transaction() -> Response:
    return fhir_response(bundles.process(_service(), _json_body(), base_url()))


@bp.get("/_history")
def system_history() -> Response:
    entries, total, offset, count, before = _service().history(None, None, list(request.args.items(multi=True)))
    return fhir_response(render.history_bundle(base_url(), f"{base_url()}/_history", entries,
                                               total, offset, count, before))


@bp.get("/<res_type>")
def search(res_type: str) -> Response:
    result = _service().search(res_type, list(request.args.items(multi=True)), lenient=_lenient())
    return fhir_response(render.searchset(base_url(), result))


@bp.post("/<res_type>/_search")
def search_post(res_type: str) -> Response:
    if request.mimetype != "application/x-www-form-urlencoded":
        raise UnsupportedMediaType("POST _search takes application/x-www-form-urlencoded")
    pairs = list(request.args.items(multi=True)) + list(request.form.items(multi=True))
    result = _service().search(res_type, pairs, lenient=_lenient())
    return fhir_response(render.searchset(base_url(), result))


@bp.post("/<res_type>")
def create(res_type: str) -> Response:
    _service().resource_type(res_type)
    result = _service().create(res_type, _json_body(),
                               if_none_exist=request.headers.get("If-None-Exist"))
    return _write_response(result)


@bp.put("/<res_type>")
def conditional_update(res_type: str) -> Response:
    _service().resource_type(res_type)
    criteria = list(request.args.items(multi=True))
    result = _service().conditional_update(res_type, criteria, _json_body(),
                                           if_match=request.headers.get("If-Match"))
    return _write_response(result)


@bp.get("/<res_type>/_history")
def type_history(res_type: str) -> Response:
    entries, total, offset, count, before = _service().history(
        res_type, None, list(request.args.items(multi=True)))
    return fhir_response(render.history_bundle(
        base_url(), f"{base_url()}/{res_type}/_history", entries, total, offset, count, before))


@bp.post("/<res_type>/$validate")
@bp.post("/<res_type>/<res_id>/$validate")
def validate(res_type: str, res_id: str | None = None) -> Response:
    service = _service()
    service.resource_type(res_type)
    service.require_write_scope(res_type)
    body = _json_body()
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        found = [p.get("resource") for p in body.get("parameter", []) if isinstance(p, dict)
                 and p.get("name") == "resource"]
        if not found:
            raise BadRequest("Parameters for $validate need a 'resource' parameter")
        body = found[0]
    if not isinstance(body, dict) or body.get("resourceType") != res_type:
        raise BadRequest(f"$validate on {res_type} takes a {res_type} resource")
    issues = service.validate(body, res_type)
    status = 200
    if any(i.severity in ("error", "fatal") for i in issues):
        status = 400 if any(i.code in ("structure", "invalid") for i in issues) else 422
    if not issues:
        return fhir_response({"resourceType": "OperationOutcome", "issue": [
            {"severity": "information", "code": "informational",
             "diagnostics": "the resource is valid"}]})
    return fhir_response(operation_outcome(issues), status)


@bp.get("/<res_type>/<res_id>")
def read(res_type: str, res_id: str) -> Response:
    stored = _service().read(res_type, res_id)
    etag = request.headers.get("If-None-Match")
    if etag and etag.strip() == stored.etag:
        return Response(status=304, headers=_resource_headers(stored))
    return _stored_response(stored)


@bp.put("/<res_type>/<res_id>")
def update(res_type: str, res_id: str) -> Response:
    _service().resource_type(res_type)
    result = _service().update(res_type, res_id, _json_body(),
                               if_match=request.headers.get("If-Match"))
    return _write_response(result)


@bp.delete("/<res_type>/<res_id>")
def delete(res_type: str, res_id: str) -> Response:
    deleted = _service().delete(res_type, res_id, if_match=request.headers.get("If-Match"))
    headers = {"ETag": deleted.etag} if deleted else {}
    return fhir_response(operation_outcome([]) | {"issue": [{
        "severity": "information", "code": "informational",
        "diagnostics": f"{res_type}/{res_id} deleted"}]}, 200, headers)


@bp.get("/<res_type>/<res_id>/_history")
def instance_history(res_type: str, res_id: str) -> Response:
    entries, total, offset, count, before = _service().history(
        res_type, res_id, list(request.args.items(multi=True)))
    return fhir_response(render.history_bundle(
        base_url(), f"{base_url()}/{res_type}/{res_id}/_history", entries, total, offset,
        count, before))


@bp.get("/<res_type>/<res_id>/_history/<version>")
def vread(res_type: str, res_id: str, version: str) -> Response:
    return _stored_response(_service().vread(res_type, res_id, version))


@bp.route("/<res_type>/<res_id>", methods=["PATCH"])
def patch(res_type: str, res_id: str) -> Response:
    raise MethodNotAllowed("PATCH is not supported; PUT the whole resource")


@bp.route("/<path:rest>", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
def unknown(rest: str) -> Response:
    raise ResourceNotFound("no FHIR interaction exists at this path")
