"""Fault injection over real HTTP: each fault becomes the right connector error, in time."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import pytest

from connectors.cpis import build_cpis_client
from connectors.errors import (
    ConnectorError,
    InvalidRequest,
    MalformedXml,
    Rejected,
    Timeout,
    Unavailable,
    UnsafeXml,
)
from connectors.pds import PdsClient, build_pds_client
from connectors.soap import SoapSettings

Inject = Callable[..., dict[str, Any]]


def _call(pds: PdsClient, seed: dict[str, Any]) -> Any:
    p = next(p for p in seed["pds"] if not p["sensitive"])
    return pds.get_patient_details_by_nhs_number(
        p["nhs_number"], dt.date.fromisoformat(p["birth_date"])
    )


@pytest.mark.parametrize(
    ("fault", "error", "retryable"),
    [
        ({"kind": "http_error", "status": 500}, Unavailable, True),
        ({"kind": "http_error", "status": 503}, Unavailable, True),
        ({"kind": "malformed"}, MalformedXml, False),
        ({"kind": "hostile", "variant": "billion_laughs"}, UnsafeXml, False),
        ({"kind": "reset"}, Unavailable, True),
        ({"kind": "soap_fault", "code": "2200"}, InvalidRequest, False),
        ({"kind": "soap_fault", "code": "9000", "fault_code": "Server"}, Rejected, True),
    ],
    ids=lambda v: (
        v["kind"] + str(v.get("status", v.get("code", ""))) if isinstance(v, dict) else ""
    ),
)
def test_each_fault_maps_to_its_error(
    fault: dict[str, Any],
    error: type[ConnectorError],
    retryable: bool,
    pds: PdsClient,
    inject: Inject,
    seed: dict[str, Any],
) -> None:
    inject(service="pds", operation="getPatientDetailsByNHSNumber-v1-0", **fault)
    with pytest.raises(error) as info:
        _call(pds, seed)
    assert type(info.value) is error
    assert info.value.retryable is retryable
    assert info.value.service == "pds"
    if isinstance(info.value, Rejected):
        assert info.value.service_code == fault["code"]


def test_faults_are_scoped_to_service_and_operation(
    pds: PdsClient, inject: Inject, seed: dict[str, Any]
) -> None:
    inject(service="pds", operation="verifyNHSNumber-v1-0", kind="http_error", status=503)
    inject(service="cpis", kind="http_error", status=503)
    assert _call(pds, seed).nhs_number


def test_a_fault_can_apply_a_number_of_times(
    pds: PdsClient, inject: Inject, seed: dict[str, Any]
) -> None:
    inject(service="pds", kind="http_error", status=503, times=1)
    with pytest.raises(Unavailable):
        _call(pds, seed)
    assert _call(pds, seed).nhs_number  # a retry succeeds


def test_latency_within_the_timeout_still_answers(
    pds: PdsClient, inject: Inject, seed: dict[str, Any]
) -> None:
    inject(service="pds", kind="latency", seconds=0.3)
    started = time.monotonic()
    assert _call(pds, seed).nhs_number
    assert time.monotonic() - started >= 0.3


@pytest.mark.parametrize(
    ("fault", "read_timeout", "operation_timeout"),
    [
        ({"kind": "hang", "seconds": 30}, 0.5, 1.0),
        ({"kind": "latency", "seconds": 2}, 0.5, 1.0),
    ],
)
def test_timeouts_end_within_the_operation_timeout(
    fault: dict[str, Any],
    read_timeout: float,
    operation_timeout: float,
    mock: str,
    inject: Inject,
    seed: dict[str, Any],
    settings_for: Callable[..., SoapSettings],
) -> None:
    client = build_pds_client(
        settings_for(
            f"{mock}/spine/pds", read_timeout=read_timeout, operation_timeout=operation_timeout
        )
    )
    inject(service="pds", **fault)
    started = time.monotonic()
    with pytest.raises(Timeout) as info:
        _call(client, seed)
    elapsed = time.monotonic() - started
    assert elapsed < operation_timeout + 0.5
    assert info.value.retryable and info.value.http_status == 504


def test_connection_refused_is_unavailable(
    seed: dict[str, Any], settings_for: Callable[..., SoapSettings]
) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = build_pds_client(settings_for(f"http://127.0.0.1:{port}/spine/pds"))
    with pytest.raises(Unavailable):
        _call(client, seed)


def test_cpis_faults_use_its_own_codes(
    mock: str, inject: Inject, seed: dict[str, Any], settings_for: Callable[..., SoapSettings]
) -> None:
    cpis = build_cpis_client(settings_for(f"{mock}/spine/cpis"))
    inject(service="cpis", operation="getAccessHistory", kind="soap_fault", code="CPIS-NOT-FOUND")
    with pytest.raises(Rejected) as info:
        cpis.access_history(seed["cpis"]["plans"][0]["nhs_number"])
    assert info.value.http_status == 404 and info.value.service_code == "CPIS-NOT-FOUND"
