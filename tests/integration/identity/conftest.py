"""Identity test helpers: store fixture children, ingest the samples with the identity hook."""
from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from gateway.identity.service import IdentityService
from gateway.security.context import Caller, acting_as

ROOT = Path(__file__).resolve().parents[3]
SOURCES = ROOT / "fixtures" / "sources"
SOURCE_NAMES = ("social-care", "school", "youth-justice", "child-health", "youth-support")


def identity_of(app: Flask) -> IdentityService:
    """Return the app's identity service."""
    service: IdentityService = app.extensions["wraparound_identity"]
    return service


def golden_of(app: Flask, source_id: str) -> str:
    """Return the golden Patient id a source Patient is linked to."""
    from gateway.identity.store import get_link

    link = app.extensions["wraparound"].store.read(lambda tx: get_link(tx, source_id))
    assert link is not None, source_id
    return str(link.golden_id)


def truth() -> dict[tuple[str, str], str]:
    """Return the fixtures' ground truth: (source, record id) -> child id."""
    with (SOURCES / "truth.csv").open(encoding="utf-8") as handle:
        return {(r["source"], r["record_id"]): r["child_id"] for r in csv.DictReader(handle)}


def fixture_records(child_ids: set[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (source, record) of the expected FHIR of the given fixture children."""
    known = truth()
    for source in SOURCE_NAMES:
        data = json.loads((SOURCES / source / "golden" / "sample.json").read_text("utf-8"))
        for record in data["records"]:
            if known.get((source, record["record_id"])) in child_ids:
                yield source, record


def store_children(app: Flask, child_ids: set[str]) -> dict[str, str]:
    """Store the fixture records of some children as their agencies; return source -> Patient id."""
    services = app.extensions["wraparound"]
    patients: dict[str, str] = {}
    for source, record in fixture_records(child_ids):
        with acting_as(Caller.internal(services.ingest.agency_for(source))):
            for resource in record["resources"]:
                if resource["resourceType"] == "Provenance":  # `recorded` is volatile: not kept
                    resource = {**resource, "recorded": "2026-09-01T09:00:00Z"}
                services.fhir.update(resource["resourceType"], resource["id"], resource)
                if resource["resourceType"] == "Patient":
                    patients[source] = resource["id"]
    return patients


def ingest_samples(app: Flask, sources: tuple[str, ...] = SOURCE_NAMES) -> dict[str, dict[str, int]]:
    """Ingest sample exports as each source's agency; return the counts per source."""
    services = app.extensions["wraparound"]
    counts = {}
    for source in sources:
        sample = next((SOURCES / source).glob("sample.*"))
        with acting_as(Caller.internal(services.ingest.agency_for(source))), \
                sample.open("rb") as stream:
            report = services.ingest.run(source, stream, None)
        counts[source] = dict(report.counts)
    return counts


@pytest.fixture
def identity_hook(app: Flask) -> IdentityService:
    """The identity service ingest calls inside its transaction once each chunk is stored.

    Ingest resolves every source Patient it stores (IngestService._store_records), so these
    tests exercise the path ingest takes.
    """
    service = identity_of(app)
    assert app.extensions["wraparound"].ingest.identity is service
    return service
