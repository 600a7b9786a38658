"""The health-spine-like PDS connector (Spine Mini Services): client, models, WSDL."""

from __future__ import annotations

from connectors.pds.client import PDS_SPEC, RESPONSE_CODES, PdsClient, build_pds_client
from connectors.pds.models import (
    Address,
    GpPractice,
    LocalIdentifier,
    NhsNumberMatch,
    NhsNumberVerification,
    PdsPatient,
    PersonName,
    Telecom,
)

__all__ = [
    "PDS_SPEC",
    "RESPONSE_CODES",
    "Address",
    "GpPractice",
    "LocalIdentifier",
    "NhsNumberMatch",
    "NhsNumberVerification",
    "PdsClient",
    "PdsPatient",
    "PersonName",
    "Telecom",
    "build_pds_client",
]
