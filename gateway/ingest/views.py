"""POST /ingest/{source}: a local system sends an export in its own format."""
from __future__ import annotations

from typing import Any

import orjson
from flask import Blueprint, Response, request

from gateway.errors import ResourceNotFound, UnsupportedMediaType
from gateway.fhir.views import fhir_response
from gateway.ingest.service import report_outcome
from gateway.services import get_services
from mappings import MappingsError

bp = Blueprint("ingest", __name__, url_prefix="/ingest")
ACCEPTED = ("text/csv", "application/csv", "application/json", "application/x-ndjson",
            "application/ndjson", "application/xml", "text/xml")


@bp.get("")
def sources() -> Response:
    """List the source systems that can be ingested."""
    return Response(orjson.dumps({"sources": get_services().ingest.sources()}),
                    mimetype="application/json")


@bp.post("/<source>")
def ingest(source: str) -> Response:
    """Map, validate and (unless dry-run) store every record of the export."""
    service = get_services().ingest
    if source not in service.sources():
        raise ResourceNotFound(f"no mapping is registered for source '{source}'")
    if (request.mimetype or "") not in ACCEPTED:
        raise UnsupportedMediaType(
            "send the export as text/csv, application/json, application/x-ndjson or "
            "application/xml")
    dry_run = request.args.get("dry-run", "false").lower() in ("true", "1", "yes")
    try:
        report = service.run(source, request.stream, request.content_type, dry_run=dry_run,
                             collect=dry_run)
    except MappingsError as exc:
        raise UnsupportedMediaType(str(exc)) from exc
    outcome = report_outcome(report)
    status = 200 if not report.rejected else (422 if not (
        report.counts["created"] or report.counts["updated"] or report.counts["unchanged"]
        or report.counts["valid"]) else 200)
    if not dry_run:
        return fhir_response(outcome, status)
    # Records share resources (a team, a worker, a school): one entry per resource, as stored
    # (the last record's version wins), since a Bundle's fullUrls must be unique (bdl-7).
    by_url: dict[str, dict[str, Any]] = {}
    for o in report.outcomes:
        if o.status == "valid":
            for r in o.resources:
                by_url[f"urn:wraparound:{r['resourceType']}/{r['id']}"] = r
    entries: list[dict[str, Any]] = [{"fullUrl": url, "resource": r} for url, r in by_url.items()]
    entries.append({"resource": outcome})
    return fhir_response({"resourceType": "Bundle", "type": "collection", "entry": entries},
                         status)
