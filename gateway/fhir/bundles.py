"""Transaction and batch Bundles (POST /fhir).

A transaction is atomic: every entry is validated first, then all are applied in one database
transaction in the order DELETE, POST, PUT, GET; `urn:uuid:` fullUrls are replaced by the ids
assigned. A batch applies each entry on its own and reports each entry's outcome.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from gateway.errors import BadRequest, GatewayError, Issue, MultipleMatches, ResourceNotFound
from gateway.fhir.render import full_url, now_instant, resource_fragment
from gateway.fhir.service import (
    FhirService,
    WriteResult,
    new_id,
    parse_etag,
    rewrite_references,
    split_request_url,
    valid_id,
)
from gateway.store.base import StoredResource

ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "GET": 3, "HEAD": 3}
MAX_ENTRIES = 1000


@dataclass
class Entry:
    """One request entry of a Bundle."""

    index: int
    method: str
    url: str
    path: list[str]
    query: list[tuple[str, str]]
    full_url: str | None
    resource: dict[str, Any] | None
    if_match: str | None
    if_none_exist: str | None

    @property
    def where(self) -> str:
        """Return the entry's location for messages."""
        return f"Bundle.entry[{self.index}]"


def _parse_entries(bundle: object) -> tuple[str, list[Entry]]:
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise BadRequest("POST to the base takes a Bundle")
    btype = bundle.get("type")
    if btype not in ("transaction", "batch"):
        raise BadRequest("the Bundle type must be transaction or batch")
    raw_entries = bundle.get("entry", [])
    if not isinstance(raw_entries, list):
        raise BadRequest("Bundle.entry must be an array")
    if len(raw_entries) > MAX_ENTRIES:
        raise BadRequest(f"a Bundle may hold at most {MAX_ENTRIES} entries")
    entries: list[Entry] = []
    for i, raw in enumerate(raw_entries):
        where = f"Bundle.entry[{i}]"
        if not isinstance(raw, dict) or not isinstance(raw.get("request"), dict):
            raise BadRequest(f"{where} needs a request", issues=[
                Issue("error", "required", f"{where} needs a request", (f"{where}.request",))])
        req = raw["request"]
        method, url = req.get("method"), req.get("url")
        if method not in ORDER or not isinstance(url, str) or not url:
            raise BadRequest(f"{where}.request needs a method and a url", issues=[
                Issue("error", "invalid", f"{where}.request needs a method and a url",
                      (f"{where}.request",))])
        path, query = split_request_url(url)
        resource = raw.get("resource")
        if method in ("POST", "PUT") and not isinstance(resource, dict):
            raise BadRequest(f"{where} ({method}) needs a resource", issues=[
                Issue("error", "required", f"{where} ({method}) needs a resource",
                      (f"{where}.resource",))])
        entries.append(Entry(i, method, url, path, query, raw.get("fullUrl"),
                             resource if method in ("POST", "PUT") else None,
                             req.get("ifMatch"), req.get("ifNoneExist")))
    return btype, entries


def _target_type(service: FhirService, entry: Entry) -> str:
    if not entry.path:
        raise BadRequest(f"{entry.where}.request.url must name a resource type")
    service.resource_type(entry.path[0])
    return entry.path[0]


def _response_entry(base: str, result: WriteResult | None, status: str,
                    stored: StoredResource | None = None) -> dict[str, Any]:
    s = result.stored if result else stored
    out: dict[str, Any] = {}
    response: dict[str, Any] = {"status": status}
    if s is not None:
        if not s.deleted and s.content is not None:
            out["fullUrl"] = full_url(base, s)
            out["resource"] = resource_fragment(s)
            response["location"] = f"{s.res_type}/{s.res_id}/_history/{s.version_id}"
        response["etag"] = s.etag
        response["lastModified"] = s.last_updated
    out["response"] = response
    return out


def _status(result: WriteResult) -> str:
    return "201 Created" if result.status == 201 else "200 OK"


def process(service: FhirService, bundle: object, base: str) -> bytes:
    """Run a transaction or batch Bundle and return the response Bundle."""
    btype, entries = _parse_entries(bundle)
    if btype == "batch":
        return _batch(service, entries, base)
    return _transaction(service, entries, base)


