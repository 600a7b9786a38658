"""Settings for one SOAP service connection, and the hardened zeep settings every client uses."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from zeep import Settings

__all__ = ["SigningSettings", "SoapSettings", "hardened_zeep_settings"]


def hardened_zeep_settings() -> Settings:
    """Return zeep settings with every XML protection switched on, stated explicitly."""
    # raw_response: zeep posts; our own hardened parser reads the reply (connectors.soap.xml).
    return Settings(
        strict=True,
        forbid_dtd=True,
        forbid_entities=True,
        forbid_external=True,
        xml_huge_tree=False,
        raw_response=True,
    )


@dataclass(frozen=True)
class SigningSettings:
    """X.509 material for signing what we send and verifying what we receive (all PEM)."""

    private_key_pem: bytes | None = None
    certificate_pem: bytes | None = None
    # The peer's pinned certificate: replies must be signed with it (KeyInfo is never trusted).
    peer_certificate_pem: bytes | None = None
    require_signed_replies: bool = False


@dataclass(frozen=True)
class SoapSettings:
    """Everything that varies between deployments of one SOAP service client."""

    address: str
    connect_timeout: float = 3.05
    read_timeout: float = 10.0
    # Hard ceiling for one call, covering slow-drip replies that keep each read under read_timeout.
    operation_timeout: float = 15.0
    wsdl_load_timeout: float = 5.0
    max_response_bytes: int = 5_000_000
    max_depth: int = 64
    username: str | None = None
    password: str | None = None
    timestamp_ttl_seconds: int = 300
    from_address: str | None = None
    verify_tls: bool | str = True
    # Read proxies and CA bundles from the environment? Off: national endpoints are configured.
    trust_env: bool = False
    client_cert: tuple[str, str] | None = None
    signing: SigningSettings = field(default_factory=SigningSettings)
    wsdl_path: Path | None = None

    def timeouts(self) -> tuple[float, float]:
        """Return the (connect, read) pair handed to requests."""
        return (self.connect_timeout, self.read_timeout)
