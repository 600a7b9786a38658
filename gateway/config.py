"""Configuration: every environment variable Wraparound reads, in one function.

| variable | type | default |
| --- | --- | --- |
| WRAPAROUND_ENV | development/test/production | development |
| WRAPAROUND_DATA_DIR | path | ./data |
| WRAPAROUND_DATABASE_URL | SQLAlchemy URL | sqlite:///<data dir>/wraparound.sqlite |
| WRAPAROUND_HOST | bind host | 127.0.0.1 |
| WRAPAROUND_PORT | bind port | 8080 |
| WRAPAROUND_WORKERS | gunicorn workers | 2 |
| WRAPAROUND_LOG_LEVEL | logging level | INFO |
| WRAPAROUND_BASE_URL | public base URL of the gateway, for fullUrl and links | derived from the request |
| WRAPAROUND_MAX_BODY_BYTES | request body limit | 10485760 |
| WRAPAROUND_DEFAULT_PAGE_SIZE | search page size when `_count` is absent | 20 |
| WRAPAROUND_MAX_PAGE_SIZE | largest `_count` honoured | 500 |
| WRAPAROUND_MAX_INCLUDES | most resources added by `_include`/`_revinclude` per page | 1000 |
| WRAPAROUND_SEARCH_CACHE_SECONDS | how long a paged search result set is kept | 3600 |
| WRAPAROUND_NATIONAL_URL | base URL of the national services (mock or real) | http://127.0.0.1:8090 |
| WRAPAROUND_RATE_LIMIT_PER_MINUTE | requests per client per minute per process (0: off) | 6000 |
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENVIRONMENTS = ("development", "test", "production")


class ConfigError(ValueError):
    """Raised when configuration is missing, malformed or unsafe for the environment."""


@dataclass(frozen=True)
class Settings:
    """Every setting the gateway uses; built by `load_settings`, overridden in tests."""

    env: str = "development"
    data_dir: Path = Path("data")
    database_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 2
    log_level: str = "INFO"
    base_url: str | None = None
    max_body_bytes: int = 10 * 1024 * 1024
    default_page_size: int = 20
    max_page_size: int = 500
    max_includes: int = 1000
    search_cache_seconds: int = 3600
    national_url: str = "http://127.0.0.1:8090"
    rate_limit_per_minute: int = 6000

    def replace(self, **changes: Any) -> Settings:
        """Return a copy with the given fields changed."""
        return dataclasses.replace(self, **changes)

    @property
    def is_production(self) -> bool:
        """Return True in the production environment."""
        return self.env == "production"


def _int(environ: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer") from exc
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}")
    return value


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from the environment (os.environ when none is given)."""
    env_map: Mapping[str, str] = os.environ if environ is None else environ
    env = env_map.get("WRAPAROUND_ENV", "development")
    if env not in ENVIRONMENTS:
        raise ConfigError(f"WRAPAROUND_ENV must be one of {', '.join(ENVIRONMENTS)}")
    data_dir = Path(env_map.get("WRAPAROUND_DATA_DIR", "data"))
    database_url = env_map.get("WRAPAROUND_DATABASE_URL") or (
        f"sqlite:///{(data_dir / 'wraparound.sqlite').resolve()}"
    )
    settings = Settings(
        env=env,
        data_dir=data_dir,
        database_url=database_url,
        host=env_map.get("WRAPAROUND_HOST", "127.0.0.1"),
        port=_int(env_map, "WRAPAROUND_PORT", 8080, minimum=0),
        workers=_int(env_map, "WRAPAROUND_WORKERS", 2, minimum=1),
        log_level=env_map.get("WRAPAROUND_LOG_LEVEL", "INFO").upper(),
        base_url=(env_map.get("WRAPAROUND_BASE_URL") or None),
        max_body_bytes=_int(env_map, "WRAPAROUND_MAX_BODY_BYTES", 10 * 1024 * 1024, minimum=1024),
        default_page_size=_int(env_map, "WRAPAROUND_DEFAULT_PAGE_SIZE", 20, minimum=1),
        max_page_size=_int(env_map, "WRAPAROUND_MAX_PAGE_SIZE", 500, minimum=1),
        max_includes=_int(env_map, "WRAPAROUND_MAX_INCLUDES", 1000, minimum=0),
        search_cache_seconds=_int(env_map, "WRAPAROUND_SEARCH_CACHE_SECONDS", 3600, minimum=1),
        national_url=env_map.get("WRAPAROUND_NATIONAL_URL", "http://127.0.0.1:8090").rstrip("/"),
        rate_limit_per_minute=_int(env_map, "WRAPAROUND_RATE_LIMIT_PER_MINUTE", 6000),
    )
    check_settings(settings)
    return settings


def check_settings(settings: Settings) -> None:
    """Refuse settings that are inconsistent or unsafe for their environment."""
    if settings.default_page_size > settings.max_page_size:
        raise ConfigError("WRAPAROUND_DEFAULT_PAGE_SIZE exceeds WRAPAROUND_MAX_PAGE_SIZE")
    if settings.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError("WRAPAROUND_LOG_LEVEL must be a logging level name")
    if settings.is_production and settings.log_level == "DEBUG":
        raise ConfigError("DEBUG logging is refused in production: it can write personal data")
    if not settings.database_url:
        raise ConfigError("WRAPAROUND_DATABASE_URL is empty")
