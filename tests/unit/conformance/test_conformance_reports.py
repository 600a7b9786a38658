"""TestReport, JUnit XML and the readable summary: complete, valid and the same on every run."""
from __future__ import annotations

from pathlib import Path

from fhir.resources.R4B.testreport import TestReport as _FhirTestReport
from lxml import etree

from gateway.conformance import ActionResult, ScriptResult, SuiteResult, junit_xml, summary
from gateway.conformance import TestResult as _TestResult
from gateway.conformance.reports import progress_line, report_id, write_reports
from gateway.conformance.reports import test_report as _test_report

ISSUED = "2026-09-01T09:00:00Z"


def _results() -> list[SuiteResult]:
    good = ScriptResult(suite="core", key="crud", name="Crud", title="CRUD",
                        reference="https://example.org/TestScript/crud",
                        target="http://server/fhir")
    good.setup = [ActionResult("operation", "pass", "autocreate p", "create Patient: HTTP 201")]
    good.tests = [
        _TestResult("create", "creates", [ActionResult("operation", "pass", "create", "HTTP 201"),
                                          ActionResult("assert", "pass", "201", "ok")]),
        _TestResult("read", "", [ActionResult("operation", "pass", "read", "HTTP 200"),
                                 ActionResult("assert", "fail", "ETag",
                                              "header ETag should not be empty, got nothing"),
                                 ActionResult("assert", "warning", "410", "should equal 410")]),
        _TestResult("patch", "", [ActionResult("operation", "skip", "patch",
                                               "PATCH is not supported by this runner")]),
        _TestResult("down", "", [ActionResult("operation", "error", "read",
                                              "no answer from the server (ConnectionError)")]),
        _TestResult("warned", "", [ActionResult("assert", "warning", "304", "not 304")]),
    ]
    good.teardown = [ActionResult("operation", "fail", "autodelete p",
                                  "delete Patient answered HTTP 403")]
    soap = ScriptResult(suite="soap-x", key="soap-x", name="soap-x", title="SOAP X",
                        reference="", target="http://mock/x")
    soap.tests = [_TestResult("wsdl", "", [ActionResult("assert", "pass", "HTTP 200", "ok")])]
    return [SuiteResult("core", [good]), SuiteResult("soap-x", [soap])]


def test_test_report_is_a_valid_r4_test_report() -> None:
    core, soap = _results()
    report = _test_report(core.scripts[0], ISSUED)
    _FhirTestReport.model_validate(report)
    _FhirTestReport.model_validate(_test_report(soap.scripts[0], ISSUED))
    assert report["id"] == "core-crud"
    assert report["result"] == "fail"
    assert report["score"] == 0.4
    assert report["issued"] == ISSUED
    assert report["testScript"] == {"reference": "https://example.org/TestScript/crud",
                                    "display": "CRUD"}
    assert report["participant"] == [{"type": "server", "uri": "http://server/fhir"}]
    read = report["test"][1]
    assert read["action"][1] == {"assert": {
        "result": "fail", "message": "ETag: header ETag should not be empty, got nothing"}}
    assert report["setup"]["action"][0]["operation"]["result"] == "pass"
    assert report["teardown"]["action"][0]["operation"]["result"] == "fail"
    assert _test_report(soap.scripts[0], ISSUED)["testScript"] == {"display": "SOAP X"}


def test_report_ids_are_valid_fhir_ids() -> None:
    script = ScriptResult(suite="my suite", key="a/b:c" * 20, name="n", title="t",
                          reference="", target="")
    rid = report_id(script)
    assert len(rid) <= 64 and all(c.isalnum() or c in "-." for c in rid)


def test_junit_counts_and_messages() -> None:
    root = etree.fromstring(junit_xml(_results()))
    assert root.tag == "testsuites"
    assert {k: root.get(k) for k in ("tests", "failures", "errors", "skipped")} == {
        "tests": "7", "failures": "1", "errors": "2", "skipped": "1"}
    suite = root.find("testsuite[@name='core.crud']")
    assert suite is not None
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert list(cases) == ["create", "read", "patch", "down", "warned", "teardown"]
    failure = cases["read"].find("failure")
    assert failure is not None
    assert failure.get("message") == "header ETag should not be empty, got nothing"
    assert "[warning] 410: should equal 410" in (failure.text or "")
    skipped = cases["patch"].find("skipped")
    assert skipped is not None and skipped.get("message") == "PATCH is not supported by this runner"
    assert cases["down"].find("error") is not None
    assert cases["teardown"].find("error") is not None
    assert cases["warned"].find("system-out") is not None
    assert not any(e.get("time") or e.get("timestamp") or e.get("hostname")
                   for e in root.iter())


def test_summary_lists_problems_skips_and_totals() -> None:
    text = summary(_results())
    assert "core\n  crud" in text
    assert progress_line(_results()[0].scripts[0]).split()[1] == ".FsE."
    assert ("core / crud / read\n    [fail] ETag: header ETag should not be empty, got nothing"
            in text)
    assert "core / crud / teardown\n    [fail] autodelete p: delete Patient answered HTTP 403" in text
    assert "core / crud / down\n    [error] read: no answer from the server" in text
    assert "SKIPPED\n  core / crud / patch: PATCH is not supported by this runner" in text
    assert "core / crud / read: 410: should equal 410" in text
    assert text.rstrip().endswith("all                      FAIL  3 passed, 1 failed, 1 errors, "
                                  "1 skipped")
    assert "soap-x                   pass  1 passed" in text


def test_reports_are_identical_between_runs(tmp_path: Path) -> None:
    first = write_reports(_results(), tmp_path / "one", ISSUED)
    second = write_reports(_results(), tmp_path / "two", ISSUED)
    names = [p.relative_to(tmp_path / "one").as_posix() for p in first]
    assert names == ["core/crud.testreport.json", "soap-x/soap-x.testreport.json",
                     "junit.xml", "summary.txt"]
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes()
