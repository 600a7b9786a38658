"""CP-IS over real HTTP: upload acknowledgement codes, de-duplication, queries, notifications."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from connectors.cpis import Accessor, CpisClient, LocalAuthority, UploadRecord
from connectors.cpis.mock import CpisMockService
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
    # The mock records the delivery once the receiver's reply is back, just after it is read.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        state = requests.get(f"{mock}/admin/services/cpis", timeout=5).json()
        if state["notifications"][0]["status"] != "pending":
            break
        time.sleep(0.02)
    assert [(n["status"], n["http_status"]) for n in state["notifications"]] == [("delivered", 200)]


def test_invalid_query_number_is_refused_locally(cpis: CpisClient) -> None:
    with pytest.raises(InvalidRequest):
        cpis.query("9990128384", access_type="unscheduled", accessor=ACCESSOR)


def test_an_unborn_child_plan_keeps_its_expected_delivery_date(
    cpis: CpisClient, seed: dict[str, Any]
) -> None:
    mother, other = _current(seed)[:2]
    due = START + dt.timedelta(days=120)
    ack = cpis.upload(
        [
            UploadRecord(
                "U1", mother["nhs_number"], True, "UCPP", START, expected_delivery_date=due
            ),
            UploadRecord("U2", other["nhs_number"], True, "LAC", START, expected_delivery_date=due),
        ],
        file_sequence_number=1,
        local_authority=LA,
    )
    assert [(r.code, r.detail) for r in ack.records] == [
        ("CPR06", "Successful record upload"),
        ("CPR07", "an expected delivery date belongs to an unborn child plan only"),
    ]
    result = cpis.query(mother["nhs_number"], access_type="scheduled", accessor=GP)
    (plan,) = [p for p in result.plans if p.start_date == START]
    assert (plan.plan_type, plan.expected_delivery_date, plan.local_authority) == ("UCPP", due, LA)


def test_the_inactive_numbers_control_notifies_each_local_authority(
    cpis: CpisClient, seed: dict[str, Any], mock: str, receiver: Any
) -> None:
    requests.post(
        f"{mock}/admin/services/cpis/config", json={"callback_url": receiver.url}, timeout=5
    ).raise_for_status()
    a, b = _current(seed)[:2]
    other_la = LocalAuthority(
        "LA999", "Another council (synthetic)", "01632 960300", "01632 960399"
    )
    cpis.upload(
        [UploadRecord("A1", a["nhs_number"], True, "CPP", START)],
        file_sequence_number=1,
        local_authority=LA,
    )
    cpis.upload(
        [UploadRecord("B1", b["nhs_number"], True, "LAC", START)],
        file_sequence_number=1,
        local_authority=other_la,
    )
    resp = requests.post(
        f"{mock}/admin/services/cpis/control/inactive-nhs-numbers",
        json={"nhs_numbers": [a["nhs_number"], b["nhs_number"]]},
        timeout=5,
    )
    assert resp.status_code == 200 and resp.json()["nhs_numbers"] == 2
    deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=15)
    while len(receiver.inactive) < 2 and dt.datetime.now(dt.UTC) < deadline:
        time.sleep(0.02)
    got = {n.local_authority_ods_code: n for n in receiver.inactive}
    assert set(got) == {"LA926", "LA999"} and receiver.refused == []
    assert sorted(n.message_id for n in got.values()) == sorted(resp.json()["notifications"])
    (record,) = got["LA999"].records
    assert (record.nhs_number, record.local_id, record.plan_types) == (
        b["nhs_number"],
        "B1",
        ("LAC",),
    )
    assert (record.reason, record.replacement_nhs_number) == ("inactive", None)
    a_numbers = [r.nhs_number for r in got["LA926"].records]
    assert a["nhs_number"] in a_numbers
    deadline2 = time.monotonic() + 15
    while time.monotonic() < deadline2:
        state = requests.get(f"{mock}/admin/services/cpis", timeout=5).json()
        if all(n["status"] != "pending" for n in state["notifications"]):
            break
        time.sleep(0.02)
    kinds = [(n["kind"], n["status"]) for n in state["notifications"]]
    assert kinds == [("inactive-nhs-number", "delivered")] * 2


def test_by_default_the_control_names_numbers_pds_no_longer_holds(
    receiver: Any, tmp_path: Path
) -> None:
    seed_file = tmp_path / "cpis.json"
    plans = [
        {"nhs_number": n, "local_id": f"L{i}", "plan_type": t, "start_date": "2026-01-05"}
        for i, (n, t) in enumerate(
            [
                ("9990128383", "CPP"),
                ("9990197768", "LAC"),
                ("9990043094", "CPP"),
                ("9990043094", "UCPP"),
            ]
        )
    ]
    seed_file.write_text(json.dumps({"plans": plans}), encoding="utf-8")
    states = {"9990128383": "current", "9990197768": "superseded", "9990043094": "missing"}
    service = CpisMockService(
        seed_file,
        lambda n: (states[n], False),
        callback_url=receiver.url,
        replacement_lookup={"9990197768": "9990842965"}.get,
    )
    answer = service.control("inactive-nhs-numbers", {})
    assert answer["nhs_numbers"] == 2
    deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=15)
    while not receiver.inactive and dt.datetime.now(dt.UTC) < deadline:
        time.sleep(0.02)
    (notification,) = receiver.inactive
    assert [
        (r.nhs_number, r.plan_types, r.reason, r.replacement_nhs_number)
        for r in notification.records
    ] == [
        ("9990043094", ("CPP", "UCPP"), "inactive", None),
        ("9990197768", ("LAC",), "superseded", "9990842965"),
    ]
    with pytest.raises(ValueError):
        service.control("something-else", {})


def valid_nhs_numbers(count: int, start: int = 999_700_000) -> list[str]:
    """Return `count` synthetic NHS numbers that pass the Modulus 11 check."""
    found: list[str] = []
    stem = start
    while len(found) < count:
        digits = f"{stem:09d}"
        check = 11 - sum(int(d) * (10 - i) for i, d in enumerate(digits)) % 11
        if check != 10:
            found.append(digits + str(check % 11))
        stem += 1
    return found


def test_more_inactive_numbers_than_one_notification_holds_go_in_two(
    tmp_path: Any, receiver: Any
) -> None:
    from connectors.cpis.mock import MAX_NOTIFICATION_RECORDS, CpisMockService
    from connectors.mockserver import run_in_thread
    from connectors.mockserver.app import create_mock_app

    numbers = valid_nhs_numbers(MAX_NOTIFICATION_RECORDS + 1)
    seed = tmp_path / "cpis.json"
    seed.write_text(json.dumps({"plans": [
        {"nhs_number": n, "local_id": f"C{i:04d}", "plan_type": "CPP", "start_date": "2026-01-05"}
        for i, n in enumerate(numbers)]}))
    service = CpisMockService(seed, lambda _: ("missing", False), callback_url=receiver.url)
    url, stop = run_in_thread(app=create_mock_app(services=[service]))
    try:
        resp = requests.post(f"{url}/admin/services/cpis/control/inactive-nhs-numbers",
                             json={}, timeout=30)
        assert resp.status_code == 200, resp.text
        assert len(resp.json()["notifications"]) == 2
        deadline = time.monotonic() + 30
        while len(receiver.inactive) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop()
    assert receiver.refused == []
    received = receiver.inactive
    assert sorted((len(n.records) for n in received), reverse=True) == [
        MAX_NOTIFICATION_RECORDS, 1]
    assert sorted(r.nhs_number for n in received for r in n.records) == sorted(numbers)
