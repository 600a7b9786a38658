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
| WRAPAROUND_BASE_URL | public base URL of the gateway, for fullUrl and links; <base>/fhir is the aud of its access tokens | derived from the request |
| WRAPAROUND_MAX_BODY_BYTES | request body limit | 10485760 |
| WRAPAROUND_DEFAULT_PAGE_SIZE | search page size when `_count` is absent | 20 |
| WRAPAROUND_MAX_PAGE_SIZE | largest `_count` honoured | 500 |
| WRAPAROUND_MAX_INCLUDES | most resources added by `_include`/`_revinclude` per page | 1000 |
| WRAPAROUND_SEARCH_CACHE_SECONDS | how long a paged search result set is kept | 3600 |
| WRAPAROUND_NATIONAL_URL | base URL of the national services (mock or real) | http://127.0.0.1:8090 |
| WRAPAROUND_PDS_URL | the PDS SOAP endpoint | <national URL>/spine/pds |
| WRAPAROUND_CPIS_URL | the CP-IS SOAP endpoint | <national URL>/spine/cpis |
| WRAPAROUND_CONTACTPOINT_URL | the child index SOAP endpoint | <national URL>/contactpoint |
| WRAPAROUND_ECAF_URL | the CAF assessment store SOAP endpoint | <national URL>/ecaf |
| WRAPAROUND_NATIONAL_CONNECT_TIMEOUT | seconds to connect to a national service | 3.05 |
| WRAPAROUND_NATIONAL_READ_TIMEOUT | seconds a national service may stay silent mid-reply | 10 |
| WRAPAROUND_NATIONAL_CALL_TIMEOUT | ceiling in seconds for one whole national call | 15 |
| WRAPAROUND_NATIONAL_USERNAME | WS-Security UsernameToken sent to national services | none |
| WRAPAROUND_NATIONAL_PASSWORD | its password (PasswordText) | none |
| WRAPAROUND_LA_ODS_CODE | ODS code of the local authority the gateway serves (CP-IS uploads, queries) | LA926 |
| WRAPAROUND_LA_NAME | its name | Local authority children's services |
| WRAPAROUND_LA_OFFICE_PHONE | its office-hours children's services number | 01632 960100 |
| WRAPAROUND_LA_EMERGENCY_PHONE | its emergency duty team number | 01632 960199 |
| WRAPAROUND_CPIS_INBOUND_USERNAME | UsernameToken that inbound CP-IS notifications must carry | none (not checked) |
| WRAPAROUND_CPIS_INBOUND_PASSWORD | the password they must carry with it | none (not checked) |
| WRAPAROUND_CPIS_INBOUND_CERT | PEM certificate inbound CP-IS notifications must be signed with | none |
| WRAPAROUND_CPIS_INBOUND_REQUIRE_SIGNATURE | refuse unsigned inbound notifications (true/false) | true in production, else false |
| WRAPAROUND_DB_POOL_SIZE | Database connections kept per process, SQLite and PostgreSQL (0: open one per unit of work) | 10 |
| WRAPAROUND_RATE_LIMIT_PER_MINUTE | requests per client per minute per process (0: off) | 6000 |
| WRAPAROUND_OUTBOX_CPIS_UPLOAD | queue a CP-IS upload when a plan changes (true/false) | true |
| WRAPAROUND_OUTBOX_LEASE_SECONDS | how long a worker holds a claimed message | 30 |
| WRAPAROUND_OUTBOX_MAX_ATTEMPTS | attempts before a retryable message is dead-lettered | 12 |
| WRAPAROUND_OUTBOX_BACKOFF_SECONDS | first retry delay (doubles per attempt, with jitter) | 1 |
| WRAPAROUND_OUTBOX_BACKOFF_CAP_SECONDS | longest retry delay | 600 |
| WRAPAROUND_OUTBOX_BREAKER_FAILURES | consecutive failures that open a destination's breaker | 5 |
| WRAPAROUND_OUTBOX_BREAKER_SECONDS | how long an open breaker waits before a probe | 30 |
| WRAPAROUND_SUBSCRIPTION_HOSTS | hosts rest-hook endpoints may name (comma-separated) | 127.0.0.1,localhost outside production, none in production |
| WRAPAROUND_SUBSCRIPTION_ERROR_AFTER | consecutive failed notifications that set a Subscription to error | 3 |
| WRAPAROUND_SUBSCRIPTION_TIMEOUT | seconds a subscriber endpoint may take to answer | 5 |
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
    db_pool_size: int = 10
    # National services: per-service endpoints (None: derived from national_url) and timeouts.
    pds_url: str | None = None
    cpis_url: str | None = None
    contactpoint_url: str | None = None
    ecaf_url: str | None = None
    national_connect_timeout: float = 3.05
    national_read_timeout: float = 10.0
    national_call_timeout: float = 15.0
    national_username: str | None = None
    national_password: str | None = None
    # The local authority the gateway serves, as CP-IS knows it.
    la_ods_code: str = "LA926"
    la_name: str = "Local authority children's services"
    la_office_phone: str = "01632 960100"
    la_emergency_phone: str = "01632 960199"
    # Inbound CP-IS notifications: the WS-Security they must carry.
    cpis_inbound_username: str | None = None
    cpis_inbound_password: str | None = None
    cpis_inbound_cert: Path | None = None
    cpis_inbound_require_signature: bool | None = None  # None: required in production only
    # Reliable delivery (the outbox and its workers) and Subscriptions.
    outbox_cpis_upload: bool = True
    outbox_national_push: bool = False  # child index involvements and CAFs (gateway.national.push)
    outbox_lease_seconds: float = 30.0
    outbox_max_attempts: int = 12
    outbox_backoff_seconds: float = 1.0
    outbox_backoff_cap_seconds: float = 600.0
    outbox_breaker_failures: int = 5
    outbox_breaker_seconds: float = 30.0
    subscription_hosts: tuple[str, ...] | None = None  # None: loopback outside production
    subscription_error_after: int = 3
    subscription_timeout: float = 5.0

    @property
    def subscription_allowed_hosts(self) -> tuple[str, ...]:
        """Return the hosts a Subscription's rest-hook endpoint may name."""
        if self.subscription_hosts is not None:
            return self.subscription_hosts
        return () if self.is_production else ("127.0.0.1", "localhost")

    def replace(self, **changes: Any) -> Settings:
        """Return a copy with the given fields changed."""
        return dataclasses.replace(self, **changes)

    @property
    def is_production(self) -> bool:
        """Return True in the production environment."""
        return self.env == "production"

    @property
    def pds_address(self) -> str:
        """Return the PDS SOAP endpoint: the override, else under the national base URL."""
        return self.pds_url or f"{self.national_url.rstrip('/')}/spine/pds"

    @property
    def cpis_address(self) -> str:
        """Return the CP-IS SOAP endpoint: the override, else under the national base URL."""
        return self.cpis_url or f"{self.national_url.rstrip('/')}/spine/cpis"

    @property
    def contactpoint_address(self) -> str:
        """Return the child index SOAP endpoint: the override, else under the national base URL."""
        return self.contactpoint_url or f"{self.national_url.rstrip('/')}/contactpoint"

    @property
    def ecaf_address(self) -> str:
        """Return the assessment store SOAP endpoint: the override, else under the national URL."""
        return self.ecaf_url or f"{self.national_url.rstrip('/')}/ecaf"

    @property
    def cpis_inbound_signature_required(self) -> bool:
        """Return True when inbound CP-IS notifications must be signed."""
        if self.cpis_inbound_require_signature is None:
            return self.is_production
        return self.cpis_inbound_require_signature


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


