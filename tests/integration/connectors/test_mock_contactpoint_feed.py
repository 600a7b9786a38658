"""The child index feed and lead professional over real HTTP against the mock: the feed role,
per-record outcomes, matching on NHS number, and the hostile-XML table at both new operations
(client replies and mock requests)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import pytest
import requests

from connectors.contactpoint import (
    AccessDenied,
    ConsentRequired,
    ContactPointClient,
    FeedRecord,
    IndexAccessor,
    InvolvementRequest,
    RecordShielded,
    build_contactpoint_client,
)
from connectors.errors import InvalidRequest, InvalidResponse, NotFound
from connectors.mockserver import HOSTILE_VARIANTS, hostile_document
from connectors.soap import xml
from tests.integration.connectors.conftest import SEED, soap_settings

FEEDER = IndexAccessor("u-1", "Data feed", "la-data-feed", "LA")
TEACHER = IndexAccessor("u-2", "Sam Teacher", "education practitioner", "LA")
SOAP_FAULT = "{http://schemas.xmlsoap.org/soap/envelope/}Fault/faultcode"


@pytest.fixture
def index(mock: str) -> ContactPointClient:
    return build_contactpoint_client(soap_settings(f"{mock}/contactpoint"))


@pytest.fixture(scope="module")
def children() -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads(
        (SEED / "contactpoint.json").read_text(encoding="utf-8")
    )["children"]
    return data


def _record(record_id: str, **fields: Any) -> FeedRecord:
    base: dict[str, Any] = {
        "action": "create",
        "given": ("Rowan",),
        "family": "Feedwell",
        "birth_date": dt.date(2019, 3, 4),
        "gender": "male",
    }
    return FeedRecord(record_id=record_id, **{**base, **fields})


def test_the_feed_needs_the_feed_role(index: ContactPointClient) -> None:
    with pytest.raises(AccessDenied):
        index.feed("F-1", [_record("r1")], accessor=TEACHER)


def test_each_record_is_applied_or_refused_on_its_own(
    index: ContactPointClient, children: list[dict[str, Any]]
) -> None:
    known = next(c for c in children if not c["archived"] and c.get("nhs_number"))
    archived = next(c for c in children if c["archived"])
    ack = index.feed(
        "F-2",
        [
            _record("new", nhs_number="9990000018"),
            _record(
                "match",
                nhs_number=known["nhs_number"],
                family=known["family"],
                given=tuple(known["given"]),
                birth_date=dt.date.fromisoformat(known["birth_date"]),
                gender=known["gender"],
            ),
            _record("gone", action="update", index_id=archived["index_id"]),
            _record("future", birth_date=dt.date(2999, 1, 1)),
        ],
        accessor=FEEDER,
    )
    assert [(r.record_id, r.status, r.code) for r in ack.records] == [
        ("new", "created", None),
        ("match", "unchanged", None),
        ("gone", "rejected", "RecordArchived"),
        ("future", "rejected", "ValidationError"),
    ]
    assert ack.records[1].index_id == known["index_id"]
    assert (ack.accepted, ack.rejected) == (2, 2)
    again = index.feed(
        "F-3", [_record("new", nhs_number="9990000018", family="Feedwell-Smith")], accessor=FEEDER
    )
    assert (again.records[0].status, again.records[0].index_id) == (
        "updated",
        ack.records[0].index_id,
    )
    record = index.get_record(str(ack.records[0].index_id), accessor=TEACHER, reason="check")
    assert record.child.family == "Feedwell-Smith"


def test_lead_professional_rules(index: ContactPointClient, children: list[dict[str, Any]]) -> None:
    child = next(c for c in children if not c["shielded"] and not c["archived"])
    first = index.record_involvement(
        child["index_id"],
        InvolvementRequest(service="early-help", practitioner_name="Lee Lead", lead=True),
        accessor=TEACHER,
    )
    second = index.record_involvement(
        child["index_id"],
        InvolvementRequest(service="school-nursing", practitioner_name="Nat Nurse"),
        accessor=TEACHER,
    )
    done = index.set_lead_professional(child["index_id"], second.involvement_id, accessor=TEACHER)
    assert done.lead
    record = index.get_record(child["index_id"], accessor=TEACHER, reason="check")
    leads = [i.involvement_id for i in record.involvements if i.lead]
    assert leads == [second.involvement_id] and first.involvement_id not in leads
    with pytest.raises(NotFound):
        index.set_lead_professional(child["index_id"], "nope", accessor=TEACHER)
    index.end_involvement(child["index_id"], first.involvement_id, accessor=TEACHER)
    with pytest.raises(InvalidRequest):
        index.set_lead_professional(child["index_id"], first.involvement_id, accessor=TEACHER)
    hidden = next(
        c
        for c in children
        if not c["shielded"]
        and not c["archived"]
        and any(
            i["service"] in ("sexual-health", "mental-health", "substance-misuse")
            and not i["consent"]
            for i in c["involvements"]
        )
    )
    sensitive = next(
        i
        for i in hidden["involvements"]
        if not i["consent"]
        and i["service"] in ("sexual-health", "mental-health", "substance-misuse")
    )
    with pytest.raises(ConsentRequired):
        index.set_lead_professional(hidden["index_id"], sensitive["id"], accessor=TEACHER)
    shielded = next(
        c for c in children if c["shielded"] and not c["archived"] and c["involvements"]
    )
    with pytest.raises(RecordShielded):
        index.set_lead_professional(
            shielded["index_id"], shielded["involvements"][0]["id"], accessor=TEACHER
        )


CASES = [(v, False) for v in HOSTILE_VARIANTS] + [
    (v, True) for v in ("xxe_file", "external_dtd", "billion_laughs", "xinclude")
]
IDS = [f"{v}{'-utf16' if u else ''}" for v, u in CASES]


@pytest.mark.parametrize(("variant", "utf16"), CASES, ids=IDS)
def test_hostile_xml_at_the_feed_and_lead_operations(
    variant: str,
    utf16: bool,
    mock: str,
    index: ContactPointClient,
    inject: Callable[..., dict[str, Any]],
    canary_file: Any,
    canary_listener: Any,
) -> None:
    inject(
        service="contactpoint",
        kind="hostile",
        variant=variant,
        url=canary_listener.url,
        file_path=str(canary_file.path),
        utf16=utf16,
    )
    with pytest.raises(InvalidResponse):
        index.feed("F-1", [_record("r1")], accessor=FEEDER)
    with pytest.raises(InvalidResponse):
        index.set_lead_professional("CP00000001", "CP00000001-1", accessor=FEEDER)
    requests.delete(f"{mock}/admin/faults", timeout=5).raise_for_status()
    document = hostile_document(variant, canary_listener.url, str(canary_file.path), utf16=utf16)
    for operation in ("feedChildren", "setLeadProfessional"):
        response = requests.post(
            f"{mock}/contactpoint",
            data=document,
            timeout=10,
            headers={
                "Content-Type": "text/xml; charset=utf-8",
                "SOAPAction": f'"urn:wraparound:contactpoint:1:{operation}"',
            },
        )
        assert response.status_code in (413, 500)
        if response.status_code == 500:
            assert xml.parse(response.content).findtext(f".//{SOAP_FAULT}") == "soap:Client"
    assert canary_file.opened == [] and canary_listener.connections == []
