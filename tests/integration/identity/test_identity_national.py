"""Live national enrichment of $everything and $match against the mock national services.

Each national part is marked by its source; a service that fails becomes an OperationOutcome
entry and the rest of the view still arrives. (SQLite only: the database plays no part here.)
"""
from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from gateway.config import Settings
from gateway.identity.service import as_gateway
from gateway.security.context import Caller, acting_as
from tests.conftest import FHIR_JSON, client_as
from tests.integration.identity.conftest import golden_of, identity_of, store_children

NHS = "https://fhir.nhs.uk/Id/nhs-number"


@pytest.fixture
def national(national_mock: str) -> str:
    return national_mock


@pytest.fixture
def db_url(sqlite_template: Path, tmp_path: Path) -> str:
    target = tmp_path / "wraparound.sqlite"
    shutil.copy(sqlite_template, target)
    return f"sqlite:///{target}"


@pytest.fixture
def settings(db_url: str, tmp_path: Path, national: str) -> Iterator[Settings]:
    yield Settings(env="test", data_dir=tmp_path, database_url=db_url, national_url=national,
                   national_connect_timeout=1.0, national_read_timeout=2.0,
                   national_call_timeout=3.0)
    requests.post(f"{national}/admin/reset", timeout=30).raise_for_status()


@pytest.fixture
def inject(national: str) -> Callable[..., None]:
    def add(**fault: Any) -> None:
        resp = requests.post(f"{national}/admin/faults", json=fault, timeout=30)
        assert resp.status_code == 201, resp.text

    return add


@pytest.fixture
def golden(app: Flask) -> str:
    patients = store_children(app, {"C0020"})  # on a child protection plan, known to PDS
    with as_gateway():
        identity_of(app).rebuild()
    return golden_of(app, patients["child-health"])


def _national(client: FlaskClient, golden: str) -> dict[str, Any]:
    resp = client.get(f"/fhir/Patient/{golden}/$everything?national=true&_count=2")
    assert resp.status_code == 200, resp.get_json()
    bundle: dict[str, Any] = resp.get_json()
    assert len([e for e in bundle["entry"] if e["search"]["mode"] == "match"]) == 2
    out: dict[str, Any] = {}
    for entry in bundle["entry"]:
        resource = entry["resource"]
        origin = resource.get("meta", {}).get("source", "")
        if origin.startswith("urn:wraparound:national:"):
            out.setdefault(origin.rsplit(":", 1)[1], []).append(resource)
    return out


def test_everything_enriched_from_the_national_services(
        app: Flask, client: FlaskClient, golden: str, inject: Callable[..., None]) -> None:
    parts = _national(client, golden)
    pds = parts["pds"][0]
    assert pds["resourceType"] == "Patient"
    assert pds["identifier"][0] == {"system": NHS, "value": "9992995181"}
    flags = [r for r in parts["cpis"] if r["resourceType"] == "Flag"]
    assert [f["code"]["coding"][0]["code"] for f in flags] == ["CPP"]
    assert flags[0]["subject"]["reference"] == f"Patient/{golden}"
    for service in ("child-index", "ecaf"):
        assert parts[service][0]["resourceType"] == "OperationOutcome"
        assert parts[service][0]["issue"][0]["code"] == "not-supported"

    education = _national(client_as(app, "education"), golden)
    assert {p[0]["issue"][0]["code"] for s, p in education.items() if s in ("pds", "cpis")} == {
        "forbidden"}

    # A service that fails is an OperationOutcome entry; the rest of the view still arrives.
    inject(service="cpis", kind="http_error", status=503)
    parts = _national(client, golden)
    assert parts["pds"][0]["resourceType"] == "Patient"
    outcome = parts["cpis"][0]
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["severity"] == "error"
    assert "9992995181" not in str(outcome)

    services = app.extensions["wraparound"]
    services.audit.flush()
    with acting_as(Caller.internal("auditor")):
        events = services.fhir.search("AuditEvent", [("_count", "500")]).matches
    national = [e for e in events if '"code":"national"' in (e.content or "")]
    assert len(national) >= 4  # PDS and CP-IS, twice: every national call is audited


def test_match_asks_pds_when_asked(client: FlaskClient, golden: str) -> None:
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": {"resourceType": "Patient", "identifier": [
            {"system": NHS, "value": "9992995181"}]}},
        {"name": "national", "valueBoolean": True}]}
    bundle = client.post("/fhir/Patient/$match", json=body,
                         headers={"Content-Type": FHIR_JSON}).get_json()
    local = [e for e in bundle["entry"] if e["resource"]["id"] == golden]
    assert local and local[0]["search"]["extension"][0]["valueCode"] == "certain"
    national = [e for e in bundle["entry"]
                if e["resource"].get("meta", {}).get("source") == "urn:wraparound:national:pds"]
    assert national and national[0]["resource"]["identifier"][0]["value"] == "9992995181"
    assert bundle["total"] == 1  # the national entry is extra, not a stored match
