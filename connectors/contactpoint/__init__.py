"""The ContactPoint-like national child index connector: client, models, faults, WSDL, mock."""

from __future__ import annotations

from connectors.contactpoint.client import (
    CONTACTPOINT_SPEC,
    ContactPointClient,
    build_contactpoint_client,
)
from connectors.contactpoint.errors import (
    CONTACTPOINT_FAULTS,
    AccessDenied,
    ConsentRequired,
    ReasonRequired,
    RecordArchived,
    RecordShielded,
)
from connectors.contactpoint.models import (
    SENSITIVE_SERVICES,
    SERVICES,
    AccessLogEntry,
    Carer,
    ChildRecord,
    ChildSummary,
    FeedAcknowledgement,
    FeedRecord,
    FeedRecordAck,
    IndexAccessor,
    IndicatorState,
    Involvement,
    InvolvementRequest,
    SearchQuery,
    SearchResult,
)

__all__ = [
    "CONTACTPOINT_FAULTS",
    "CONTACTPOINT_SPEC",
    "SENSITIVE_SERVICES",
    "SERVICES",
    "AccessDenied",
    "AccessLogEntry",
    "Carer",
    "ChildRecord",
    "ChildSummary",
    "ConsentRequired",
    "ContactPointClient",
    "FeedAcknowledgement",
    "FeedRecord",
    "FeedRecordAck",
    "IndexAccessor",
    "IndicatorState",
    "Involvement",
    "InvolvementRequest",
    "ReasonRequired",
    "RecordArchived",
    "RecordShielded",
    "SearchQuery",
    "SearchResult",
    "build_contactpoint_client",
]
