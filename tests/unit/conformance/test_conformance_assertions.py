"""Every assertion type the engine claims: what passes, what fails, and the message it fails with."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from conformance_fakes import Recorder, check, make_script, op

from gateway.conformance import ScriptResult

STORED = {"resourceType": "Patient", "id": "p1", "meta": {"versionId": "2"},
          "name": [{"family": "Smith", "given": ["Ann"]}], "gender": "female",
          "birthDate": "2015-03-04"}
CREATED = {"resourceType": "Patient", "id": "p1", "meta": {"versionId": "1"},
           "name": [{"family": "Smith", "given": ["Ann"]}], "gender": "female"}
PAGE = {"resourceType": "Bundle", "type": "searchset", "total": 3,
        "link": [{"relation": "self", "url": "http://fhir.test/fhir/Patient?name=s"}],
        "entry": [{"fullUrl": "http://fhir.test/fhir/Patient/p1", "resource": STORED,
                   "search": {"mode": "match"}}]}
CORE = "http://hl7.org/fhir/StructureDefinition/"


@pytest.fixture
def server(recorder: Recorder) -> Recorder:
    recorder.reply("POST", "/Patient", 201, CREATED, ETag='W/"1"')
    recorder.reply("GET", "/Patient/p1", 200, STORED, ETag='W/"2"',
                   Last_Modified="Wed, 04 Mar 2026 10:00:00 GMT")
    recorder.reply("GET", "/Patient", 200, PAGE)
    recorder.reply("GET", "/Patient/bad", 200, {"resourceType": "Patient", "gender": "robot"})
    recorder.reply("GET", "/TestReport/1", 200, {"resourceType": "TestReport", "id": "1"})
    return recorder


def _run(run_script: Callable[..., ScriptResult], *asserts: dict[str, Any],
         read: str = "/p1", resource: str = "Patient") -> list[Any]:
    script = make_script(
        {"name": "asserts", "action": [op("read", resource=resource, params=read),
                                       *asserts]},
        contained=[{"resourceType": "Patient", "id": "minimum", "name": [{"family": "Smith"}]},
                   {"resourceType": "Patient", "id": "more", "name": [{"family": "Smith"}],
                    "gender": "male"}],
        fixture=[{"id": "minimum", "resource": {"reference": "#minimum"}},
                 {"id": "more", "resource": {"reference": "#more"}}],
        variable=[{"name": "version", "expression": "meta.versionId"}],
        profile=[{"id": "patient", "reference": CORE + "Patient"},
                 {"id": "report", "reference": CORE + "TestReport"},
                 {"id": "local", "reference": "https://example.org/StructureDefinition/Local"}],
        setup={"action": [op("create", resource="Patient", sourceId="minimum",
                             responseId="created")]})
    result = run_script(script)
    assert result.setup[0].result == "pass"
    return result.tests[0].actions[1:]


CASES = [
    # (assert, expected result, message fragment)
    (check(response="okay"), "pass", "the response code equals '200 (okay)'"),
    (check(response="notFound"), "fail", "the response code should equal '404 (notFound)', got '200'"),
    (check(response="teapot"), "skip", "response 'teapot' is not a TestScript response code"),
    (check(responseCode="200"), "pass", "equals '200'"),
    (check(responseCode="201,200"), "pass", "is one of '201,200'"),
    (check(responseCode="201", operator="notEquals"), "pass", "does not equal '201'"),
    (check(responseCode="201"), "fail", "should equal '201', got '200'"),
    (check(contentType="json"), "pass", "the content type equals 'application/fhir+json'"),
    (check(contentType="application/fhir+json"), "pass", "equals"),
    (check(contentType="xml"), "fail",
     "the content type should equal 'application/fhir+xml', got 'application/fhir+json'"),
    (check(headerField="ETag", value='W/"2"'), "pass", "header ETag equals 'W/\"2\"'"),
    (check(headerField="ETag", value='W/"${version}"'), "pass", "equals 'W/\"${version}\"'"),
    (check(headerField="etag"), "pass", "header etag is present"),
    (check(headerField="Location", operator="contains", value="/_history/"), "fail",
     "header Location should contain '/_history/', got nothing"),
    (check(headerField="X-Missing", operator="empty"), "pass", "header X-Missing is empty"),
    (check(resource="Patient"), "pass", "the resource type equals 'Patient'"),
    (check(resource="Observation"), "fail",
     "the resource type should equal 'Observation', got 'Patient'"),
    (check(minimumId="minimum"), "pass", "the resource holds everything fixture minimum holds"),
    (check(minimumId="more"), "fail", "the resource lacks what fixture more holds: Patient.gender"),
    (check(expression="name.family = 'Smith'"), "pass", "name.family = 'Smith' holds"),
    (check(expression="name.family = 'Jones'"), "fail", "should hold, got false"),
    (check(expression="telecom"), "fail", "telecom should hold, got nothing"),
    (check(expression="Patient.name.family", value="Smith"), "pass", "equals 'Smith'"),
    (check(expression="Patient.name.family", value="Jones"), "fail",
     "Patient.name.family should equal 'Jones', got 'Smith'"),
    (check(expression="telecom", operator="empty"), "pass", "telecom is empty"),
    (check(expression="birthDate", operator="greaterThan", value="2014-12-31"), "pass", "greater"),
    (check(expression="name.noSuchFunction()"), "error", "cannot evaluate FHIRPath"),
    (check(path="$.name[0].family", value="Smith"), "pass", "$.name[0].family equals 'Smith'"),
    (check(path="/f:Patient/f:id"), "skip", "path is XPath"),
    (check(compareToSourceId="created", compareToSourceExpression="Patient.id"), "pass",
     "Patient.id compared with Patient.id of created: equal"),
    (check(compareToSourceId="created", compareToSourceExpression="Patient.meta.versionId"),
     "fail", ("Patient.meta.versionId compared with Patient.meta.versionId of created: should "
             "equal, got '2' against '1'")),
    (check(compareToSourceId="created", compareToSourceExpression="Patient.meta.versionId",
           operator="notEquals"), "pass", "different"),
    (check(compareToSourceId="created", compareToSourcePath="$.name[0].family",
           path="$.name[0].family"), "pass", "equal"),
    (check(compareToSourceId="minimum", compareToSourceExpression="name.family",
           expression="Patient.name.family"), "pass", "equal"),
    (check(compareToSourceId="created"), "error",
     "compareToSourceId needs one compareToSourceExpression or compareToSourcePath"),
    (check(validateProfileId="patient"), "pass", f"valid against {CORE}Patient"),
    (check(validateProfileId="local"), "skip", "is not a core FHIR R4 profile"),
    (check(validateProfileId="nope"), "error", "validateProfileId nope names no profile"),
    (check(validateProfileId="report"), "fail", "profile TestReport: the resource is a Patient"),
    (check(requestMethod="get"), "pass", "the request method equals 'get'"),
    (check(requestMethod="post"), "fail", "should equal 'post', got 'get'"),
    (check(requestURL="Patient/p1"), "pass", "the request URL equals 'Patient/p1'"),
    (check(direction="request", headerField="Authorization", value="Bearer unit"), "pass",
     "header Authorization equals"),
    (check(response="notFound", warningOnly=True), "warning", "should equal '404 (notFound)'"),
    (check(response="okay", operator="roughly"), "skip", "'roughly' is not a TestScript operator"),
    (check(response="okay", requirement=[{"linkUri": "x"}]), "skip", "uses requirement"),
    (check(label="nothing"), "skip", "checks nothing this runner understands"),
    (check(response="okay", sourceId="created"), "fail", "got '201'"),
]


@pytest.mark.parametrize(("spec", "outcome", "message"), CASES,
                         ids=[f"{i}-{c[1]}" for i, c in enumerate(CASES)])
def test_assertion(server: Recorder, run_script: Callable[..., ScriptResult], spec: dict[str, Any],
                   outcome: str, message: str) -> None:
    spec["assert"].setdefault("label", "under test")
    (result,) = _run(run_script, spec)
    assert result.result == outcome, result.message
    assert message in result.message


def test_header_variables_resolve_against_the_named_response(
        server: Recorder, run_script: Callable[..., ScriptResult]) -> None:
    script = make_script(
        {"name": "t", "action": [op("read", resource="Patient", params="/p1"),
                                 check(headerField="ETag", value='W/"${version}"')]},
        variable=[{"name": "version", "expression": "meta.versionId"}])
    result = run_script(script)
    assert result.tests[0].actions[1].result == "pass"


def test_validate_profile_reports_the_strict_validators_errors(
        server: Recorder, run_script: Callable[..., ScriptResult]) -> None:
    (result,) = _run(run_script, check(validateProfileId="patient"), read="/bad")
    assert result.result == "fail"
    assert result.message.startswith("1 error(s) against http://hl7.org/fhir/StructureDefinition/"
                                     "Patient: Patient.gender: ")


def test_validate_profile_skips_types_the_validator_does_not_cover(
        server: Recorder, run_script: Callable[..., ScriptResult]) -> None:
    (result,) = _run(run_script, check(validateProfileId="report"), read="/1",
                     resource="TestReport")
    assert (result.result, result.message) == ("skip",
                                                "the strict validator does not cover TestReport")


def test_navigation_links(server: Recorder, run_script: Callable[..., ScriptResult]) -> None:
    (result,) = _run(run_script, check(navigationLinks=True), read="?name=s")
    assert result.result == "fail"
    assert result.message == "navigation links: 3 matches but only 1 here and no next link"
    PAGE["link"].append({"relation": "next", "url": "http://fhir.test/fhir/Patient?page=2"})
    try:
        (result,) = _run(run_script, check(navigationLinks=True), read="?name=s")
    finally:
        PAGE["link"].pop()
    assert (result.result, result.message) == ("pass", "navigation links are complete")


def test_request_side_expression_reads_the_request_body(
        server: Recorder, run_script: Callable[..., ScriptResult]) -> None:
    script = make_script(
        {"name": "t", "action": [op("create", resource="Patient", sourceId="f"),
                                 check(direction="request", expression="name.family",
                                       value="Smith"),
                                 check(direction="request", contentType="json")]},
        contained=[{"resourceType": "Patient", "id": "f", "name": [{"family": "Smith"}]}],
        fixture=[{"id": "f", "resource": {"reference": "#f"}}])
    result = run_script(script)
    assert [a.result for a in result.tests[0].actions] == ["pass", "pass", "pass"]


def test_an_assertion_before_any_operation_is_an_error(
        run_script: Callable[..., ScriptResult]) -> None:
    result = run_script(make_script({"name": "t", "action": [check(response="okay")]}))
    action = result.tests[0].actions[0]
    assert (action.result, action.message) == (
        "error", "there is no response to check (no operation ran before)")


def test_warning_only_failures_do_not_fail_the_test(
        server: Recorder, run_script: Callable[..., ScriptResult]) -> None:
    script = make_script({"name": "t", "action": [
        op("read", resource="Patient", params="/p1"),
        check(response="okay"), check(response="gone", warningOnly=True)]})
    result = run_script(script)
    assert [a.result for a in result.tests[0].actions] == ["pass", "pass", "warning"]
    assert result.tests[0].result == "pass"
    assert result.result == "pass"


def test_a_failed_assertion_fails_the_test_and_the_script(
        server: Recorder, run_script: Callable[..., ScriptResult]) -> None:
    script = make_script({"name": "t", "action": [
        op("read", resource="Patient", params="/p1"), check(response="gone"),
        check(resource="Patient")]})
    result = run_script(script)
    assert [a.result for a in result.tests[0].actions] == ["pass", "fail", "pass"]
    assert result.tests[0].result == "fail"
    assert result.result == "fail"
