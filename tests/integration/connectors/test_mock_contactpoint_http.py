"""The child index client against the mock over real HTTP: search rules, records, faults.

Also the eCAF-like store's state machine and its effect on the index's "CAF exists" indicator,
and the hostile-XML table at the two new entry points (client replies and mock requests).
"""

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
    IndexAccessor,
    InvolvementRequest,
    ReasonRequired,
    RecordArchived,
    RecordShielded,
    SearchQuery,
    build_contactpoint_client,
)
from connectors.contactpoint.mock import soundex
from connectors.ecaf import (
    CafAction,
    DomainAssessment,
    EcafClient,
    ElementAssessment,
    IllegalTransition,
    TeamMember,
    VersionConflict,
    build_ecaf_client,
)
from connectors.errors import InvalidRequest, InvalidResponse, NotFound
from connectors.mockserver import HOSTILE_VARIANTS, hostile_document
from connectors.soap import xml
from tests.integration.connectors.conftest import SEED, soap_settings

PRACTITIONER = IndexAccessor("u-100", "Sam Practitioner", "education practitioner", "LA")
OFFICER = IndexAccessor("u-200", "Shield Officer", "shielding-officer", "LA")
SOAP_FAULT = "{http://schemas.xmlsoap.org/soap/envelope/}Fault/faultcode"


@pytest.fixture
def index(mock: str) -> ContactPointClient:
    return build_contactpoint_client(soap_settings(f"{mock}/contactpoint"))


@pytest.fixture
def store(mock: str) -> EcafClient:
    return build_ecaf_client(soap_settings(f"{mock}/ecaf"))


@pytest.fixture(scope="module")
def children() -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads(
        (SEED / "contactpoint.json").read_text(encoding="utf-8")
    )["children"]
    return data


def _plain(children: list[dict[str, Any]], **want: Any) -> dict[str, Any]:
    return next(
        c
        for c in children
        if not c["shielded"] and not c["archived"] and all(c[k] == v for k, v in want.items())
    )


def test_soundex_matches_the_textbook_codes() -> None:
    assert [soundex(n) for n in ("Robert", "Rupert", "Ashcraft", "Tymczak", "Pfister")] == [
        "R163",
        "R163",
        "A261",
        "T522",
        "P236",
    ]


def test_search_by_phonetic_and_partial_names_and_date_range(
    index: ContactPointClient, children: list[dict[str, Any]]
) -> None:
    child = _plain(children)
    misspelt = child["family"][:-1] + ("a" if child["family"][-1] != "a" else "e")
    found = index.search(SearchQuery(family=misspelt, phonetic=True), accessor=PRACTITIONER)
    if soundex(misspelt) == soundex(child["family"]):
        assert child["index_id"] in {c.index_id for c in found.children}
    partial = index.search(
        SearchQuery(family=child["family"][:3], given=child["given"][0][:2]), accessor=PRACTITIONER
    )
    assert child["index_id"] in {c.index_id for c in partial.children}
    born = dt.date.fromisoformat(child["birth_date"])
    ranged = index.search(
        SearchQuery(
            birth_date_from=born, birth_date_to=born, gender=child["gender"], max_results=100
        ),
        accessor=PRACTITIONER,
    )
    assert child["index_id"] in {c.index_id for c in ranged.children}
    assert all(c.birth_date == born and c.gender == child["gender"] for c in ranged.children)


@pytest.mark.parametrize("field", ["index_id", "nhs_number", "upn"])
def test_search_by_identifier(
    index: ContactPointClient, children: list[dict[str, Any]], field: str
) -> None:
    child = next(c for c in children if c[field] and not c["archived"])
    found = index.search(SearchQuery(**{field: child[field]}), accessor=PRACTITIONER)
    assert [c.index_id for c in found.children] == [child["index_id"]]


def test_shielded_children_are_never_matched_or_shown_by_location(
    index: ContactPointClient, children: list[dict[str, Any]]
) -> None:
    shielded = next(c for c in children if c["shielded"] and not c["archived"])
    postcode = shielded["address"]["postcode"]
    by_postcode = index.search(SearchQuery(postcode=postcode), accessor=PRACTITIONER)
    assert shielded["index_id"] not in {c.index_id for c in by_postcode.children}
    by_id = index.search(SearchQuery(index_id=shielded["index_id"]), accessor=PRACTITIONER)
    assert by_id.children[0].shielded and by_id.children[0].postcode is None
    record = index.get_record(shielded["index_id"], accessor=PRACTITIONER, reason="referral")
    assert record.child.address_lines == () and record.carers == () and record.involvements == ()
    with pytest.raises(AccessDenied):
        index.get_record(
            shielded["index_id"], accessor=PRACTITIONER, reason="urgent", override_shield=True
        )
    with pytest.raises(RecordShielded):
        index.record_involvement(
            shielded["index_id"],
            InvolvementRequest(service="school", organisation_name="Any school"),
            accessor=PRACTITIONER,
        )
    opened = index.get_record(
        shielded["index_id"], accessor=OFFICER, reason="court order", override_shield=True
    )
    assert opened.shield_overridden and opened.child.postcode == postcode
    state = requests.get(f"{index.soap.settings.address.rsplit('/', 1)[0]}"
                         "/admin/services/contactpoint", timeout=5).json()
    assert state["investigations"][-1]["index_id"] == shielded["index_id"]


