"""The connector error tree and the one translation function."""

from __future__ import annotations

import inspect
import types

import pytest
import requests.exceptions as rq
import zeep.exceptions as zx
from lxml import etree

from connectors import errors
from connectors.errors import (
    LIBRARY_EXCEPTION_MAP,
    ConfigurationError,
    ConnectorError,
    InvalidRequest,
    InvalidResponse,
    MalformedXml,
    NotFound,
    Rejected,
    SecurityFailure,
    SoapFault,
    Timeout,
    TooManyMatches,
    Unavailable,
    UnsafeXml,
    boundary,
    translate,
)

ERROR_CLASSES = [
    ConnectorError,
    Timeout,
    Unavailable,
    Rejected,
    NotFound,
    InvalidRequest,
    TooManyMatches,
    InvalidResponse,
    MalformedXml,
    UnsafeXml,
    SecurityFailure,
    ConfigurationError,
]
FHIR_ISSUE_CODES = {
    "invalid",
    "structure",
    "required",
    "value",
    "invariant",
    "security",
    "login",
    "unknown",
    "expired",
    "forbidden",
    "suppressed",
    "processing",
    "not-supported",
    "duplicate",
    "multiple-matches",
    "not-found",
    "deleted",
    "too-long",
    "code-invalid",
    "extension",
    "too-costly",
    "business-rule",
    "conflict",
    "transient",
    "lock-error",
    "no-store",
    "exception",
    "timeout",
    "incomplete",
    "throttled",
    "informational",
}


def _exported_exceptions(module: types.ModuleType) -> list[type[BaseException]]:
    found = []
    for name, value in vars(module).items():
        if name.startswith("_") or not inspect.isclass(value):
            continue
        if issubclass(value, BaseException) and not issubclass(value, Warning):
            found.append(value)
    return found


@pytest.mark.parametrize("module", [zx, rq, etree], ids=lambda m: m.__name__)
def test_every_library_exception_has_a_mapping(module: types.ModuleType) -> None:
    exported = _exported_exceptions(module)
    assert exported, "the walk found no exception classes"
    missing = [cls.__qualname__ for cls in exported if cls not in LIBRARY_EXCEPTION_MAP]
    assert missing == [], f"{module.__name__} exceptions without a mapping: {missing}"


def test_every_mapping_targets_the_tree() -> None:
    for target in LIBRARY_EXCEPTION_MAP.values():
        assert issubclass(target, ConnectorError)


@pytest.mark.parametrize("klass", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_each_error_has_code_status_and_issue(klass: type[ConnectorError]) -> None:
    assert klass.code and klass.code == klass.code.lower()
    assert klass.http_status in {400, 404, 422, 500, 502, 504}
    assert klass.issue_code in FHIR_ISSUE_CODES
    assert klass.__name__ in (errors.__doc__ or ""), "the tree drawing lists every class"


def test_codes_are_unique() -> None:
    codes = [k.code for k in ERROR_CLASSES]
    assert len(codes) == len(set(codes))


@pytest.mark.parametrize(
    ("exc", "expected", "retryable"),
    [
        (rq.ConnectTimeout(), Timeout, True),
        (rq.ReadTimeout(), Timeout, True),
        (rq.ConnectionError(), Unavailable, True),
        (rq.SSLError(), SecurityFailure, False),
        (rq.InvalidURL(), ConfigurationError, False),
        (zx.TransportError("x", status_code=503), Unavailable, True),
        (zx.DTDForbidden("n", "s", "p"), UnsafeXml, False),
        (zx.XMLSyntaxError("bad"), MalformedXml, False),
        (etree.XMLSyntaxError("bad", 1, 1, 1), MalformedXml, False),
        (etree.XIncludeError("x"), UnsafeXml, False),
        (etree.XPathEvalError("x"), InvalidResponse, False),
    ],
)
def test_translate_library_exceptions(
    exc: BaseException, expected: type[ConnectorError], retryable: bool
) -> None:
    error = translate(exc, service="pds", operation="op", correlation_id="c-1")
    assert type(error) is expected
    assert error is not None and error.retryable is retryable
    assert (error.service, error.operation, error.correlation_id) == ("pds", "op", "c-1")


@pytest.mark.parametrize(
    ("fault_code", "service_code", "expected", "permanent"),
    [
        ("soap:Client", "2200", InvalidRequest, True),
        ("soap:Client", "1000", InvalidRequest, True),
        ("soap:Client", "3000", Rejected, True),
        ("soap:Server", None, Rejected, False),
        ("Client", "CPIS-NOT-FOUND", NotFound, True),
        ("Client", "CPIS-VALIDATION", InvalidRequest, True),
    ],
)
def test_translate_soap_faults(
    fault_code: str, service_code: str | None, expected: type[Rejected], permanent: bool
) -> None:
    error = translate(SoapFault(fault_code, "text", service_code=service_code))
    assert type(error) is expected
    assert isinstance(error, Rejected)
    assert error.service_code == service_code
    assert error.fault_code == fault_code.split(":")[-1]
    assert error.permanent is permanent
    assert error.retryable is (not permanent)


def test_zeep_fault_becomes_rejected() -> None:
    error = translate(zx.Fault("boom", code="soap:Server"))
    assert isinstance(error, Rejected) and error.fault_code == "Server" and not error.permanent


def test_boundary_chains_the_cause() -> None:
    with pytest.raises(Timeout) as info, boundary("pds", "verify"):
        raise rq.ReadTimeout("slow")
    assert isinstance(info.value.__cause__, rq.ReadTimeout)
    assert info.value.service == "pds" and info.value.operation == "verify"


def test_boundary_reraises_unknown_exceptions() -> None:
    with pytest.raises(KeyError), boundary("pds"):
        raise KeyError("not a library exception")


def test_boundary_fills_context_of_our_errors() -> None:
    with pytest.raises(NotFound) as info, boundary("pds", "get", "corr"):
        raise NotFound("no match", service_code="DEMOG-0001")
    assert info.value.correlation_id == "corr" and info.value.operation == "get"


def test_messages_carry_no_request_content() -> None:
    error = NotFound("no match", service_code="DEMOG-0001", service="pds", operation="get")
    assert str(error) == "not-found: no match [pds/get] (DEMOG-0001)"
