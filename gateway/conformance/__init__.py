"""Conformance runs: FHIR TestScripts and SOAP contract suites against any server, with reports.

- ``resolve_suite`` / ``shipped_suites`` find suites (shipped under ``suites/``, or any file or
  folder); ``run_suites`` runs them against ``Targets`` (a ``FhirTarget`` for TestScripts, a
  ``SoapTarget`` for contract suites) and returns ``SuiteResult`` objects;
- ``write_reports`` writes a FHIR TestReport per script, ``junit.xml`` and ``summary.txt``;
  ``summary`` is the readable text the CLI prints.

Errors that stop a run before it starts are ``ConformanceError`` (``SuiteNotFound``,
``SuiteInvalid``); everything found while running is a result, never an exception.
"""
from __future__ import annotations

from gateway.conformance.errors import ConformanceError, SuiteInvalid, SuiteNotFound
from gateway.conformance.reports import junit_xml, summary, test_report, write_reports
from gateway.conformance.results import ActionResult, ScriptResult, SuiteResult, TestResult
from gateway.conformance.runner import Progress, Targets, run_suite, run_suites
from gateway.conformance.soap import SoapContractRunner, SoapTarget, load_contract
from gateway.conformance.suites import Suite, resolve_suite, shipped_suites
from gateway.conformance.testscript import FhirTarget, TestScriptRunner, load_testscript

__all__ = [
    "ActionResult",
    "ConformanceError",
    "FhirTarget",
    "Progress",
    "ScriptResult",
    "SoapContractRunner",
    "SoapTarget",
    "Suite",
    "SuiteInvalid",
    "SuiteNotFound",
    "SuiteResult",
    "Targets",
    "TestResult",
    "TestScriptRunner",
    "junit_xml",
    "load_contract",
    "load_testscript",
    "resolve_suite",
    "run_suite",
    "run_suites",
    "shipped_suites",
    "summary",
    "test_report",
    "write_reports",
]
