"""The national services of one app: clients, façades and the inbound receiver, made by init_app."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flask import current_app

from gateway.national.clients import NationalClients
from gateway.national.cpis import CpisFacade
from gateway.national.inbound import NotificationReceiver
from gateway.national.pds import PdsFacade
from gateway.services import Services

EXTENSION = "wraparound_national"


@dataclass
class NationalServices:
    """Everything the national views need."""

    clients: NationalClients
    pds: PdsFacade
    cpis: CpisFacade
    receiver: NotificationReceiver


def build_national(services: Services, *, fhir_base: Callable[[], str],
                   clients: NationalClients | None = None) -> NationalServices:
    """Build the national services from the gateway's settings (clients are built on first use)."""
    settings = services.settings
    clients = clients or NationalClients(settings)
    certificate = (settings.cpis_inbound_cert.read_bytes()
                   if settings.cpis_inbound_cert is not None else None)
    return NationalServices(
        clients=clients,
        pds=PdsFacade(lambda: clients.pds),
        cpis=CpisFacade(lambda: clients.cpis, settings),
        receiver=NotificationReceiver(services, fhir_base=fhir_base, certificate_pem=certificate),
    )


def get_national() -> NationalServices:
    """Return the current app's national services."""
    national: NationalServices = current_app.extensions[EXTENSION]
    return national


__all__ = ["EXTENSION", "NationalServices", "build_national", "get_national"]
