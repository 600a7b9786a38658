"""Reports of a run: a FHIR TestReport per script, JUnit XML for CI, and a readable summary.

Everything written is stable between runs of the same suites against the same server: the only
clock value is ``TestReport.issued``; ids are derived from suite and script names; no timings.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lxml import etree

from gateway.conformance.results import ActionResult, ScriptResult, SuiteResult, TestResult

__all__ = [
    "MARKS",
    "junit_xml",
    "progress_line",
    "report_id",
    "summary",
    "test_report",
    "write_reports",
]

MARKS = {"pass": ".", "fail": "F", "error": "E", "skip": "s", "warning": "."}
TESTER = "Wraparound conformance runner"
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9\-.]+")


def report_id(script: ScriptResult) -> str:
    """Return the TestReport id: suite and script names, as a valid FHIR id."""
    text = _ID_UNSAFE.sub("-", f"{script.suite}-{script.key}").strip("-.") or "report"
    return text[:64]


def _action(action: ActionResult) -> dict[str, Any]:
    detail: dict[str, Any] = {"result": action.result}
    message = f"{action.label}: {action.message}" if action.message else action.label
    detail["message"] = message
    return {action.kind: detail}


def test_report(script: ScriptResult, issued: str) -> dict[str, Any]:
    """Return the FHIR R4 TestReport for one script's results."""
    reference: dict[str, Any] = {"display": script.title}
    if script.reference:
        reference = {"reference": script.reference, "display": script.title}
    report: dict[str, Any] = {
        "resourceType": "TestReport",
        "id": report_id(script),
        "name": script.name,
        "status": "completed",
        "testScript": reference,
        "result": script.result,
        "score": script.score,
        "tester": TESTER,
        "issued": issued,
        "participant": [{"type": "server", "uri": script.target}],
    }
    if script.setup:
        report["setup"] = {"action": [_action(a) for a in script.setup]}
    if script.tests:
        report["test"] = [_test(t) for t in script.tests]
    teardown = [a for a in script.teardown if a.kind == "operation"]
    if teardown:
        report["teardown"] = {"action": [_action(a) for a in teardown]}
    return report


def _test(test: TestResult) -> dict[str, Any]:
    out: dict[str, Any] = {"name": test.name}
    if test.description:
        out["description"] = test.description
    out["action"] = [_action(a) for a in test.actions]
    return out


def _problem_text(actions: Sequence[ActionResult]) -> str:
    return "\n".join(f"[{a.result}] {a.label}: {a.message}" for a in actions)


def _junit_cases(script: ScriptResult) -> list[tuple[str, str, Sequence[ActionResult]]]:
    cases: list[tuple[str, str, Sequence[ActionResult]]] = []
    setup_problems = [a for a in script.setup if a.result in ("fail", "error")]
    if setup_problems:
        cases.append(("setup", "error", setup_problems))
    for test in script.tests:
        cases.append((test.name, test.result, test.problems()))
    teardown_problems = [a for a in script.teardown if a.result in ("fail", "error")]
    if teardown_problems:
        cases.append(("teardown", "error", teardown_problems))
    return cases


def junit_xml(results: Sequence[SuiteResult]) -> bytes:
    """Return JUnit XML: one testsuite per script, one testcase per test (no timings)."""
    root = etree.Element("testsuites", name="wraparound-conformance")
    totals: Counter[str] = Counter()
    for suite in results:
        for script in suite.scripts:
            cases = _junit_cases(script)
            counts = Counter(outcome for _, outcome, _ in cases)
            element = etree.SubElement(
                root, "testsuite", name=f"{suite.name}.{script.key}", tests=str(len(cases)),
                failures=str(counts["fail"]), errors=str(counts["error"]),
                skipped=str(counts["skip"]))
            for name, outcome, problems in cases:
                case = etree.SubElement(element, "testcase", classname=f"{suite.name}.{script.key}",
                                        name=name)
                first = problems[0].message if problems else ""
                if outcome == "fail":
                    failed = [a for a in problems if a.result == "fail"] or list(problems)
                    node = etree.SubElement(case, "failure", message=failed[0].message)
                    node.text = _problem_text(problems)
                elif outcome == "error":
                    node = etree.SubElement(case, "error", message=first)
                    node.text = _problem_text(problems)
                elif outcome == "skip":
                    skipped = [a for a in problems if a.result == "skip"] or list(problems)
                    etree.SubElement(case, "skipped", message=skipped[0].message)
                elif problems:
                    etree.SubElement(case, "system-out").text = _problem_text(problems)
            totals.update(counts)
            totals["tests"] += len(cases)
    for key, attribute in (("tests", "tests"), ("fail", "failures"), ("error", "errors"),
                           ("skip", "skipped")):
        root.set(attribute, str(totals[key]))
    return bytes(etree.tostring(root, encoding="UTF-8", xml_declaration=True, pretty_print=True))


