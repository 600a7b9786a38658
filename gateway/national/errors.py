"""Connector errors as OperationOutcomes: the status and issue code each connector error carries.

    not found (NotFound)                       404 not-found
    invalid request (InvalidRequest)           400 invalid
    rejected, too many matches                 422 processing / multiple-matches
    upstream down, bad reply (Unavailable, …)  502 transient / invalid / structure / security
    timeout (Timeout)                          504 timeout

The service's own code (SMSP/DEMOG response code, ITK error code, CP-IS code) goes in
`issue.details`; the diagnostics name the service and the correlation id, never personal data.
"""
from __future__ import annotations

from typing import Any

from connectors.errors import ConnectorError
from gateway.national.resources import service_code_coding


def connector_outcome(exc: ConnectorError, correlation_id: str | None) -> tuple[int, dict[str, Any]]:
    """Return (HTTP status, OperationOutcome) for a connector error."""
    service_code = getattr(exc, "service_code", None)
    details: dict[str, Any] = {"text": exc.code}
    coding = service_code_coding(service_code)
    if coding is not None:
        details["coding"] = [coding]
    elif service_code:
        details["text"] = f"{exc.code} ({service_code})"
    where = " ".join(p for p in (exc.service, exc.operation) if p) or "national service"
    diagnostics = f"{where}: {exc.message}"
    correlation = correlation_id or exc.correlation_id
    if correlation:
        diagnostics += f" (correlation id {correlation})"
    issue = {"severity": "error", "code": exc.issue_code, "details": details,
             "diagnostics": diagnostics}
    return exc.http_status, {"resourceType": "OperationOutcome", "issue": [issue]}


__all__ = ["connector_outcome"]
