"""Every operation type the engine claims builds the request the FHIR spec describes."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conformance_fakes import Recorder, check, make_script, op

from gateway.conformance import ScriptResult

PATIENT = {"resourceType": "Patient", "id": "local", "name": [{"family": "Smith"}]}
BUNDLE = {"resourceType": "Bundle", "id": "tx", "type": "transaction", "entry": []}
CREATED = {"resourceType": "Patient", "id": "srv1", "meta": {"versionId": "3"},
           "name": [{"family": "Smith"}]}


def _script(action: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A script whose setup creates fixture `p` (the server calls it srv1, version 3)."""
    return make_script(
        {"name": "under test", "action": [action]},
        contained=[PATIENT, BUNDLE],
        fixture=[{"id": "p", "autocreate": False, "autodelete": False,
                  "resource": {"reference": "#local"}},
                 {"id": "tx", "autocreate": False, "autodelete": False,
                  "resource": {"reference": "#tx"}}],
        setup={"action": [op("create", resource="Patient", sourceId="p", responseId="made")]},
        **extra)


@pytest.fixture
def server(recorder: Recorder) -> Recorder:
    recorder.reply("POST", "/Patient", 201, CREATED, ETag='W/"3"',
                   Location="http://fhir.test/fhir/Patient/srv1/_history/3")
    return recorder


@pytest.mark.parametrize(("action", "method", "path", "query"), [
    (op("read", resource="Patient", targetId="p"), "GET", "/Patient/srv1", ""),
    (op("read", resource="Patient", params="/abc"), "GET", "/Patient/abc", ""),
    (op("read", targetId="made"), "GET", "/Patient/srv1", ""),
    (op("vread", resource="Patient", targetId="p"), "GET", "/Patient/srv1/_history/3", ""),
    (op("update", resource="Patient", sourceId="p", targetId="p"), "PUT", "/Patient/srv1", ""),
    (op("update", resource="Patient", sourceId="p", params="?identifier=a"), "PUT", "/Patient",
     "identifier=a"),
    (op("updateCreate", resource="Patient", sourceId="p", params="?x=1"), "PUT", "/Patient",
     "x=1"),
    (op("delete", resource="Patient", targetId="p"), "DELETE", "/Patient/srv1", ""),
    (op("deleteCondMultiple", resource="Patient", params="?identifier=a"), "DELETE", "/Patient",
     "identifier=a"),
    (op("search", resource="Patient", params="?name=smi&_count=2"), "GET", "/Patient",
     "name=smi&_count=2"),
    (op("search", params="?_id=1"), "GET", "/", "_id=1"),
    (op("history", resource="Patient", targetId="p"), "GET", "/Patient/srv1/_history", ""),
    (op("history", resource="Patient"), "GET", "/Patient/_history", ""),
    (op("history"), "GET", "/_history", ""),
    (op("transaction", sourceId="tx"), "POST", "/", ""),
    (op("batch", sourceId="tx"), "POST", "/", ""),
    (op("capabilities"), "GET", "/metadata", ""),
    (op("validate", resource="Patient", sourceId="p"), "POST", "/Patient/$validate", ""),
    (op("validate", resource="Patient", targetId="p", sourceId="p"), "POST",
     "/Patient/srv1/$validate", ""),
    (op("everything", resource="Patient", targetId="p"), "GET", "/Patient/srv1/$everything", ""),
    (op("match", resource="Patient", sourceId="p"), "POST", "/Patient/$match", ""),
    (op("read", url="Patient/${RUN_ID}"), "GET", "/Patient/r1", ""),
    (op("read", url="http://fhir.test/fhir/Patient/abs", method="delete"), "DELETE",
     "/Patient/abs", ""),
])
def test_operation_requests(server: Recorder, run_script: Callable[..., ScriptResult],
                            action: dict[str, Any], method: str, path: str, query: str) -> None:
    result = run_script(_script(action))
    outcome = result.tests[0].actions[0]
    assert outcome.result == "pass", outcome.message
    assert (server.last.method, server.last.path, server.last.query) == (method, path, query)
    assert server.last.headers["Authorization"] == "Bearer unit"
    assert server.last.headers["Accept"] == "application/fhir+json"


def test_create_sends_the_fixture_without_its_local_id(
        server: Recorder, run_script: Callable[..., ScriptResult]) -> None:
    run_script(_script(op("read", resource="Patient", targetId="p")))
    sent = server.seen[0]
    assert (sent.method, sent.path) == ("POST", "/Patient")
    assert sent.headers["Content-Type"] == "application/fhir+json"
    assert sent.json() == {"resourceType": "Patient", "name": [{"family": "Smith"}]}


def test_update_puts_the_target_id_into_the_body(
        server: Recorder, run_script: Callable[..., ScriptResult]) -> None:
    run_script(_script(op("update", resource="Patient", sourceId="p", targetId="p")))
    assert server.last.json()["id"] == "srv1"


def test_search_by_post_sends_a_form(server: Recorder,
                                     run_script: Callable[..., ScriptResult]) -> None:
    run_script(_script(op("search", resource="Patient", method="post",
                          params="name=smi&gender=female")))
    assert (server.last.method, server.last.path) == ("POST", "/Patient/_search")
    assert server.last.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert server.last.body == b"name=smi&gender=female"


