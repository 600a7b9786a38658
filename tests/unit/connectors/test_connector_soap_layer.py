"""The shared SOAP layer: factory, settings, WS-Addressing, call records, transport errors."""

from __future__ import annotations

import datetime as dt
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
import responses
from zeep import Settings

from connectors.errors import (
    ConfigurationError,
    InvalidResponse,
    MalformedXml,
    Rejected,
    Timeout,
    Unavailable,
    UnsafeXml,
)
from connectors.pds import PDS_SPEC, PdsClient, build_pds_client
from connectors.soap import (
    CorrelationTimingPlugin,
    HardenedTransport,
    SoapSettings,
    StableWsAddressing,
    build_soap_client,
    hardened_zeep_settings,
    load_wsdl,
    xml,
)

ADDRESS = "http://pds.test/spine/pds"
DOB = dt.date(2015, 9, 13)
WSA = "{http://www.w3.org/2005/08/addressing}"


@pytest.fixture
def recorder() -> CorrelationTimingPlugin:
    return CorrelationTimingPlugin()


@pytest.fixture
def pds(
    ids: Callable[[], str], clock: Callable[[], dt.datetime], recorder: CorrelationTimingPlugin
) -> PdsClient:
    return build_pds_client(
        SoapSettings(address=ADDRESS, username="gw", from_address="urn:wraparound:gateway"),
        plugins=[StableWsAddressing("urn:wraparound:gateway"), recorder],
        clock=clock,
        ids=ids,
    )


def _serve(
    rs: responses.RequestsMock, body: bytes | Exception, status: int = 200, ctype: str = "text/xml"
) -> None:
    rs.add(responses.POST, ADDRESS, body=body, status=status, content_type=ctype)


def _addressing(body: bytes) -> dict[str, str]:
    root = xml.parse(body)
    return {
        name: (root.findtext(f".//{WSA}{name}") or "") for name in ("MessageID", "Action", "To")
    } | {"From": root.findtext(f".//{WSA}From/{WSA}Address") or ""}


def test_hardened_settings_are_explicit() -> None:
    settings = hardened_zeep_settings()
    assert settings.strict and settings.forbid_dtd and settings.forbid_entities
    assert settings.forbid_external and not settings.xml_huge_tree and settings.raw_response


@pytest.mark.parametrize(
    "weakened",
    [
        {"forbid_dtd": False},
        {"forbid_entities": False},
        {"forbid_external": False},
        {"xml_huge_tree": True},
        {"strict": False},
    ],
)
def test_factory_refuses_weakened_zeep_settings(weakened: dict[str, bool]) -> None:
    options = {
        "strict": True,
        "forbid_dtd": True,
        "forbid_entities": True,
        "forbid_external": True,
        "xml_huge_tree": False,
        "raw_response": True,
    } | weakened
    with pytest.raises(ConfigurationError):
        build_soap_client(
            PDS_SPEC, SoapSettings(address=ADDRESS), zeep_settings=Settings(**options)
        )


def test_wsdl_loads_once_per_process() -> None:
    assert load_wsdl(str(PDS_SPEC.wsdl_path)) is load_wsdl(str(PDS_SPEC.wsdl_path))


@pytest.fixture
def canary_listener() -> Iterator[list[bytes]]:
    """A loopback socket that records every connection made to it."""
    hits: list[bytes] = []
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    server.settimeout(0.05)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            hits.append(conn.recv(1024))
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    hits.append(str(server.getsockname()[1]).encode())  # first item: the port
    yield hits
    stop.set()
    thread.join()
    server.close()


def test_wsdl_imports_over_the_network_are_refused(
    tmp_path: Path, canary_listener: list[bytes]
) -> None:
    port = canary_listener[0].decode()
    wsdl = tmp_path / "evil.wsdl"
    wsdl.write_text(
        '<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:evil">'
        '<wsdl:types><xsd:schema targetNamespace="urn:evil">'
        f'<xsd:import namespace="urn:x" schemaLocation="http://127.0.0.1:{port}/evil.xsd"/>'
        "</xsd:schema></wsdl:types></wsdl:definitions>",
        encoding="utf-8",
    )
    with pytest.raises(UnsafeXml):
        load_wsdl(str(wsdl))
    assert canary_listener[1:] == []


def test_transport_refuses_network_documents() -> None:
    transport = HardenedTransport(
        connect_timeout=1, read_timeout=1, operation_timeout=1, max_response_bytes=10
    )
    with pytest.raises(ConfigurationError):
        transport.load("http://127.0.0.1:9/x.wsdl")
    with pytest.raises(ConfigurationError):
        transport.get("http://127.0.0.1:9/x.wsdl", {}, {})


