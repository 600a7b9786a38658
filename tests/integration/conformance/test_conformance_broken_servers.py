"""Broken servers make exactly the right assertions fail, with messages that say what is wrong.

The FHIR side runs the shipped CRUD and versioning scripts against a toy server that passes them
when intact and has one breakage switched on per case. The SOAP side runs the PDS contract against
the mock with WS-Security checking switched off and with replies that lose wsa:RelatesTo.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from typing import Any

import pytest
from conformance_toy_fhir import serve, toy_fhir_app

from connectors.mockserver import MockSettings, create_mock_app, run_in_thread
from gateway.conformance import (
    FhirTarget,
    SoapTarget,
    SuiteResult,
    Targets,
    resolve_suite,
    run_suites,
)


def _run_core(*broken: str) -> SuiteResult:
    suite = resolve_suite("gateway-core")
    suite = dataclasses.replace(suite, files=tuple(
        f for f in suite.files if f.stem in ("crud", "versioning")))
    with serve(toy_fhir_app(*broken)) as base:
        (result,) = run_suites([suite], Targets(fhir=FhirTarget(base)))
    return result


def _failures(result: SuiteResult) -> set[tuple[str, str, str, str]]:
    found = set()
    for script in result.scripts:
        for phase, actions in (("setup", script.setup), ("teardown", script.teardown)):
            found |= {(script.key, phase, a.label, a.message) for a in actions
                      if a.result in ("fail", "error")}
        found |= {(script.key, test.name, a.label, a.message) for test in script.tests
                  for a in test.actions if a.result in ("fail", "error")}
    return found


def test_the_intact_toy_server_passes() -> None:
    result = _run_core()
    assert _failures(result) == set()
    assert result.counts() == {"pass": 16}


READ_UNKNOWN = "read of an unknown id answers 404 with an OperationOutcome"
CREATE = "create answers 201 Created with Location, ETag and the resource"
STALE = "update with a stale If-Match is refused with 412"
CASES: list[tuple[str, set[tuple[str, str, str, str]]]] = [
    ("missing-is-200", {
        ("crud", READ_UNKNOWN, "404 Not Found",
         "the response code should equal '404 (notFound)', got '200'"),
        ("crud", READ_UNKNOWN, "an OperationOutcome",
         "the resource type should equal 'OperationOutcome', got 'Patient'"),
        ("crud", READ_UNKNOWN, "valid OperationOutcome",
         "profile OperationOutcome: the resource is a Patient"),
    }),
    ("no-etag", {
        ("crud", CREATE, "ETag", "header ETag should not be empty, got nothing"),
        ("crud", "read returns the stored resource", 'ETag is W/"versionId"',
         """header ETag should equal 'W/"${createdVersion}"', got nothing"""),
        ("versioning", "setup", "with an ETag", "header ETag should not be empty, got nothing"),
    }),
    ("no-location", {
        ("crud", CREATE, "Location names the new version",
         "header Location should contain '/_history/', got nothing"),
    }),
    ("ignore-if-match", {
        ("versioning", STALE, "412 Precondition Failed",
         "the response code should equal '412 (preconditionFailed)', got '200'"),
        ("versioning", STALE, "an OperationOutcome",
         "the resource type should equal 'OperationOutcome', got 'Patient'"),
        ("versioning", STALE, "valid OperationOutcome",
         "profile OperationOutcome: the resource is a Patient"),
        ("versioning", "the refused update changed nothing", "still the second version's content",
         "the resource lacks what fixture patient-second holds: Patient.name[0]"),
        ("versioning", "the refused update changed nothing", "not the third",
         "name.given.where($this = 'Lee').empty() should hold, got false"),
    }),
    ("plain-json", {
        ("crud", "read returns the stored resource", "FHIR JSON",
         "the content type should equal 'application/fhir+json', got 'application/json'"),
    }),
]


@pytest.mark.parametrize(("broken", "expected"), CASES, ids=[c[0] for c in CASES])
def test_a_breakage_fails_the_assertions_that_catch_it(
        broken: str, expected: set[tuple[str, str, str, str]]) -> None:
    result = _run_core(broken)
    assert _failures(result) == expected
    assert result.failed


def test_a_failed_setup_skips_its_tests_and_says_why() -> None:
    result = _run_core("no-etag")
    versioning = next(s for s in result.scripts if s.key == "versioning")
    assert {t.result for t in versioning.tests} == {"skip"}
    assert {t.actions[0].message for t in versioning.tests} == {
        "setup did not complete (with an ETag)"}


# --- SOAP ------------------------------------------------------------------------------------
def _soap_failures(base_url: str) -> set[tuple[str, str, str]]:
    (result,) = run_suites([resolve_suite("soap-pds")], Targets(soap=SoapTarget(base_url)))
    return {(t.name, a.label, a.message) for s in result.scripts for t in s.tests
            for a in t.actions if a.result in ("fail", "error")}


@pytest.fixture
def lax_mock() -> Iterator[str]:
    """The mock with WS-Security checking switched off."""
    base_url, stop = run_in_thread(settings=MockSettings(require_wsse=False))
    yield base_url
    stop()


def test_an_endpoint_ignoring_ws_security_fails_the_security_checks(lax_mock: str) -> None:
    failures = _soap_failures(lax_mock)
    names = {name for name, _, _ in failures}
    assert names == {"a request without wsse:Security is a Client fault 3000",
                     "an expired wsu:Timestamp is a Client fault 3000",
                     "a wsu:Timestamp created in the future is a Client fault 3000"}
    for name in names:
        assert (name, "HTTP 500", "HTTP 200") in failures
        assert (name, "a SOAP Fault (Client)", "the body is not a soap:Fault") in failures


class _DropRelatesTo:
    """WSGI middleware: the replies lose their wsa:RelatesTo."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        body = b"".join(self.app(environ, capture))
        body = re.sub(rb"<wsa:RelatesTo>[^<]*</wsa:RelatesTo>", b"", body)
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        start_response(captured["status"], [*headers, ("Content-Length", str(len(body)))])
        return [body]


@pytest.fixture
def forgetful_mock() -> Iterator[str]:
    """The mock, behind middleware that strips wsa:RelatesTo from every reply."""
    app = create_mock_app()
    app.wsgi_app = _DropRelatesTo(app.wsgi_app)  # type: ignore[method-assign]
    base_url, stop = run_in_thread(app=app)
    yield base_url
    stop()


def test_replies_that_do_not_relate_to_the_request_fail_ws_addressing(
        forgetful_mock: str) -> None:
    failures = _soap_failures(forgetful_mock)
    assert failures
    assert {(label, message) for _, label, message in failures} == {
        ("wsa:RelatesTo is the request's MessageID",
         "wsa:RelatesTo is missing or names another message")}
    assert "verifyNHSNumber-v1-0 verifies a known NHS number" in {n for n, _, _ in failures}
