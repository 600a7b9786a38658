"""The national façades over real HTTP: the mock national server once per test session, the gateway
pointed at it with short timeouts, and helpers for the seeded children."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from gateway.config import Settings
from tests.conftest import client_as

ROOT = Path(__file__).resolve().parents[3]
SEED = ROOT / "fixtures" / "national"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
# Short enough for fast tests, long enough for a loaded machine.
CONNECT_TIMEOUT, READ_TIMEOUT, CALL_TIMEOUT = 1.0, 1.5, 3.0


@pytest.fixture
def settings(db_url: str, tmp_path: Path, mock: str) -> Settings:
    """Test settings: a clean database and the session's mock national server."""
    return Settings(env="test", data_dir=tmp_path, database_url=db_url, national_url=mock,
                    national_connect_timeout=CONNECT_TIMEOUT,
                    national_read_timeout=READ_TIMEOUT, national_call_timeout=CALL_TIMEOUT)


@pytest.fixture
def mock_state(mock: str) -> Callable[[str], dict[str, Any]]:
    """Return a service's admin state from the mock (counts, notification deliveries)."""

    def state(service: str) -> dict[str, Any]:
        data: dict[str, Any] = requests.get(f"{mock}/admin/services/{service}", timeout=30).json()
        return data

    return state


@pytest.fixture(scope="session")
def seed() -> dict[str, Any]:
    """The mock's seed data: PDS patients and CP-IS plans."""
    return {
        "pds": json.loads((SEED / "pds.json").read_text(encoding="utf-8"))["patients"],
        "cpis": json.loads((SEED / "cpis.json").read_text(encoding="utf-8")),
    }


@pytest.fixture
def child(seed: dict[str, Any]) -> dict[str, Any]:
    """A seeded child with an ordinary (unrestricted, living, current) PDS record."""
    return next(p for p in seed["pds"] if not p["sensitive"] and not p["deceased_date"]
                and not p["superseded_nhs_numbers"])


@pytest.fixture
def health(app: Flask) -> FlaskClient:
    """A client of the health agency with its usual scopes."""
    return client_as(app, "health")


@pytest.fixture
def auditor(app: Flask) -> FlaskClient:
    """A client of the auditor agency (reads AuditEvents)."""
    return client_as(app, "auditor")


def audit_events(app: Flask, auditor: FlaskClient, request_id: str) -> list[dict[str, Any]]:
    """Return the gateway AuditEvents written for one request (by its correlation id)."""
    app.extensions["wraparound"].audit.flush()
    bundle = auditor.get("/fhir/AuditEvent?_count=200").get_json()
    found = []
    for entry in bundle.get("entry", []):
        event = entry["resource"]
        details = [d for e in event.get("entity", []) for d in e.get("detail", [])]
        if any(d.get("valueString") == request_id for d in details):
            found.append(event)
    return found


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    """Run the façade tests on SQLite only: the façades' logic does not depend on the database
    (storage is tested on both databases elsewhere; the inbound notification tests, which store
    FHIR, override this to run on both)."""
    return sqlite_url
