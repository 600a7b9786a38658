"""Identity: golden records across agencies, Patient/$match, Patient/$everything."""
from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the identity service and its routes on the app."""
