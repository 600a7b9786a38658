"""Every shipped suite passes against Wraparound: gateway-core over HTTP, SOAP suites on the mock."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from lxml import etree

from gateway.cli.conformance import conformance
from gateway.conformance import FhirTarget, SoapTarget, Targets, resolve_suite, run_suites


def test_gateway_core_passes_against_the_gateway(live_server: Any) -> None:
    url = f"{live_server.url}/fhir"
    target = FhirTarget(url, headers={"Authorization": live_server.headers["Authorization"]})
    (result,) = run_suites([resolve_suite("gateway-core")], Targets(fhir=target))
    problems = [f"{s.key} / {t.name}: {a.label}: {a.message}" for s in result.scripts
                for t in s.tests for a in t.actions if a.result != "pass"]
    problems += [f"{s.key} / {a.label}: {a.message}" for s in result.scripts
                 for a in (*s.setup, *s.teardown) if a.result != "pass"]
    assert problems == []
    assert result.counts()["pass"] >= 40


def test_the_facade_suites_pass_against_the_gateway(live_server: Any) -> None:
    target = FhirTarget(f"{live_server.url}/fhir",
                        headers={"Authorization": live_server.headers["Authorization"]})
    results = run_suites([resolve_suite("national-pds"), resolve_suite("national-cpis")],
                         Targets(fhir=target))
    problems = [f"{s.key} / {t.name}: {a.label}: {a.message}" for r in results
                for s in r.scripts for t in s.tests for a in t.actions if a.result != "pass"]
    assert problems == []
    assert [r.counts()["pass"] for r in results] == [8, 6]


def test_the_soap_suites_pass_against_the_mock(mock: str) -> None:
    # `mock`, not `mock_url`: the suites' (refused) uploads move the mock's counters, which the
    # fixture resets afterwards for the tests that count them.
    mock_url = mock
    suites = [resolve_suite("soap-pds"), resolve_suite("soap-cpis"),
              resolve_suite("soap-contactpoint"), resolve_suite("soap-ecaf")]
    results = run_suites(suites, Targets(soap=SoapTarget(mock_url)))
    problems = [f"{s.key} / {t.name}: {a.label}: {a.message}" for r in results
                for s in r.scripts for t in s.tests for a in t.actions if a.result != "pass"]
    assert problems == []
    assert [r.counts()["pass"] for r in results] == [29, 28, 32, 26]


def test_the_cli_runs_every_shipped_suite_and_writes_reports(
        live_server: Any, mock: str, tmp_path: Path) -> None:
    mock_url = mock  # the suites' uploads move the mock's counters; `mock` resets them after
    out = tmp_path / "reports"
    result = CliRunner().invoke(conformance, [
        "run", "all", "--base-url", f"{live_server.url}/fhir",
        "--header", f"Authorization: {live_server.headers['Authorization']}",
        "--soap-url", mock_url, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "gateway-core\n  capability" in result.output
    assert "FAILURES" not in result.output and "SKIPPED" not in result.output
    assert "all                      pass  196 passed" in result.output
    junit = etree.parse(str(out / "junit.xml")).getroot()
    assert (junit.get("tests"), junit.get("failures"), junit.get("errors"),
            junit.get("skipped")) == ("196", "0", "0", "0")
    reports = sorted(p.relative_to(out).as_posix() for p in out.glob("*/*.testreport.json"))
    assert "gateway-core/crud.testreport.json" in reports
    assert "soap-pds/soap-pds.testreport.json" in reports
    crud = json.loads((out / "gateway-core/crud.testreport.json").read_text())
    assert (crud["resourceType"], crud["result"], crud["score"]) == ("TestReport", "pass", 1.0)


def test_token_from_cli_asks_dev_token_for_the_same_database(
        live_server: Any, settings: Any, tmp_path: Path) -> None:
    script = resolve_suite("gateway-core").files[0].parent / "crud.yaml"
    env = {"WRAPAROUND_ENV": "test",
           "WRAPAROUND_DATABASE_URL": settings.database_url,
           "WRAPAROUND_DATA_DIR": str(settings.data_dir)}
    result = CliRunner(env={**os.environ, **env}).invoke(conformance, [
        "run", str(script), "--base-url", f"{live_server.url}/fhir",
        "--token-from-cli"])
    assert result.exit_code == 0, result.output
    assert "crud" in result.output and "9 passed" in result.output
