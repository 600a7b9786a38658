"""CP-IS over real HTTP: upload acknowledgement codes, de-duplication, queries, notifications."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import requests

from connectors.cpis import Accessor, CpisClient, LocalAuthority, UploadRecord
from connectors.errors import InvalidRequest

ACCESSOR = Accessor(
    "555123456789", "Dr Alex Example", "ED doctor", "RGN80", "Example Hospital (synthetic)"
)
GP = Accessor("555000000001", "Dr Sam Example", "GP", "D82001", "Magdalen Medical Practice")
LA = LocalAuthority("LA926", "Norfolk County Council (synthetic)", "01632 960100", "01632 960199")
START = dt.date(2026, 8, 1)


def _current(seed: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in seed["pds"] if not p["sensitive"]]


def test_record_level_codes(cpis: CpisClient, seed: dict[str, Any]) -> None:
    good, other = _current(seed)[:2]
    sensitive = next(p for p in seed["pds"] if p["sensitive"])
    superseded = next(p for p in seed["pds"] if p["superseded_nhs_numbers"])[
        "superseded_nhs_numbers"
    ][0]
    unknown = next(c for c in seed["population"] if c["pds_no_match"])["nhs_number"]
    records = [
        UploadRecord("R1", good["nhs_number"], True, "CPP", START),
        UploadRecord("R2", unknown, True, "CPP", START),
        UploadRecord("R3", sensitive["nhs_number"], True, "CPP", START),
        UploadRecord("R4", other["nhs_number"], False, "LAC", START),
        UploadRecord("R5", "9990128384", True, "CPP", START),
        UploadRecord("R6", superseded, True, "CPP", START),
        UploadRecord(
            "R7", other["nhs_number"], True, "LAC", START, end_date=START - dt.timedelta(days=1)
        ),
    ]
    ack = cpis.upload(records, file_sequence_number=1, local_authority=LA)
    assert ack.file_code == "CPF03" and ack.transmission_quantity == 7
    assert [r.code for r in ack.records] == [
        "CPR06",
        "CPR01",
        "CPR02",
        "CPR03",
        "CPR04",
        "CPR05",
        "CPR07",
    ]
    result = cpis.query(good["nhs_number"], access_type="scheduled", accessor=GP)
    assert [p.plan_type for p in result.plans if p.start_date == START] == ["CPP"]


@pytest.mark.parametrize(
    ("verified", "file_code"),
    [((True, True), "CPF02"), ((False, False), "CPF04")],
)
def test_file_level_codes(
    cpis: CpisClient, seed: dict[str, Any], verified: tuple[bool, bool], file_code: str
) -> None:
    a, b = _current(seed)[:2]
    records = [
        UploadRecord("R1", a["nhs_number"], verified[0], "CPP", START),
        UploadRecord("R2", b["nhs_number"], verified[1], "LAC", START),
    ]
    assert cpis.upload(records, file_sequence_number=1, local_authority=LA).file_code == file_code


def test_out_of_sequence_and_empty_files_are_file_level_errors(
    cpis: CpisClient, seed: dict[str, Any]
) -> None:
    record = UploadRecord("R1", _current(seed)[0]["nhs_number"], True, "CPP", START)
    assert cpis.upload([record], file_sequence_number=5, local_authority=LA).file_code == "CPF02"
    stale = cpis.upload([record], file_sequence_number=5, local_authority=LA)
    assert (stale.file_code, stale.records) == ("CPF01", ())
    assert cpis.upload([], file_sequence_number=6, local_authority=LA).file_code == "CPF01"


def test_a_retried_upload_is_answered_once(
    cpis: CpisClient, seed: dict[str, Any], mock: str
) -> None:
    record = UploadRecord("R1", _current(seed)[0]["nhs_number"], True, "CPP", START)
    first = cpis.upload([record], file_sequence_number=3, local_authority=LA, message_id="UPLOAD-3")
    again = cpis.upload([record], file_sequence_number=3, local_authority=LA, message_id="UPLOAD-3")
    assert first == again and first.file_code == "CPF02"
    state = requests.get(f"{mock}/admin/services/cpis", timeout=5).json()
    assert state["uploads_processed"] == 1
    # A new message with the same sequence number is a different file, and out of sequence.
    assert cpis.upload([record], file_sequence_number=3, local_authority=LA).file_code == "CPF01"


def test_ending_and_deleting_plans(cpis: CpisClient, seed: dict[str, Any]) -> None:
    number = _current(seed)[0]["nhs_number"]
    cpis.upload(
        [UploadRecord("R1", number, True, "CPP", START)], file_sequence_number=1, local_authority=LA
    )
    end = START + dt.timedelta(days=10)
    cpis.upload(
        [UploadRecord("R1", number, True, "CPP", START, end_date=end)],
        file_sequence_number=2,
        local_authority=LA,
    )
    plans = cpis.query(number, access_type="scheduled", accessor=GP).plans
    assert [(p.plan_type, p.end_date) for p in plans] == [("CPP", end)]
    cpis.upload(
        [UploadRecord("R1", number, True, "CPP", START, delete_date=end)],
        file_sequence_number=3,
        local_authority=LA,
    )
    assert not cpis.query(number, access_type="scheduled", accessor=GP).found


def test_scheduled_reads_are_silent(cpis: CpisClient, seed: dict[str, Any], mock: str) -> None:
    number = seed["cpis"]["plans"][0]["nhs_number"]
    result = cpis.query(number, access_type="scheduled", accessor=GP)
    assert result.found and result.recent_accesses == ()
    assert cpis.access_history(number) == ()
    assert requests.get(f"{mock}/admin/services/cpis", timeout=5).json()["notifications"] == []


def test_unscheduled_access_is_recorded_keeping_the_last_25(
    cpis: CpisClient, seed: dict[str, Any]
) -> None:
    number = seed["cpis"]["plans"][0]["nhs_number"]
    for i in range(27):
        accessor = Accessor(
            f"U{i:03d}", "Dr Example", "ED doctor", "RGN80", "Example Hospital (synthetic)"
        )
        result = cpis.query(number, access_type="unscheduled", accessor=accessor, care_setting="ED")
    assert len(result.recent_accesses) == 25
    assert result.recent_accesses[0].accessor.user_id == "U026"  # newest first
    history = cpis.access_history(number)
    assert [a.accessor.user_id for a in history] == [f"U{i:03d}" for i in range(26, 1, -1)]


def test_no_records_found(cpis: CpisClient, seed: dict[str, Any]) -> None:
    on_plan = {p["nhs_number"] for p in seed["cpis"]["plans"]}
    number = next(p["nhs_number"] for p in seed["pds"] if p["nhs_number"] not in on_plan)
    result = cpis.query(number, access_type="unscheduled", accessor=ACCESSOR)
    assert (result.found, result.plans, result.recent_accesses) == (False, (), ())


def test_unscheduled_access_notifies_the_local_authority(
    cpis: CpisClient, seed: dict[str, Any], mock: str, receiver: Any
) -> None:
    requests.post(
        f"{mock}/admin/services/cpis/config", json={"callback_url": receiver.url}, timeout=5
    ).raise_for_status()
    plan = seed["cpis"]["plans"][0]
    cpis.query(plan["nhs_number"], access_type="scheduled", accessor=GP)
    cpis.query(plan["nhs_number"], access_type="unscheduled", accessor=ACCESSOR, care_setting="ED")
    (notification,) = receiver.wait_for(1)
    assert notification.nhs_number == plan["nhs_number"]
    assert notification.local_id == plan["local_id"]
    assert notification.local_authority_ods_code == seed["cpis"]["local_authority"]["ods_code"]
    assert notification.plan_types == (plan["plan_type"],)
    assert notification.access.accessor == ACCESSOR and notification.access.care_setting == "ED"
    assert receiver.refused == []
    state = requests.get(f"{mock}/admin/services/cpis", timeout=5).json()
    assert [(n["status"], n["http_status"]) for n in state["notifications"]] == [("delivered", 200)]


def test_invalid_query_number_is_refused_locally(cpis: CpisClient) -> None:
    with pytest.raises(InvalidRequest):
        cpis.query("9990128384", access_type="unscheduled", accessor=ACCESSOR)
