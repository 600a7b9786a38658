"""The mock national server, shared by every integration test that talks to it.

One mock per test process (per xdist worker), started on a free loopback port; `mock` gives a test
the same server and resets its state and faults afterwards, so tests stay independent.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from connectors.mockserver import run_in_thread

# Harness calls to the mock: generous, so a loaded machine fails no test in its setup.
ADMIN_TIMEOUT = 30


@pytest.fixture(scope="session")
def national_mock() -> Iterator[str]:
    """Start the mock national server on a free loopback port for the whole session."""
    base_url, stop = run_in_thread("127.0.0.1", 0)
    yield base_url
    stop()


@pytest.fixture(scope="session")
def mock_url(national_mock: str) -> str:
    """The session's mock national server (for tests that leave its state alone)."""
    return national_mock


@pytest.fixture
def mock(national_mock: str) -> Iterator[str]:
    """The mock's base URL, with its faults cleared and its state reset after the test."""
    yield national_mock
    requests.post(f"{national_mock}/admin/reset", timeout=ADMIN_TIMEOUT).raise_for_status()


@pytest.fixture
def inject(mock: str) -> Callable[..., dict[str, Any]]:
    """Inject a fault into the mock: inject(service="pds", kind="hang", seconds=2, ...)."""

    def add(**fault: Any) -> dict[str, Any]:
        response = requests.post(f"{mock}/admin/faults", json=fault, timeout=ADMIN_TIMEOUT)
        assert response.status_code == 201, response.text
        data: dict[str, Any] = response.json()
        return data

    return add
