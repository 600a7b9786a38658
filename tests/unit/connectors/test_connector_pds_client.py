"""PdsClient against canned SMSP envelopes (no network): requests and replies as canonical XML."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
import responses
from lxml import etree

from connectors.errors import (
    ConnectorError,
    InvalidRequest,
    InvalidResponse,
    NotFound,
    Rejected,
    TooManyMatches,
    Unavailable,
)
from connectors.pds import PdsClient, build_pds_client
from connectors.pds import messages as m
from connectors.pds.models import LocalIdentifier
from connectors.soap import SoapSettings, xml

ADDRESS = "http://pds.test/spine/pds"
DOB = dt.date(2015, 9, 13)
H = "{urn:hl7-org:v3}"
Canon = Callable[[bytes | etree._Element], bytes]


@pytest.fixture
def pds(ids: Callable[[], str], clock: Callable[[], dt.datetime]) -> PdsClient:
    return build_pds_client(
        SoapSettings(address=ADDRESS, username="wraparound-gateway"),
        clock=clock,
        ids=ids,
        audit_identity="urn:nhs-uk:identity:ods:LA926:SYS:WRAPAROUND",
    )


def _serve(rs: responses.RequestsMock, body: bytes, status: int = 200) -> None:
    rs.add(
        responses.POST, ADDRESS, body=body, status=status, content_type="text/xml; charset=utf-8"
    )


OPERATIONS: list[tuple[str, Callable[[PdsClient], Any]]] = [
    ("verifyNHSNumber", lambda c: c.verify_nhs_number("9990128383", DOB)),
    (
        "getNHSNumber",
        lambda c: c.get_nhs_number(
            birth_date=DOB, gender="female", family="Robinson", given="Ella", postcode="NR31 2UF"
        ),
    ),
    (
        "getPatientDetailsByNHSNumber",
        lambda c: c.get_patient_details_by_nhs_number("9990128383", DOB),
    ),
    (
        "getPatientDetailsBySearch",
        lambda c: c.search(birth_date=DOB, gender="female", family="Robinson", given="Ella"),
    ),
    ("getPatientDetails", lambda c: c.get_patient_details(birth_date=DOB, nhs_number="9990128383")),
]


@pytest.mark.parametrize(("name", "call"), OPERATIONS, ids=[o[0] for o in OPERATIONS])
def test_request_matches_the_canned_envelope(
    name: str,
    call: Callable[[PdsClient], Any],
    pds: PdsClient,
    canned: Callable[[str], bytes],
    c14n: Canon,
) -> None:
    with responses.RequestsMock() as rs:
        _serve(rs, canned(f"pds/{name}.response.xml"))
        call(pds)
        sent = rs.calls[0].request
    assert c14n(sent.body) == c14n(canned(f"pds/{name}.request.xml"))
    assert sent.headers["SOAPAction"] == f'"urn:nhs-itk:services:201005:{name}-v1-0"'
    assert sent.headers["Content-Type"].startswith("text/xml")


def test_patient_details_are_read(pds: PdsClient, canned: Callable[[str], bytes]) -> None:
    with responses.RequestsMock() as rs:
        _serve(rs, canned("pds/getPatientDetailsByNHSNumber.response.xml"))
        patient = pds.get_patient_details_by_nhs_number("9990128383", DOB)
    assert patient.nhs_number == "9990128383"
    assert patient.response_code == "SMSP-0000"
    assert patient.name is not None and patient.name.family == "Robinson"
    assert patient.name.given == ("Ella", "Anne")
    assert patient.birth_date == DOB and patient.gender == "female"
    assert patient.addresses[0].postcode == "NR31 2UF"
    assert patient.addresses[0].lines == ("37 Wensum View", "Great Yarmouth", "Norfolk")
    assert patient.gp is not None and patient.gp.ods_code == "D82006"
    assert patient.telecoms[0].value.startswith("tel:")
    assert patient.superseded_nhs_number is None and not patient.from_local_store


def test_verify_and_trace_results(pds: PdsClient, canned: Callable[[str], bytes]) -> None:
    with responses.RequestsMock() as rs:
        _serve(rs, canned("pds/verifyNHSNumber.response.xml"))
        _serve(rs, canned("pds/getNHSNumber.response.xml"))
        verification = pds.verify_nhs_number("9990128383", DOB)
        match = pds.get_nhs_number(birth_date=DOB, gender="female", family="Robinson")
    assert verification.verified and verification.nhs_number == "9990128383"
    assert match.nhs_number == "9990128383" and match.response_code == "SMSP-0000"


def test_reference_sample_message_is_understood(
    pds: PdsClient, canned: Callable[[str], bytes]
) -> None:
    sample = canned("reference-smsp/sample-verifyNHSNumber-response.soap.xml")
    with responses.RequestsMock() as rs:
        _serve(rs, sample)
        result = pds.verify_nhs_number("9449310092", dt.date(1990, 1, 1))
    assert result.verified is True
    assert result.nhs_number == "9449310092"
    assert result.response_code == "SMSP-0000"


@pytest.mark.parametrize("number", ["9990128384", "123", "999012838X", "0000000000", "99901283830"])
def test_modulus_11_is_checked_before_any_call(pds: PdsClient, number: str) -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rs:
        with pytest.raises(InvalidRequest) as info:
            pds.get_patient_details_by_nhs_number(number, DOB)
        with pytest.raises(InvalidRequest):
            pds.verify_nhs_number(number, DOB)
        assert len(rs.calls) == 0
    assert info.value.http_status == 400


def _with_code(response: bytes, code: str, *, drop_subject: bool = False) -> bytes:
    root = xml.parse(response)
    for value in root.iter(f"{H}value"):
        if value.get("codeSystem") == "2.16.840.1.113883.2.1.3.2.4.17.285":
            value.set("code", code)
    if drop_subject:
        for subject in list(root.iter(f"{H}subject")):
            subject.getparent().remove(subject)
    return xml.to_bytes(root)


@pytest.mark.parametrize(
    ("code", "error", "status", "retryable"),
    [
        ("DEMOG-0001", NotFound, 404, False),
        ("DEMOG-0022", NotFound, 404, False),
        ("DEMOG-0007", TooManyMatches, 422, False),
        ("DEMOG-0040", Rejected, 422, False),
        ("DEMOG-0042", InvalidRequest, 400, False),
        ("SMSP-0001", InvalidRequest, 400, False),
        ("SMSP-0002", InvalidResponse, 502, False),
        ("SMSP-9999", Unavailable, 502, True),
        ("DEMOG-9999", Unavailable, 502, True),
        ("XYZ-0000", InvalidResponse, 502, False),
    ],
)
def test_response_codes_become_errors(
    code: str,
    error: type[ConnectorError],
    status: int,
    retryable: bool,
    pds: PdsClient,
    canned: Callable[[str], bytes],
) -> None:
    body = _with_code(
        canned("pds/getPatientDetailsByNHSNumber.response.xml"), code, drop_subject=True
    )
    with responses.RequestsMock() as rs:
        _serve(rs, body)
        with pytest.raises(error) as info:
            pds.get_patient_details_by_nhs_number("9990128383", DOB)
    assert type(info.value) is error
    assert info.value.http_status == status and info.value.retryable is retryable
    assert info.value.service == "pds"
    if isinstance(info.value, Rejected):
        assert info.value.service_code == code


def test_superseded_number_returns_the_current_record(
    pds: PdsClient, canned: Callable[[str], bytes]
) -> None:
    body = _with_code(canned("pds/getPatientDetailsByNHSNumber.response.xml"), "DEMOG-0017")
    with responses.RequestsMock() as rs:
        _serve(rs, body)
        patient = pds.get_patient_details_by_nhs_number("9993285943", DOB)
    assert patient.nhs_number == "9990128383"
    assert patient.superseded_nhs_number == "9993285943"


def test_local_store_answers_are_flagged(pds: PdsClient, canned: Callable[[str], bytes]) -> None:
    body = _with_code(canned("pds/getPatientDetailsByNHSNumber.response.xml"), "SMSP-0003")
    with responses.RequestsMock() as rs:
        _serve(rs, body)
        assert pds.get_patient_details_by_nhs_number("9990128383", DOB).from_local_store


def test_no_match_on_search_is_none_and_on_verify_is_false(
    pds: PdsClient, canned: Callable[[str], bytes]
) -> None:
    search = _with_code(
        canned("pds/getPatientDetailsBySearch.response.xml"), "DEMOG-0001", drop_subject=True
    )
    verify = _with_code(canned("pds/verifyNHSNumber.response.xml"), "DEMOG-0001")
    with responses.RequestsMock() as rs:
        _serve(rs, search)
        _serve(rs, verify)
        assert pds.search(birth_date=DOB, gender="female", family="Nobody") is None
        assert pds.verify_nhs_number("9990128383", DOB).verified is False


def test_toolkit_fault_becomes_invalid_request(
    pds: PdsClient, canned: Callable[[str], bytes]
) -> None:
    with responses.RequestsMock() as rs:
        _serve(rs, canned("pds/fault-2200.response.xml"), status=500)
        with pytest.raises(InvalidRequest) as info:
            pds.get_patient_details_by_nhs_number("9990128383", DOB)
    assert info.value.service_code == "2200" and info.value.fault_code == "Client"
    assert info.value.operation == "getPatientDetailsByNHSNumber-v1-0"
    assert isinstance(info.value.__cause__, Exception)


@pytest.mark.parametrize(
    ("missing", "call"),
    [
        ("gender", lambda c: c.search(birth_date=DOB, gender="robot", family="X")),
        ("name", lambda c: c.get_nhs_number(birth_date=DOB, gender="male", family="")),
    ],
)
def test_local_argument_checks(
    missing: str, call: Callable[[PdsClient], Any], pds: PdsClient
) -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rs:
        with pytest.raises(InvalidRequest):
            call(pds)
        assert len(rs.calls) == 0


@pytest.mark.parametrize(
    "mutation",
    ["not-an-envelope", "empty-body", "wrong-message", "no-payload", "no-code"],
)
def test_replies_that_break_the_contract(
    mutation: str, pds: PdsClient, canned: Callable[[str], bytes]
) -> None:
    root = xml.parse(canned("pds/getPatientDetailsByNHSNumber.response.xml"))
    body = root.find("{http://schemas.xmlsoap.org/soap/envelope/}Body")
    assert body is not None
    hl7 = next(root.iter(f"{H}getPatientDetailsResponse-v1-0"))
    if mutation == "not-an-envelope":
        data = b"<Envelope/>"
    else:
        if mutation == "empty-body":
            body.remove(body[0])
        elif mutation == "wrong-message":
            hl7.tag = f"{H}verifyNHSNumberResponse-v1-0"
        elif mutation == "no-payload":
            hl7.getparent().remove(hl7)
        elif mutation == "no-code":
            hl7.remove(hl7.find(f"{H}value"))
        data = xml.to_bytes(root)
    with responses.RequestsMock() as rs:
        _serve(rs, data)
        with pytest.raises(InvalidResponse):
            pds.get_patient_details_by_nhs_number("9990128383", DOB)


@pytest.mark.parametrize("name", sorted(m.OPERATIONS))
@pytest.mark.parametrize("sender", [None, "urn:nhs-uk:addressing:ods:LA926:WRAPAROUND"])
def test_lxml_envelope_is_the_one_zeep_renders_from_the_wsdl(
    pds: PdsClient, name: str, sender: str | None
) -> None:
    """The hot path builds the DistributionEnvelope with lxml; zeep renders the same bytes."""
    op = m.OPERATIONS[name]
    params = m.QueryParameters(
        birth_date=DOB,
        nhs_number="9990128383" if "NHSNumber" in op.parameters else None,
        gender="female" if "Gender" in op.parameters else None,
        given="Ella",
        family="Robinson",
        postcode="NR31 2UF" if "Postcode" in op.parameters else None,
        local_identifier=LocalIdentifier("1.3.5.7.9.24.68.1", "L-1")
        if "LocalIdentifier" in op.parameters
        else None,
    )
    ids = {"tracking_id": "3F2504E0-4F89-11D3-9A0C-0305E82C3301", "payload_id": "uuid_P1"}
    identity = "urn:nhs-uk:identity:ods:LA926:SYS:WRAPAROUND"
    built = m.build_distribution_envelope(
        op,
        m.build_query(op, params, message_uuid="U1"),
        audit_identity=identity,
        sender_address=sender,
        **ids,
    )
    operation = pds.soap.zeep.service._binding.get(name)
    zeep_envelope = operation.create(
        **m.distribution_envelope_args(
            op,
            m.build_query(op, params, message_uuid="U1"),
            audit_identity=identity,
            sender_address=sender,
            **ids,
        ),
    ).content
    zeep_body = zeep_envelope.find("{http://schemas.xmlsoap.org/soap/envelope/}Body")[0]
    assert xml.canonical(built) == xml.canonical(zeep_body)
    itk = xml.load_schema(str(m.WSDL_DIR / "itk.xsd"))
    assert xml.schema_errors(itk, built) == []


def test_send_path_carries_addressing_security_and_correlation(
    pds: PdsClient, canned: Callable[[str], bytes]
) -> None:
    """The lxml send path keeps the SOAPAction, WS-Addressing, WS-Security and correlation id."""
    with responses.RequestsMock() as rs:
        _serve(rs, canned("pds/getPatientDetailsByNHSNumber.response.xml"))
        pds.get_patient_details_by_nhs_number(
            "9990128383", DOB, message_id="MSG-1", correlation_id="CORR-1"
        )
        sent = rs.calls[0].request
    action = "urn:nhs-itk:services:201005:getPatientDetailsByNHSNumber-v1-0"
    assert sent.headers["SOAPAction"] == f'"{action}"'
    assert sent.headers["Content-Type"] == "text/xml; charset=utf-8"
    assert sent.headers["X-Correlation-ID"] == "CORR-1"
    assert isinstance(sent.body, bytes)
    envelope = xml.parse(sent.body)
    wsa = "{http://www.w3.org/2005/08/addressing}"
    assert envelope.findtext(f".//{wsa}MessageID") == "MSG-1"
    assert envelope.findtext(f".//{wsa}Action") == action
    assert envelope.findtext(f".//{wsa}To") == ADDRESS
    wsse = "{http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd}"
    assert envelope.findtext(f".//{wsse}Username") == "wraparound-gateway"
