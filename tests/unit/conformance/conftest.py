"""Fixtures for the conformance engine's unit tests: a recording FHIR fake and a runner helper."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conformance_fakes import BASE, Recorder, session_for

from gateway.conformance import FhirTarget, ScriptResult, TestScriptRunner


@pytest.fixture
def recorder() -> Recorder:
    """Return a fake FHIR server that records requests and answers what the test sets up."""
    return Recorder()


@pytest.fixture
def run_script(recorder: Recorder, tmp_path: Path) -> Callable[..., ScriptResult]:
    """Return run(script, app=None, **runner options) -> ScriptResult against the recorder."""

    def run(script: dict[str, Any], app: Any = None, **options: Any) -> ScriptResult:
        target = FhirTarget(BASE, session=session_for(app or recorder.app()),
                            headers={"Authorization": "Bearer unit"})
        options.setdefault("base_dir", tmp_path)
        options.setdefault("run_id", "r1")
        return TestScriptRunner(script, target=target, suite="unit", key="unit",
                                **options).run()

    return run
