"""The assessment store's faults as connector errors.

    NotFound           NotFound            404 not-found
    IllegalTransition  IllegalTransition   409 business-rule
    ConsentRequired    ConsentRequired     403 forbidden
    ValidationError    InvalidRequest      400 invalid
    VersionConflict    VersionConflict     409 conflict
    AlreadyExists      AlreadyExists       409 duplicate
"""

from __future__ import annotations

from connectors.contactpoint.errors import ConsentRequired
from connectors.errors import InvalidRequest, NotFound, Rejected

__all__ = ["ECAF_FAULTS", "AlreadyExists", "IllegalTransition", "VersionConflict"]


class IllegalTransition(Rejected):
    """The CAF's state does not allow the operation."""

    code = "illegal-transition"
    http_status = 409
    issue_code = "business-rule"


class VersionConflict(Rejected):
    """The assessment changed since the version the caller read."""

    code = "version-conflict"
    http_status = 409
    issue_code = "conflict"


class AlreadyExists(Rejected):
    """The child already has an open CAF."""

    code = "already-exists"
    http_status = 409
    issue_code = "duplicate"


ECAF_FAULTS: dict[str, type[Rejected]] = {
    "NotFound": NotFound,
    "IllegalTransition": IllegalTransition,
    "ConsentRequired": ConsentRequired,
    "ValidationError": InvalidRequest,
    "VersionConflict": VersionConflict,
    "AlreadyExists": AlreadyExists,
}
