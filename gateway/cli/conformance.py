"""`wraparound conformance`: run TestScript and SOAP contract suites against a server."""
from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from gateway.conformance import (
    ConformanceError,
    FhirTarget,
    ScriptResult,
    SoapTarget,
    Suite,
    Targets,
    TestResult,
    resolve_suite,
    run_suites,
    shipped_suites,
    summary,
    write_reports,
)
from gateway.conformance.reports import MARKS

__all__ = ["conformance"]


@click.group()
def conformance() -> None:
    """Conformance suites: FHIR TestScripts and SOAP contracts, with TestReport and JUnit output."""


@conformance.command("list")
def list_() -> None:
    """List the suites shipped with Wraparound."""
    for suite in shipped_suites():
        target = "--base-url" if suite.kind == "fhir" else "--soap-url"
        count = len(suite.files)
        files = f"{count} script{'s' if count != 1 else ''}" if suite.kind == "fhir" \
            else "contract"
        click.echo(f"{suite.name:<16} {suite.kind:<5} {files:<11} needs {target}")


class _Printer:
    """Print progress: a line per script with a mark per test as it finishes."""

    def __init__(self) -> None:
        self.suite = ""

    def script_started(self, suite: str, key: str) -> None:
        if suite != self.suite:
            click.echo(suite)
            self.suite = suite
        click.echo(f"  {key:<44} ", nl=False)

    def test_finished(self, test: TestResult) -> None:
        click.echo(MARKS[test.result], nl=False)

    def script_finished(self, result: ScriptResult) -> None:
        counts = result.counts()
        setup = " setup failed" if any(a.result in ("fail", "error") for a in result.setup) \
            else ""
        parts = [f"{counts['pass']} passed"] + [
            f"{counts[k]} {w}" for k, w in (("fail", "failed"), ("error", "errors"),
                                             ("skip", "skipped")) if counts[k]]
        click.echo(f"  {', '.join(parts)}{setup}")


def _parse_header(value: str) -> tuple[str, str]:
    name, sep, text = value.partition(":")
    if not sep or not name.strip():
        raise click.BadParameter(f"{value!r} is not 'Name: value'", param_hint="--header")
    return name.strip(), text.strip()


def _parse_var(value: str) -> tuple[str, str]:
    name, sep, text = value.partition("=")
    if not sep or not name.strip():
        raise click.BadParameter(f"{value!r} is not NAME=VALUE", param_hint="--var")
    return name.strip(), text


TOKEN_SCOPE = "system/*.cruds"  # suites create, read, update, delete and search their own data


def _dev_token(agency: str) -> str:
    """Ask `wraparound dev-token` (same environment, so the same database) for a token."""
    command = [sys.executable, "-m", "gateway.cli", "dev-token", "--agency", agency,
               "--scope", TOKEN_SCOPE]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0 or not done.stdout.strip():
        reason = (done.stderr.strip().splitlines() or ["no token printed"])[-1]
        raise click.ClickException(f"wraparound dev-token --agency {agency} failed: {reason}")
    return done.stdout.strip().splitlines()[-1]


def _resolve(arguments: tuple[str, ...]) -> list[Suite]:
    suites: list[Suite] = []
    try:
        for argument in arguments:
            if argument == "all":
                suites.extend(shipped_suites())
            else:
                suites.append(resolve_suite(argument))
    except ConformanceError as exc:
        raise click.BadParameter(str(exc), param_hint="SUITE") from exc
    return suites


@conformance.command("run")
@click.argument("suite_names", metavar="SUITE...", nargs=-1, required=True)
@click.option("--base-url", help="FHIR base URL for TestScript suites, e.g. "
                                 "http://127.0.0.1:8080/fhir.")
@click.option("--header", "headers", multiple=True, metavar="'NAME: VALUE'",
              help="A header sent with every FHIR request; repeat for more.")
@click.option("--token-from-cli", "token_agency", is_flag=False, flag_value="social-care",
              default=None, metavar="[AGENCY]",
              help="Send a development bearer token (scope system/*.cruds) from `wraparound "
                   "dev-token` for AGENCY (default social-care); needs the gateway's "
                   "environment.")
@click.option("--soap-url", help="Base URL of the national SOAP services for contract suites, "
                                 "e.g. http://127.0.0.1:8090.")
@click.option("--var", "variables", multiple=True, metavar="NAME=VALUE",
              help="Replace a suite variable (a test person's details, a base URL); repeat "
                   "for more.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Write TestReports, junit.xml and summary.txt to this folder.")
@click.option("--timeout", default=30.0, show_default=True, type=float,
              help="Seconds to wait for each answer.")
def run(suite_names: tuple[str, ...], base_url: str | None, headers: tuple[str, ...],
        token_agency: str | None, soap_url: str | None, variables: tuple[str, ...],
        out: Path | None, timeout: float) -> None:
    """Run SUITE... (shipped names, files or folders; `all` for every shipped suite).

    Exits 0 when every suite passes, 1 when any test fails or errors, 2 on usage errors.
    """
    suites = _resolve(suite_names)
    if any(s.kind == "fhir" for s in suites) and not base_url:
        raise click.UsageError("TestScript suites need --base-url (the FHIR base)")
    if any(s.kind == "soap" for s in suites) and not soap_url:
        raise click.UsageError("SOAP contract suites need --soap-url (the national services)")
    sent = dict(_parse_header(h) for h in headers)
    if token_agency:
        sent["Authorization"] = f"Bearer {_dev_token(token_agency)}"
    values = dict(_parse_var(v) for v in variables)
    targets = Targets(
        fhir=FhirTarget(base_url, headers=sent, timeout=timeout, variables=values)
        if base_url else None,
        soap=SoapTarget(soap_url, timeout=timeout, variables=values) if soap_url else None)
    results = run_suites(suites, targets, _Printer())
    click.echo(summary(results, with_progress=False), nl=False)
    if out is not None:
        issued = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        written = write_reports(results, out, issued)
        click.echo(f"reports: {len(written) - 2} TestReports, junit.xml and summary.txt in {out}")
    if any(r.failed for r in results):
        sys.exit(1)
