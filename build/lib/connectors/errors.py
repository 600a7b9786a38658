"""The connector error tree, and the one place library exceptions are translated into it.

```
ConnectorError                      connector-error      502  exception
├── Timeout                         timeout              504  timeout
├── Unavailable                     unavailable          502  transient
├── Rejected                        rejected             422  processing  (+ codes, permanent)
│   ├── NotFound                    not-found            404  not-found
│   ├── InvalidRequest              invalid-request      400  invalid
│   └── TooManyMatches              too-many-matches     422  multiple-matches
├── InvalidResponse                 invalid-response     502  invalid
│   ├── MalformedXml                malformed-xml        502  structure
│   └── UnsafeXml                   unsafe-xml           502  security
├── SecurityFailure                 security-failure     502  security
└── ConfigurationError              configuration        500  exception
```

Each class carries a stable `code`, the HTTP status a FHIR façade answers with (`http_status`) and
the FHIR `OperationOutcome.issue.code` (`issue_code`). `retryable` tells an outbox whether sending
the same message again can succeed. Messages never carry personal data: they name the service,
the operation and a correlation id, never an NHS number or a name.

On the receiving side (an inbound SOAP message such as a CP-IS notification) the same classes
describe what was wrong with the inbound message; the inbound endpoint chooses its own status.

`translate()` is the only function that maps zeep, requests and lxml exceptions and SOAP Faults
into this tree; `boundary()` applies it around a block with ``raise ... from exc``. Exceptions that
are neither library exceptions nor ours are re-raised unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

import requests.exceptions as rq
import zeep.exceptions as zx
from lxml import etree
from urllib3.exceptions import HTTPError as Urllib3HTTPError

__all__ = [
    "LIBRARY_EXCEPTION_MAP",
    "SERVICE_CODE_CLASSES",
    "ConfigurationError",
    "ConnectorError",
    "InvalidRequest",
    "InvalidResponse",
    "MalformedXml",
    "NotFound",
    "Rejected",
    "SecurityFailure",
    "SoapFault",
    "Timeout",
    "TooManyMatches",
    "Unavailable",
    "UnsafeXml",
    "boundary",
    "translate",
]


class ConnectorError(Exception):
    """Base of every error a connector raises; carries service, operation and correlation id."""

    code: ClassVar[str] = "connector-error"
    http_status: ClassVar[int] = 502
    issue_code: ClassVar[str] = "exception"
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str = "",
        *,
        service: str | None = None,
        operation: str | None = None,
        correlation_id: str | None = None,
    ) -> None:
        super().__init__(message or self.code)
        self.message = message or self.code
        self.service = service
        self.operation = operation
        self.correlation_id = correlation_id

    def __str__(self) -> str:
        where = "/".join(p for p in (self.service, self.operation) if p)
        return f"{self.code}: {self.message}" + (f" [{where}]" if where else "")

    def with_context(
        self, *, service: str | None, operation: str | None, correlation_id: str | None = None
    ) -> ConnectorError:
        """Fill in service, operation and correlation id where they are still unknown."""
        self.service = self.service or service
        self.operation = self.operation or operation
        self.correlation_id = self.correlation_id or correlation_id
        return self


class Timeout(ConnectorError):
    """The peer did not connect or answer within the configured timeout."""

    code = "timeout"
    http_status = 504
    issue_code = "timeout"
    retryable = True


class Unavailable(ConnectorError):
    """The peer could not be reached, reset the connection or answered with a server error."""

    code = "unavailable"
    http_status = 502
    issue_code = "transient"
    retryable = True


class Rejected(ConnectorError):
    """The service understood the request and refused it, with its own code."""

    code = "rejected"
    http_status = 422
    issue_code = "processing"

    def __init__(
        self,
        message: str = "",
        *,
        service_code: str | None = None,
        fault_code: str | None = None,
        permanent: bool = True,
        service: str | None = None,
        operation: str | None = None,
        correlation_id: str | None = None,
    ) -> None:
        super().__init__(
            message, service=service, operation=operation, correlation_id=correlation_id
        )
        self.service_code = service_code
        self.fault_code = fault_code
        self.permanent = permanent

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        """Return True when the service said the same request may succeed later."""
        return not self.permanent

    def __str__(self) -> str:
        base = super().__str__()
        codes = ", ".join(c for c in (self.service_code, self.fault_code) if c)
        return f"{base} ({codes})" if codes else base


class NotFound(Rejected):
    """The service has no record matching the request."""

    code = "not-found"
    http_status = 404
    issue_code = "not-found"


class InvalidRequest(Rejected):
    """The request was invalid (checked locally before sending, or refused as invalid)."""

    code = "invalid-request"
    http_status = 400
    issue_code = "invalid"


class TooManyMatches(Rejected):
    """A search matched more than one record where one was required."""

    code = "too-many-matches"
    http_status = 422
    issue_code = "multiple-matches"


class InvalidResponse(ConnectorError):
    """The peer's message broke the contract: wrong shape, schema or HTTP status."""

    code = "invalid-response"
    http_status = 502
    issue_code = "invalid"


