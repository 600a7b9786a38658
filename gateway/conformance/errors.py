"""Errors of the conformance runner.

    ConformanceError          anything that stops a suite from being run at all
    ├── SuiteNotFound         a SUITE argument names no shipped suite, file or folder
    └── SuiteInvalid          a suite file cannot be read or is not a suite we understand

Problems found while a suite runs (a failed assertion, an unreachable server, an unsupported
TestScript feature) are never raised: they are results, reported per action.
"""
from __future__ import annotations

__all__ = ["ConformanceError", "SuiteInvalid", "SuiteNotFound"]


class ConformanceError(Exception):
    """Base of the errors that stop a conformance run before it starts."""


class SuiteNotFound(ConformanceError):
    """A SUITE argument names no shipped suite, file or folder."""


class SuiteInvalid(ConformanceError):
    """A suite file cannot be read, or is neither a TestScript nor a SOAP contract suite."""
