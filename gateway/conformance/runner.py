"""Run suites against their targets, reporting progress as each test finishes."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.conformance.results import ActionResult, ScriptResult, SuiteResult, TestResult
from gateway.conformance.soap import SoapContractRunner, SoapTarget, load_contract
from gateway.conformance.suites import Suite
from gateway.conformance.testscript import FhirTarget, TestScriptRunner, Validator, load_testscript

__all__ = ["Progress", "Targets", "run_suite", "run_suites"]


class Progress(Protocol):
    """Receives progress while suites run (the CLI prints it)."""

    def script_started(self, suite: str, key: str) -> None:
        """A script (or SOAP contract suite) starts."""

    def test_finished(self, test: TestResult) -> None:
        """One test finished."""

    def script_finished(self, result: ScriptResult) -> None:
        """A script finished (teardown done)."""


@dataclass
class Targets:
    """Where suites run: the FHIR base for TestScripts, the SOAP base for contract suites."""

    fhir: FhirTarget | None = None
    soap: SoapTarget | None = None
    validator: Validator | None = None


def _missing_target(suite: Suite, key: str, what: str) -> ScriptResult:
    result = ScriptResult(suite=suite.name, key=key, name=key, title=key, reference="",
                          target="")
    result.setup.append(ActionResult("operation", "error", "target",
                                     f"no {what} was given for this suite"))
    return result


def run_suite(suite: Suite, targets: Targets, progress: Progress | None = None) -> SuiteResult:
    """Run every script of one suite; problems become results, never exceptions."""
    outcome = SuiteResult(name=suite.name)
    for path in suite.files:
        key = path.stem
        if progress is not None:
            progress.script_started(suite.name, key)
        on_test = progress.test_finished if progress is not None else None
        if suite.kind == "fhir":
            if targets.fhir is None:
                result = _missing_target(suite, key, "FHIR base URL (--base-url)")
            else:
                runner = TestScriptRunner(load_testscript(path), target=targets.fhir,
                                          suite=suite.name, key=key, base_dir=path.parent,
                                          validator=targets.validator, on_test=on_test)
                result = runner.run()
        elif targets.soap is None:
            result = _missing_target(suite, key, "SOAP base URL (--soap-url)")
        else:
            contract = load_contract(path)
            result = SoapContractRunner(contract, target=targets.soap, suite=suite.name,
                                        key=key, on_test=on_test).run()
        outcome.scripts.append(result)
        if progress is not None:
            progress.script_finished(result)
    return outcome


def run_suites(suites: Sequence[Suite], targets: Targets,
               progress: Progress | None = None) -> list[SuiteResult]:
    """Run suites in order and return their results."""
    return [run_suite(suite, targets, progress) for suite in suites]
