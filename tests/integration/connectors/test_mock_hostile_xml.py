"""The hostile-XML table run against every XML entry point, with canaries.

Entry points: the PDS and CP-IS clients reading a reply (over real HTTP, the mock answering with
the hostile document), the mock reading a request (PDS and CP-IS), and the CP-IS notification
helpers reading an inbound message (the access-to-service reader and the reader that takes
either notification, access to service or inactive NHS number). Every document must be rejected; the canary file (a FIFO a
watcher sees being opened) must never be opened and the canary socket must get no connection.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
import requests

from connectors.cpis import Accessor, CpisClient, parse_access_notification, parse_notification
from connectors.errors import InvalidResponse
from connectors.mockserver import HOSTILE_VARIANTS, hostile_document
from connectors.pds import PdsClient
from connectors.soap import xml

CASES = [(v, False) for v in HOSTILE_VARIANTS] + [
    (v, True)
    for v in (
        "xxe_file",
        "xxe_network",
        "parameter_entity",
        "external_dtd",
        "external_dtd_file",
        "internal_entity",
        "billion_laughs",
        "xinclude",
    )
]
IDS = [f"{v}{'-utf16' if u else ''}" for v, u in CASES]
ACCESSOR = Accessor(
    "555123456789", "Dr Alex Example", "ED doctor", "RGN80", "Example Hospital (synthetic)"
)


def _assert_canaries_silent(canary_file: Any, canary_listener: Any) -> None:
    assert canary_file.opened == [], "the canary file was opened"
    assert canary_listener.connections == [], "the canary socket was contacted"


@pytest.mark.parametrize(("variant", "utf16"), CASES, ids=IDS)
def test_client_reply_parsing(
    variant: str,
    utf16: bool,
    pds: PdsClient,
    cpis: CpisClient,
    inject: Callable[..., dict[str, Any]],
    seed: dict[str, Any],
    canary_file: Any,
    canary_listener: Any,
) -> None:
    hostile = {
        "kind": "hostile",
        "variant": variant,
        "url": canary_listener.url,
        "file_path": str(canary_file.path),
        "utf16": utf16,
    }
    inject(service="pds", **hostile)
    inject(service="cpis", **hostile)
    p = next(p for p in seed["pds"] if not p["sensitive"])
    with pytest.raises(InvalidResponse):
        pds.get_patient_details_by_nhs_number(
            p["nhs_number"], dt.date.fromisoformat(p["birth_date"])
        )
    with pytest.raises(InvalidResponse):
        cpis.query(
            seed["cpis"]["plans"][0]["nhs_number"], access_type="unscheduled", accessor=ACCESSOR
        )
    _assert_canaries_silent(canary_file, canary_listener)


@pytest.mark.parametrize(("variant", "utf16"), CASES, ids=IDS)
@pytest.mark.parametrize(
    ("path", "action"),
    [
        ("/spine/pds", "urn:nhs-itk:services:201005:getPatientDetailsByNHSNumber-v1-0"),
        ("/spine/cpis", "urn:wraparound:spine:cpis:1:queryChildProtection"),
    ],
    ids=["pds", "cpis"],
)
def test_mock_request_parsing(
    variant: str,
    utf16: bool,
    path: str,
    action: str,
    mock: str,
    canary_file: Any,
    canary_listener: Any,
) -> None:
    document = hostile_document(variant, canary_listener.url, str(canary_file.path), utf16=utf16)
    response = requests.post(
        f"{mock}{path}",
        data=document,
        headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{action}"'},
        timeout=10,
    )
    assert response.status_code in (413, 500)
    if response.status_code == 500:
        fault = xml.parse(response.content)
        assert (
            fault.findtext(".//{http://schemas.xmlsoap.org/soap/envelope/}Fault/faultcode")
            == "soap:Client"
        )
    _assert_canaries_silent(canary_file, canary_listener)


NOTIFICATION_READERS = {"access": parse_access_notification, "either": parse_notification}


@pytest.mark.parametrize("reader", list(NOTIFICATION_READERS))
@pytest.mark.parametrize(("variant", "utf16"), CASES, ids=IDS)
def test_notification_parsing(
    variant: str, utf16: bool, reader: str, canary_file: Any, canary_listener: Any
) -> None:
    document = hostile_document(variant, canary_listener.url, str(canary_file.path), utf16=utf16)
    with pytest.raises(InvalidResponse):
        NOTIFICATION_READERS[reader](document, max_bytes=10_000_000)
    _assert_canaries_silent(canary_file, canary_listener)


def test_the_canaries_do_detect(canary_file: Any, canary_listener: Any) -> None:
    """Prove the canaries work: a deliberate read and a deliberate connection are both seen."""
    import socket
    import time
    from urllib.parse import urlsplit

    assert canary_file.path.read_bytes().startswith(b"TOP-SECRET-CANARY")
    parts = urlsplit(canary_listener.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=2):
        pass
    deadline = time.monotonic() + 2
    while not canary_listener.connections and time.monotonic() < deadline:
        time.sleep(0.01)
    assert canary_file.opened and canary_listener.connections
