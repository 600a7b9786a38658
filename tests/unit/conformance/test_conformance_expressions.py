"""Substitution, FHIRPath/JSONPath evaluation and every TestScript operator."""
from __future__ import annotations

from typing import Any

import pytest

from gateway.conformance.expressions import (
    OPERATORS,
    ExpressionError,
    UnresolvedVariable,
    compare,
    evaluate_fhirpath,
    evaluate_jsonpath,
    evaluate_path,
    substitute,
    substitute_json,
)

PATIENT = {"resourceType": "Patient", "id": "p1", "active": True,
           "name": [{"family": "Smith", "given": ["Ann", "May"]}], "birthDate": "2015-03-04"}


def test_substitute_replaces_known_and_refuses_unknown_names() -> None:
    values = {"id": "p1", "run": "r9"}.get
    assert substitute("Patient/${id}?x=${run}", values) == "Patient/p1?x=r9"
    with pytest.raises(UnresolvedVariable) as info:
        substitute("${missing}", values)
    assert info.value.name == "missing"


def test_substitute_json_reaches_every_string() -> None:
    doc = {"a": ["x-${v}", {"b": "${v}"}], "n": 3, "t": True}
    assert substitute_json(doc, {"v": "1"}.get) == {"a": ["x-1", {"b": "1"}], "n": 3, "t": True}


@pytest.mark.parametrize(("expression", "expected"), [
    ("Patient.name.family", ["Smith"]),
    ("name.given", ["Ann", "May"]),
    ("active", [True]),
    ("birthDate > @2014-01-01", [True]),
    ("%resource.id", ["p1"]),
    ("telecom", []),
])
def test_fhirpath(expression: str, expected: list[Any]) -> None:
    assert evaluate_fhirpath(PATIENT, expression, {"resource": PATIENT}) == expected


def test_fhirpath_errors_are_expression_errors() -> None:
    with pytest.raises(ExpressionError, match="cannot evaluate FHIRPath"):
        evaluate_fhirpath(PATIENT, "name.noSuchFunction()")
    with pytest.raises(ExpressionError, match="no resource"):
        evaluate_fhirpath(None, "id")


@pytest.mark.parametrize(("path", "expected"), [
    ("$.id", ["p1"]),
    ("$.name[0].family", ["Smith"]),
    ("$.name[*].given[1]", ["May"]),
    ("$['birthDate']", ["2015-03-04"]),
    ("$.name[5].family", []),
    ("$.nothing.here", []),
])
def test_jsonpath_subset(path: str, expected: list[Any]) -> None:
    assert evaluate_jsonpath(PATIENT, path) == expected


def test_paths_are_jsonpath_or_fhirpath_but_never_xpath() -> None:
    assert evaluate_path(PATIENT, "$.id") == ["p1"]
    assert evaluate_path(PATIENT, "Patient.id") == ["p1"]
    with pytest.raises(ExpressionError, match="XPath"):
        evaluate_path(PATIENT, "/f:Patient/f:id/@value")
    with pytest.raises(ExpressionError, match="supported subset"):
        evaluate_jsonpath(PATIENT, "$..family")


@pytest.mark.parametrize(("operator", "actual", "value", "passes"), [
    ("equals", ["a"], "a", True),
    ("equals", ["a"], "b", False),
    ("equals", ["a", "a"], "a", False),
    ("equals", [True], "true", True),
    ("notEquals", ["a"], "b", True),
    ("notEquals", ["a"], "a", False),
    ("in", ["201"], "200,201", True),
    ("in", ["404"], "200, 201", False),
    ("notIn", ["404"], "200,201", True),
    ("notIn", ["200"], "200,201", False),
    ("greaterThan", ["10"], "9", True),
    ("greaterThan", ["2024-01-02"], "2024-01-01", True),
    ("greaterThan", ["1"], "9", False),
    ("lessThan", ["1"], "9", True),
    ("lessThan", [], "9", False),
    ("empty", [], None, True),
    ("empty", ["x"], None, False),
    ("notEmpty", ["x"], None, True),
    ("notEmpty", [], None, False),
    ("contains", ["http://x/Patient/1/_history/1"], "/_history/", True),
    ("contains", ["a", "b"], "b", True),
    ("contains", ["a"], "z", False),
    ("notContains", ["a"], "z", True),
    ("notContains", ["abc"], "b", False),
    ("eval", [True], None, True),
    ("eval", [False], None, False),
])
def test_operators(operator: str, actual: list[Any], value: str | None, passes: bool) -> None:
    ok, message = compare(operator, actual, value, "thing")
    assert ok is passes
    assert message.startswith("thing")


def test_every_testscript_operator_is_covered() -> None:
    assert set(OPERATORS) == {"equals", "notEquals", "in", "notIn", "greaterThan", "lessThan",
                              "empty", "notEmpty", "contains", "notContains", "eval"}


def test_messages_show_the_unsubstituted_value_and_what_was_found() -> None:
    ok, message = compare("equals", ["x2"], "x1", "Patient.id", shown="${id}")
    assert not ok
    assert message == "Patient.id should equal '${id}', got 'x2'"
    ok, message = compare("equals", ["x1"], "x1", "Patient.id", shown="${id}")
    assert ok and message == "Patient.id equals '${id}'"


def test_an_operator_without_its_value_is_an_expression_error() -> None:
    with pytest.raises(ExpressionError, match="needs a value"):
        compare("equals", ["a"], None)
    with pytest.raises(ExpressionError, match="unknown operator"):
        compare("roughly", ["a"], "a")
