"""Shared fixtures: real databases (SQLite and PostgreSQL), the app, clients and action helpers.

Every test that takes `db_url` runs once on SQLite and once on PostgreSQL, each time on a clean
database. PostgreSQL is the machine's real server (WRAPAROUND_TEST_POSTGRES_URL); when it is
unreachable the PostgreSQL cases are skipped locally and fail in CI.
"""
from __future__ import annotations

import os
import shutil
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from gateway import create_app
from gateway.config import Settings
from gateway.store import make_engine, upgrade
from gateway.store.schema import metadata

PG_URL = os.environ.get(
    "WRAPAROUND_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
LOOPBACK = {"127.0.0.1", "::1", "localhost"}
FHIR_JSON = "application/fhir+json"


# -- no accidental network -------------------------------------------------------------------
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _check_address(address: Any) -> None:
    if (isinstance(address, tuple) and address and isinstance(address[0], str)
            and address[0] not in LOOPBACK):
        raise RuntimeError(f"test tried to reach a non-loopback address {address[0]}")


def _guarded_connect(self: socket.socket, address: Any) -> Any:
    _check_address(address)
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> Any:
    _check_address(address)
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True, scope="session")
def _block_network() -> Iterator[None]:
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _real_connect_ex  # type: ignore[method-assign]


def free_port() -> int:
    """Return a loopback TCP port that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- databases -------------------------------------------------------------------------------
def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def _pg_admin_url() -> sa.URL:
    return sa.make_url(PG_URL).set(database="postgres")


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """Create this worker's PostgreSQL test database, migrated, and return its URL."""
    # Unique per test run as well as per worker: concurrent runs on one server never collide.
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID", "") or uuid.uuid4().hex
    name = f"wraparound_test_{run[:10]}_{_worker()}"
    try:
        admin = sa.create_engine(_pg_admin_url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        if IN_CI:
            raise
        pytest.skip(f"PostgreSQL is not reachable: {type(exc).__name__}")
    url = sa.make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a migrated, empty SQLite database file to copy per test."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.sqlite"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


def _clean_pg(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
        conn.execute(sa.text(f"TRUNCATE {names}"))
    engine.dispose()


def clean_database(request: pytest.FixtureRequest, tmp_path: Path, kind: str) -> str:
    """Return the URL of a clean, migrated database of the kind ("sqlite" or "postgres")."""
    if kind == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "wraparound.sqlite"
        shutil.copy(template, target)
        return f"sqlite:///{target}"
    url: str = request.getfixturevalue("pg_database")
    _clean_pg(url)
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Return the URL of a clean, migrated database: once SQLite, once PostgreSQL."""
    return clean_database(request, tmp_path, request.param)


@pytest.fixture
def sqlite_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Return the URL of a clean, migrated SQLite database (for dialect-independent tests)."""
    return clean_database(request, tmp_path, "sqlite")


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    """Return test settings on the clean database."""
    # No idle pooled connections: nothing is left open when a test's app goes away.
    return Settings(env="test", data_dir=tmp_path, database_url=db_url, db_pool_size=0)


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    """Return the gateway application on a clean database."""
    application = create_app(settings)
    yield application
    application.extensions["wraparound"].audit.flush()
    application.extensions["wraparound"].store.dispose()


ALL_SCOPES = ("system/*.cruds",)


def bearer(app: Flask, agency: str = "social-care", scopes: tuple[str, ...] = ALL_SCOPES) -> str:
    """Return an Authorization header value for a development token of the agency."""
    token = app.extensions["wraparound"].tokens.dev_token(agency, list(scopes))
    return f"Bearer {token}"


@pytest.fixture
def anonymous(app: Flask) -> FlaskClient:
    """Return a test client that sends no token."""
    return app.test_client()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """Return a test client acting as the social-care agency with every scope."""
    test_client = app.test_client()
    test_client.environ_base["HTTP_AUTHORIZATION"] = bearer(app)
    return test_client


def client_as(app: Flask, agency: str, scopes: tuple[str, ...] = ALL_SCOPES,
              **headers: str) -> FlaskClient:
    """Return a test client acting as another agency (and optional extra headers)."""
    test_client = app.test_client()
    test_client.environ_base["HTTP_AUTHORIZATION"] = bearer(app, agency, scopes)
    for key, value in headers.items():
        test_client.environ_base["HTTP_" + key.upper().replace("-", "_")] = value
    return test_client


class FhirActions:
    """Small action helpers over a test client."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def create(self, resource: dict[str, Any], **headers: str) -> Any:
        """POST a resource and return the response."""
        return self.client.post(f"/fhir/{resource['resourceType']}", json=resource,
                                headers={"Content-Type": FHIR_JSON, **headers})

    def created(self, resource: dict[str, Any]) -> dict[str, Any]:
        """POST a resource, check it was created, and return the stored resource."""
        resp = self.create(resource)
        assert resp.status_code == 201, resp.get_json()
        body: dict[str, Any] = resp.get_json()
        return body

    def put(self, resource: dict[str, Any], **headers: str) -> Any:
        """PUT a resource to its id."""
        return self.client.put(f"/fhir/{resource['resourceType']}/{resource['id']}",
                               json=resource, headers={"Content-Type": FHIR_JSON, **headers})

    def search(self, query: str) -> dict[str, Any]:
        """GET a search, check it succeeded, and return the Bundle."""
        resp = self.client.get(f"/fhir/{query}")
        assert resp.status_code == 200, resp.get_json()
        body: dict[str, Any] = resp.get_json()
        return body

    def ids(self, query: str) -> set[str]:
        """Return the ids of the matches of a search."""
        bundle = self.search(query)
        return {e["resource"]["id"] for e in bundle.get("entry", [])
                if e.get("search", {}).get("mode") == "match"}


@pytest.fixture
def fhir(client: FlaskClient) -> FhirActions:
    """Return FHIR action helpers."""
    return FhirActions(client)


class LiveServer:
    """The gateway served over real HTTP on a loopback port, in threads."""

    def __init__(self, app: Flask) -> None:
        self.port = free_port()
        self.server = make_server("127.0.0.1", self.port, app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"
        self.headers = {"Authorization": bearer(app), "Content-Type": FHIR_JSON}

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.thread.join(timeout=10)


@pytest.fixture
def live_server(app: Flask) -> Iterator[LiveServer]:
    """Return the app served over real HTTP on a free loopback port."""
    with LiveServer(app) as server:
        yield server


def make_patient(nhs: str = "9000000009", family: str = "Smith", given: str = "Ann",
                 **extra: Any) -> dict[str, Any]:
    """Return a realistic synthetic child."""
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs}],
        "name": [{"use": "official", "family": family, "given": [given]}],
        "gender": "female",
        "birthDate": "2015-03-04",
        "address": [{"line": ["1 Park Row"], "city": "Leeds", "postalCode": "LS1 5AB"}],
    }
    patient.update(extra)
    return patient
