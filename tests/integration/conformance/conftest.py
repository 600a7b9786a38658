"""The conformance suites against real servers: the gateway over HTTP (SQLite only, for speed;
the store contract tests cover PostgreSQL) and the mock national services."""
from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.mockserver import run_in_thread
from gateway.config import Settings


@pytest.fixture
def db_url(tmp_path: Path, sqlite_template: Path) -> str:
    """Return a clean, migrated SQLite database (this folder does not run PostgreSQL)."""
    target = tmp_path / "wraparound.sqlite"
    shutil.copy(sqlite_template, target)
    return f"sqlite:///{target}"


@pytest.fixture(scope="session")
def mock_url() -> Iterator[str]:
    """Start the mock national services on a free loopback port (the suites change no state)."""
    base_url, stop = run_in_thread("127.0.0.1", 0)
    yield base_url
    stop()


@pytest.fixture
def settings(settings: Settings, mock_url: str) -> Settings:
    """The test settings, with the national façades pointed at the mock."""
    return dataclasses.replace(settings, national_url=mock_url)
