"""The child index's faults as connector errors (subclasses of the connector error tree).

    NotAuthorised     AccessDenied      403 forbidden
    ReasonRequired    ReasonRequired    400 required
    RecordShielded    RecordShielded    403 suppressed
    ConsentRequired   ConsentRequired   403 forbidden
    RecordArchived    RecordArchived    410 deleted
    ValidationError   InvalidRequest    400 invalid
    NotFound          NotFound          404 not-found
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from connectors.errors import InvalidRequest, NotFound, Rejected

__all__ = [
    "CONTACTPOINT_FAULTS",
    "AccessDenied",
    "ConsentRequired",
    "ReasonRequired",
    "RecordArchived",
    "RecordShielded",
    "refined",
]


class AccessDenied(Rejected):
    """The caller's role may not perform the operation."""

    code = "not-authorised"
    http_status = 403
    issue_code = "forbidden"


class ReasonRequired(InvalidRequest):
    """A reason for access is mandatory and was not given."""

    code = "reason-required"
    issue_code = "required"


class RecordShielded(Rejected):
    """The record is shielded; contact is brokered by the index team."""

    code = "record-shielded"
    http_status = 403
    issue_code = "suppressed"


class ConsentRequired(Rejected):
    """The operation needs recorded consent."""

    code = "consent-required"
    http_status = 403
    issue_code = "forbidden"


class RecordArchived(Rejected):
    """The record is archived and can no longer be read or changed."""

    code = "record-archived"
    http_status = 410
    issue_code = "deleted"


CONTACTPOINT_FAULTS: dict[str, type[Rejected]] = {
    "NotAuthorised": AccessDenied,
    "ReasonRequired": ReasonRequired,
    "RecordShielded": RecordShielded,
    "ConsentRequired": ConsentRequired,
    "RecordArchived": RecordArchived,
    "ValidationError": InvalidRequest,
    "NotFound": NotFound,
}


@contextmanager
def refined(faults: Mapping[str, type[Rejected]]) -> Iterator[None]:
    """Re-raise a Rejected whose service code names a fault as that fault's class."""
    try:
        yield
    except Rejected as exc:
        klass = faults.get(exc.service_code or "")
        if klass is None or type(exc) is klass:
            raise
        raise klass(
            exc.message,
            service_code=exc.service_code,
            fault_code=exc.fault_code,
            permanent=exc.permanent,
            service=exc.service,
            operation=exc.operation,
            correlation_id=exc.correlation_id,
        ) from exc
