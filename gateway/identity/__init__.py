"""Identity: golden records across agencies, Patient/$match, Patient/$everything.

    IdentityService   golden Patients, matching on ingest, rebuild, review, split/merge, report
    MatchModel        Fellegi–Sunter weights and thresholds (data: weights.yaml, nicknames.yaml)
    get_identity()    the current app's identity service
"""
from __future__ import annotations

from flask import Flask

from gateway.identity.matching import MatchModel
from gateway.identity.service import IdentityService, Resolution


def init_app(app: Flask) -> None:
    """Register the identity service and its routes on the app."""
    from gateway.identity.views import ENDPOINTS, EXTENSION, bp
    from gateway.security.http import declare

    services = app.extensions["wraparound"]
    app.extensions[EXTENSION] = IdentityService(services.fhir, services.settings)
    services.ingest.identity = app.extensions[EXTENSION]
    for endpoint, interaction in ENDPOINTS.items():
        declare(endpoint, interaction)
    app.register_blueprint(bp)


def get_identity() -> IdentityService:
    """Return the current app's identity service."""
    from gateway.identity.views import get_identity as _get

    return _get()


__all__ = ["IdentityService", "MatchModel", "Resolution", "get_identity", "init_app"]
