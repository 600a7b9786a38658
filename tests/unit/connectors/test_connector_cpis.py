"""CpisClient against canned envelopes, and the notification helper the gateway will use."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
import responses
from lxml import etree

from connectors.cpis import (
    Accessor,
    CpisClient,
    InactiveNhsNumber,
    InactiveNhsNumberNotification,
    LocalAuthority,
    UploadRecord,
    build_cpis_client,
    build_notification_ack,
    parse_access_notification,
    parse_notification,
)
from connectors.cpis.notifications import (
    build_access_notification,
    build_inactive_nhs_number_notification,
)
from connectors.errors import (
    InvalidRequest,
    InvalidResponse,
    NotFound,
    SecurityFailure,
)
from connectors.soap import xml
from connectors.soap.settings import SoapSettings
from connectors.soap.wsse import add_security_header, sign_envelope

ADDRESS = "http://cpis.test/spine/cpis"
C = "{urn:wraparound:spine:cpis:1}"
Canon = Callable[[bytes | etree._Element], bytes]
ACCESSOR = Accessor(
    "555123456789",
    "Dr Alex Example",
    "Emergency department doctor",
    "RGN80",
    "Example Hospital (synthetic)",
)
LA = LocalAuthority("LA926", "Norfolk County Council (synthetic)", "01632 960100", "01632 960199")
RECORDS = [
    UploadRecord("C0001", "9990128383", True, "CPP", dt.date(2026, 8, 1)),
    UploadRecord("C0002", "9990128384", True, "CPP", dt.date(2026, 8, 1)),
    UploadRecord("C0003", "9990128383", False, "LAC", dt.date(2026, 8, 1)),
]


@pytest.fixture
def cpis(ids: Callable[[], str], clock: Callable[[], dt.datetime]) -> CpisClient:
    return build_cpis_client(
        SoapSettings(address=ADDRESS, username="wraparound-gateway"), clock=clock, ids=ids
    )


def _serve(rs: responses.RequestsMock, body: bytes, status: int = 200) -> None:
    rs.add(responses.POST, ADDRESS, body=body, status=status, content_type="text/xml")


CALLS: list[tuple[str, Callable[[CpisClient], Any]]] = [
    (
        "queryChildProtection",
        lambda c: c.query(
            "9990197768",
            access_type="unscheduled",
            accessor=ACCESSOR,
            care_setting="emergency department",
        ),
    ),
    ("getAccessHistory", lambda c: c.access_history("9990197768")),
    (
        "uploadLocalAuthorityRecords",
        lambda c: c.upload(RECORDS, file_sequence_number=7, local_authority=LA),
    ),
]


@pytest.mark.parametrize(("name", "call"), CALLS, ids=[c[0] for c in CALLS])
def test_requests_match_the_canned_envelopes(
    name: str,
    call: Callable[[CpisClient], Any],
    cpis: CpisClient,
    canned: Callable[[str], bytes],
    c14n: Canon,
) -> None:
    with responses.RequestsMock() as rs:
        _serve(rs, canned(f"cpis/{name}.response.xml"))
        call(cpis)
        sent = rs.calls[0].request
    assert c14n(sent.body) == c14n(canned(f"cpis/{name}.request.xml"))
    assert sent.headers["SOAPAction"] == f'"urn:wraparound:spine:cpis:1:{name}"'


def test_upload_acknowledgement_is_read(cpis: CpisClient, canned: Callable[[str], bytes]) -> None:
    with responses.RequestsMock() as rs:
        _serve(rs, canned("cpis/uploadLocalAuthorityRecords.response.xml"))
        ack = cpis.upload(RECORDS, file_sequence_number=7, local_authority=LA)
    assert (ack.file_sequence_number, ack.file_code, ack.transmission_quantity) == (7, "CPF03", 3)
    assert [(r.local_id, r.code) for r in ack.records] == [
        ("C0001", "CPR06"),
        ("C0002", "CPR04"),
        ("C0003", "CPR03"),
    ]
    assert [r.accepted for r in ack.records] == [True, False, False]


def test_query_result_is_read(
    cpis: CpisClient, canned: Callable[[str], bytes], fixed_now: dt.datetime
) -> None:
    with responses.RequestsMock() as rs:
        _serve(rs, canned("cpis/queryChildProtection.response.xml"))
        result = cpis.query("9990197768", access_type="unscheduled", accessor=ACCESSOR)
    assert result.found and result.nhs_number == "9990197768"
    (plan,) = result.plans
    assert plan.plan_type == "LAC" and plan.end_date is None
    assert plan.local_authority.emergency_duty_phone == "01632 960199"
    (access,) = result.recent_accesses
    assert access.access_time == fixed_now and access.accessor == ACCESSOR


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.query("9990197769", access_type="unscheduled", accessor=ACCESSOR),
        lambda c: c.query("9990197768", access_type="sometimes", accessor=ACCESSOR),
        lambda c: c.access_history("12345"),
        lambda c: c.upload(RECORDS, file_sequence_number=0, local_authority=LA),
        lambda c: c.upload(
            [UploadRecord("C1", "9990128383", True, "XYZ", dt.date(2026, 1, 1))],
            file_sequence_number=1,
            local_authority=LA,
        ),
    ],
)
def test_local_checks_make_no_call(call: Callable[[CpisClient], Any], cpis: CpisClient) -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rs:
        with pytest.raises(InvalidRequest):
            call(cpis)
        assert len(rs.calls) == 0


def _fault(code: str) -> bytes:
    return (
        '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><soap:Fault>'
        "<faultcode>soap:Client</faultcode><faultstring>refused</faultstring><detail>"
        f'<cp:FaultInfo xmlns:cp="urn:wraparound:spine:cpis:1"><cp:code>{code}</cp:code>'
        "<cp:text>refused</cp:text></cp:FaultInfo></detail></soap:Fault></soap:Body></soap:Envelope>"
    ).encode()


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("CPIS-VALIDATION", InvalidRequest),
        ("CPIS-INVALID-NHS-NUMBER", InvalidRequest),
        ("CPIS-NOT-FOUND", NotFound),
    ],
)
def test_cpis_faults(code: str, error: type[Exception], cpis: CpisClient) -> None:
    with responses.RequestsMock() as rs:
        _serve(rs, _fault(code), status=500)
        with pytest.raises(error):
            cpis.access_history("9990197768")


def test_wrong_reply_type_is_invalid(cpis: CpisClient, canned: Callable[[str], bytes]) -> None:
    with responses.RequestsMock() as rs:
        _serve(rs, canned("cpis/getAccessHistory.response.xml"))
        with pytest.raises(InvalidResponse):
            cpis.query("9990197768", access_type="scheduled", accessor=ACCESSOR)


# --- the receiving helper ------------------------------------------------------------------


def test_notification_is_parsed_and_acknowledged(
    canned: Callable[[str], bytes], fixed_now: dt.datetime
) -> None:
    data = canned("cpis/accessToServiceNotification.request.xml")
    notification = parse_access_notification(
        data,
        soap_action='"urn:wraparound:spine:cpis:1:accessToServiceNotification"',
        now=fixed_now + dt.timedelta(seconds=30),
    )
    assert notification.notification_id == notification.message_id
    assert (notification.nhs_number, notification.local_id) == ("9990197768", "C0007")
    assert notification.plan_types == ("LAC",)
    assert notification.access.accessor.organisation_ods_code == "RGN80"
    ack = xml.parse(build_notification_ack(notification))
    assert ack.findtext(f".//{C}status") == "accepted"
    relates = ack.findtext(".//{http://www.w3.org/2005/08/addressing}RelatesTo")
    assert relates == notification.message_id


def _notification_envelope() -> etree._Element:
    from connectors.cpis import CpisAccess

    return build_access_notification(
        notification_id="N-1",
        nhs_number="9990197768",
        local_id="C0007",
        local_authority_ods_code="LA926",
        plan_types=("CPP",),
        access=CpisAccess(dt.datetime.now(dt.UTC), ACCESSOR, None),
        to="http://gateway.test/notify",
    )


def test_signed_notification_verifies(signer_keys: tuple[bytes, bytes]) -> None:
    envelope = _notification_envelope()
    add_security_header(envelope, username="cpis", created=dt.datetime.now(dt.UTC))
    sign_envelope(envelope, private_key_pem=signer_keys[0], certificate_pem=signer_keys[1])
    notification = parse_access_notification(xml.to_bytes(envelope), certificate_pem=signer_keys[1])
    assert notification.plan_types == ("CPP",)


def test_wrapped_signed_notification_fails(signer_keys: tuple[bytes, bytes]) -> None:
    envelope = _notification_envelope()
    add_security_header(envelope, username="cpis", created=dt.datetime.now(dt.UTC))
    sign_envelope(envelope, private_key_pem=signer_keys[0], certificate_pem=signer_keys[1])
    body = envelope[-1]
    security = envelope.find(
        ".//{http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd}Security"
    )
    assert security is not None
    envelope.remove(body)
    etree.SubElement(security, "{urn:attacker}Wrapper").append(body)
    evil = xml.parse(xml.to_bytes(_notification_envelope()))[-1]
    evil.find(f".//{C}nhsNumber").text = "9990128383"  # type: ignore[union-attr]
    envelope.append(evil)
    # The structural check (one Body in the whole document) or the signature check refuses it.
    with pytest.raises((InvalidResponse, SecurityFailure)):
        parse_access_notification(xml.to_bytes(envelope), certificate_pem=signer_keys[1])


@pytest.mark.parametrize(
    ("mutate", "error", "kwargs"),
    [
        ("none-but-require-signature", SecurityFailure, {"require_signature": True}),
        ("no-security", SecurityFailure, {}),
        ("expired", SecurityFailure, {}),
        ("wrong-action", InvalidResponse, {}),
        ("no-message-id", InvalidResponse, {}),
        ("soap-action-mismatch", InvalidResponse, {"soap_action": "urn:other"}),
        ("schema-invalid", InvalidResponse, {}),
    ],
)
def test_bad_notifications_are_rejected(
    mutate: str, error: type[Exception], kwargs: dict[str, Any]
) -> None:
    envelope = _notification_envelope()
    created = dt.datetime.now(dt.UTC) - (
        dt.timedelta(hours=1) if mutate == "expired" else dt.timedelta(0)
    )
    if mutate != "no-security":
        add_security_header(envelope, username="cpis", created=created)
    wsa = "{http://www.w3.org/2005/08/addressing}"
    if mutate == "wrong-action":
        envelope.find(f".//{wsa}Action").text = "urn:other"  # type: ignore[union-attr]
    if mutate == "no-message-id":
        node = envelope.find(f".//{wsa}MessageID")
        node.getparent().remove(node)  # type: ignore[union-attr]
    if mutate == "schema-invalid":
        envelope.find(f".//{C}nhsNumber").text = "not-a-number"  # type: ignore[union-attr]
    with pytest.raises(error):
        parse_access_notification(xml.to_bytes(envelope), **kwargs)


INACTIVE_RECORDS = (
    InactiveNhsNumber("9990197768", "C0007", ("CPP", "UCPP"), "superseded", "9990128383"),
    InactiveNhsNumber("9990043094", None, ("LAC",), "inactive"),
)


def _inactive_envelope(when: dt.datetime) -> etree._Element:
    return build_inactive_nhs_number_notification(
        notification_id="N-2",
        local_authority_ods_code="LA926",
        notified_at=when,
        records=INACTIVE_RECORDS,
        to="http://gateway.test/notify",
    )


def test_signed_inactive_notification_round_trips(signer_keys: tuple[bytes, bytes]) -> None:
    when = dt.datetime.now(dt.UTC).replace(microsecond=0)
    envelope = _inactive_envelope(when)
    add_security_header(envelope, username="cpis", created=when)
    sign_envelope(envelope, private_key_pem=signer_keys[0], certificate_pem=signer_keys[1])
    data = xml.to_bytes(envelope)
    action = "urn:wraparound:spine:cpis:1:inactiveNhsNumberNotification"
    notification = parse_notification(
        data, soap_action=f'"{action}"', certificate_pem=signer_keys[1]
    )
    assert notification == InactiveNhsNumberNotification(
        "N-2", "N-2", "LA926", when, INACTIVE_RECORDS
    )
    ack = xml.parse(build_notification_ack(notification, duplicate=True))
    assert ack.findtext(".//{http://www.w3.org/2005/08/addressing}Action") == action + "Response"
    assert ack.findtext(f".//{C}status") == "duplicate"
    # The access-to-service parser takes only its own kind.
    with pytest.raises(InvalidResponse):
        parse_access_notification(data, certificate_pem=signer_keys[1])


@pytest.mark.parametrize("mutate", ["no-records", "bad-reason", "bad-replacement"])
def test_bad_inactive_notifications_are_rejected(mutate: str) -> None:
    envelope = _inactive_envelope(dt.datetime.now(dt.UTC))
    add_security_header(envelope, username="cpis", created=dt.datetime.now(dt.UTC))
    records = envelope.findall(f".//{C}record")
    if mutate == "no-records":
        for record in records:
            record.getparent().remove(record)
    elif mutate == "bad-reason":
        records[0].find(f"{C}reason").text = "lost"
    else:
        records[0].find(f"{C}replacementNhsNumber").text = "123"
    with pytest.raises(InvalidResponse):
        parse_notification(xml.to_bytes(envelope))
