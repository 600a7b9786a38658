"""What the child index client returns and takes: plain dataclasses, no XML."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

__all__ = [
    "FAULT_CODES",
    "FEED_ACTIONS",
    "FEED_STATUSES",
    "MAX_FEED_RECORDS",
    "SENSITIVE_SERVICES",
    "SERVICES",
    "AccessLogEntry",
    "Carer",
    "ChildRecord",
    "ChildSummary",
    "FeedAcknowledgement",
    "FeedRecord",
    "FeedRecordAck",
    "IndexAccessor",
    "IndicatorState",
    "Involvement",
    "InvolvementRequest",
    "SearchQuery",
    "SearchResult",
]

# Services an involvement may name; the sensitive ones are shown only where consent was recorded.
SERVICES = (
    "school",
    "gp",
    "health-visiting",
    "school-nursing",
    "social-care",
    "youth-offending",
    "youth-support",
    "early-help",
    "sexual-health",
    "substance-misuse",
    "mental-health",
)
FEED_ACTIONS = ("create", "update")
FEED_STATUSES = ("created", "updated", "unchanged", "rejected")
MAX_FEED_RECORDS = 1000
SENSITIVE_SERVICES = frozenset({"sexual-health", "substance-misuse", "mental-health"})
FAULT_CODES = {
    "NotAuthorised": "the caller's role may not perform this operation",
    "ReasonRequired": "a reason for access is required",
    "RecordShielded": "the record is shielded; contact the index team",
    "ConsentRequired": "a sensitive service needs recorded consent",
    "RecordArchived": "the record is archived",
    "ValidationError": "the request is invalid",
    "NotFound": "no such record",
}


@dataclass(frozen=True)
class IndexAccessor:
    """Who is calling the index: the user, their role and organisation."""

    user_id: str
    name: str
    role: str
    organisation: str


@dataclass(frozen=True)
class SearchQuery:
    """Search criteria; at least one must be given. Names match by prefix or, with phonetic, by
    sound (Soundex of the family name)."""

    family: str | None = None
    given: str | None = None
    phonetic: bool = False
    birth_date_from: date | None = None
    birth_date_to: date | None = None
    gender: str | None = None
    postcode: str | None = None
    index_id: str | None = None
    nhs_number: str | None = None
    upn: str | None = None
    max_results: int = 50

    def is_empty(self) -> bool:
        """Return True when no criterion is given."""
        return not any(
            (
                self.family,
                self.given,
                self.birth_date_from,
                self.birth_date_to,
                self.gender,
                self.postcode,
                self.index_id,
                self.nhs_number,
                self.upn,
            )
        )


@dataclass(frozen=True)
class ChildSummary:
    """A child as search results and records show them (no location when shielded)."""

    index_id: str
    given: tuple[str, ...]
    family: str
    birth_date: date
    gender: str
    nhs_number: str | None
    upn: str | None
    address_lines: tuple[str, ...]
    postcode: str | None
    shielded: bool
    caf_exists: bool


@dataclass(frozen=True)
class SearchResult:
    """The matches (up to max_results) and how many matched in all."""

    total: int
    children: tuple[ChildSummary, ...]


@dataclass(frozen=True)
class Carer:
    """A parent or carer (no phone when the child is shielded)."""

    given: str
    family: str
    relationship: str
    parental_responsibility: bool
    phone: str | None = None


@dataclass(frozen=True)
class Involvement:
    """A service or practitioner involved with the child.

    `contact_index_team` is True for a sensitive service without recorded consent: only the fact
    that such an involvement exists is shown, never the service's details.
    """

    involvement_id: str
    service: str
    contact_index_team: bool = False
    organisation_code: str | None = None
    organisation_name: str | None = None
    practitioner_name: str | None = None
    phone: str | None = None
    lead: bool = False
    start_date: date | None = None
    end_date: date | None = None


@dataclass(frozen=True)
class InvolvementRequest:
    """An involvement to record."""

    service: str
    organisation_code: str | None = None
    organisation_name: str | None = None
    practitioner_name: str | None = None
    phone: str | None = None
    lead: bool = False
    consent_recorded: bool = False
    start_date: date | None = None


@dataclass(frozen=True)
class ChildRecord:
    """A child's record: identity, carers, involvements (shielded: identity only)."""

    child: ChildSummary
    carers: tuple[Carer, ...]
    involvements: tuple[Involvement, ...]
    shield_overridden: bool = False


@dataclass(frozen=True)
class IndicatorState:
    """The child's shielding and "CAF exists" indicators after a change."""

    index_id: str
    shielded: bool
    caf_exists: bool


@dataclass(frozen=True)
class AccessLogEntry:
    """One access to a child's record."""

    time: datetime
    accessor: IndexAccessor
    operation: str
    reason: str | None
    shield_overridden: bool


@dataclass(frozen=True)
class FeedRecord:
    """One child from the local authority's data feed.

    `create` lets the index match on NHS number, then UPN, and update a child it already holds;
    `update` names the child by `index_id`. `record_id` is the local authority's own id, echoed
    in the record's acknowledgement.
    """

    record_id: str
    action: str
    given: tuple[str, ...]
    family: str
    birth_date: date
    gender: str
    index_id: str | None = None
    nhs_number: str | None = None
    upn: str | None = None
    address_lines: tuple[str, ...] = ()
    postcode: str | None = None
    carers: tuple[Carer, ...] = ()


@dataclass(frozen=True)
class FeedRecordAck:
    """The index's answer to one feed record: created, updated, unchanged or rejected (with the
    fault code and text)."""

    record_id: str
    status: str
    index_id: str | None = None
    code: str | None = None
    text: str | None = None

    @property
    def accepted(self) -> bool:
        """Return True unless the record was rejected."""
        return self.status != "rejected"


@dataclass(frozen=True)
class FeedAcknowledgement:
    """The index's answer to a feed: counts and one acknowledgement per record, in order."""

    feed_id: str
    accepted: int
    rejected: int
    records: tuple[FeedRecordAck, ...]