class MalformedXml(InvalidResponse):
    """The message was not well-formed XML."""

    code = "malformed-xml"
    issue_code = "structure"


class UnsafeXml(InvalidResponse):
    """The message used XML features we refuse: DTDs, entities, XInclude, excess size or depth."""

    code = "unsafe-xml"
    issue_code = "security"


class SecurityFailure(ConnectorError):
    """WS-Security checks failed: signature, signed parts, timestamp or token."""

    code = "security-failure"
    http_status = 502
    issue_code = "security"


class ConfigurationError(ConnectorError):
    """The connector is misconfigured (bad URL, missing WSDL, unusable key)."""

    code = "configuration"
    http_status = 500
    issue_code = "exception"


class SoapFault(Exception):
    """A SOAP Fault read from a response; `translate()` turns it into a connector error."""

    def __init__(
        self,
        fault_code: str,
        fault_string: str = "",
        *,
        service_code: str | None = None,
        http_status: int = 500,
    ) -> None:
        super().__init__(fault_code)
        self.fault_code = fault_code.split(":")[-1]
        self.fault_string = fault_string
        self.service_code = service_code
        self.http_status = http_status


# Service codes carried in fault details (ITK ToolkitErrorInfo/ErrorCode, CP-IS fault codes) that
# mean something more precise than "rejected".
SERVICE_CODE_CLASSES: dict[str, type[Rejected]] = {
    "1000": InvalidRequest,  # ITK: message could not be processed (e.g. missing profile id)
    "2200": InvalidRequest,  # ITK: schema or structure failure
    "SMSP-0001": InvalidRequest,
    "CPIS-VALIDATION": InvalidRequest,
    "CPIS-INVALID-NHS-NUMBER": InvalidRequest,
    "CPIS-NOT-FOUND": NotFound,
}


