"""Wraparound: an interoperability gateway for local-authority children's services."""
from __future__ import annotations

from gateway.app import create_app
from gateway.config import Settings, load_settings

__all__ = ["Settings", "create_app", "load_settings"]
