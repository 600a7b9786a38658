"""Values in TestScripts: ``${variable}`` substitution, FHIRPath and JSONPath, and the operators.

Everything here is pure: no I/O, no state. Problems are raised as :class:`ExpressionError` (a bad
expression or path) or :class:`UnresolvedVariable` (a ``${name}`` with no value), which the
engine turns into action results.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = [
    "OPERATORS",
    "ExpressionError",
    "UnresolvedVariable",
    "as_text",
    "compare",
    "evaluate_fhirpath",
    "evaluate_jsonpath",
    "evaluate_path",
    "shorten",
    "substitute",
    "substitute_json",
]

VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_.\-]*)\}")
OPERATORS = ("equals", "notEquals", "in", "notIn", "greaterThan", "lessThan", "empty",
             "notEmpty", "contains", "notContains", "eval")
_JSONPATH_STEP = re.compile(r"\.([A-Za-z_$][\w\-$]*)|\[(\d+|\*)\]|\['([^']+)'\]")


class ExpressionError(ValueError):
    """An expression or path that cannot be evaluated."""


class UnresolvedVariable(LookupError):
    """A ``${name}`` reference whose variable has no value."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def substitute(text: str, lookup: Callable[[str], str | None]) -> str:
    """Replace every ``${name}`` in text with its value; raise UnresolvedVariable when unknown."""
    def replace(match: re.Match[str]) -> str:
        value = lookup(match.group(1))
        if value is None:
            raise UnresolvedVariable(match.group(1))
        return value

    return VARIABLE.sub(replace, text)


def substitute_json(value: Any, lookup: Callable[[str], str | None]) -> Any:
    """Return a copy of parsed JSON with variables substituted in every string."""
    if isinstance(value, str):
        return substitute(value, lookup) if "${" in value else value
    if isinstance(value, list):
        return [substitute_json(v, lookup) for v in value]
    if isinstance(value, dict):
        return {k: substitute_json(v, lookup) for k, v in value.items()}
    return value


def evaluate_fhirpath(resource: Any, expression: str,
                      variables: dict[str, Any] | None = None) -> list[Any]:
    """Evaluate a FHIRPath expression against parsed JSON (R4 model); return the collection."""
    from fhirpathpy import evaluate
    from fhirpathpy.models import models

    if resource is None:
        raise ExpressionError("there is no resource to evaluate against")
    try:
        result = evaluate(resource, expression, dict(variables or {}), models["r4"])
    except Exception as exc:  # fhirpathpy raises bare Exceptions for syntax and type errors
        raise ExpressionError(f"cannot evaluate FHIRPath {expression!r}: {exc}") from exc
    return list(result)


def evaluate_jsonpath(document: Any, path: str) -> list[Any]:
    """Evaluate a simple JSONPath (``$.a.b[0]``, ``[*]``, ``['x']``) and return the matches."""
    if not path.startswith("$"):
        raise ExpressionError(f"JSONPath {path!r} must start with $")
    rest = path[1:]
    nodes: list[Any] = [document]
    position = 0
    while position < len(rest):
        match = _JSONPATH_STEP.match(rest, position)
        if match is None:
            raise ExpressionError(f"JSONPath {path!r} is outside the supported subset "
                                  "(.name, [n], [*], ['name'])")
        position = match.end()
        name = match.group(1) or match.group(3)
        index = match.group(2)
        found: list[Any] = []
        for node in nodes:
            if name is not None and isinstance(node, dict) and name in node:
                found.append(node[name])
            elif index == "*" and isinstance(node, list):
                found.extend(node)
            elif (index is not None and index != "*" and isinstance(node, list)
                  and int(index) < len(node)):
                found.append(node[int(index)])
        nodes = found
    return nodes


def evaluate_path(document: Any, path: str) -> list[Any]:
    """Evaluate a TestScript ``path``: JSONPath when it starts with ``$``, else FHIRPath.

    XPath needs the XML format, which this runner does not request, so it is refused.
    """
    if path.startswith("$"):
        return evaluate_jsonpath(document, path)
    if path.startswith("/"):
        raise ExpressionError("XPath paths need the XML format, which this runner does not use")
    return evaluate_fhirpath(document, path)


