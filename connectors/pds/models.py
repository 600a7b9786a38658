"""What the PDS client returns: plain dataclasses, no XML."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

__all__ = [
    "GENDER_CODES",
    "GENDER_FROM_CODE",
    "Address",
    "GpPractice",
    "LocalIdentifier",
    "NhsNumberMatch",
    "NhsNumberVerification",
    "PdsPatient",
    "PersonName",
    "Telecom",
]

# NHS Data Dictionary person gender codes (OID 2.16.840.1.113883.2.1.3.2.4.16.25) <-> FHIR.
GENDER_CODES = {"unknown": "0", "male": "1", "female": "2", "other": "9"}
GENDER_FROM_CODE = {code: gender for gender, code in GENDER_CODES.items()}


@dataclass(frozen=True)
class LocalIdentifier:
    """A local system's identifier for the person (an OID root and a value)."""

    root: str
    extension: str


@dataclass(frozen=True)
class PersonName:
    """The usual name as PDS holds it."""

    family: str | None
    given: tuple[str, ...] = ()
    prefix: str | None = None
    use: str | None = None


@dataclass(frozen=True)
class Address:
    """A postal address: up to five lines and a postcode."""

    lines: tuple[str, ...]
    postcode: str | None = None
    use: str | None = None


@dataclass(frozen=True)
class Telecom:
    """A telecom URI (tel:, mailto:) and its use code."""

    value: str
    use: str | None = None


@dataclass(frozen=True)
class GpPractice:
    """The registered GP practice."""

    ods_code: str | None
    name: str | None = None
    address: Address | None = None
    telecom: Telecom | None = None


@dataclass(frozen=True)
class PdsPatient:
    """A patient's demographics as returned by getPatientDetails*."""

    nhs_number: str
    response_code: str
    name: PersonName | None = None
    birth_date: date | None = None
    gender: str | None = None
    deceased_date: date | None = None
    addresses: tuple[Address, ...] = ()
    telecoms: tuple[Telecom, ...] = ()
    gp: GpPractice | None = None
    local_identifier: LocalIdentifier | None = None
    # Set when the number asked for was superseded and this record is the current one (DEMOG-0017).
    superseded_nhs_number: str | None = None
    # SMSP-0003: data came from the provider's local store because the spine was unavailable.
    from_local_store: bool = False


@dataclass(frozen=True)
class NhsNumberVerification:
    """The outcome of verifyNHSNumber: is this NHS number right for this date of birth?"""

    nhs_number: str
    verified: bool
    response_code: str


@dataclass(frozen=True)
class NhsNumberMatch:
    """The outcome of getNHSNumber: the traced NHS number (and the echoed local identifier)."""

    nhs_number: str
    response_code: str
    local_identifier: LocalIdentifier | None = None
