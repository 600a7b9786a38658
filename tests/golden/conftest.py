"""Golden-file fixtures: every source sample under fixtures/sources/, mapped by the built-in registry.

Golden files are rewritten only on request: `pytest tests/golden --regen-golden` (or
WRAPAROUND_REGEN_GOLDEN=1 when the whole suite runs).
"""
from __future__ import annotations

import os

import pytest

from mappings import Registry, load_registry


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--regen-golden", action="store_true", default=False,
                     help="rewrite fixtures/sources/*/golden/*.json from the current mappings")


@pytest.fixture(scope="session")
def regen_golden(request: pytest.FixtureRequest) -> bool:
    flag = request.config.getoption("--regen-golden", default=False)
    return bool(flag) or os.environ.get("WRAPAROUND_REGEN_GOLDEN") == "1"


@pytest.fixture(scope="session")
def registry() -> Registry:
    return load_registry()