def as_text(value: Any) -> str:
    """Return a value as TestScript compares it: booleans lower-case, JSON compact and sorted."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return str(value)


def shorten(text: str, limit: int = 120) -> str:
    """Return text cut to limit characters for a message."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _shown(values: list[Any]) -> str:
    if not values:
        return "nothing"
    if len(values) == 1:
        return repr(shorten(as_text(values[0])))
    return f"{len(values)} values ({shorten(', '.join(as_text(v) for v in values[:5]))})"


class _Shown:
    """An expected value, compared by its value and shown by its unsubstituted text."""

    def __init__(self, value: str, text: str) -> None:
        self.value = value
        self.text = text

    def __repr__(self) -> str:
        return repr(self.text)


def _number(text: str) -> Decimal | None:
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


def _order(left: str, right: str) -> int:
    a, b = _number(left), _number(right)
    if a is not None and b is not None:
        return (a > b) - (a < b)
    return (left > right) - (left < right)


def compare(operator: str, actual: list[Any], expected: str | None,
            what: str = "value", shown: str | None = None) -> tuple[bool, str]:
    """Apply a TestScript operator to a collection; return (passed, message).

    ``equals`` and friends need exactly one value; ``contains`` matches any item that equals
    the expected text or (for strings) holds it; ``eval`` passes when the collection is
    ``[true]``. Messages name what was checked, what was expected (as ``shown``, the value
    before substitution, so that passing messages are the same on every run) and, on failure,
    what was found.
    """
    texts = [as_text(v) for v in actual]
    single = texts[0] if len(texts) == 1 else None
    value = expected if expected is not None else ""
    want = _Shown(value, shown if shown is not None else value)
    if operator == "empty":
        return not texts, f"{what} is empty" if not texts else f"{what} should be empty, got {_shown(actual)}"
    if operator == "notEmpty":
        return bool(texts), (f"{what} is present" if texts else f"{what} should not be empty, got nothing")
    if operator == "eval":
        ok = actual == [True]
        return ok, f"{what} is true" if ok else f"{what} should be true, got {_shown(actual)}"
    if expected is None:
        raise ExpressionError(f"operator {operator} needs a value")
    if operator in ("equals", "notEquals"):
        equal = single == want.value
        if operator == "equals":
            return equal, (f"{what} equals {want!r}" if equal
                           else f"{what} should equal {want!r}, got {_shown(actual)}")
        return not equal, (f"{what} does not equal {want!r}" if not equal
                           else f"{what} should not equal {want!r}")
    if operator in ("in", "notIn"):
        options = [o.strip() for o in want.value.split(",")]
        inside = single is not None and single in options
        if operator == "in":
            return inside, (f"{what} is one of {want!r}" if inside
                            else f"{what} should be one of {want!r}, got {_shown(actual)}")
        return not inside, (f"{what} is not one of {want!r}" if not inside
                            else f"{what} should not be one of {want!r}, got {_shown(actual)}")
    if operator in ("greaterThan", "lessThan"):
        if single is None:
            return False, f"{what} should be one value to compare with {want!r}, got {_shown(actual)}"
        sign = _order(single, want.value)
        ok = sign > 0 if operator == "greaterThan" else sign < 0
        word = "greater" if operator == "greaterThan" else "less"
        return ok, (f"{what} is {word} than {want!r}" if ok
                    else f"{what} should be {word} than {want!r}, got {_shown(actual)}")
    if operator in ("contains", "notContains"):
        found = any(t == want.value or (isinstance(v, str) and want.value in v)
                    for t, v in zip(texts, actual))
        if operator == "contains":
            return found, (f"{what} contains {want!r}" if found
                           else f"{what} should contain {want!r}, got {_shown(actual)}")
        return not found, (f"{what} does not contain {want!r}" if not found
                           else f"{what} should not contain {want!r}")
    raise ExpressionError(f"unknown operator {operator!r}")
