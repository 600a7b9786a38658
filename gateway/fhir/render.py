"""Render responses: stored JSON is embedded as it is, never re-serialised through models."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode

import orjson

from gateway.fhir.service import SearchResult
from gateway.store.base import StoredResource


def now_instant() -> str:
    """Return the current time as a FHIR instant."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:23] + "Z"


def http_date(instant: str) -> str:
    """Return a FHIR instant as an HTTP date (for Last-Modified)."""
    dt = datetime.strptime(instant[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return format_datetime(dt, usegmt=True)


def resource_fragment(stored: StoredResource) -> orjson.Fragment:
    """Return the stored JSON text as a fragment to embed in a larger document."""
    assert stored.content is not None
    return orjson.Fragment(stored.content.encode("utf-8"))


def full_url(base: str, stored: StoredResource) -> str:
    """Return the absolute URL of a resource."""
    return f"{base}/{stored.res_type}/{stored.res_id}"


def searchset(base: str, result: SearchResult) -> bytes:
    """Return a searchset Bundle with paging links for a search result."""
    path = f"{base}/{result.query.res_type}"
    links = [{"relation": "self", "url": _page_url(path, result, result.offset, self_link=True)}]
    if result.search_set:
        if result.offset + result.count < result.total:
            links.append({"relation": "next",
                          "url": _page_url(path, result, result.offset + result.count)})
        if result.offset > 0:
            links.append({"relation": "previous",
                          "url": _page_url(path, result, max(result.offset - result.count, 0))})
    entries: list[dict[str, Any]] = []
    for stored in result.matches:
        entries.append({"fullUrl": full_url(base, stored), "resource": resource_fragment(stored),
                        "search": {"mode": "match"}})
    for stored in result.included:
        entries.append({"fullUrl": full_url(base, stored), "resource": resource_fragment(stored),
                        "search": {"mode": "include"}})
    if result.query.warnings:
        entries.append({"resource": {
            "resourceType": "OperationOutcome",
            "issue": [i.to_fhir() for i in result.query.warnings]},
            "search": {"mode": "outcome"}})
    bundle: dict[str, Any] = {
        "resourceType": "Bundle", "type": "searchset", "meta": {"lastUpdated": now_instant()},
        "total": result.total, "link": links,
    }
    if entries:
        bundle["entry"] = entries
    return orjson.dumps(bundle)


def _page_url(path: str, result: SearchResult, offset: int, *, self_link: bool = False) -> str:
    if result.search_set and not (self_link and result.offset == 0):
        return f"{path}?" + urlencode(
            {"_getpages": result.search_set, "_offset": offset, "_count": result.count})
    return f"{path}?{urlencode(result.self_params)}" if result.self_params else path


def history_bundle(base: str, path: str, entries: Sequence[StoredResource], total: int | None,
                   offset: int, count: int, before: str) -> bytes:
    """Return a history Bundle, newest first, with paging links pinned to `before`."""
    def page(off: int) -> str:
        return f"{path}?" + urlencode({"_count": count, "_offset": off,
                                       "_before": before[:23] + "Z"})

    links = [{"relation": "self", "url": page(offset)}]
    if total is None or offset + count < total:
        links.append({"relation": "next", "url": page(offset + count)})
    if offset > 0:
        links.append({"relation": "previous", "url": page(max(offset - count, 0))})
    out_entries: list[dict[str, Any]] = []
    for stored in entries:
        url = f"{stored.res_type}/{stored.res_id}"
        entry: dict[str, Any] = {"fullUrl": f"{base}/{url}"}
        if not stored.deleted:
            entry["resource"] = resource_fragment(stored)
        method = stored.method or ("DELETE" if stored.deleted else "PUT")
        entry["request"] = {"method": method, "url": url if method != "POST" else stored.res_type}
        entry["response"] = {
            "status": "204" if stored.deleted else ("201" if stored.version_id == 1 else "200"),
            "etag": stored.etag, "lastModified": stored.last_updated,
        }
        out_entries.append(entry)
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "history",
                              "meta": {"lastUpdated": now_instant()}}
    if total is not None:
        bundle["total"] = total
    bundle["link"] = links
    if out_entries:
        bundle["entry"] = out_entries
    return orjson.dumps(bundle)