def _counts_text(counts: Counter[str]) -> str:
    parts = [f"{counts['pass']} passed"]
    for key, word in (("fail", "failed"), ("error", "errors"), ("skip", "skipped")):
        if counts[key]:
            parts.append(f"{counts[key]} {word}")
    return ", ".join(parts)


def progress_line(script: ScriptResult, width: int = 44) -> str:
    """Return one script's line: its name, a mark per test and its counts."""
    marks = "".join(MARKS[t.result] for t in script.tests)
    setup = "E" if any(a.result in ("fail", "error") for a in script.setup) else ""
    return f"  {script.key:<{width}} {setup}{marks}  {_counts_text(script.counts())}"


def summary(results: Sequence[SuiteResult], *, with_progress: bool = True) -> str:
    """Return the readable summary: per-script lines, problems with messages, totals."""
    lines: list[str] = []
    if with_progress:
        for suite in results:
            lines.append(f"{suite.name}")
            lines.extend(progress_line(script) for script in suite.scripts)
    problems: list[str] = []
    skipped: list[str] = []
    warnings: list[str] = []
    for suite in results:
        for script in suite.scripts:
            where = f"{suite.name} / {script.key}"
            for phase, actions in (("setup", script.setup), ("teardown", script.teardown)):
                bad = [a for a in actions if a.result in ("fail", "error")]
                if bad:
                    problems.append(f"{where} / {phase}\n" + "\n".join(
                        f"    [{a.result}] {a.label}: {a.message}" for a in bad))
            for test in script.tests:
                bad = [a for a in test.actions if a.result in ("fail", "error")]
                if bad:
                    problems.append(f"{where} / {test.name}\n" + "\n".join(
                        f"    [{a.result}] {a.label}: {a.message}" for a in bad))
                elif test.result == "skip":
                    reason = next(a for a in test.actions if a.result == "skip")
                    skipped.append(f"{where} / {test.name}: {reason.message}")
                warnings.extend(f"{where} / {test.name}: {a.label}: {a.message}"
                                for a in test.actions if a.result == "warning")
    if problems:
        lines += ["", "FAILURES"] + problems
    if warnings:
        lines += ["", "WARNINGS (warningOnly assertions that did not hold)"]
        lines += [f"  {w}" for w in warnings]
    if skipped:
        lines += ["", "SKIPPED"] + [f"  {s}" for s in skipped]
    lines += ["", "SUMMARY"]
    total: Counter[str] = Counter()
    for suite in results:
        counts = suite.counts()
        total.update(counts)
        verdict = "FAIL" if suite.failed else "pass"
        lines.append(f"  {suite.name:<24} {verdict:<5} {_counts_text(counts)}")
    failed = any(s.failed for s in results)
    lines.append(f"  {'all':<24} {'FAIL' if failed else 'pass':<5} {_counts_text(total)}")
    return "\n".join(lines) + "\n"


def write_reports(results: Sequence[SuiteResult], out_dir: Path, issued: str) -> list[Path]:
    """Write TestReports (one per script), junit.xml and summary.txt; return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for suite in results:
        folder = out_dir / suite.name
        folder.mkdir(parents=True, exist_ok=True)
        for script in suite.scripts:
            path = folder / f"{script.key}.testreport.json"
            text = json.dumps(test_report(script, issued), indent=2, ensure_ascii=False)
            path.write_text(text + "\n", encoding="utf-8")
            written.append(path)
    junit = out_dir / "junit.xml"
    junit.write_bytes(junit_xml(results))
    readable = out_dir / "summary.txt"
    readable.write_text(summary(results), encoding="utf-8")
    return [*written, junit, readable]
