"""What a run found: one result per action, grouped into tests, scripts and suites.

The shapes follow FHIR TestReport: an action is an operation or an assertion with a result of
``pass``, ``skip``, ``fail``, ``warning`` or ``error``. Messages are written to be stable between
runs (no clock values, no server-assigned ids in passing messages) so reports can be diffed.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "ActionKind",
    "ActionResult",
    "Outcome",
    "ScriptResult",
    "SuiteResult",
    "TestResult",
    "worst",
]

Outcome = Literal["pass", "skip", "fail", "warning", "error"]
ActionKind = Literal["operation", "assert"]

# How bad each outcome is when several are combined into one.
_RANK: dict[str, int] = {"pass": 0, "warning": 1, "skip": 2, "fail": 3, "error": 4}


def worst(outcomes: list[Outcome]) -> Outcome:
    """Return the most severe outcome of a list (``pass`` for an empty list)."""
    if not outcomes:
        return "pass"
    return max(outcomes, key=lambda o: _RANK[o])


@dataclass(frozen=True)
class ActionResult:
    """The result of one operation or assertion."""

    kind: ActionKind
    result: Outcome
    label: str
    message: str = ""


@dataclass
class TestResult:
    """The results of one test (a TestScript test, or one check of a SOAP contract suite)."""

    __test__ = False  # named after FHIR, not a pytest test class

    name: str
    description: str = ""
    actions: list[ActionResult] = field(default_factory=list)

    @property
    def result(self) -> Outcome:
        """Return fail/error when an action failed, skip when one was skipped, else pass.

        A test with a skipped action has not shown conformance, so it is never reported as
        passed; warnings (``warningOnly`` assertions that failed) do not fail it.
        """
        outcome = worst([a.result for a in self.actions])
        return "pass" if outcome == "warning" else outcome

    def problems(self) -> list[ActionResult]:
        """Return the actions that did not pass, in order."""
        return [a for a in self.actions if a.result != "pass"]


@dataclass
class ScriptResult:
    """The results of one TestScript (or one SOAP contract suite file)."""

    suite: str
    key: str
    name: str
    title: str
    reference: str
    target: str
    setup: list[ActionResult] = field(default_factory=list)
    tests: list[TestResult] = field(default_factory=list)
    teardown: list[ActionResult] = field(default_factory=list)

    @property
    def result(self) -> Literal["pass", "fail"]:
        """Return fail when setup, teardown or any test failed or errored."""
        outcomes = [a.result for a in (*self.setup, *self.teardown)]
        outcomes += [t.result for t in self.tests]
        return "fail" if worst(outcomes) in ("fail", "error") else "pass"

    def counts(self) -> Counter[str]:
        """Return how many tests passed, failed, errored and were skipped."""
        return Counter(t.result for t in self.tests)

    @property
    def score(self) -> float:
        """Return the fraction of tests that passed (1.0 when there are none)."""
        if not self.tests:
            return 1.0
        return round(self.counts()["pass"] / len(self.tests), 4)


@dataclass
class SuiteResult:
    """The results of every script of one suite."""

    name: str
    scripts: list[ScriptResult] = field(default_factory=list)

    def counts(self) -> Counter[str]:
        """Return test counts by outcome over every script."""
        total: Counter[str] = Counter()
        for script in self.scripts:
            total.update(script.counts())
        return total

    @property
    def failed(self) -> bool:
        """Return whether any script failed."""
        return any(s.result == "fail" for s in self.scripts)
