"""Features drawn from a Patient: names, dates, postcodes and identifiers normalised once."""
from __future__ import annotations

from typing import Any

import pytest

from gateway.identity.blocking import blocking_keys
from gateway.identity.features import Features, extract, is_golden, norm_name, norm_postcode
from vocab import systems

VERIFIED = {"url": systems.UKCORE_NHS_NUMBER_VERIFICATION_EXTENSION,
            "valueCodeableConcept": {"coding": [{"code": "01"}]}}


@pytest.mark.parametrize(("raw", "folded"), [
    ("Siobhán", "siobhan"), ("  O'BRIEN ", "obrien"), ("Smith - Jones", "smith-jones"),
    ("chloë", "chloe"), ("Mc.Donald", "mcdonald"), (None, ""), ("Ann2", "ann"),
])
def test_names_fold(raw: Any, folded: str) -> None:
    assert norm_name(raw) == folded


@pytest.mark.parametrize(("raw", "code"), [
    ("nr312uf", "NR31 2UF"), ("NR3 1PW", "NR3 1PW"), (" pe30  4dt ", "PE30 4DT"),
    ("EC1A1BB", "EC1A 1BB"), ("NOT A CODE", None), ("", None), (7, None),
])
def test_postcodes_normalise(raw: Any, code: str | None) -> None:
    assert norm_postcode(raw) == code


def test_extract_keeps_only_valid_identifiers() -> None:
    patient = {
        "resourceType": "Patient",
        "meta": {"source": "urn:wraparound:source:social-care"},
        "identifier": [
            {"system": systems.NHS_NUMBER, "value": "999 012 8383", "extension": [VERIFIED]},
            {"system": systems.NHS_NUMBER, "value": "9990128338"},  # digits swapped: invalid
            {"system": systems.UPN, "value": "x926223319001"},
            {"system": systems.UPN, "value": "A926223319001"},  # wrong check letter
            {"system": systems.local_id_system("social-care"), "value": "sc100842"},
        ],
        "name": [{"use": "official", "family": "Robinson", "given": ["Ella Anne"]},
                 {"use": "old", "family": "Ward", "given": ["Ella"]}],
        "gender": "female", "birthDate": "2015-09-13",
        "address": [{"line": ["37 Wensum View"], "postalCode": "nr31 2uf"}],
    }
    f = extract(patient)
    assert f.source == "social-care"
    assert f.nhs == ("9990128383",) and f.nhs_verified == ("9990128383",)
    assert f.upn == ("X926223319001",)
    assert f.local_ids == (f"{systems.local_id_system('social-care')}|SC100842",)
    assert f.given == ("ella",) and f.middle == ("anne",) and f.family == ("robinson", "ward")
    assert f.postcodes == ("NR31 2UF",) and f.lines == ("37 wensum view",)
    assert Features.from_json(f.to_json()) == f
    assert f.digest() == extract(patient).digest()


def test_golden_patients_are_recognised() -> None:
    assert is_golden({"identifier": [{"system": systems.GOLDEN_ID, "value": "x"}]})
    assert is_golden({"meta": {"source": "urn:wraparound:identity"}})
    assert not is_golden({"meta": {"source": "urn:wraparound:source:school"}})


def test_blocking_keys_tolerate_transposed_dates() -> None:
    a = Features(given=("ella",), family=("robinson",), birth_date="2015-09-03",
                 postcodes=("NR31 2UF",))
    b = Features(given=("ella",), family=("robinson",), birth_date="2015-03-09",
                 postcodes=("NR31 2UF",))
    assert set(blocking_keys(a)) == set(blocking_keys(b))
    assert all(len(k) <= 128 for k in blocking_keys(a))
    assert blocking_keys(Features(given=("ella",))) == []
    hyphen = Features(family=("smith-jones",), birth_date="2015-01-01")
    assert {k for k in blocking_keys(hyphen) if k.startswith("fy:")} == {
        "fy:SM0JNS:2015", "fy:SM0:2015", "fy:JNS:2015"}