def test_record_needs_a_reason_and_is_audited(
    index: ContactPointClient, children: list[dict[str, Any]]
) -> None:
    child = _plain(children)
    with pytest.raises(ReasonRequired):
        index.get_record(child["index_id"], accessor=PRACTITIONER, reason="  ")
    index.get_record(child["index_id"], accessor=PRACTITIONER, reason="attendance concern")
    log = index.access_log(child["index_id"], accessor=OFFICER)
    assert log[0].operation == "getChildRecord" and log[0].reason == "attendance concern"
    assert log[0].accessor.user_id == "u-100"


def test_sensitive_services_need_consent(
    index: ContactPointClient, children: list[dict[str, Any]]
) -> None:
    hidden = next(
        c
        for c in children
        if not c["shielded"] and not c["archived"]
        and any(i["service"] == "sexual-health" and not i["consent"] for i in c["involvements"])
    )
    record = index.get_record(hidden["index_id"], accessor=PRACTITIONER, reason="planning")
    sensitive = [i for i in record.involvements if i.service == "sexual-health"]
    assert sensitive[0].contact_index_team and sensitive[0].organisation_name is None
    child = _plain(children)
    with pytest.raises(ConsentRequired):
        index.record_involvement(
            child["index_id"],
            InvolvementRequest(service="mental-health", organisation_name="CAMHS"),
            accessor=PRACTITIONER,
        )
    done = index.record_involvement(
        child["index_id"],
        InvolvementRequest(
            service="mental-health", organisation_name="CAMHS", consent_recorded=True, lead=True
        ),
        accessor=PRACTITIONER,
    )
    assert done.lead and not done.contact_index_team
    record = index.get_record(child["index_id"], accessor=PRACTITIONER, reason="check")
    assert [i.involvement_id for i in record.involvements if i.lead] == [done.involvement_id]
    ended = index.end_involvement(child["index_id"], done.involvement_id, accessor=PRACTITIONER)
    assert ended.end_date is not None
    with pytest.raises(InvalidRequest):
        index.end_involvement(child["index_id"], done.involvement_id, accessor=PRACTITIONER)
    with pytest.raises(NotFound):
        index.end_involvement(child["index_id"], "nope", accessor=PRACTITIONER)


def test_shielding_is_role_gated_and_archived_records_refuse(
    index: ContactPointClient, children: list[dict[str, Any]]
) -> None:
    child = _plain(children)
    with pytest.raises(AccessDenied):
        index.set_shielding(child["index_id"], True, accessor=PRACTITIONER)
    assert index.set_shielding(child["index_id"], True, accessor=OFFICER, reason="risk").shielded
    postcode = child["address"]["postcode"]
    found = index.search(SearchQuery(postcode=postcode), accessor=PRACTITIONER)
    assert child["index_id"] not in {c.index_id for c in found.children}
    archived = next(c for c in children if c["archived"])
    with pytest.raises(RecordArchived):
        index.get_record(archived["index_id"], accessor=PRACTITIONER, reason="look")
    with pytest.raises(InvalidRequest):
        index.search(SearchQuery(), accessor=PRACTITIONER)


