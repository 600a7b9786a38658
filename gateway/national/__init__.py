"""FHIR façades for the national services (/national/...) and the inbound SOAP endpoints."""
from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the national façades and inbound endpoints on the app."""
