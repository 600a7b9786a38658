"""Helpers shared by the ingest integration tests: the five sources, requests and stored rows."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from gateway.store.schema import resource_history, resources

ROOT = Path(__file__).resolve().parents[3]
SOURCES_DIR = ROOT / "fixtures" / "sources"
CONTENT_TYPES = {".csv": "text/csv", ".xml": "application/xml", ".json": "application/json"}
# source -> the agency the policy lets ingest it
AGENCIES = {"social-care": "social-care", "school": "education", "youth-justice": "youth-justice",
            "child-health": "health", "youth-support": "youth-support"}
COUNTS_URL = "https://wraparound.example.org/fhir/StructureDefinition/ingest-counts"
LOCAL_PREFIX = "https://wraparound.example.org/fhir/Id/local/"
NOT_INGESTED = ("AuditEvent",)  # written by the audit trail for every request
# Golden Patients are written by the identity service during ingest, not mapped from a source.
GOLDEN_SOURCE = "urn:wraparound:identity"


def sample(source: str) -> tuple[bytes, str]:
    """Return the source's main sample export and its Content-Type."""
    path = next((SOURCES_DIR / source).glob("sample.*"))
    return path.read_bytes(), CONTENT_TYPES[path.suffix]


def post(client: FlaskClient, source: str, data: bytes, content_type: str | None, *,
         dry_run: bool = False) -> Any:
    """POST an export to /ingest/{source}."""
    headers = {"Content-Type": content_type} if content_type else {}
    query = "?dry-run=true" if dry_run else ""
    return client.post(f"/ingest/{source}{query}", data=data, headers=headers)


def counts(outcome: dict[str, Any]) -> dict[str, int]:
    """Return the ingest-counts extension of an ingest OperationOutcome."""
    assert outcome["resourceType"] == "OperationOutcome", outcome
    (ext,) = [e for e in outcome.get("extension", []) if e["url"] == COUNTS_URL]
    return {e["url"]: e["valueInteger"] for e in ext["extension"]}


def errors(outcome: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the error issues of an OperationOutcome."""
    return [i for i in outcome["issue"] if i["severity"] in ("error", "fatal")]


def dry_run_parts(bundle: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Split a dry-run Bundle into its resources and its closing OperationOutcome."""
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
    *entries, last = bundle["entry"]
    return [e["resource"] for e in entries], last["resource"]


def _engine(app: Flask) -> sa.Engine:
    app.extensions["wraparound"].audit.flush()
    engine: sa.Engine = app.extensions["wraparound"].store.engine
    return engine


def stored(app: Flask) -> dict[tuple[str, str], dict[str, Any]]:
    """Return every current ingested resource, by (type, id), as stored."""
    with _engine(app).connect() as conn:
        rows = conn.execute(sa.select(resources.c.res_type, resources.c.res_id,
                                      resources.c.content)
                            .where(resources.c.res_type.not_in(NOT_INGESTED))).all()
    return {(t, i): orjson.loads(c) for t, i, c in rows
            if c is not None and GOLDEN_SOURCE not in c}


def version_count(app: Flask) -> int:
    """Return how many versions of ingested resources the history holds."""
    with _engine(app).connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(resource_history)
                                .where(resource_history.c.res_type.not_in(NOT_INGESTED),
                                       sa.or_(resource_history.c.content.is_(None),
                                              resource_history.c.content.not_like(
                                                  f"%{GOLDEN_SOURCE}%"))))
                   .scalar_one())


def local_ids(resources_: list[dict[str, Any]], source: str) -> set[str]:
    """Return the source's own record ids named by the Provenances among the resources."""
    return {e["what"]["identifier"]["value"] for r in resources_
            if r["resourceType"] == "Provenance" for e in r["entity"]
            if e["what"]["identifier"]["system"].startswith(LOCAL_PREFIX + source + "/")}


def match_ids(client: FlaskClient, query: str) -> set[str]:
    """Return the ids of the matches of a FHIR search, golden Patients left out."""
    resp = client.get(f"/fhir/{query}")
    assert resp.status_code == 200, resp.get_json()
    return {e["resource"]["id"] for e in resp.get_json().get("entry", [])
            if e.get("search", {}).get("mode") == "match"
            and e["resource"].get("meta", {}).get("source") != GOLDEN_SOURCE}