def test_the_caf_lifecycle_and_the_index_indicator(
    index: ContactPointClient, store: EcafClient, children: list[dict[str, Any]]
) -> None:
    child = _plain(children, caf_exists=False)
    caf = store.register(child["index_id"], accessor=PRACTITIONER)
    assert caf.status == "draft"
    assert index.search(SearchQuery(index_id=child["index_id"]), accessor=PRACTITIONER
                        ).children[0].caf_exists
    domain = DomainAssessment("development", (ElementAssessment("health", "active", "dentist"),))
    with pytest.raises(ConsentRequired):
        store.save_assessment(caf.caf_id, [domain], accessor=PRACTITIONER)
        store.complete(caf.caf_id, accessor=PRACTITIONER)
    with pytest.raises(VersionConflict):
        store.save_assessment(caf.caf_id, [domain], accessor=PRACTITIONER, expected_version=0)
    store.record_consent(caf.caf_id, "mother", accessor=PRACTITIONER)
    assert store.complete(caf.caf_id, accessor=PRACTITIONER).status == "completed"
    with pytest.raises(IllegalTransition):
        store.review(caf.caf_id, "too early", accessor=PRACTITIONER, on=dt.date(2026, 11, 1))
    team = [TeamMember("A Teacher", "Class teacher", "School", lead=True)]
    assert store.set_team(caf.caf_id, team, accessor=PRACTITIONER).status == "active"
    plan = [CafAction("Dental appointment", "Parent", dt.date(2026, 12, 1))]
    assert store.save_action_plan(caf.caf_id, plan, accessor=PRACTITIONER).actions == tuple(plan)
    assert store.review(caf.caf_id, "progress", accessor=PRACTITIONER,
                        on=dt.date(2026, 12, 2)).status == "reviewed"
    closed = store.close(caf.caf_id, "needs-met", accessor=PRACTITIONER)
    assert closed.status == "closed" and closed.close_reason == "needs-met"
    with pytest.raises(IllegalTransition):
        store.close(caf.caf_id, "other", accessor=PRACTITIONER)
    assert not index.search(SearchQuery(index_id=child["index_id"]), accessor=PRACTITIONER
                            ).children[0].caf_exists
    assert not store.check(child["index_id"], accessor=PRACTITIONER).exists


ILLEGAL = [
    ("draft", "set_team"),
    ("draft", "close"),
    ("draft", "plan"),
    ("completed", "save"),
    ("completed", "complete"),
]


@pytest.mark.parametrize(("state", "operation"), ILLEGAL)
def test_illegal_transitions_are_faults(
    store: EcafClient, children: list[dict[str, Any]], state: str, operation: str
) -> None:
    child = _plain(children, caf_exists=False)
    caf = store.register(child["index_id"], accessor=PRACTITIONER, consent_given_by="father")
    domain = DomainAssessment("parents-carers", (ElementAssessment("basic-care", "good"),))
    store.save_assessment(caf.caf_id, [domain], accessor=PRACTITIONER)
    if state == "completed":
        store.complete(caf.caf_id, accessor=PRACTITIONER)
    calls: dict[str, Callable[[], Any]] = {
        "set_team": lambda: store.set_team(
            caf.caf_id, [TeamMember("L", "Lead", "Org", True)], accessor=PRACTITIONER
        ),
        "close": lambda: store.close(caf.caf_id, "other", accessor=PRACTITIONER),
        "plan": lambda: store.save_action_plan(
            caf.caf_id, [CafAction("x", "y", dt.date(2027, 1, 1))], accessor=PRACTITIONER
        ),
        "save": lambda: store.save_assessment(caf.caf_id, [domain], accessor=PRACTITIONER),
        "complete": lambda: store.complete(caf.caf_id, accessor=PRACTITIONER),
    }
    with pytest.raises(IllegalTransition):
        calls[operation]()


CASES = [(v, False) for v in HOSTILE_VARIANTS] + [
    (v, True) for v in ("xxe_file", "external_dtd", "billion_laughs", "xinclude")
]
IDS = [f"{v}{'-utf16' if u else ''}" for v, u in CASES]


@pytest.mark.parametrize(("variant", "utf16"), CASES, ids=IDS)
def test_hostile_replies_and_requests(
    variant: str,
    utf16: bool,
    mock: str,
    index: ContactPointClient,
    store: EcafClient,
    inject: Callable[..., dict[str, Any]],
    canary_file: Any,
    canary_listener: Any,
) -> None:
    hostile = {"kind": "hostile", "variant": variant, "url": canary_listener.url,
               "file_path": str(canary_file.path), "utf16": utf16}
    inject(service="contactpoint", **hostile)
    inject(service="ecaf", **hostile)
    with pytest.raises(InvalidResponse):
        index.search(SearchQuery(family="Smith"), accessor=PRACTITIONER)
    with pytest.raises(InvalidResponse):
        store.check("CP00000001", accessor=PRACTITIONER)
    requests.delete(f"{mock}/admin/faults", timeout=5).raise_for_status()
    document = hostile_document(variant, canary_listener.url, str(canary_file.path), utf16=utf16)
    for path, action in (("/contactpoint", "urn:wraparound:contactpoint:1:searchChildren"),
                         ("/ecaf", "urn:wraparound:ecaf:1:registerCaf")):
        response = requests.post(f"{mock}{path}", data=document, timeout=10, headers={
            "Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{action}"'})
        assert response.status_code in (413, 500)
        if response.status_code == 500:
            assert xml.parse(response.content).findtext(f".//{SOAP_FAULT}") == "soap:Client"
    assert canary_file.opened == [] and canary_listener.connections == []