def _float(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number") from exc
    if not value > 0:
        raise ConfigError(f"{name} must be greater than 0")
    return value


def _bool(environ: Mapping[str, str], name: str) -> bool | None:
    raw = (environ.get(name) or "").strip().lower()
    if raw == "":
        return None
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false")


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
        db_pool_size=_int(env_map, "WRAPAROUND_DB_POOL_SIZE", 10),
        pds_url=(env_map.get("WRAPAROUND_PDS_URL") or None),
        cpis_url=(env_map.get("WRAPAROUND_CPIS_URL") or None),
        contactpoint_url=(env_map.get("WRAPAROUND_CONTACTPOINT_URL") or None),
        ecaf_url=(env_map.get("WRAPAROUND_ECAF_URL") or None),
        national_connect_timeout=_float(env_map, "WRAPAROUND_NATIONAL_CONNECT_TIMEOUT", 3.05),
        national_read_timeout=_float(env_map, "WRAPAROUND_NATIONAL_READ_TIMEOUT", 10.0),
        national_call_timeout=_float(env_map, "WRAPAROUND_NATIONAL_CALL_TIMEOUT", 15.0),
        national_username=(env_map.get("WRAPAROUND_NATIONAL_USERNAME") or None),
        national_password=(env_map.get("WRAPAROUND_NATIONAL_PASSWORD") or None),
        la_ods_code=env_map.get("WRAPAROUND_LA_ODS_CODE", "LA926"),
        la_name=env_map.get("WRAPAROUND_LA_NAME", "Local authority children's services"),
        la_office_phone=env_map.get("WRAPAROUND_LA_OFFICE_PHONE", "01632 960100"),
        la_emergency_phone=env_map.get("WRAPAROUND_LA_EMERGENCY_PHONE", "01632 960199"),
        cpis_inbound_username=(env_map.get("WRAPAROUND_CPIS_INBOUND_USERNAME") or None),
        cpis_inbound_password=(env_map.get("WRAPAROUND_CPIS_INBOUND_PASSWORD") or None),
        cpis_inbound_cert=(Path(env_map["WRAPAROUND_CPIS_INBOUND_CERT"])
                           if env_map.get("WRAPAROUND_CPIS_INBOUND_CERT") else None),
        cpis_inbound_require_signature=_bool(env_map, "WRAPAROUND_CPIS_INBOUND_REQUIRE_SIGNATURE"),
        outbox_cpis_upload=_bool(env_map, "WRAPAROUND_OUTBOX_CPIS_UPLOAD") is not False,
        outbox_national_push=_bool(env_map, "WRAPAROUND_OUTBOX_NATIONAL_PUSH") is True,
        outbox_lease_seconds=_float(env_map, "WRAPAROUND_OUTBOX_LEASE_SECONDS", 30.0),
        outbox_max_attempts=_int(env_map, "WRAPAROUND_OUTBOX_MAX_ATTEMPTS", 12, minimum=1),
        outbox_backoff_seconds=_float(env_map, "WRAPAROUND_OUTBOX_BACKOFF_SECONDS", 1.0),
        outbox_backoff_cap_seconds=_float(env_map, "WRAPAROUND_OUTBOX_BACKOFF_CAP_SECONDS", 600.0),
        outbox_breaker_failures=_int(env_map, "WRAPAROUND_OUTBOX_BREAKER_FAILURES", 5, minimum=1),
        outbox_breaker_seconds=_float(env_map, "WRAPAROUND_OUTBOX_BREAKER_SECONDS", 30.0),
        subscription_hosts=(tuple(h.strip().lower() for h in
                                  env_map["WRAPAROUND_SUBSCRIPTION_HOSTS"].split(",") if h.strip())
                            if "WRAPAROUND_SUBSCRIPTION_HOSTS" in env_map else None),
        subscription_error_after=_int(env_map, "WRAPAROUND_SUBSCRIPTION_ERROR_AFTER", 3,
                                      minimum=1),
        subscription_timeout=_float(env_map, "WRAPAROUND_SUBSCRIPTION_TIMEOUT", 5.0),
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
    for url, name in ((settings.pds_address, "WRAPAROUND_PDS_URL"),
                      (settings.cpis_address, "WRAPAROUND_CPIS_URL"),
                      (settings.contactpoint_address, "WRAPAROUND_CONTACTPOINT_URL"),
                      (settings.ecaf_address, "WRAPAROUND_ECAF_URL")):
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"{name} (or WRAPAROUND_NATIONAL_URL) must be an http(s) URL")
    if max(settings.national_connect_timeout, settings.national_read_timeout) \
            > settings.national_call_timeout:
        raise ConfigError("WRAPAROUND_NATIONAL_CALL_TIMEOUT must be at least the connect and "
                          "read timeouts")
    if not all((settings.la_ods_code, settings.la_name, settings.la_office_phone,
                settings.la_emergency_phone)):
        raise ConfigError("the WRAPAROUND_LA_* settings must not be empty")
    if min(settings.outbox_lease_seconds, settings.outbox_backoff_seconds,
           settings.outbox_breaker_seconds, settings.subscription_timeout) <= 0:
        raise ConfigError("the WRAPAROUND_OUTBOX_* and WRAPAROUND_SUBSCRIPTION_TIMEOUT durations "
                          "must be positive")
    if settings.cpis_inbound_cert is not None and not settings.cpis_inbound_cert.is_file():
        raise ConfigError("WRAPAROUND_CPIS_INBOUND_CERT must name a readable PEM file")
