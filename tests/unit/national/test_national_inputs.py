"""Parsing façade inputs and mapping connector errors: tables of what is accepted and refused."""
from __future__ import annotations

import datetime as dt

import pytest

from connectors.errors import (
    ConnectorError,
    InvalidRequest,
    InvalidResponse,
    MalformedXml,
    NotFound,
    Rejected,
    SecurityFailure,
    Timeout,
    TooManyMatches,
    Unavailable,
    UnsafeXml,
)
from gateway.errors import BadRequest
from gateway.national.cpis import FileSequence, access_type_of, nhs_number_param
from gateway.national.errors import connector_outcome
from gateway.national.pds import DemographicQuery, VerifyRequest

NHS = "https://fhir.nhs.uk/Id/nhs-number"


def test_demographic_query() -> None:
    query = DemographicQuery.parse([("family", "Nowak"), ("birthdate", "eq2020-02-15"),
                                    ("gender", "female"), ("given", "Ines"),
                                    ("address-postalcode", "PE33 1SU"), ("_format", "json")])
    assert query == DemographicQuery("Nowak", dt.date(2020, 2, 15), "female", "Ines", "PE33 1SU")


@pytest.mark.parametrize("pairs", [
    [("family", "A"), ("birthdate", "2020-02-15")],
    [("family", "A"), ("birthdate", "2020-02"), ("gender", "male")],
    [("family", "A"), ("birthdate", "ge2020-02-15"), ("gender", "male")],
    [("family", " "), ("birthdate", "2020-02-15"), ("gender", "male")],
    [("family", "A"), ("birthdate", "2020-02-15"), ("gender", "male"), ("_count", "5")],
])
def test_demographic_query_refused(pairs: list[tuple[str, str]]) -> None:
    with pytest.raises(BadRequest):
        DemographicQuery.parse(pairs)


def test_verify_request_from_identifier_and_human_name() -> None:
    request = VerifyRequest.parse({"resourceType": "Parameters", "parameter": [
        {"name": "nhs-number", "valueIdentifier": {"system": NHS, "value": "9990043094"}},
        {"name": "birthdate", "valueDate": "2020-02-15"},
        {"name": "name", "valueHumanName": {"family": "Nowak", "given": ["Ines"]}}]})
    assert request == VerifyRequest("9990043094", dt.date(2020, 2, 15), "Nowak", "Ines")


@pytest.mark.parametrize(("pairs", "expected"), [
    ([("nhs-number", "9990043094")], "9990043094"),
    ([("patient.identifier", f"{NHS}|9990043094")], "9990043094"),
    ([("patient:identifier", f"{NHS}|9990043094"), ("access-type", "scheduled")], "9990043094"),
    ([("nhs-number", "9990043095")], None),
    ([("nhs-number", "http://other|9990043094")], None),
    ([], None),
    ([("nhs-number", "9990043094"), ("colour", "red")], None),
])
def test_nhs_number_param(pairs: list[tuple[str, str]], expected: str | None) -> None:
    names = ("nhs-number", "patient.identifier", "patient:identifier")
    if expected is None:
        with pytest.raises(BadRequest):
            nhs_number_param(pairs, names, allowed=("access-type",))
    else:
        assert nhs_number_param(pairs, names, allowed=("access-type",)) == expected


@pytest.mark.parametrize(("header", "param", "expected"), [
    (None, None, "scheduled"), ("Unscheduled", None, "unscheduled"),
    (None, "unscheduled", "unscheduled"), ("scheduled", "unscheduled", "scheduled"),
])
def test_access_type(header: str | None, param: str | None, expected: str) -> None:
    assert access_type_of(header, param) == expected


def test_access_type_refused() -> None:
    with pytest.raises(BadRequest):
        access_type_of("sometimes", None)


def test_file_sequence_always_increases() -> None:
    clock = iter([1.0, 1.0, 0.5, 2.0])
    sequence = FileSequence(lambda: next(clock))
    assert [sequence.next() for _ in range(4)] == [1000, 1001, 1002, 2000]


@pytest.mark.parametrize(("error", "status", "code", "coded"), [
    (NotFound("no match", service_code="DEMOG-0001"), 404, "not-found", "DEMOG-0001"),
    (InvalidRequest("bad", service_code="2200"), 400, "invalid", "2200"),
    (InvalidRequest("bad", service_code="invalid-nhs-number"), 400, "invalid", None),
    (TooManyMatches("several", service_code="DEMOG-0007"), 422, "multiple-matches", "DEMOG-0007"),
    (Rejected("no"), 422, "processing", None),
    (Unavailable("down"), 502, "transient", None),
    (InvalidResponse("odd"), 502, "invalid", None),
    (MalformedXml("broken"), 502, "structure", None),
    (UnsafeXml("hostile"), 502, "security", None),
    (SecurityFailure("unsigned"), 502, "security", None),
    (Timeout("slow"), 504, "timeout", None),
], ids=lambda v: type(v).__name__ if isinstance(v, ConnectorError) else None)
def test_connector_errors_become_outcomes(error: ConnectorError, status: int, code: str,
                                          coded: str | None) -> None:
    error.with_context(service="pds", operation="getPatientDetailsByNHSNumber-v1-0")
    got_status, outcome = connector_outcome(error, "req-1")
    (issue,) = outcome["issue"]
    assert (got_status, issue["code"]) == (status, code)
    assert [c["code"] for c in issue["details"].get("coding", [])] == ([coded] if coded else [])
    assert issue["diagnostics"].startswith("pds getPatientDetailsByNHSNumber-v1-0: ")
    assert issue["diagnostics"].endswith("(correlation id req-1)")
