"""What the CP-IS client returns and takes: plain dataclasses, no XML."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

__all__ = [
    "FILE_CODES",
    "INACTIVE_REASONS",
    "RECORD_CODES",
    "AccessNotification",
    "Accessor",
    "CpisAccess",
    "CpisPlan",
    "CpisQueryResult",
    "InactiveNhsNumber",
    "InactiveNhsNumberNotification",
    "LocalAuthority",
    "RecordAcknowledgement",
    "UploadAcknowledgement",
    "UploadRecord",
]

FILE_CODE_SYSTEM = "2.16.840.1.113883.2.1.3.2.4.17.474"
RECORD_CODE_SYSTEM = "2.16.840.1.113883.2.1.3.2.4.17.473"

FILE_CODES = {
    "CPF01": "File level error",
    "CPF02": "Successful file upload",
    "CPF03": "Partial file upload",
    "CPF04": "Unsuccessful file upload",
    "CPF05": "PDS error - PDS unavailable, resubmit",
    "CPF06": "Client version no longer supported",
}
RECORD_CODES = {
    "CPR01": "PDS error - no match found for NHS number",
    "CPR02": "NHS number matched, but sensitive record (cannot be updated)",
    "CPR03": "NHS number not verified",
    "CPR04": "NHS number format incorrect",
    "CPR05": "NHS number verified, but superseded",
    "CPR06": "Successful record upload",
    "CPR07": "Unsuccessful record upload",
}
PLAN_TYPES = ("CPP", "LAC", "UCPP")
# Why PDS no longer holds an NHS number as current: merged into another record (superseded) or
# made inactive (invalidated, retired).
INACTIVE_REASONS = ("superseded", "inactive")


@dataclass(frozen=True)
class LocalAuthority:
    """The responsible local authority and its contact numbers."""

    ods_code: str
    name: str
    office_hours_phone: str
    emergency_duty_phone: str


@dataclass(frozen=True)
class UploadRecord:
    """One child's plan as the local authority uploads it."""

    local_id: str
    nhs_number: str
    nhs_number_verified: bool
    plan_type: str  # CPP, LAC or UCPP (UCPP: the mother's NHS number)
    start_date: date
    end_date: date | None = None
    delete_date: date | None = None
    expected_delivery_date: date | None = None


@dataclass(frozen=True)
class RecordAcknowledgement:
    """The service's answer for one uploaded record (CPR01..CPR07)."""

    local_id: str
    nhs_number: str
    code: str
    detail: str | None = None

    @property
    def accepted(self) -> bool:
        """Return True when the record was stored (CPR06)."""
        return self.code == "CPR06"


@dataclass(frozen=True)
class UploadAcknowledgement:
    """The file-level answer to an upload (CPF01..CPF06) with each record's answer."""

    file_sequence_number: int
    file_code: str
    transmission_quantity: int
    records: tuple[RecordAcknowledgement, ...]


@dataclass(frozen=True)
class Accessor:
    """Who looked at a child's record: the user and their organisation."""

    user_id: str
    name: str
    role: str
    organisation_ods_code: str
    organisation_name: str


@dataclass(frozen=True)
class CpisAccess:
    """One recorded (unscheduled) access to a child's record."""

    access_time: datetime
    accessor: Accessor
    care_setting: str | None = None


@dataclass(frozen=True)
class CpisPlan:
    """A plan on the child: type, period and the responsible local authority."""

    plan_type: str
    start_date: date
    end_date: date | None
    local_authority: LocalAuthority
    expected_delivery_date: date | None = None  # unborn child plans (UCPP)


@dataclass(frozen=True)
class CpisQueryResult:
    """The answer to an NHS query: the child's plans and the 25 most recent accesses."""

    nhs_number: str
    found: bool
    plans: tuple[CpisPlan, ...] = ()
    recent_accesses: tuple[CpisAccess, ...] = ()


@dataclass(frozen=True)
class AccessNotification:
    """An access-to-service notification pushed to the responsible local authority."""

    notification_id: str
    message_id: str
    nhs_number: str
    local_id: str | None
    local_authority_ods_code: str
    plan_types: tuple[str, ...]
    access: CpisAccess


@dataclass(frozen=True)
class InactiveNhsNumber:
    """One NHS number on the local authority's plans that PDS no longer holds as current."""

    nhs_number: str
    local_id: str | None
    plan_types: tuple[str, ...]
    reason: str  # superseded or inactive
    replacement_nhs_number: str | None = None


@dataclass(frozen=True)
class InactiveNhsNumberNotification:
    """An inactive-NHS-number notification (CP-IS message type 06) pushed to a local authority.

    The local authority must correct the plans under these numbers (upload them again under the
    current number, or delete them): CP-IS cannot show them to health staff meanwhile.
    """

    notification_id: str
    message_id: str
    local_authority_ods_code: str
    notified_at: datetime
    records: tuple[InactiveNhsNumber, ...]
