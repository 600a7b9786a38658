"""The PDS benchmark's in-process side: the whole gateway read, handled in the calling process."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import national_pds as bench
from tests.conftest import client_as


@pytest.fixture
def env(tmp_path: Path, mock: str) -> dict[str, str]:
    return {
        **bench.SERVER_ENV,
        "WRAPAROUND_DATABASE_URL": f"sqlite:///{tmp_path / 'bench.sqlite'}",
        "WRAPAROUND_DATA_DIR": str(tmp_path / "data"),
        "WRAPAROUND_NATIONAL_URL": mock,
    }


def test_in_process_side_reads_the_child_asked_for_and_audits_it(
        env: dict[str, str], tmp_path: Path, child: dict[str, Any],
        seed: dict[str, Any]) -> None:
    token = bench.mint_token(env["WRAPAROUND_DATABASE_URL"], env)
    gateway = bench.InProcessGateway(env, token, tmp_path / "inprocess.log")
    try:
        bench.inprocess_call(gateway, child["nhs_number"])
        status, body = gateway.get(f"/national/pds/Patient/{child['nhs_number']}")
        assert status.startswith("200 ") and b"UKCore-Patient" in body
        superseded = next(p for p in seed["pds"] if p["superseded_nhs_numbers"])
        with pytest.raises(bench.BenchError):  # the current record answers, not the one asked
            bench.inprocess_call(gateway, superseded["superseded_nhs_numbers"][0])
        with pytest.raises(bench.BenchError):  # Modulus 11 fails: 400, never a call
            bench.inprocess_call(gateway, "1234567890")
        auditor = client_as(gateway.app, "auditor")
        gateway.app.extensions["wraparound"].audit.flush()
        bundle = auditor.get("/fhir/AuditEvent?_count=200").get_json()
        events = [str(entry["resource"]) for entry in bundle.get("entry", [])]
        assert any("national pds" in text and child["nhs_number"] in text for text in events)
    finally:
        gateway.close()
    assert "national" in (tmp_path / "inprocess.log").read_text(encoding="utf-8")


def test_in_process_side_refuses_a_bad_token(env: dict[str, str], tmp_path: Path,
                                             child: dict[str, Any]) -> None:
    bench.mint_token(env["WRAPAROUND_DATABASE_URL"], env)
    gateway = bench.InProcessGateway(env, "not-a-token", tmp_path / "inprocess.log")
    try:
        with pytest.raises(bench.BenchError):
            bench.inprocess_call(gateway, child["nhs_number"])
    finally:
        gateway.close()
