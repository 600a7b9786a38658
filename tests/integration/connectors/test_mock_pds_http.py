"""All five PDS operations over real HTTP against the mock, with the seeded special cases."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from connectors.errors import InvalidRequest, NotFound, TooManyMatches
from connectors.pds import PdsClient


def _one(seed: dict[str, Any], **where: Any) -> dict[str, Any]:
    for patient in seed["pds"]:
        if all(
            (bool(patient.get(k)) if v is True else patient.get(k) == v) for k, v in where.items()
        ):
            return patient
    raise AssertionError(f"no seeded patient with {where}")


def _dob(patient: dict[str, Any]) -> dt.date:
    return dt.date.fromisoformat(patient["birth_date"])


def test_all_five_operations(pds: PdsClient, seed: dict[str, Any]) -> None:
    p = _one(seed, sensitive=False, deceased_date=None, superseded_nhs_numbers=[])
    dob, number = _dob(p), p["nhs_number"]
    assert pds.verify_nhs_number(number, dob).verified
    assert (
        pds.get_nhs_number(
            birth_date=dob, gender=p["gender"], family=p["family"], given=p["given"][0]
        ).nhs_number
        == number
    )
    by_number = pds.get_patient_details_by_nhs_number(number, dob)
    found = pds.search(birth_date=dob, gender=p["gender"], family=p["family"], given=p["given"][0])
    details = pds.get_patient_details(birth_date=dob, nhs_number=number)
    assert found is not None
    for patient in (by_number, found, details):
        assert patient.nhs_number == number
        assert patient.name is not None and patient.name.family == p["family"]
        assert patient.addresses[0].postcode == p["address"]["postcode"]
        assert patient.gp is not None and patient.gp.ods_code == p["gp"]["ods_code"]


def test_read_by_nhs_number_alone(pds: PdsClient, seed: dict[str, Any]) -> None:
    p = _one(seed, sensitive=False)
    assert pds.get_patient_details_by_nhs_number(p["nhs_number"]).birth_date == _dob(p)


def test_superseded_number_finds_the_current_record(pds: PdsClient, seed: dict[str, Any]) -> None:
    p = _one(seed, superseded_nhs_numbers=True)
    old = p["superseded_nhs_numbers"][0]
    patient = pds.get_patient_details_by_nhs_number(old, _dob(p))
    assert (patient.nhs_number, patient.superseded_nhs_number) == (p["nhs_number"], old)
    assert patient.response_code == "DEMOG-0017"
    verification = pds.verify_nhs_number(old, _dob(p))
    assert not verification.verified and verification.nhs_number == p["nhs_number"]


def test_sensitive_records_disclose_no_location(pds: PdsClient, seed: dict[str, Any]) -> None:
    p = _one(seed, sensitive=True)
    patient = pds.get_patient_details_by_nhs_number(p["nhs_number"], _dob(p))
    assert patient.addresses == () and patient.telecoms == () and patient.gp is None
    assert (
        pds.search(
            birth_date=_dob(p),
            gender=p["gender"],
            family=p["family"],
            postcode=p["address"]["postcode"],
        )
        is None
    )


def test_deceased_records_carry_the_date_of_death(pds: PdsClient, seed: dict[str, Any]) -> None:
    p = _one(seed, deceased_date=True)
    patient = pds.get_patient_details_by_nhs_number(p["nhs_number"], _dob(p))
    assert patient.deceased_date == dt.date.fromisoformat(p["deceased_date"])


def test_children_the_spine_does_not_know(pds: PdsClient, seed: dict[str, Any]) -> None:
    child = next(c for c in seed["population"] if c["pds_no_match"])
    dob = dt.date.fromisoformat(child["date_of_birth"])
    with pytest.raises(NotFound) as info:
        pds.get_patient_details_by_nhs_number(child["nhs_number"], dob)
    assert info.value.service_code == "DEMOG-0001" and info.value.http_status == 404
    assert pds.verify_nhs_number(child["nhs_number"], dob).verified is False
    assert pds.search(birth_date=dob, gender=child["sex"], family=child["family_name"]) is None


def test_wrong_date_of_birth_is_no_match(pds: PdsClient, seed: dict[str, Any]) -> None:
    p = _one(seed, sensitive=False)
    with pytest.raises(NotFound):
        pds.get_patient_details_by_nhs_number(p["nhs_number"], _dob(p) + dt.timedelta(days=1))


def test_ambiguous_search_is_too_many_matches(pds: PdsClient, seed: dict[str, Any]) -> None:
    seen: dict[tuple[str, str, str], int] = {}
    for p in seed["pds"]:
        key = (p["birth_date"], p["gender"], p["family"])
        seen[key] = seen.get(key, 0) + 1
    dob, gender, family = next(k for k, n in seen.items() if n > 1)
    with pytest.raises(TooManyMatches) as info:
        pds.search(birth_date=dt.date.fromisoformat(dob), gender=gender, family=family)
    assert info.value.service_code == "DEMOG-0007"


def test_invalid_number_never_leaves_the_client(pds: PdsClient) -> None:
    with pytest.raises(InvalidRequest):
        pds.get_patient_details_by_nhs_number("1234567890")
