"""The child index feed and lead professional operations against canned envelopes (no network):
schema-valid requests, replies read into their models, local refusals, faults on the tree."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
import responses
from lxml import etree

from connectors.contactpoint import (
    AccessDenied,
    Carer,
    ContactPointClient,
    FeedRecord,
    IndexAccessor,
    Involvement,
    build_contactpoint_client,
)
from connectors.contactpoint import messages as cm
from connectors.contactpoint.mock import ContactPointMockService
from connectors.errors import InvalidRequest, InvalidResponse
from connectors.soap import xml
from connectors.soap.server import build_envelope
from connectors.soap.settings import SoapSettings

CP_ADDRESS = "http://index.test/contactpoint"
FEEDER = IndexAccessor("u-1", "Data feed", "la-data-feed", "LA926")
SOAP = "{http://schemas.xmlsoap.org/soap/envelope/}"
X = f"{{{cm.CP_NS}}}"
RECORD = FeedRecord(
    record_id="SC100842",
    action="create",
    given=("Amy", "Jo"),
    family="Feedwell",
    birth_date=dt.date(2019, 1, 2),
    gender="female",
    nhs_number="9990000018",
    address_lines=("1 Road", "Norwich"),
    postcode="NR1 1AA",
    carers=(Carer("Kim", "Feedwell", "mother", True, "07700 900001"),),
)


@pytest.fixture
def index(ids: Callable[[], str], clock: Callable[[], dt.datetime]) -> ContactPointClient:
    return build_contactpoint_client(SoapSettings(address=CP_ADDRESS), clock=clock, ids=ids)


def _reply(payload: etree._Element) -> bytes:
    return xml.to_bytes(build_envelope(payload, action="urn:reply", message_id="urn:uuid:1"))


def _sent_payload(n: int = 0) -> etree._Element:
    body = responses.calls[n].request.body
    assert isinstance(body, bytes)
    payload: etree._Element = xml.parse(body).find(f"{SOAP}Body")[0]
    return payload


def _ack(*records: tuple[str, str, str | None, str | None]) -> etree._Element:
    root = etree.Element(X + "FeedAcknowledgement", nsmap={"ix": cm.CP_NS})
    etree.SubElement(root, X + "feedId").text = "F-1"
    rejected = sum(1 for r in records if r[1] == "rejected")
    etree.SubElement(root, X + "accepted").text = str(len(records) - rejected)
    etree.SubElement(root, X + "rejected").text = str(rejected)
    for record_id, status, index_id, code in records:
        node = etree.SubElement(root, X + "record")
        etree.SubElement(node, X + "recordId").text = record_id
        etree.SubElement(node, X + "status").text = status
        if index_id:
            etree.SubElement(node, X + "indexId").text = index_id
        if code:
            etree.SubElement(node, X + "code").text = code
            etree.SubElement(node, X + "text").text = "refused"
    return root


@responses.activate
def test_feed_sends_a_schema_valid_request_and_reads_each_acknowledgement(
    index: ContactPointClient,
) -> None:
    responses.add(
        responses.POST,
        CP_ADDRESS,
        content_type="text/xml",
        body=_reply(
            _ack(("SC100842", "created", "CP00000301", None), ("SC2", "rejected", None, "NotFound"))
        ),
    )
    update = FeedRecord(
        record_id="SC2",
        action="update",
        index_id="CP00000999",
        given=("B",),
        family="C",
        birth_date=dt.date(2018, 5, 6),
        gender="male",
    )
    ack = index.feed("F-1", [RECORD, update], accessor=FEEDER, message_id="M-1")
    assert (ack.accepted, ack.rejected) == (1, 1)
    assert [(r.record_id, r.status, r.index_id, r.code) for r in ack.records] == [
        ("SC100842", "created", "CP00000301", None),
        ("SC2", "rejected", None, "NotFound"),
    ]
    assert not ack.records[1].accepted
    payload = _sent_payload()
    schema = xml.load_schema(str(cm.WSDL_DIR / "contactpoint.xsd"))
    assert xml.schema_errors(schema, payload) == []
    first = payload.findall(X + "record")[0]
    assert [n.text for n in first.findall(X + "given")] == ["Amy", "Jo"]
    assert first.findtext(f"{X}carer/{X}parentalResponsibility") == "true"
    assert str(responses.calls[0].request.headers["SOAPAction"]).strip('"') == (
        "urn:wraparound:contactpoint:1:feedChildren"
    )


@responses.activate
def test_an_acknowledgement_whose_counts_do_not_add_up_is_refused(
    index: ContactPointClient,
) -> None:
    ack = _ack(("SC100842", "created", "CP00000301", None))
    ack.find(X + "rejected").text = "3"
    responses.add(responses.POST, CP_ADDRESS, body=_reply(ack), content_type="text/xml")
    with pytest.raises(InvalidResponse):
        index.feed("F-1", [RECORD], accessor=FEEDER)


@responses.activate
def test_set_lead_professional_reads_the_involvement(index: ContactPointClient) -> None:
    root = etree.Element(X + "InvolvementAcknowledgement", nsmap={"ix": cm.CP_NS})
    etree.SubElement(root, X + "indexId").text = "CP00000001"
    cm.involvement_element(
        root, Involvement("CP00000001-2", "gp", organisation_name="Surgery", lead=True)
    )
    responses.add(responses.POST, CP_ADDRESS, body=_reply(root), content_type="text/xml")
    done = index.set_lead_professional("CP00000001", "CP00000001-2", accessor=FEEDER)
    assert done.lead and done.involvement_id == "CP00000001-2"
    schema = xml.load_schema(str(cm.WSDL_DIR / "contactpoint.xsd"))
    assert xml.schema_errors(schema, _sent_payload()) == []


LOCAL: list[tuple[str, Callable[[ContactPointClient], Any]]] = [
    ("no records", lambda c: c.feed("F", [], accessor=FEEDER)),
    ("too many", lambda c: c.feed("F", [RECORD] * 1001, accessor=FEEDER)),
    ("no feed id", lambda c: c.feed(" ", [RECORD], accessor=FEEDER)),
    (
        "bad action",
        lambda c: c.feed(
            "F",
            [FeedRecord("r", "merge", ("A",), "B", dt.date(2019, 1, 1), "male")],
            accessor=FEEDER,
        ),
    ),
    (
        "update without id",
        lambda c: c.feed(
            "F",
            [FeedRecord("r", "update", ("A",), "B", dt.date(2019, 1, 1), "male")],
            accessor=FEEDER,
        ),
    ),
    (
        "bad gender",
        lambda c: c.feed(
            "F",
            [FeedRecord("r", "create", ("A",), "B", dt.date(2019, 1, 1), "robot")],
            accessor=FEEDER,
        ),
    ),
    ("lead: bad index id", lambda c: c.set_lead_professional("X", "i", accessor=FEEDER)),
    ("lead: no involvement", lambda c: c.set_lead_professional("CP00000001", " ", accessor=FEEDER)),
]


@pytest.mark.parametrize(("name", "call"), LOCAL, ids=[c[0] for c in LOCAL])
@responses.activate
def test_invalid_requests_are_refused_before_sending(
    index: ContactPointClient, name: str, call: Callable[[ContactPointClient], Any]
) -> None:
    with pytest.raises(InvalidRequest):
        call(index)
    assert len(responses.calls) == 0


@responses.activate
def test_a_feed_fault_maps_to_the_error_tree(index: ContactPointClient, tmp_path: Any) -> None:
    mock = ContactPointMockService(tmp_path / "missing.json")
    fault = mock.fault(
        fault_code="Client", text="only the feed", service_code="NotAuthorised", relates_to=None
    )
    responses.add(
        responses.POST,
        CP_ADDRESS,
        body=xml.to_bytes(fault.envelope),
        status=500,
        content_type="text/xml",
    )
    with pytest.raises(AccessDenied) as caught:
        index.feed("F-1", [RECORD], accessor=FEEDER)
    assert (caught.value.service_code, caught.value.http_status) == ("NotAuthorised", 403)
