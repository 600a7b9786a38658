"""Gateway errors, each rendered as a FHIR OperationOutcome by one handler.

    GatewayError                      500 exception
    ├── BadRequest                    400 invalid
    │   ├── UnsupportedSearchParameter 400 not-supported
    │   └── InvalidResource           400/422 (issues from validation)
    ├── NotAuthenticated              401 login
    ├── Forbidden                     403 forbidden
    ├── ResourceNotFound              404 not-found
    │   └── UnknownResourceType       404 not-supported
    ├── MethodNotAllowed              405 not-supported
    ├── NotAcceptable                 406 not-supported
    ├── Conflict                      409 conflict
    ├── ResourceGone                  410 deleted
    ├── PreconditionFailed            412 conflict
    │   └── MultipleMatches           412 multiple-matches
    ├── PayloadTooLarge               413 too-costly
    ├── UnsupportedMediaType          415 not-supported
    ├── Unprocessable                 422 processing
    └── ServiceUnavailable            503 transient

Messages are safe to show: they never contain personal data.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class Issue:
    """One OperationOutcome issue."""

    severity: str
    code: str
    diagnostics: str
    expression: tuple[str, ...] = ()

    def to_fhir(self) -> dict[str, Any]:
        """Return the issue as FHIR JSON."""
        out: dict[str, Any] = {"severity": self.severity, "code": self.code}
        if self.diagnostics:
            out["diagnostics"] = self.diagnostics
        if self.expression:
            out["expression"] = list(self.expression)
        return out


class GatewayError(Exception):
    """Base of every error the gateway reports to a caller."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "exception"
    error_code: ClassVar[str] = "internal-error"

    def __init__(self, message: str, *, issues: list[Issue] | None = None,
                 status: int | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.issues = issues or [Issue("error", self.code, message)]
        if status is not None:
            self.status = status  # type: ignore[misc]
        self.headers = headers or {}

    def outcome(self) -> dict[str, Any]:
        """Return the OperationOutcome for this error."""
        return operation_outcome(self.issues)


class BadRequest(GatewayError):
    status = 400
    code = "invalid"
    error_code = "bad-request"


class UnsupportedSearchParameter(BadRequest):
    code = "not-supported"
    error_code = "unsupported-search-parameter"


class InvalidResource(BadRequest):
    error_code = "invalid-resource"


class NotAuthenticated(GatewayError):
    status = 401
    code = "login"
    error_code = "not-authenticated"


class Forbidden(GatewayError):
    status = 403
    code = "forbidden"
    error_code = "forbidden"


class ResourceNotFound(GatewayError):
    status = 404
    code = "not-found"
    error_code = "not-found"


class UnknownResourceType(ResourceNotFound):
    code = "not-supported"
    error_code = "unknown-resource-type"


class MethodNotAllowed(GatewayError):
    status = 405
    code = "not-supported"
    error_code = "method-not-allowed"


class NotAcceptable(GatewayError):
    status = 406
    code = "not-supported"
    error_code = "not-acceptable"


class Conflict(GatewayError):
    status = 409
    code = "conflict"
    error_code = "conflict"


class ResourceGone(GatewayError):
    status = 410
    code = "deleted"
    error_code = "gone"


class PreconditionFailed(GatewayError):
    status = 412
    code = "conflict"
    error_code = "precondition-failed"


class MultipleMatches(PreconditionFailed):
    code = "multiple-matches"
    error_code = "multiple-matches"


class PayloadTooLarge(GatewayError):
    status = 413
    code = "too-costly"
    error_code = "payload-too-large"


class UnsupportedMediaType(GatewayError):
    status = 415
    code = "not-supported"
    error_code = "unsupported-media-type"


class Unprocessable(GatewayError):
    status = 422
    code = "processing"
    error_code = "unprocessable"


class ServiceUnavailable(GatewayError):
    status = 503
    code = "transient"
    error_code = "unavailable"


def operation_outcome(issues: list[Issue], *, id_: str | None = None) -> dict[str, Any]:
    """Return an OperationOutcome resource holding the issues."""
    out: dict[str, Any] = {"resourceType": "OperationOutcome"}
    if id_:
        out["id"] = id_
    out["issue"] = [issue.to_fhir() for issue in issues] or [
        {"severity": "information", "code": "informational", "diagnostics": "ok"}
    ]
    return out


@dataclass
class OutcomeBuilder:
    """Collect issues across a multi-entry operation."""

    issues: list[Issue] = field(default_factory=list)

    def add(self, severity: str, code: str, diagnostics: str, *expression: str) -> None:
        """Append one issue."""
        self.issues.append(Issue(severity, code, diagnostics, tuple(expression)))
