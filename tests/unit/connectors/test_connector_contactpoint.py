"""The child index and assessment store clients against canned envelopes (no network).

Replies are built with the mocks' own builders, so the canned shapes are the contract's; every
request our clients send validates against the package XSD; every fault code maps to its class.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import responses
from lxml import etree

from connectors.contactpoint import (
    AccessDenied,
    ConsentRequired,
    ContactPointClient,
    IndexAccessor,
    InvolvementRequest,
    ReasonRequired,
    RecordArchived,
    RecordShielded,
    SearchQuery,
    build_contactpoint_client,
)
from connectors.contactpoint import messages as cm
from connectors.contactpoint.mock import ContactPointMockService
from connectors.ecaf import (
    AlreadyExists,
    CafAction,
    CafConsent,
    CafRecord,
    DomainAssessment,
    EcafClient,
    ElementAssessment,
    IllegalTransition,
    TeamMember,
    VersionConflict,
    build_ecaf_client,
)
from connectors.ecaf import messages as em
from connectors.ecaf.mock import EcafMockService
from connectors.errors import InvalidRequest, InvalidResponse, NotFound
from connectors.soap import xml
from connectors.soap.server import build_envelope
from connectors.soap.settings import SoapSettings

CP_ADDRESS = "http://index.test/contactpoint"
ECAF_ADDRESS = "http://ecaf.test/ecaf"
ACCESSOR = IndexAccessor("u-1", "Sam Example", "education practitioner", "LA926")
SOAP = "{http://schemas.xmlsoap.org/soap/envelope/}"
MISSING = Path("/nonexistent/seed.json")


@pytest.fixture
def index(ids: Callable[[], str], clock: Callable[[], dt.datetime]) -> ContactPointClient:
    return build_contactpoint_client(
        SoapSettings(address=CP_ADDRESS, username="wraparound-gateway"), clock=clock, ids=ids
    )


@pytest.fixture
def store(ids: Callable[[], str], clock: Callable[[], dt.datetime]) -> EcafClient:
    return build_ecaf_client(
        SoapSettings(address=ECAF_ADDRESS, username="wraparound-gateway"), clock=clock, ids=ids
    )


def _reply(payload: etree._Element) -> bytes:
    return xml.to_bytes(build_envelope(payload, action="urn:reply", message_id="urn:uuid:1"))


def _body(index: int) -> bytes:
    body = responses.calls[index].request.body
    assert isinstance(body, bytes)
    return body


def _summary_payload() -> etree._Element:
    root = etree.Element(f"{{{cm.CP_NS}}}SearchChildrenResponse", nsmap={"ix": cm.CP_NS})
    etree.SubElement(root, f"{{{cm.CP_NS}}}totalMatches").text = "1"
    child = etree.SubElement(root, f"{{{cm.CP_NS}}}child")
    for name, value in (("indexId", "CP00000001"), ("given", "Ella"), ("family", "Robinson"),
                        ("birthDate", "2015-09-13"), ("gender", "female")):
        etree.SubElement(child, f"{{{cm.CP_NS}}}{name}").text = value
    etree.SubElement(child, f"{{{cm.CP_NS}}}shielded").text = "true"
    etree.SubElement(child, f"{{{cm.CP_NS}}}cafExists").text = "false"
    return root


@responses.activate
def test_search_sends_a_schema_valid_request_and_reads_the_reply(
    index: ContactPointClient,
) -> None:
    responses.add(responses.POST, CP_ADDRESS, body=_reply(_summary_payload()),
                  content_type="text/xml")
    result = index.search(
        SearchQuery(family="Robinson", phonetic=True, birth_date_from=dt.date(2015, 1, 1)),
        accessor=ACCESSOR,
    )
    assert result.total == 1 and result.children[0].shielded
    sent = xml.parse(_body(0))
    payload = sent.find(f"{SOAP}Body")[0]
    schema = xml.load_schema(str(cm.WSDL_DIR / "contactpoint.xsd"))
    assert xml.schema_errors(schema, payload) == []
    assert str(responses.calls[0].request.headers["SOAPAction"]).strip('"') == (
        "urn:wraparound:contactpoint:1:searchChildren")


@responses.activate
def test_a_reply_revealing_a_shielded_location_is_refused(index: ContactPointClient) -> None:
    payload = _summary_payload()
    child = payload.find(f"{{{cm.CP_NS}}}child")
    address = etree.Element(f"{{{cm.CP_NS}}}address")
    etree.SubElement(address, f"{{{cm.CP_NS}}}line").text = "1 Secret Lane"
    child.insert(5, address)
    responses.add(responses.POST, CP_ADDRESS, body=_reply(payload), content_type="text/xml")
    with pytest.raises(InvalidResponse):
        index.search(SearchQuery(family="Robinson"), accessor=ACCESSOR)


LOCAL: list[tuple[str, Callable[[ContactPointClient], Any], type[Exception]]] = [
    ("no criteria", lambda c: c.search(SearchQuery(), accessor=ACCESSOR), InvalidRequest),
    ("bad range", lambda c: c.search(SearchQuery(birth_date_from=dt.date(2020, 1, 2),
                                                 birth_date_to=dt.date(2020, 1, 1)),
                                     accessor=ACCESSOR), InvalidRequest),
    ("bad gender", lambda c: c.search(SearchQuery(gender="x"), accessor=ACCESSOR),
     InvalidRequest),
    ("bad index id", lambda c: c.get_record("X1", accessor=ACCESSOR, reason="r"),
     InvalidRequest),
    ("no reason", lambda c: c.get_record("CP00000001", accessor=ACCESSOR, reason=" "),
     ReasonRequired),
    ("bad service", lambda c: c.record_involvement(
        "CP00000001", InvolvementRequest(service="astrology"), accessor=ACCESSOR),
     InvalidRequest),
]


@pytest.mark.parametrize(("name", "call", "error"), LOCAL, ids=[c[0] for c in LOCAL])
@responses.activate
def test_invalid_requests_are_refused_before_sending(
    index: ContactPointClient, name: str, call: Callable[[ContactPointClient], Any],
    error: type[Exception],
) -> None:
    with pytest.raises(error):
        call(index)
    assert len(responses.calls) == 0


@pytest.mark.parametrize(("code", "error", "status"), [
    ("NotAuthorised", AccessDenied, 403),
    ("ReasonRequired", ReasonRequired, 400),
    ("RecordShielded", RecordShielded, 403),
    ("ConsentRequired", ConsentRequired, 403),
    ("RecordArchived", RecordArchived, 410),
    ("ValidationError", InvalidRequest, 400),
    ("NotFound", NotFound, 404),
])
@responses.activate
def test_index_faults_map_to_the_error_tree(
    index: ContactPointClient, code: str, error: type[Exception], status: int
) -> None:
    fault = ContactPointMockService(MISSING).fault(
        fault_code="Client", text="refused", service_code=code, relates_to=None)
    assert fault.envelope is not None
    responses.add(responses.POST, CP_ADDRESS, body=xml.to_bytes(fault.envelope), status=500,
                  content_type="text/xml")
    with pytest.raises(error) as caught:
        index.get_record("CP00000001", accessor=ACCESSOR, reason="check")
    assert type(caught.value) is error
    assert caught.value.http_status == status  # type: ignore[attr-defined]
    assert caught.value.service == "contactpoint"  # type: ignore[attr-defined]


@pytest.mark.parametrize(("code", "error"), [
    ("IllegalTransition", IllegalTransition),
    ("VersionConflict", VersionConflict),
    ("AlreadyExists", AlreadyExists),
    ("ConsentRequired", ConsentRequired),
    ("NotFound", NotFound),
    ("ValidationError", InvalidRequest),
])
@responses.activate
def test_store_faults_map_to_the_error_tree(store: EcafClient, code: str,
                                            error: type[Exception]) -> None:
    fault = EcafMockService(MISSING).fault(
        fault_code="Client", text="refused", service_code=code, relates_to=None)
    assert fault.envelope is not None
    responses.add(responses.POST, ECAF_ADDRESS, body=xml.to_bytes(fault.envelope), status=500,
                  content_type="text/xml")
    with pytest.raises(error) as caught:
        store.get("CAF000001", accessor=ACCESSOR)
    assert type(caught.value) is error


STORE_LOCAL: list[tuple[str, Callable[[EcafClient], Any]]] = [
    ("unknown domain", lambda s: s.save_assessment(
        "CAF000001", [DomainAssessment("astrology", (ElementAssessment("x"),))],
        accessor=ACCESSOR)),
    ("unknown element", lambda s: s.save_assessment(
        "CAF000001", [DomainAssessment("development", (ElementAssessment("x"),))],
        accessor=ACCESSOR)),
    ("two leads", lambda s: s.set_team("CAF000001", [TeamMember("a", "r", "o", True),
                                                     TeamMember("b", "r", "o", True)],
                                       accessor=ACCESSOR)),
    ("bad action status", lambda s: s.save_action_plan(
        "CAF000001", [CafAction("a", "b", dt.date(2027, 1, 1), "maybe")], accessor=ACCESSOR)),
    ("bad close reason", lambda s: s.close("CAF000001", "bored", accessor=ACCESSOR)),
    ("bad id", lambda s: s.get("CAF1", accessor=ACCESSOR)),
]


@pytest.mark.parametrize(("name", "call"), STORE_LOCAL, ids=[c[0] for c in STORE_LOCAL])
@responses.activate
def test_store_refuses_invalid_requests_before_sending(
    store: EcafClient, name: str, call: Callable[[EcafClient], Any]
) -> None:
    with pytest.raises(InvalidRequest):
        call(store)
    assert len(responses.calls) == 0


@responses.activate
def test_save_assessment_request_is_schema_valid(store: EcafClient) -> None:
    root = em.caf_element(CafRecord(
        caf_id="CAF000001", index_id="CP00000001", status="draft", version=2,
        registered=dt.date(2026, 9, 1), consent=CafConsent(True)))
    responses.add(responses.POST, ECAF_ADDRESS, body=_reply(root), content_type="text/xml")
    caf = store.save_assessment("CAF000001", [DomainAssessment(
        "family-environment", (ElementAssessment("housing", needs="Damp flat"),))],
        accessor=ACCESSOR, expected_version=1)
    assert caf.version == 2 and caf.consent.given
    sent = xml.parse(_body(0))
    schema = xml.load_schema(str(em.WSDL_DIR / "ecaf.xsd"))
    assert xml.schema_errors(schema, sent.find(f"{SOAP}Body")[0]) == []
