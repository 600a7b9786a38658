"""The conformance suites against real servers: the gateway over HTTP (SQLite only, for speed;
the store contract tests cover PostgreSQL) and the mock national services."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from gateway.config import Settings


@pytest.fixture
def db_url(tmp_path: Path, sqlite_template: Path) -> str:
    """Return a clean, migrated SQLite database (this folder does not run PostgreSQL)."""
    target = tmp_path / "wraparound.sqlite"
    shutil.copy(sqlite_template, target)
    return f"sqlite:///{target}"


@pytest.fixture
def settings(settings: Settings, mock_url: str) -> Settings:
    """The test settings, with the national façades pointed at the mock."""
    return dataclasses.replace(settings, national_url=mock_url)