# Every exception class exported by zeep.exceptions, requests.exceptions and lxml.etree, mapped to
# the class it becomes. Lookup walks the MRO, so a new subclass gets its parent's mapping; the
# test suite still insists that every exported class is listed here by name.
LIBRARY_EXCEPTION_MAP: dict[type[BaseException], type[ConnectorError]] = {
    # requests
    rq.RequestException: Unavailable,
    rq.ConnectionError: Unavailable,
    rq.ProxyError: Unavailable,
    rq.SSLError: SecurityFailure,
    rq.Timeout: Timeout,
    rq.ConnectTimeout: Timeout,
    rq.ReadTimeout: Timeout,
    rq.HTTPError: Unavailable,
    rq.TooManyRedirects: InvalidResponse,
    rq.ChunkedEncodingError: Unavailable,
    rq.ContentDecodingError: InvalidResponse,
    rq.RetryError: Unavailable,
    rq.StreamConsumedError: ConfigurationError,
    rq.UnrewindableBodyError: ConfigurationError,
    rq.URLRequired: ConfigurationError,
    rq.MissingSchema: ConfigurationError,
    rq.InvalidSchema: ConfigurationError,
    rq.InvalidURL: ConfigurationError,
    rq.InvalidHeader: ConfigurationError,
    rq.InvalidProxyURL: ConfigurationError,
    rq.InvalidJSONError: InvalidResponse,
    rq.JSONDecodeError: InvalidResponse,
    Urllib3HTTPError: Unavailable,  # exported by requests.exceptions as BaseHTTPError
    json.JSONDecodeError: InvalidResponse,
    # zeep
    zx.Error: InvalidResponse,
    zx.XMLSyntaxError: MalformedXml,
    zx.XMLParseError: MalformedXml,
    zx.UnexpectedElementError: InvalidResponse,
    zx.WsdlSyntaxError: ConfigurationError,
    zx.TransportError: Unavailable,
    zx.LookupError: InvalidResponse,
    zx.NamespaceError: InvalidResponse,
    zx.Fault: Rejected,
    zx.ValidationError: InvalidRequest,
    zx.SignatureVerificationFailed: SecurityFailure,
    zx.IncompleteMessage: InvalidResponse,
    zx.IncompleteOperation: ConfigurationError,
    zx.DTDForbidden: UnsafeXml,
    zx.EntitiesForbidden: UnsafeXml,
    zx.ExternalReferenceForbidden: UnsafeXml,
    # lxml
    etree.Error: InvalidResponse,
    etree.LxmlError: InvalidResponse,
    etree.LxmlSyntaxError: MalformedXml,
    etree.XMLSyntaxError: MalformedXml,
    etree.XMLSyntaxAssertionError: MalformedXml,
    etree.ParseError: MalformedXml,
    etree.ParserError: MalformedXml,
    etree.DocumentInvalid: InvalidResponse,
    etree.DTDError: UnsafeXml,
    etree.DTDParseError: UnsafeXml,
    etree.DTDValidateError: UnsafeXml,
    etree.XIncludeError: UnsafeXml,
    etree.XSLTError: UnsafeXml,
    etree.XSLTParseError: UnsafeXml,
    etree.XSLTApplyError: UnsafeXml,
    etree.XSLTSaveError: UnsafeXml,
    etree.XSLTExtensionError: UnsafeXml,
    etree.C14NError: InvalidResponse,
    etree.SerialisationError: InvalidResponse,
    etree.XPathError: InvalidResponse,
    etree.XPathEvalError: InvalidResponse,
    etree.XPathSyntaxError: InvalidResponse,
    etree.XPathFunctionError: InvalidResponse,
    etree.XPathResultError: InvalidResponse,
    etree.XMLSchemaError: ConfigurationError,
    etree.XMLSchemaParseError: ConfigurationError,
    etree.XMLSchemaValidateError: InvalidResponse,
    etree.RelaxNGError: ConfigurationError,
    etree.RelaxNGParseError: ConfigurationError,
    etree.RelaxNGValidateError: InvalidResponse,
    etree.SchematronError: ConfigurationError,
    etree.SchematronParseError: ConfigurationError,
    etree.SchematronValidateError: InvalidResponse,
    etree.LxmlRegistryError: ConfigurationError,
    etree.NamespaceRegistryError: ConfigurationError,
}


def _lookup(exc_type: type[BaseException]) -> type[ConnectorError] | None:
    for klass in exc_type.__mro__:
        target = LIBRARY_EXCEPTION_MAP.get(klass)
        if target is not None:
            return target
    return None


def _fault_to_error(fault_code: str | None, service_code: str | None) -> ConnectorError:
    # A Client fault is about our request and will fail again; a Server fault may pass.
    permanent = fault_code != "Server"
    klass = SERVICE_CODE_CLASSES.get(service_code or "", Rejected)
    return klass(
        "the service returned a SOAP Fault",
        service_code=service_code,
        fault_code=fault_code,
        permanent=permanent,
    )


def translate(
    exc: BaseException,
    *,
    service: str | None = None,
    operation: str | None = None,
    correlation_id: str | None = None,
) -> ConnectorError | None:
    """Return the connector error for a library exception or SOAP Fault, or None if unmapped."""
    if isinstance(exc, ConnectorError):
        return exc.with_context(service=service, operation=operation, correlation_id=correlation_id)
    if isinstance(exc, SoapFault):
        error = _fault_to_error(exc.fault_code, exc.service_code)
    elif isinstance(exc, zx.Fault):
        error = _fault_to_error((exc.code or "").split(":")[-1] or None, None)
    else:
        target = _lookup(type(exc))
        if target is None:
            return None
        if target is Rejected:
            error = Rejected(type(exc).__name__, permanent=True)
        else:
            error = target(type(exc).__name__)
    return error.with_context(service=service, operation=operation, correlation_id=correlation_id)


@contextmanager
def boundary(
    service: str, operation: str | None = None, correlation_id: str | None = None
) -> Iterator[None]:
    """Translate library exceptions raised in the block into connector errors."""
    try:
        yield
    except ConnectorError as exc:
        exc.with_context(service=service, operation=operation, correlation_id=correlation_id)
        raise
    except Exception as exc:
        error = translate(exc, service=service, operation=operation, correlation_id=correlation_id)
        if error is None:
            raise
        raise error from exc
