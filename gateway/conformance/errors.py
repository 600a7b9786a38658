"""Errors of the conformance runner.

    ConformanceError          anything that stops a suite from being run at all
    ├── SuiteNotFound         a SUITE argument names no shipped suite, file or folder
    └── SuiteInvalid          a suite file cannot be read or is not a suite we understand

Problems found while a suite runs (a failed assertion, an unreachable server, an unsupported
TestScript feature) are never raised: they are results, reported per action.
"""
from __future__ import annotations

from typing import Any

import yaml

__all__ = ["ConformanceError", "SuiteInvalid", "SuiteNotFound", "load_yaml", "parse_position"]

# libyaml's safe loader when PyYAML was built with it (much faster), else the pure-Python one.
_SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ConformanceError(Exception):
    """Base of the errors that stop a conformance run before it starts."""


class SuiteNotFound(ConformanceError):
    """A SUITE argument names no shipped suite, file or folder."""


class SuiteInvalid(ConformanceError):
    """A suite file cannot be read, or is neither a TestScript nor a SOAP contract suite."""


def parse_position(exc: Exception) -> str:
    """Return where a JSON or YAML parse error is, as 'line N', for SuiteInvalid messages."""
    line = getattr(exc, "lineno", None)
    if isinstance(line, int):
        return f"line {line}"
    mark = getattr(exc, "problem_mark", None)
    return f"line {mark.line + 1}" if mark is not None else "position unknown"


def load_yaml(text: str) -> Any:
    """Parse YAML text with a safe loader (no Python objects)."""
    return yaml.load(text, Loader=_SAFE_LOADER)  # a safe loader: no Python objects