def _transaction(service: FhirService, entries: list[Entry], base: str) -> bytes:
    seen_targets: set[str] = set()
    for entry in entries:
        rtype = _target_type(service, entry)
        if entry.resource is not None:
            service.check_valid(entry.resource, rtype, location=entry.where)
        if entry.method in ("PUT", "DELETE") and len(entry.path) == 2:
            key = f"{rtype}/{entry.path[1]}"
            if key in seen_targets:
                raise BadRequest(f"{entry.where} touches {key} twice in one transaction")
            seen_targets.add(key)
        if entry.method == "POST" and len(entry.path) != 1:
            raise BadRequest(f"{entry.where}: POST url must be a resource type")
        if (entry.method == "PUT" and len(entry.path) == 2 and entry.resource is not None
                and entry.resource.get("id") != entry.path[1]):
            raise BadRequest(f"{entry.where}: resource id must match the request url")

    def _run(tx: Any) -> list[dict[str, Any]]:
        mapping: dict[str, str] = {}
        planned: dict[int, tuple[str, str | None]] = {}  # index -> (type, id or None if matched)
        matched: dict[int, StoredResource] = {}
        for entry in entries:
            rtype = entry.path[0]
            if entry.method == "POST":
                if entry.if_none_exist:
                    query = service.parse_query(rtype, split_request_url(
                        "?" + entry.if_none_exist.split("?", 1)[-1])[1])
                    tx.lock(f"conditional:{rtype}")
                    ids = tx.search_ids(query, limit=2)
                    if len(ids) > 1:
                        raise MultipleMatches(f"{entry.where}: ifNoneExist matched more than one")
                    if ids:
                        matched[entry.index] = tx.get(rtype, ids[0])
                        planned[entry.index] = (rtype, ids[0])
                        _map(mapping, entry, rtype, ids[0])
                        continue
                rid = new_id()
                planned[entry.index] = (rtype, rid)
                _map(mapping, entry, rtype, rid)
            elif entry.method == "PUT" and len(entry.path) == 1:
                query = service.parse_query(rtype, entry.query)
                tx.lock(f"conditional:{rtype}")
                ids = tx.search_ids(query, limit=2)
                if len(ids) > 1:
                    raise MultipleMatches(f"{entry.where}: conditional update matched more than one")
                assert entry.resource is not None
                rid = ids[0] if ids else (entry.resource.get("id") or new_id())
                planned[entry.index] = (rtype, rid)
                _map(mapping, entry, rtype, rid)
            elif entry.method == "PUT":
                planned[entry.index] = (rtype, entry.path[1])
                _map(mapping, entry, rtype, entry.path[1])
        results: dict[int, dict[str, Any]] = {}
        for entry in sorted(entries, key=lambda e: (ORDER[e.method], e.index)):
            try:
                results[entry.index] = _apply(service, tx, entry, mapping, planned, matched, base)
            except GatewayError as exc:
                exc.issues = [Issue(i.severity, i.code, f"{entry.where}: {i.diagnostics}",
                                    i.expression) for i in exc.issues]
                raise
        return [results[e.index] for e in entries]

    response_entries = service._store_write(_run)
    return orjson.dumps({"resourceType": "Bundle", "type": "transaction-response",
                         "meta": {"lastUpdated": now_instant()}, "entry": response_entries})


def _map(mapping: dict[str, str], entry: Entry, rtype: str, rid: str) -> None:
    if entry.full_url:
        mapping[entry.full_url] = f"{rtype}/{rid}"


def _apply(service: FhirService, tx: Any, entry: Entry, mapping: dict[str, str],
           planned: dict[int, tuple[str, str | None]], matched: dict[int, StoredResource],
           base: str) -> dict[str, Any]:
    rtype = entry.path[0]
    if entry.method == "DELETE":
        if len(entry.path) != 2:
            raise BadRequest("conditional delete is not supported in a transaction")
        deleted = service._delete_in(tx, rtype, entry.path[1], parse_etag(entry.if_match))
        return _response_entry(base, None, "204 No Content", deleted)
    if entry.method == "GET" or entry.method == "HEAD":
        if len(entry.path) == 2:
            stored = tx.get(rtype, entry.path[1])
            if stored is None or stored.deleted:
                raise ResourceNotFound(f"{rtype}/{entry.path[1]} is not known")
            return _response_entry(base, None, "200 OK", stored)
        raise BadRequest("only reads are supported as GET entries of a transaction")
    assert entry.resource is not None
    body = rewrite_references(entry.resource, mapping)
    if entry.method == "POST":
        if entry.index in matched:
            return _response_entry(base, WriteResult(matched[entry.index], 200), "200 OK")
        _, rid = planned[entry.index]
        result = service._create_in(tx, rtype, body, None, res_id=rid)
        return _response_entry(base, result, _status(result))
    _, rid = planned[entry.index]
    assert rid is not None
    if not valid_id(rid):
        raise BadRequest("the resource id is not a valid FHIR id")
    body = dict(body, id=rid)
    result = service._update_in(tx, rtype, rid, body, parse_etag(entry.if_match))
    return _response_entry(base, result, _status(result))


def _batch(service: FhirService, entries: list[Entry], base: str) -> bytes:
    out: list[dict[str, Any]] = []
    for entry in entries:
        try:
            out.append(_batch_entry(service, entry, base))
        except GatewayError as exc:
            out.append({"response": {"status": str(exc.status), "outcome": exc.outcome()}})
    return orjson.dumps({"resourceType": "Bundle", "type": "batch-response",
                         "meta": {"lastUpdated": now_instant()}, "entry": out})


def _batch_entry(service: FhirService, entry: Entry, base: str) -> dict[str, Any]:
    rtype = _target_type(service, entry)
    if entry.method == "POST":
        if len(entry.path) != 1:
            raise BadRequest("POST url must be a resource type")
        result = service.create(rtype, entry.resource, if_none_exist=entry.if_none_exist)
        return _response_entry(base, result, _status(result))
    if entry.method == "PUT":
        if len(entry.path) == 1:
            result = service.conditional_update(rtype, entry.query, entry.resource,
                                                if_match=entry.if_match)
        else:
            result = service.update(rtype, entry.path[1], entry.resource, if_match=entry.if_match)
        return _response_entry(base, result, _status(result))
    if entry.method == "DELETE":
        if len(entry.path) != 2:
            raise BadRequest("conditional delete is not supported")
        deleted = service.delete(rtype, entry.path[1], if_match=entry.if_match)
        return _response_entry(base, None, "204 No Content", deleted)
    if len(entry.path) == 2:
        return _response_entry(base, None, "200 OK", service.read(rtype, entry.path[1]))
    if len(entry.path) == 4 and entry.path[2] == "_history":
        return _response_entry(base, None, "200 OK",
                               service.vread(rtype, entry.path[1], entry.path[3]))
    from gateway.fhir.render import searchset

    found = service.search(rtype, entry.query)
    return {"resource": orjson.Fragment(searchset(base, found)), "response": {"status": "200 OK"}}
