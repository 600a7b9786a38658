"""`wraparound conformance`: listing, usage errors and exit codes."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.cli.conformance import conformance

SCRIPT = """\
resourceType: TestScript
id: down
name: Down
status: active
test:
  - name: metadata
    action:
      - operation: {type: {code: capabilities}}
      - assert: {response: okay, warningOnly: false}
"""


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner()


def test_list_names_the_shipped_suites(cli: CliRunner) -> None:
    result = cli.invoke(conformance, ["list"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert any(line.startswith("gateway-core") and "--base-url" in line for line in lines)
    assert any(line.startswith("soap-pds") and "--soap-url" in line for line in lines)
    assert any(line.startswith("soap-cpis") for line in lines)


@pytest.mark.parametrize(("args", "message"), [
    (["run"], "Missing argument 'SUITE...'"),
    (["run", "gateway-core"], "TestScript suites need --base-url"),
    (["run", "soap-pds", "--base-url", "http://x"], "SOAP contract suites need --soap-url"),
    (["run", "no-such", "--base-url", "http://x"], "is not a shipped suite"),
    (["run", "gateway-core", "--base-url", "http://x", "--header", "no colon"],
     "is not 'Name: value'"),
    (["run", "soap-pds", "--soap-url", "http://x", "--var", "novalue"], "is not NAME=VALUE"),
])
def test_usage_errors_exit_2(cli: CliRunner, args: list[str], message: str) -> None:
    result = cli.invoke(conformance, args)
    assert result.exit_code == 2
    assert message in result.output


def test_an_unreachable_server_fails_the_run(cli: CliRunner, tmp_path: Path) -> None:
    script = tmp_path / "down.yaml"
    script.write_text(SCRIPT)
    out = tmp_path / "out"
    result = cli.invoke(conformance, ["run", str(script), "--base-url",
                                      "http://127.0.0.1:9/fhir", "--timeout", "2",
                                      "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert "  down" in result.output and " E  0 passed, 1 errors" in result.output
    assert "[error] capabilities: no answer from the server (ConnectionError)" in result.output
    assert "all                      FAIL  0 passed, 1 errors" in result.output
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "down/down.testreport.json", "junit.xml", "summary.txt"]
