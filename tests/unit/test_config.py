"""Configuration is read in one place, typed, and refuses unsafe values."""
from __future__ import annotations

import pytest

from gateway.config import ConfigError, load_settings


def test_defaults() -> None:
    settings = load_settings({})
    assert settings.env == "development"
    assert settings.database_url.startswith("sqlite:///")
    assert settings.database_url.endswith("data/wraparound.sqlite")
    assert (settings.host, settings.port, settings.workers) == ("127.0.0.1", 8080, 2)


def test_environment_overrides() -> None:
    settings = load_settings({"WRAPAROUND_DATABASE_URL": "postgresql+psycopg://h/db",
                              "WRAPAROUND_PORT": "9000", "WRAPAROUND_LOG_LEVEL": "warning",
                              "WRAPAROUND_NATIONAL_URL": "http://127.0.0.1:9999/"})
    assert settings.database_url == "postgresql+psycopg://h/db"
    assert settings.port == 9000
    assert settings.log_level == "WARNING"
    assert settings.national_url == "http://127.0.0.1:9999"


@pytest.mark.parametrize(
    "environ",
    [
        pytest.param({"WRAPAROUND_ENV": "staging"}, id="unknown-env"),
        pytest.param({"WRAPAROUND_PORT": "eighty"}, id="non-integer"),
        pytest.param({"WRAPAROUND_WORKERS": "0"}, id="no-workers"),
        pytest.param({"WRAPAROUND_LOG_LEVEL": "LOUD"}, id="bad-level"),
        pytest.param({"WRAPAROUND_ENV": "production", "WRAPAROUND_LOG_LEVEL": "DEBUG"},
                     id="debug-in-production"),
        pytest.param({"WRAPAROUND_DEFAULT_PAGE_SIZE": "900"}, id="page-over-max"),
    ],
)
def test_refused(environ: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        load_settings(environ)
