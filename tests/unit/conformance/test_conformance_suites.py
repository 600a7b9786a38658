"""The shipped suites: found by name, well-formed, and using only what the engine supports."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.conformance import (
    FhirTarget,
    SuiteInvalid,
    SuiteNotFound,
    TestScriptRunner,
    load_contract,
    load_testscript,
    resolve_suite,
    shipped_suites,
)
from gateway.conformance.testscript import (
    _ASSERT_KEYS,
    _OPERATION_KEYS,
    NAMED_OPERATIONS,
    REST_OPERATIONS,
)


def _suite(name: str) -> Any:
    return next(s for s in shipped_suites() if s.name == name)


def test_shipped_suites() -> None:
    found = {s.name: s.kind for s in shipped_suites()}
    assert found["gateway-core"] == "fhir"
    assert found["national-pds"] == found["national-cpis"] == "fhir"
    assert found["soap-pds"] == "soap"
    assert found["soap-cpis"] == "soap"
    assert found["soap-contactpoint"] == found["soap-ecaf"] == "soap"


def test_gateway_core_has_at_least_forty_tests_with_unique_names() -> None:
    suite = _suite("gateway-core")
    names: list[str] = []
    ids: set[str] = set()
    for path in suite.files:
        script = load_testscript(path)
        assert script["id"] not in ids
        ids.add(script["id"])
        assert script["url"].endswith("/" + script["id"])
        names.extend(f"{path.stem}/{t['name']}" for t in script["test"])
    assert len(names) >= 40
    assert len(set(names)) == len(names)
    assert {p.suffix for p in suite.files} == {".yaml", ".json"}


FHIR_SCRIPTS = [p for s in shipped_suites() if s.kind == "fhir" for p in s.files]


@pytest.mark.parametrize("path", FHIR_SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_shipped_scripts_use_only_supported_features(path: Path) -> None:
    script = load_testscript(path)
    runner = TestScriptRunner(script, target=FhirTarget("http://unused.test/fhir"),
                              base_dir=path.parent)
    assert runner._unsupported_script() is None
    runner._load_definitions()  # every fixture resolves
    actions = [a for phase in ("setup", "teardown") for a in (script.get(phase) or {}).get(
        "action", [])] + [a for t in script["test"] for a in t["action"]]
    for action in actions:
        if "operation" in action:
            code = action["operation"]["type"]["code"]
            assert code in REST_OPERATIONS | NAMED_OPERATIONS, code
            assert set(action["operation"]) <= _OPERATION_KEYS, action
        else:
            spec = action["assert"]
            assert set(spec) <= _ASSERT_KEYS, spec
            assert spec["warningOnly"] in (True, False), spec
            assert spec.get("label"), spec


@pytest.mark.parametrize("name", ["soap-pds", "soap-cpis", "soap-contactpoint", "soap-ecaf"])
def test_contract_suites_load_and_name_real_operations(name: str) -> None:
    contract = load_contract(_suite(name).files[0])
    assert contract.checks
    for check in contract.checks:
        if check.get("operation"):
            assert check["operation"] in contract.wsdl.actions
        code = (check.get("expect") or {}).get("code")
        if code is not None:
            assert code in contract.documented, code
    kinds = {k for c in contract.checks for k in ("wsdl", "operation", "hostile") if k in c}
    assert kinds == {"wsdl", "operation", "hostile"}
    envelopes = {str(c.get("envelope")) for c in contract.checks}
    assert {"{'message_id': 'omit'}", "{'security': 'omit'}", "{'security': 'expired'}"} <= envelopes


def test_resolve_by_name_file_and_folder(tmp_path: Path) -> None:
    assert resolve_suite("gateway-core").kind == "fhir"
    core = _suite("gateway-core")
    single = resolve_suite(str(core.files[0]))
    assert (single.kind, single.files) == ("fhir", (core.files[0],))
    folder = resolve_suite(str(core.files[0].parent))
    assert folder.files == core.files
    assert resolve_suite(str(_suite("soap-pds").files[0])).kind == "soap"


def test_resolve_refuses_what_is_not_a_suite(tmp_path: Path) -> None:
    with pytest.raises(SuiteNotFound, match="is not a shipped suite"):
        resolve_suite("no-such-suite")
    (tmp_path / "x.yaml").write_text("resourceType: Patient\n")
    with pytest.raises(SuiteInvalid, match="neither a TestScript nor a SOAP contract"):
        resolve_suite(str(tmp_path / "x.yaml"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SuiteInvalid, match="holds no TestScript"):
        resolve_suite(str(empty))
