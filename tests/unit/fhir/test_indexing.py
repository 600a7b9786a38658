"""Search-index extraction and date ranges."""
from __future__ import annotations

import pytest

from gateway.fhir.indexing import date_range, extract_index, normalise_string, parse_reference
from gateway.fhir.registry import load_registry


@pytest.mark.parametrize(
    ("value", "low", "high"),
    [
        pytest.param("2015", "2015-01-01T00:00:00.000000", "2015-12-31T23:59:59.999999", id="year"),
        pytest.param("2015-02", "2015-02-01T00:00:00.000000", "2015-02-28T23:59:59.999999",
                     id="month"),
        pytest.param("2015-12", "2015-12-01T00:00:00.000000", "2015-12-31T23:59:59.999999",
                     id="december"),
        pytest.param("2016-02-29", "2016-02-29T00:00:00.000000", "2016-02-29T23:59:59.999999",
                     id="leap-day"),
        pytest.param("2015-03-04T10:00:00+01:00", "2015-03-04T09:00:00.000000",
                     "2015-03-04T09:00:00.999999", id="offset"),
        pytest.param("2015-03-04T10:00:00.5Z", "2015-03-04T10:00:00.500000",
                     "2015-03-04T10:00:00.500000", id="fraction"),
    ],
)
def test_date_range(value: str, low: str, high: str) -> None:
    assert date_range(value) == (low, high)


@pytest.mark.parametrize("value", ["2015-13-01", "2015-02-30", "15-01-01", "yesterday", ""])
def test_date_range_rejects(value: str) -> None:
    assert date_range(value) is None


def test_normalise_string() -> None:
    assert normalise_string("  Zoë  O'NEIL ") == "zoe o'neil"


@pytest.mark.parametrize(
    ("ref", "expected"),
    [("Patient/1", ("Patient", "1")), ("http://x/fhir/Patient/1", ("Patient", "1")),
     ("Patient/1/_history/2", ("Patient", "1")), ("#c1", None), ("urn:uuid:1", None)],
)
def test_parse_reference(ref: str, expected: object) -> None:
    assert parse_reference(ref) == expected


def test_extract_index_for_observation_choice_and_codes() -> None:
    registry = load_registry()
    obs = {"resourceType": "Observation", "status": "final",
           "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]},
           "subject": {"reference": "Patient/p1"},
           "effectivePeriod": {"start": "2026-01-01"},
           "valueQuantity": {"value": 97.5}}
    rows = extract_index(registry.get("Observation"), obs)  # type: ignore[arg-type]
    assert ("code", "http://loinc.org", "8302-2") in rows.tokens
    assert ("status", None, "final") in rows.tokens
    assert ("patient", "Patient", "p1") in rows.references
    assert ("subject", "Patient", "p1") in rows.references
    assert ("date", "2026-01-01T00:00:00.000000", "9999-12-31T23:59:59.999999") in rows.dates
    assert ("value-quantity", 97.5) in rows.numbers


def test_reference_targets_are_respected() -> None:
    registry = load_registry()
    flag = {"resourceType": "Flag", "status": "active", "code": {"text": "x"},
            "subject": {"reference": "Organization/o1"}}
    rows = extract_index(registry.get("Flag"), flag)  # type: ignore[arg-type]
    assert ("subject", "Organization", "o1") in rows.references
    assert all(r[0] != "patient" for r in rows.references)