def test_message_id_is_stable_across_retries_of_one_message(
    pds: PdsClient, canned: Callable[[str], bytes]
) -> None:
    with responses.RequestsMock() as rs:
        _serve(rs, canned("pds/verifyNHSNumber.response.xml"))
        pds.verify_nhs_number("9990128383", DOB, message_id="MSG-1")
        pds.verify_nhs_number("9990128383", DOB, message_id="MSG-1")
        pds.verify_nhs_number("9990128383", DOB)
        pds.verify_nhs_number("9990128383", DOB)
        sent = [_addressing(call.request.body) for call in rs.calls]
    assert sent[0]["MessageID"] == sent[1]["MessageID"] == "MSG-1"
    assert len({sent[2]["MessageID"], sent[3]["MessageID"], "MSG-1"}) == 3
    assert {s["Action"] for s in sent} == {"urn:nhs-itk:services:201005:verifyNHSNumber-v1-0"}
    assert {s["To"] for s in sent} == {ADDRESS}
    assert {s["From"] for s in sent} == {"urn:wraparound:gateway"}


def test_calls_are_recorded_with_ids_and_timing_but_no_content(
    pds: PdsClient,
    recorder: CorrelationTimingPlugin,
    canned: Callable[[str], bytes],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with responses.RequestsMock() as rs:
        _serve(rs, canned("pds/verifyNHSNumber.response.xml"))
        _serve(rs, canned("pds/fault-2200.response.xml"), status=500)
        pds.verify_nhs_number("9990128383", DOB, message_id="M-1", correlation_id="C-1")
        with pytest.raises(Rejected):
            pds.verify_nhs_number("9990128383", DOB, message_id="M-2", correlation_id="C-2")
        assert rs.calls[0].request.headers["X-Correlation-ID"] == "C-1"
    first, second = recorder.records
    assert (first.message_id, first.correlation_id, first.outcome) == ("M-1", "C-1", "ok")
    assert first.service == "pds" and first.operation == "verifyNHSNumber-v1-0"
    assert first.http_status == 200 and first.duration_ms >= 0
    assert first.request_bytes > 0 and first.response_bytes > 0
    assert (second.outcome, second.http_status) == ("invalid-request", 500)
    for field in (first, second):
        assert "9990128383" not in repr(field)
    assert "9990128383" not in caplog.text
    assert "Envelope" not in caplog.text


@pytest.mark.parametrize(
    ("body", "status", "ctype", "error"),
    [
        (b"<html>busy</html>", 503, "text/html", Unavailable),
        (b"<html>oops</html>", 500, "text/html", Unavailable),
        (b"", 502, "text/xml", Unavailable),
        (b"<html>gone</html>", 404, "text/html", InvalidResponse),
        (b"<soap:Envelope", 200, "text/xml", MalformedXml),
        (requests.exceptions.ConnectTimeout("slow"), 200, "text/xml", Timeout),
        (requests.exceptions.ReadTimeout("slow"), 200, "text/xml", Timeout),
        (requests.exceptions.ConnectionError("reset"), 200, "text/xml", Unavailable),
    ],
)
def test_transport_level_failures(
    body: bytes | Exception, status: int, ctype: str, error: type[Exception], pds: PdsClient
) -> None:
    with responses.RequestsMock() as rs:
        _serve(rs, body, status, ctype)
        with pytest.raises(error) as info:
            pds.verify_nhs_number("9990128383", DOB)
    assert type(info.value) is error


def test_oversized_replies_are_refused(ids: Callable[[], str]) -> None:
    client = build_pds_client(SoapSettings(address=ADDRESS, max_response_bytes=1000), ids=ids)
    with responses.RequestsMock() as rs:
        _serve(rs, b"<a>" + b"x" * 5000 + b"</a>")
        with pytest.raises(UnsafeXml):
            client.verify_nhs_number("9990128383", DOB)


def test_non_200_without_fault_is_invalid(pds: PdsClient, canned: Callable[[str], bytes]) -> None:
    with responses.RequestsMock() as rs:
        _serve(rs, canned("pds/verifyNHSNumber.response.xml"), status=202)
        with pytest.raises(InvalidResponse):
            pds.verify_nhs_number("9990128383", DOB)


def test_message_ids_are_random_uuids_and_a_forked_child_draws_its_own() -> None:
    import os
    import uuid

    from connectors.soap import new_message_id
    from connectors.soap.context import new_uuid

    lower = [new_uuid() for _ in range(200)]
    assert len(set(lower)) == 200
    assert all(str(uuid.UUID(value)) == value and uuid.UUID(value).version == 4
               for value in lower)
    ids = [new_message_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    for value in ids:
        parsed = uuid.UUID(value)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert str(parsed).upper() == value
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the next ids it makes, as its parent's pool would have made them
        os.close(read)
        os.write(write, ",".join(new_message_id() for _ in range(5)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read().split(",")
    os.waitpid(pid, 0)
    parent = [new_message_id() for _ in range(5)]
    assert len(child) == 5 and not set(child) & set(parent)
