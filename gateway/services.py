"""The service registry built once by create_app and reached from views through get_services()."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import current_app

from gateway.config import Settings
from gateway.fhir.registry import Registry
from gateway.fhir.service import FhirService
from gateway.ingest.service import IngestService
from gateway.security.audit import AuditTrail
from gateway.security.policy import Policy
from gateway.store.sql import SqlResourceStore


@dataclass
class Services:
    """Everything a request handler may need, chosen by configuration."""

    settings: Settings
    registry: Registry
    store: SqlResourceStore
    fhir: FhirService
    ingest: IngestService
    policy: Policy
    audit: AuditTrail
    tokens: Any


def get_services() -> Services:
    """Return the current application's services."""
    services: Services = current_app.extensions["wraparound"]
    return services
