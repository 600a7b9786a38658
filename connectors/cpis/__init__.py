"""The health-spine-like CP-IS connector: client, models, notification helper, WSDL."""

from __future__ import annotations

from connectors.cpis.client import ACCESS_TYPES, CPIS_SPEC, CpisClient, build_cpis_client
from connectors.cpis.models import (
    FILE_CODES,
    INACTIVE_REASONS,
    RECORD_CODES,
    AccessNotification,
    Accessor,
    CpisAccess,
    CpisPlan,
    CpisQueryResult,
    InactiveNhsNumber,
    InactiveNhsNumberNotification,
    LocalAuthority,
    RecordAcknowledgement,
    UploadAcknowledgement,
    UploadRecord,
)
from connectors.cpis.notifications import (
    Notification,
    build_notification_ack,
    parse_access_notification,
    parse_notification,
)

__all__ = [
    "ACCESS_TYPES",
    "CPIS_SPEC",
    "FILE_CODES",
    "INACTIVE_REASONS",
    "RECORD_CODES",
    "AccessNotification",
    "Accessor",
    "CpisAccess",
    "CpisClient",
    "CpisPlan",
    "CpisQueryResult",
    "InactiveNhsNumber",
    "InactiveNhsNumberNotification",
    "LocalAuthority",
    "Notification",
    "RecordAcknowledgement",
    "UploadAcknowledgement",
    "UploadRecord",
    "build_cpis_client",
    "build_notification_ack",
    "parse_access_notification",
    "parse_notification",
]
