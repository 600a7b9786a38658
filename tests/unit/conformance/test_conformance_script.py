"""Fixtures, variables, setup/test/teardown, and unknown features reported as skipped."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conformance_fakes import Recorder, check, make_script, op

from gateway.conformance import ScriptResult, SuiteInvalid, load_testscript
from gateway.conformance import TestResult as _TestResult

NEW = {"resourceType": "Patient", "id": "new1", "meta": {"versionId": "1"},
       "name": [{"family": "Smith"}]}


@pytest.fixture
def server(recorder: Recorder) -> Recorder:
    recorder.reply("POST", "/Patient", 201, NEW, ETag='W/"1"')
    recorder.reply("PUT", "*", 201, {"resourceType": "Patient", "id": "fixed"})
    recorder.reply("DELETE", "*", 204)
    recorder.reply("GET", "*", 200, NEW, ETag='W/"1"', X_Trace="t-1")
    return recorder


def _fixtures(*specs: tuple[str, dict[str, Any], bool, bool]) -> dict[str, Any]:
    return {"contained": [dict(resource, id=fid) for fid, resource, _, _ in specs],
            "fixture": [{"id": fid, "autocreate": create, "autodelete": delete,
                         "resource": {"reference": f"#{fid}"}}
                        for fid, _, create, delete in specs]}


def test_autocreate_and_autodelete(server: Recorder,
                                   run_script: Callable[..., ScriptResult]) -> None:
    script = make_script(
        {"name": "t", "action": [op("read", resource="Patient", targetId="a"),
                                 check(response="okay")]},
        **_fixtures(("a", {"resourceType": "Patient", "name": [{"family": "A"}]}, True, True),
                    ("b", {"resourceType": "Patient", "name": [{"family": "B"}]}, True, True)))
    script["fixture"][1]["resource"] = {"reference": "b.json"}
    script["contained"].pop()
    result = run_script(script, base_dir=Path(__file__).parent / "data")
    assert [a.label for a in result.setup] == ["autocreate a", "autocreate b"]
    assert [a.result for a in result.setup] == ["pass", "pass"]
    post, put, read = server.seen[:3]
    assert (post.method, post.path, post.headers["Prefer"]) == ("POST", "/Patient",
                                                                "return=representation")
    assert (put.method, put.path) == ("PUT", "/Patient/fixed")
    assert (read.method, read.path) == ("GET", "/Patient/new1")
    deletes = [(s.method, s.path) for s in server.seen[3:]]
    assert deletes == [("DELETE", "/Patient/fixed"), ("DELETE", "/Patient/new1")]
    assert [a.label for a in result.teardown] == ["autodelete b", "autodelete a"]


def test_a_failed_autocreate_skips_every_test_with_the_reason(
        recorder: Recorder, run_script: Callable[..., ScriptResult]) -> None:
    recorder.reply("POST", "/Patient", 400, {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "invalid"}]})
    script = make_script(
        {"name": "one", "action": [op("read", resource="Patient", targetId="a")]},
        {"name": "two", "action": [op("read", resource="Patient", targetId="a")]},
        **_fixtures(("a", {"resourceType": "Patient"}, True, True)))
    result = run_script(script)
    assert result.setup[0].result == "fail"
    assert result.setup[0].message == "the server did not create the fixture (HTTP 400)"
    assert [t.result for t in result.tests] == ["skip", "skip"]
    assert result.tests[0].actions[0].message == "setup did not complete (autocreate a)"
    assert result.result == "fail"
    assert [s.method for s in recorder.seen] == ["POST"]


def test_variables_from_every_source(server: Recorder,
                                     run_script: Callable[..., ScriptResult]) -> None:
    script = make_script(
        {"name": "t", "action": [
            op("read", resource="Patient", params="/x", responseId="got"),
            op("search", resource="Patient",
               params="?a=${fromFixture}&b=${fromHeader}&c=${fromPath}&d=${fromDefault}"
                      "&e=${chained}&f=${RUN_ID}&g=${fromResponse}&h=${ORIGIN}")]},
        **_fixtures(("a", {"resourceType": "Patient", "name": [{"family": "Fam"}]}, True,
                     False)),
        variable=[{"name": "fromFixture", "expression": "Patient.id", "sourceId": "a"},
                  {"name": "fromHeader", "headerField": "X-Trace", "sourceId": "got"},
                  {"name": "fromPath", "path": "$.name[0].family", "sourceId": "a"},
                  {"name": "fromDefault", "expression": "telecom.value", "defaultValue": "none"},
                  {"name": "chained", "expression": "'${fromDefault}-x'", "sourceId": "got"},
                  {"name": "fromResponse", "expression": "meta.versionId"}])
    result = run_script(script)
    assert [a.result for a in result.tests[0].actions] == ["pass", "pass"], result.tests
    assert server.last.query == ("a=new1&b=t-1&c=Smith&d=none&e=none-x&f=r1&g=1"
                                 "&h=http://fhir.test")


def test_fixture_strings_take_variables(server: Recorder,
                                        run_script: Callable[..., ScriptResult]) -> None:
    script = make_script(
        {"name": "t", "action": [op("create", resource="Patient", sourceId="a")]},
        **_fixtures(("a", {"resourceType": "Patient", "name": [{"family": "F${RUN_ID}"}]},
                     False, False)))
    run_script(script)
    assert server.last.json()["name"] == [{"family": "Fr1"}]


def test_run_ids_differ_between_runs_unless_given(server: Recorder, tmp_path: Path) -> None:
    from conformance_fakes import BASE, session_for

    from gateway.conformance import FhirTarget, TestScriptRunner

    target = FhirTarget(BASE, session=session_for(server.app()))
    script = make_script({"name": "t", "action": [op("read", resource="Patient",
                                                     params="/${RUN_ID}")]})
    TestScriptRunner(script, target=target).run()
    TestScriptRunner(script, target=target).run()
    first, second = (s.path for s in server.seen)
    assert first != second and len(first) == len("/Patient/") + 10


@pytest.mark.parametrize(("change", "reason"), [
    ({"rule": [{"resource": {"reference": "x"}}]}, "the script uses rule"),
    ({"modifierExtension": [{"url": "x", "valueBoolean": True}]}, "modifierExtension"),
    ({"destination": [{"index": 1}, {"index": 2}]}, "several origins or destinations"),
    ({"fixture": [{"id": "f", "resource": {"reference": "http://elsewhere/Patient/1"}}]},
     "fixture f is remote"),
    ({"fixture": [{"id": "f", "resource": {"reference": "#f"}, "scope": "x"}]},
     "fixture uses scope"),
    ({"variable": [{"name": "v", "scope": "x"}]}, "variable uses scope"),
])
def test_unknown_script_features_skip_every_test(
        server: Recorder, run_script: Callable[..., ScriptResult], change: dict[str, Any],
        reason: str) -> None:
    script = make_script({"name": "one", "action": [op("capabilities"), check(response="okay")]},
                         {"name": "two", "action": [op("capabilities")]}, **change)
    result = run_script(script)
    assert [t.result for t in result.tests] == ["skip", "skip"]
    assert all(reason in t.actions[0].message for t in result.tests)
    assert server.seen == []
    assert result.result == "pass"


def test_a_missing_fixture_file_is_a_setup_error(recorder: Recorder,
                                                 run_script: Callable[..., ScriptResult]) -> None:
    script = make_script({"name": "t", "action": [op("capabilities")]},
                         fixture=[{"id": "f", "resource": {"reference": "missing.json"}}])
    result = run_script(script)
    assert (result.setup[0].result, result.setup[0].message) == (
        "error", "fixture f: cannot read missing.json")
    assert result.tests[0].result == "skip"
    assert result.result == "fail"


def test_unknown_test_elements_skip_the_test(server: Recorder,
                                             run_script: Callable[..., ScriptResult]) -> None:
    script = make_script({"name": "t", "requirement": [{}], "action": [op("capabilities")]},
                         {"name": "u", "action": [op("capabilities")]})
    result = run_script(script)
    assert [t.result for t in result.tests] == ["skip", "pass"]
    assert result.tests[0].actions[0].message == (
        "the test uses requirement, which this runner does not support")


def test_teardown_runs_after_failures_and_takes_operations_only(
        server: Recorder, run_script: Callable[..., ScriptResult]) -> None:
    script = make_script(
        {"name": "t", "action": [op("read", resource="Patient", params="/x"),
                                 check(response="gone")]},
        teardown={"action": [op("delete", resource="Patient", params="/x"),
                             check(response="okay")]})
    result = run_script(script)
    assert result.tests[0].result == "fail"
    assert [(a.kind, a.result) for a in result.teardown] == [("operation", "pass"),
                                                             ("operation", "skip")]
    assert server.last.method == "DELETE"


def test_setup_asserts_gate_the_tests(server: Recorder,
                                      run_script: Callable[..., ScriptResult]) -> None:
    script = make_script({"name": "t", "action": [op("capabilities")]},
                         setup={"action": [op("capabilities"), check(response="gone")]})
    result = run_script(script)
    assert [a.result for a in result.setup] == ["pass", "fail"]
    assert result.tests[0].result == "skip"
    assert "setup did not complete" in result.tests[0].actions[0].message


def test_progress_is_reported_per_test(server: Recorder,
                                       run_script: Callable[..., ScriptResult]) -> None:
    seen: list[_TestResult] = []
    script = make_script({"name": "one", "action": [op("capabilities")]},
                         {"name": "two", "action": [op("capabilities")]})
    run_script(script, on_test=seen.append)
    assert [t.name for t in seen] == ["one", "two"]


def test_load_testscript_reads_json_and_yaml(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("resourceType: TestScript\nname: A\n")
    (tmp_path / "b.json").write_text('{"resourceType": "TestScript", "name": "B"}')
    (tmp_path / "c.yaml").write_text("resourceType: Patient\n")
    (tmp_path / "d.json").write_text("{nope")
    assert load_testscript(tmp_path / "a.yaml")["name"] == "A"
    assert load_testscript(tmp_path / "b.json")["name"] == "B"
    with pytest.raises(SuiteInvalid, match="is not a TestScript"):
        load_testscript(tmp_path / "c.yaml")
    with pytest.raises(SuiteInvalid, match="is not valid JSON"):
        load_testscript(tmp_path / "d.json")
