"""National settings (endpoints, timeouts, inbound WS-Security), agency policy and client building."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connectors.soap import SoapSettings
from gateway.config import ConfigError, Settings, load_settings
from gateway.national.clients import NationalClients
from gateway.security.context import Caller
from gateway.security.policy import Policy


def test_service_urls_derive_from_the_national_url() -> None:
    settings = load_settings({"WRAPAROUND_NATIONAL_URL": "http://spine.test:9000/"})
    assert settings.pds_address == "http://spine.test:9000/spine/pds"
    assert settings.cpis_address == "http://spine.test:9000/spine/cpis"
    # Derived, not copied: a test that changes the national URL moves both services.
    moved = settings.replace(national_url="http://127.0.0.1:1")
    assert moved.pds_address == "http://127.0.0.1:1/spine/pds"


def test_overrides_and_timeouts() -> None:
    settings = load_settings({
        "WRAPAROUND_PDS_URL": "https://pds.test/smsp", "WRAPAROUND_CPIS_URL": "https://cpis.test/",
        "WRAPAROUND_NATIONAL_CONNECT_TIMEOUT": "0.5", "WRAPAROUND_NATIONAL_READ_TIMEOUT": "2",
        "WRAPAROUND_NATIONAL_CALL_TIMEOUT": "4", "WRAPAROUND_LA_ODS_CODE": "LA123",
        "WRAPAROUND_CPIS_INBOUND_USERNAME": "spine", "WRAPAROUND_CPIS_INBOUND_REQUIRE_SIGNATURE":
        "false"})
    assert (settings.pds_address, settings.cpis_address) == ("https://pds.test/smsp",
                                                             "https://cpis.test/")
    assert (settings.national_connect_timeout, settings.national_read_timeout,
            settings.national_call_timeout) == (0.5, 2.0, 4.0)
    assert settings.la_ods_code == "LA123"
    assert settings.cpis_inbound_username == "spine"
    assert settings.cpis_inbound_signature_required is False


def test_signatures_are_required_by_default_in_production_only() -> None:
    assert Settings(env="production", database_url="sqlite://").cpis_inbound_signature_required
    assert not Settings(env="development", database_url="sqlite://"
                        ).cpis_inbound_signature_required


@pytest.mark.parametrize("environ", [
    {"WRAPAROUND_NATIONAL_READ_TIMEOUT": "0"},
    {"WRAPAROUND_NATIONAL_CONNECT_TIMEOUT": "soon"},
    {"WRAPAROUND_NATIONAL_READ_TIMEOUT": "20", "WRAPAROUND_NATIONAL_CALL_TIMEOUT": "10"},
    {"WRAPAROUND_PDS_URL": "file:///etc/passwd"},
    {"WRAPAROUND_CPIS_INBOUND_REQUIRE_SIGNATURE": "perhaps"},
    {"WRAPAROUND_CPIS_INBOUND_CERT": "/no/such/certificate.pem"},
    {"WRAPAROUND_LA_NAME": ""},
], ids=["zero-timeout", "non-number", "call-below-read", "non-http", "bad-bool", "missing-cert",
        "empty-la"])
def test_refused(environ: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        load_settings(environ)


def test_certificate_path_is_read(tmp_path: Path) -> None:
    pem = tmp_path / "spine.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\n")
    assert load_settings({"WRAPAROUND_CPIS_INBOUND_CERT": str(pem)}).cpis_inbound_cert == pem


@pytest.mark.parametrize(("agency", "service", "allowed"), [
    ("social-care", "pds", True), ("social-care", "cpis", True),
    ("social-care", "cpis-upload", True), ("health", "pds", True), ("health", "cpis", True),
    ("health", "cpis-upload", False), ("youth-justice", "pds", True),
    ("youth-justice", "cpis", False), ("education", "pds", False),
    ("youth-support", "pds", False), ("auditor", "pds", False), ("unknown", "pds", False),
])
def test_which_agencies_may_call_which_services(agency: str, service: str,
                                                allowed: bool) -> None:
    caller = Caller(client_id="c", agency=agency, scopes=("system/*.cruds",))
    assert Policy.load().may_call_national(caller, service) is allowed


def test_the_gateway_itself_may_call_any_service() -> None:
    assert Policy.load().may_call_national(Caller.internal("education"), "cpis-upload")


def test_clients_are_built_once_on_first_use_with_the_settings_timeouts() -> None:
    built: list[SoapSettings] = []

    def factory(soap: SoapSettings) -> Any:
        built.append(soap)
        return object()

    settings = Settings(database_url="sqlite://", national_url="http://spine.test",
                        national_connect_timeout=0.5, national_read_timeout=2.0,
                        national_call_timeout=4.0, national_username="gw")
    clients = NationalClients(settings, pds_factory=factory, cpis_factory=factory)
    assert built == []
    assert clients.pds is clients.pds
    (soap,) = built
    assert soap.address == "http://spine.test/spine/pds"
    assert (soap.connect_timeout, soap.read_timeout, soap.operation_timeout) == (0.5, 2.0, 4.0)
    assert soap.username == "gw"
    assert clients.cpis is clients.cpis
    assert [s.address for s in built] == ["http://spine.test/spine/pds",
                                          "http://spine.test/spine/cpis"]
