"""The national service clients of one app, built once (on first use) from the gateway settings."""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from connectors.contactpoint import ContactPointClient, build_contactpoint_client
from connectors.cpis import CpisClient, build_cpis_client
from connectors.ecaf import EcafClient, build_ecaf_client
from connectors.pds import PdsClient, build_pds_client
from connectors.soap import SoapSettings
from gateway.config import Settings


def soap_settings(settings: Settings, address: str) -> SoapSettings:
    """Return the SOAP client settings for one national endpoint, timeouts from the settings."""
    return SoapSettings(
        address=address,
        connect_timeout=settings.national_connect_timeout,
        read_timeout=settings.national_read_timeout,
        operation_timeout=settings.national_call_timeout,
        username=settings.national_username,
        password=settings.national_password,
    )


class NationalClients:
    """The PDS, CP-IS, child index and CAF store clients of one app.

    Each is built the first time it is needed, once (the WSDL is parsed once per process by the
    connector layer), so an app that never calls a national service never builds one, and each
    forked server worker gets its own HTTP connection pool. Factories are injectable for tests.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        pds_factory: Callable[[SoapSettings], PdsClient] = build_pds_client,
        cpis_factory: Callable[[SoapSettings], CpisClient] = build_cpis_client,
        contactpoint_factory: Callable[[SoapSettings], ContactPointClient] = (
            build_contactpoint_client),
        ecaf_factory: Callable[[SoapSettings], EcafClient] = build_ecaf_client,
    ) -> None:
        self.settings = settings
        self._factories: dict[str, tuple[Callable[[SoapSettings], Any], str]] = {
            "pds": (pds_factory, settings.pds_address),
            "cpis": (cpis_factory, settings.cpis_address),
            "contactpoint": (contactpoint_factory, settings.contactpoint_address),
            "ecaf": (ecaf_factory, settings.ecaf_address),
        }
        self._built: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _get(self, name: str) -> Any:
        client = self._built.get(name)
        if client is None:
            with self._lock:
                client = self._built.get(name)
                if client is None:
                    factory, address = self._factories[name]
                    client = factory(soap_settings(self.settings, address))
                    self._built[name] = client
        return client

    @property
    def pds(self) -> PdsClient:
        """Return the PDS client."""
        client: PdsClient = self._get("pds")
        return client

    @property
    def cpis(self) -> CpisClient:
        """Return the CP-IS client."""
        client: CpisClient = self._get("cpis")
        return client

    @property
    def contactpoint(self) -> ContactPointClient:
        """Return the child index client."""
        client: ContactPointClient = self._get("contactpoint")
        return client

    @property
    def ecaf(self) -> EcafClient:
        """Return the CAF store client."""
        client: EcafClient = self._get("ecaf")
        return client


__all__ = ["NationalClients", "soap_settings"]
