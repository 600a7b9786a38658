"""SOAP contract compatibility of the child index and the assessment store.

A plain zeep client built from the WSDL each mock serves at `?wsdl` (fetched over HTTP, as a third
party would) calls the mock; every request our clients send and every reply the mocks answer
validates against the package schemas.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import zeep
from lxml import etree
from zeep import Plugin

from connectors.contactpoint import IndexAccessor, SearchQuery, build_contactpoint_client
from connectors.contactpoint import messages as cm
from connectors.ecaf import DomainAssessment, ElementAssessment, build_ecaf_client
from connectors.ecaf import messages as em
from connectors.soap import CorrelationTimingPlugin, StableWsAddressing, WsSecurity, xml
from tests.integration.connectors.conftest import soap_settings

SOAP = "{http://schemas.xmlsoap.org/soap/envelope/}"
ACCESSOR = {"userId": "third-party", "name": "Third party", "role": "practitioner",
            "organisation": "Elsewhere"}


class Capture(Plugin):
    """Keep the Body payload of every envelope sent and received."""

    def __init__(self) -> None:
        self.payloads: list[etree._Element] = []

    def egress(self, envelope: Any, http_headers: Any, operation: Any, binding_options: Any
               ) -> tuple[Any, Any]:
        self.payloads.append(envelope.find(f"{SOAP}Body")[0])
        return envelope, http_headers

    def ingress(self, envelope: Any, http_headers: Any, operation: Any) -> tuple[Any, Any]:
        body = envelope.find(f"{SOAP}Body")
        if body is not None and len(body) and body[0].tag != f"{SOAP}Fault":
            self.payloads.append(body[0])
        return envelope, http_headers


def _third_party(url: str) -> zeep.Client:
    settings = zeep.Settings(strict=True, forbid_dtd=True, forbid_entities=True,
                             forbid_external=False, xml_huge_tree=False)
    return zeep.Client(  # type: ignore[no-untyped-call]
        f"{url}?wsdl", settings=settings,
                       plugins=[StableWsAddressing("urn:third-party")],
                       wsse=WsSecurity("third-party"))


@pytest.mark.parametrize("service", ["contactpoint", "ecaf"])
def test_a_zeep_client_from_the_served_wsdl_calls_the_mock(mock: str, service: str) -> None:
    client = _third_party(f"{mock}/{service}")
    if service == "contactpoint":
        reply = client.service.searchChildren(accessor=ACCESSOR, family="Rob", maxResults=5)
        assert reply.totalMatches >= 1 and reply.child[0].indexId.startswith("CP")
        record = client.service.getChildRecord(accessor=ACCESSOR, indexId=reply.child[0].indexId,
                                               accessReason="contract test")
        assert record.child.indexId == reply.child[0].indexId
    else:
        checked = client.service.checkCafExists(accessor=ACCESSOR, indexId="CP00000001")
        assert checked.indexId == "CP00000001"
        caf = client.service.registerCaf(accessor=ACCESSOR, indexId="CP00000001")
        assert caf.status == "draft" and caf.cafId.startswith("CAF")


def test_our_requests_and_the_mock_replies_follow_the_schemas(mock: str) -> None:
    capture = Capture()
    plugins = [StableWsAddressing("urn:wraparound"), CorrelationTimingPlugin(), capture]
    accessor = IndexAccessor("u", "U", "practitioner", "Org")
    index = build_contactpoint_client(soap_settings(f"{mock}/contactpoint"), plugins=plugins)
    store = build_ecaf_client(soap_settings(f"{mock}/ecaf"), plugins=plugins)
    found = index.search(SearchQuery(family="Rob", birth_date_to=dt.date(2020, 1, 1)),
                         accessor=accessor)
    child = next(c for c in found.children if not c.caf_exists)
    index.get_record(child.index_id, accessor=accessor, reason="contract")
    index.access_log(child.index_id, accessor=accessor)
    caf = store.register(child.index_id, accessor=accessor, consent_given_by="Mother")
    store.save_assessment(caf.caf_id, [DomainAssessment(
        "development", (ElementAssessment("learning", "Reads well", "Maths support"),))],
        accessor=accessor)
    store.complete(caf.caf_id, accessor=accessor)
    store.check(child.index_id, accessor=accessor)
    schemas = {cm.CP_NS: xml.load_schema(str(cm.WSDL_DIR / "contactpoint.xsd")),
               em.ECAF_NS: xml.load_schema(str(em.WSDL_DIR / "ecaf.xsd"))}
    assert len(capture.payloads) >= 14
    for payload in capture.payloads:
        namespace = etree.QName(payload).namespace
        assert xml.schema_errors(schemas[namespace], payload) == [], payload.tag
