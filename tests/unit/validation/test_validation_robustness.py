"""Hostile and random input: the validator answers with issues and never raises."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.fhir.validation import ValidationIssue, known_resource_types, validate_resource

Sample = Callable[[str], dict[str, Any]]
LEVELS = 10_000


def nest(levels: int, make: Callable[[Any], Any], leaf: Any) -> Any:
    """Return leaf wrapped levels times by make, built without recursion."""
    node = leaf
    for _ in range(levels):
        node = make(node)
    return node


def assert_issues(issues: object) -> list[ValidationIssue]:
    """Assert the result is a list of issues with the documented codes and severities."""
    assert isinstance(issues, list)
    for issue in issues:
        assert isinstance(issue, ValidationIssue)
        assert issue.severity in ("error", "warning")
        assert issue.code in ("structure", "required", "value", "invariant", "code-invalid",
                              "invalid", "security", "not-supported")
        assert isinstance(issue.expression, str) and issue.expression
        assert isinstance(issue.diagnostics, str) and issue.diagnostics
    return issues  # type: ignore[return-value]


DEEP = [
    pytest.param(lambda: {"resourceType": "Patient", "extension": [nest(
        LEVELS, lambda n: {"url": "http://example.org/e", "extension": [n]},
        {"url": "http://example.org/e", "valueString": "leaf"})]}, id="nested-extensions"),
    pytest.param(lambda: nest(LEVELS, lambda n: {
        "resourceType": "Patient", "contained": [n]}, {"resourceType": "Patient"}),
        id="nested-contained"),
    pytest.param(lambda: {"resourceType": "Bundle", "type": "collection", "entry": [nest(
        LEVELS, lambda n: {"resource": {"resourceType": "Bundle", "type": "collection",
                                        "entry": [n]}}, {"resource": {"resourceType": "Flag"}})]},
        id="nested-bundles"),
    pytest.param(lambda: {"resourceType": "Questionnaire", "status": "draft", "item": [nest(
        LEVELS, lambda n: {"linkId": "x", "type": "group", "item": [n]},
        {"linkId": "y", "type": "string"})]}, id="nested-questionnaire-items"),
    pytest.param(lambda: {"resourceType": "Patient", "name": nest(LEVELS, lambda n: [n], [])},
                 id="nested-arrays"),
    pytest.param(lambda: {"resourceType": "Patient", "garbage": nest(LEVELS, lambda n: {"a": n},
                                                                    {})}, id="nested-unknown"),
    pytest.param(lambda: nest(LEVELS, lambda n: {"x": [n]}, None), id="nested-no-resource-type"),
    pytest.param(lambda: {"resourceType": "Patient", "text": {
        "status": "generated",
        "div": '<div xmlns="http://www.w3.org/1999/xhtml">' + "<b>" * LEVELS + "x"
               + "</b>" * LEVELS + "</div>"}}, id="nested-xhtml"),
]


@pytest.mark.parametrize("make", DEEP)
def test_deeply_nested_input_does_not_crash(make: Callable[[], Any]) -> None:
    issues = assert_issues(validate_resource(make()))
    assert any(i.severity == "error" for i in issues)


@pytest.mark.parametrize("value", [
    None, True, 0, 1.5, "Patient", "", [], [{}], {}, {"resourceType": None},
    {"resourceType": ["Patient"]}, {1: "non-string key"}, {"resourceType": "Patient", 2: 3},
    {"resourceType": "Patient", "name": [1, "x", None, [], True]},
    {"resourceType": "Patient", "_gender": [None]}, {"resourceType": "Patient", "_name": {}},
    {"resourceType": "Patient", "birthDate": float("nan")},
    {"resourceType": "Patient", "extension": [{"url": "u", "valueDecimal": float("inf")}]},
    {"resourceType": "Patient", "name": [{"family": "\ud800"}]},
    {"resourceType": "Patient", "text": {"status": "generated", "div": "\ud800<div/>"}},
    ("tuple", "is", "not", "json"), b"bytes", object(),
], ids=lambda v: "object" if type(v) is object else repr(v))
def test_odd_values_do_not_crash(value: object) -> None:
    issues = assert_issues(validate_resource(value))
    assert issues, "odd input must not pass"


@pytest.mark.parametrize("expected_type", [None, "Patient", "NotAType", "", "Observation"])
def test_expected_type_values_do_not_crash(expected_type: str | None) -> None:
    assert_issues(validate_resource({"resourceType": "Patient"}, expected_type))


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20) | st.sampled_from(["", "2020-13-01", "#x", "urn:uuid:x", "female"]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12) | st.sampled_from(
        ["resourceType", "id", "extension", "url", "value", "valueString", "_given", "given",
         "name", "contained", "text", "div", "reference", "coding", "entry", "resource"]),
        children, max_size=4),
    max_leaves=30)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(JSON, st.sampled_from([None, "Patient"]))
def test_random_json_never_raises(value: Any, expected_type: str | None) -> None:
    assert_issues(validate_resource(value, expected_type))


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(known_resource_types())), st.data())
def test_random_damage_to_valid_resources_never_raises(samples: dict[str, dict[str, Any]],
                                                       resource_type: str,
                                                       data: st.DataObject) -> None:
    resource = copy.deepcopy(samples[resource_type])
    path = data.draw(st.sampled_from(_paths(resource)))
    node: Any = resource
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = data.draw(JSON)
    snapshot = json.dumps(resource, sort_keys=True, default=repr)
    assert_issues(validate_resource(resource, resource_type))
    assert json.dumps(resource, sort_keys=True, default=repr) == snapshot


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(known_resource_types())), st.data())
def test_random_elements_on_each_type_never_raise(resource_type: str,
                                                  data: st.DataObject) -> None:
    from gateway.fhir.validation import _resource_table

    table = _resource_table(resource_type)
    assert table is not None
    names = sorted(table.elements)
    body = data.draw(st.dictionaries(st.sampled_from(names), JSON, max_size=5))
    assert_issues(validate_resource({"resourceType": resource_type, **body}, resource_type))


def test_diagnostics_never_echo_values(sample: Sample) -> None:
    secret = "Zebedee-Quixote-1999"
    patient = sample("Patient")
    patient.update({
        "gender": secret, "birthDate": secret, "active": secret, "id": secret * 4,
        "multipleBirthInteger": secret, "implicitRules": secret + " x",
        "name": [{"family": 7, "given": [secret, ""], "use": secret}],
        "telecom": [{"system": secret, "value": secret}],
        "text": {"status": secret, "div": f"<div>{secret}</div>"},
        "contained": [{"resourceType": secret}],
    })
    issues = validate_resource(patient, "Patient")
    assert len(issues) > 8
    assert all(secret not in issue.diagnostics and secret not in issue.expression
               for issue in issues)


def test_unknown_element_names_are_not_echoed_when_odd() -> None:
    issues = validate_resource({"resourceType": "Patient", "Jo Bloggs 1 Example Street": 1})
    assert [(i.code, i.expression) for i in issues] == [("structure", "Patient.?")]


def test_huge_array_of_values_is_reported_per_item() -> None:
    issues = validate_resource({"resourceType": "Patient",
                                "name": [{"given": ["ok"] * 5000 + [""]}]})
    assert [(i.code, i.expression) for i in issues] == [("value", "Patient.name[0].given[5000]")]