def test_headers_if_match_and_if_none_exist_and_content_type(
        server: Recorder, run_script: Callable[..., ScriptResult]) -> None:
    script = _script(op("update", resource="Patient", sourceId="p", targetId="p",
                        contentType="application/json", accept="json",
                        requestHeader=[{"field": "If-Match", "value": "${etag}"},
                                       {"field": "If-None-Exist", "value": "identifier=${RUN_ID}"}]),
                     variable=[{"name": "etag", "headerField": "ETag", "sourceId": "made"}])
    run_script(script)
    headers = server.last.headers
    assert headers["If-Match"] == 'W/"3"'
    assert headers["If-None-Exist"] == "identifier=r1"
    assert headers["Content-Type"] == "application/json"


def test_query_values_are_percent_encoded(server: Recorder,
                                          run_script: Callable[..., ScriptResult]) -> None:
    run_script(_script(op("search", resource="Patient", params="?identifier=http://s|a b")))
    assert server.last.query == "identifier=http://s%7Ca%20b"


def test_fixture_files_json_yaml_and_raw(recorder: Recorder, tmp_path: Path,
                                         run_script: Callable[..., ScriptResult]) -> None:
    (tmp_path / "p.json").write_text(json.dumps({"resourceType": "Patient", "id": "f1"}))
    (tmp_path / "p.yaml").write_text("resourceType: Patient\ngender: other\n")
    (tmp_path / "broken.txt").write_bytes(b'{"resourceType": ')
    script = make_script(
        {"name": "files", "action": [
            op("updateCreate", resource="Patient", sourceId="json"),
            op("create", resource="Patient", sourceId="yaml"),
            op("create", resource="Patient", sourceId="raw")]},
        fixture=[{"id": "json", "resource": {"reference": "p.json"}},
                 {"id": "yaml", "resource": {"reference": "p.yaml"}},
                 {"id": "raw", "resource": {"reference": "broken.txt"}}])
    result = run_script(script)
    assert [a.result for a in result.tests[0].actions] == ["pass", "pass", "pass"]
    put, post_yaml, post_raw = recorder.seen
    assert (put.method, put.path, put.json()["id"]) == ("PUT", "/Patient/f1", "f1")
    assert post_yaml.json() == {"resourceType": "Patient", "gender": "other"}
    assert post_raw.body == b'{"resourceType": '


@pytest.mark.parametrize(("action", "reason"), [
    (op("patch", resource="Patient", targetId="p"), "operation type 'patch' is not supported"),
    (op("frobnicate", resource="Patient"), "operation type 'frobnicate' is not supported"),
    (op("read", resource="Patient", params="/1", accept="xml"), "accept xml is not supported"),
    (op("read", resource="Patient", params="/1", method="patch"), "PATCH is not supported"),
    ({"operation": {"type": {"code": "read"}, "resource": "Patient", "params": "/1",
                    "stopTestOnFail": True}}, "uses stopTestOnFail"),
    (op("read", resource="Patient", params="/1", destination=2), "several origins"),
])
def test_unsupported_operations_are_skipped_with_the_reason(
        server: Recorder, run_script: Callable[..., ScriptResult], action: dict[str, Any],
        reason: str) -> None:
    script = _script(action)
    script["test"][0]["action"].append(check(response="okay"))
    result = run_script(script)
    first, then = result.tests[0].actions
    assert first.result == "skip" and reason in first.message
    assert then.result == "skip" and "earlier operation was skipped" in then.message
    assert result.tests[0].result == "skip"
    assert all(s.method != "PATCH" for s in server.seen)


def test_an_unreachable_server_is_an_error_not_a_pass(
        run_script: Callable[..., ScriptResult]) -> None:
    import requests

    class Down(requests.adapters.BaseAdapter):
        def send(self, *args: Any, **kwargs: Any) -> requests.Response:
            raise requests.ConnectionError("refused")

        def close(self) -> None:
            """Nothing to close."""

    from gateway.conformance import FhirTarget, TestScriptRunner

    session = requests.Session()
    session.mount("http://", Down())
    script = make_script({"name": "t", "action": [op("read", resource="Patient", params="/1"),
                                                  check(response="okay")]})
    result = TestScriptRunner(script, target=FhirTarget("http://down.test/fhir",
                                                        session=session)).run()
    first, then = result.tests[0].actions
    assert (first.result, first.message) == ("error", "no answer from the server (ConnectionError)")
    assert then.result == "skip"
    assert result.result == "fail"


def test_missing_pieces_are_errors_with_the_reason(
        server: Recorder, run_script: Callable[..., ScriptResult]) -> None:
    cases = [
        (op("create", resource="Patient"), "create needs a sourceId"),
        (op("read", resource="Patient", targetId="nope"), "targetId nope names no fixture or response"),
        (op("read", resource="Patient", params="/${unset}"), "variable ${unset} has no value"),
        (op("transaction"), "transaction needs a sourceId with the Bundle"),
    ]
    for action, message in cases:
        result = run_script(_script(action))
        outcome = result.tests[0].actions[0]
        assert (outcome.result, outcome.message) == ("error", message)
