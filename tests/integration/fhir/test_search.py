"""Search: each parameter type, modifiers, sorting, paging, includes, counts."""
from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import FHIR_JSON, FhirActions, make_patient

NHS = "https://fhir.nhs.uk/Id/nhs-number"


@pytest.fixture
def children(fhir: FhirActions) -> dict[str, str]:
    """Store four children and return their ids by label."""
    people = {
        "ann": make_patient("9000000009", "Smith", "Ann", birthDate="2015-03-04"),
        "zoe": make_patient("9434765919", "Smithson", "Zoë", gender="female",
                            birthDate="2012-11-30",
                            address=[{"postalCode": "LS6 2QT", "city": "Leeds"}]),
        "jo": make_patient("9434765870", "O'Neil", "Jo", gender="male", birthDate="2010-01-15",
                           address=[{"postalCode": "BD1 1AA"}]),
        "kai": make_patient("9912003071", "Ahmed", "Kai", gender="male", birthDate="2015",
                            identifier=[{"system": "urn:la:926:child", "value": "C0042"}]),
    }
    del people["kai"]["address"]
    return {label: fhir.created(p)["id"] for label, p in people.items()}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param("name=smith", {"ann", "zoe"}, id="string-starts-with"),
        pytest.param("family=SMITH", {"ann", "zoe"}, id="string-case-insensitive"),
        pytest.param("family:exact=Smith", {"ann"}, id="string-exact"),
        pytest.param("family:exact=smith", set(), id="string-exact-case"),
        pytest.param("family:contains=ith", {"ann", "zoe"}, id="string-contains"),
        pytest.param("given=zoe", {"zoe"}, id="string-accent-insensitive"),
        pytest.param("family=o'neil", {"jo"}, id="string-apostrophe"),
        pytest.param("family=smith%25", set(), id="string-like-wildcards-escaped"),
        pytest.param("address-postalcode=LS", {"ann", "zoe"}, id="postcode-prefix"),
        pytest.param("gender=male", {"jo", "kai"}, id="token-code"),
        pytest.param("gender:not=male", {"ann", "zoe"}, id="token-not"),
        pytest.param(f"identifier={NHS}|9000000009", {"ann"}, id="token-system-code"),
        pytest.param("identifier=9434765919", {"zoe"}, id="token-code-only"),
        pytest.param("identifier=urn:la:926:child|", {"kai"}, id="token-system-only"),
        pytest.param("identifier=|C0042", set(), id="token-no-system"),
        pytest.param("identifier=9000000009,9434765870", {"ann", "jo"}, id="token-or"),
        pytest.param("birthdate=2015-03-04", {"ann"}, id="date-eq-day"),
        pytest.param("birthdate=2015", {"ann", "kai"}, id="date-eq-year"),
        pytest.param("birthdate=lt2012-12-01", {"zoe", "jo"}, id="date-lt"),
        pytest.param("birthdate=ge2015-01-01", {"ann", "kai"}, id="date-ge"),
        pytest.param("birthdate=gt2015-03-04", {"kai"}, id="date-gt-partial-overlap"),
        pytest.param("birthdate=le2010-01-15", {"jo"}, id="date-le"),
        pytest.param("birthdate=ne2015", {"zoe", "jo"}, id="date-ne"),
        pytest.param("birthdate=ge2010&birthdate=lt2013", {"zoe", "jo"}, id="date-range-and"),
        pytest.param("name=smith&gender=female&birthdate=2012", {"zoe"}, id="and-across-params"),
        pytest.param("address:missing=true", {"kai"}, id="missing"),
    ],
)
def test_patient_search(fhir: FhirActions, children: dict[str, str], query: str,
                        expected: set[str]) -> None:
    assert fhir.ids(f"Patient?{query}") == {children[k] for k in expected}


def test_last_updated_and_id(fhir: FhirActions, children: dict[str, str]) -> None:
    assert fhir.ids(f"Patient?_id={children['jo']},{children['kai']}") == {
        children["jo"], children["kai"]}
    assert len(fhir.ids("Patient?_lastUpdated=gt2000-01-01")) == 4
    assert fhir.ids("Patient?_lastUpdated=lt2000-01-01") == set()


def test_reference_search_forms(fhir: FhirActions, children: dict[str, str]) -> None:
    pid = children["ann"]
    flag = fhir.created({"resourceType": "Flag", "status": "active",
                         "category": [{"coding": [{"system": "urn:cat", "code": "safeguarding"}]}],
                         "code": {"text": "Child protection plan"},
                         "subject": {"reference": f"Patient/{pid}"},
                         "period": {"start": "2026-01-10"}})
    for query in (f"patient=Patient/{pid}", f"patient={pid}", f"subject:Patient={pid}",
                  f"subject=http://localhost/fhir/Patient/{pid}"):
        assert fhir.ids(f"Flag?{query}") == {flag["id"]}, query
    assert fhir.ids(f"Flag?patient={children['jo']}") == set()
    assert fhir.ids("Flag?category=safeguarding&status=active") == {flag["id"]}
    assert fhir.ids("Flag?date=ge2026-01-01") == {flag["id"]}
    assert fhir.ids("Flag?date=lt2025-01-01") == set()


def test_sort(fhir: FhirActions, children: dict[str, str]) -> None:
    bundle = fhir.search("Patient?_sort=birthdate")
    order = [e["resource"]["id"] for e in bundle["entry"]]
    assert order[:2] == [children["jo"], children["zoe"]]
    bundle = fhir.search("Patient?_sort=-family")
    assert bundle["entry"][0]["resource"]["id"] == children["zoe"]
    assert fhir.client.get("/fhir/Patient?_sort=nope").status_code == 400


def test_summary_count(fhir: FhirActions, children: dict[str, str]) -> None:
    bundle = fhir.search("Patient?gender=male&_summary=count")
    assert bundle["total"] == 2
    assert "entry" not in bundle


def test_count_is_capped(fhir: FhirActions, children: dict[str, str]) -> None:
    bundle = fhir.search("Patient?_count=100000")
    assert bundle["total"] == 4


def _seed_observations(fhir: FhirActions, n: int) -> list[str]:
    ids = []
    for i in range(n):
        ids.append(fhir.created({
            "resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]},
            "effectiveDateTime": f"2026-01-{i + 1:02d}"})["id"])
    return ids


def _follow(fhir: FhirActions, bundle: dict[str, Any], rel: str) -> dict[str, Any] | None:
    for link in bundle["link"]:
        if link["relation"] == rel:
            resp = fhir.client.get(link["url"].split("localhost", 1)[1])
            assert resp.status_code == 200, resp.get_json()
            body: dict[str, Any] = resp.get_json()
            return body
    return None


def test_paging_is_stable_under_concurrent_writes(fhir: FhirActions) -> None:
    ids = _seed_observations(fhir, 7)
    page: dict[str, Any] | None = fhir.search("Observation?code=8302-2&_count=3&_sort=date")
    seen: list[str] = []
    first = True
    while page is not None:
        seen.extend(e["resource"]["id"] for e in page.get("entry", []))
        if first:
            # writes between pages: a new match and a changed one must not shift the pages
            _seed_observations(fhir, 1)
            first = False
        page = _follow(fhir, page, "next")
    assert seen == ids
    assert len(set(seen)) == 7


def test_previous_link(fhir: FhirActions) -> None:
    _seed_observations(fhir, 5)
    page1 = fhir.search("Observation?_count=2")
    page2 = _follow(fhir, page1, "next")
    assert page2 is not None
    back = _follow(fhir, page2, "previous")
    assert back is not None
    assert [e["resource"]["id"] for e in back["entry"]] == [
        e["resource"]["id"] for e in page1["entry"]]


def test_expired_page_token_is_410(fhir: FhirActions) -> None:
    resp = fhir.client.get("/fhir/Observation?_getpages=not-a-set&_offset=2")
    assert resp.status_code == 410


def test_include_and_revinclude(fhir: FhirActions, children: dict[str, str]) -> None:
    pid = children["ann"]
    org = fhir.created({"resourceType": "Organization", "name": "Leeds Children's Services"})
    plan = fhir.created({"resourceType": "CarePlan", "status": "active", "intent": "plan",
                         "subject": {"reference": f"Patient/{pid}"},
                         "author": {"reference": f"Organization/{org['id']}"}})
    flag = fhir.created({"resourceType": "Flag", "status": "active", "code": {"text": "CP"},
                         "subject": {"reference": f"Patient/{pid}"},
                         "author": {"reference": f"Organization/{org['id']}"}})
    bundle = fhir.search(f"Flag?_id={flag['id']}&_include=Flag:patient&_include=Flag:author")
    modes = {(e["resource"]["resourceType"], e["search"]["mode"]) for e in bundle["entry"]}
    assert modes == {("Flag", "match"), ("Patient", "include"), ("Organization", "include")}
    assert bundle["total"] == 1
    bundle = fhir.search(f"Patient?_id={pid}&_revinclude=Flag:patient&_revinclude=CarePlan:patient")
    included = {e["resource"]["id"] for e in bundle["entry"] if e["search"]["mode"] == "include"}
    assert included == {flag["id"], plan["id"]}


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        pytest.param("Patient?colour=blue", 400, "not-supported", id="unknown-param"),
        pytest.param("Patient?name:sounds-like=x", 400, "not-supported", id="unknown-modifier"),
        pytest.param("Patient?birthdate=yesterday", 400, "invalid", id="bad-date"),
        pytest.param("Patient?_count=-1", 400, "invalid", id="negative-count"),
        pytest.param("Patient?_include=Flag:patient", 400, "not-supported", id="include-wrong-type"),
        pytest.param("Patient?_revinclude=Flag:nothing", 400, "not-supported", id="bad-revinclude"),
        pytest.param("Unicorn?name=x", 404, "not-supported", id="unknown-type"),
    ],
)
def test_search_errors(fhir: FhirActions, query: str, status: int, code: str) -> None:
    resp = fhir.client.get(f"/fhir/{query}")
    assert resp.status_code == status
    body = resp.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == code


def test_lenient_handling_ignores_unknown_params(fhir: FhirActions,
                                                 children: dict[str, str]) -> None:
    resp = fhir.client.get("/fhir/Patient?colour=blue&gender=male",
                           headers={"Prefer": "handling=lenient"})
    assert resp.status_code == 200
    body = resp.get_json()
    outcome = [e for e in body["entry"] if e["search"]["mode"] == "outcome"]
    assert outcome and outcome[0]["resource"]["issue"][0]["severity"] == "warning"
    assert body["total"] == 2


def test_post_search(fhir: FhirActions, children: dict[str, str]) -> None:
    resp = fhir.client.post("/fhir/Patient/_search", data={"gender": "male"})
    assert resp.status_code == 200
    assert resp.get_json()["total"] == 2
    assert resp.mimetype == FHIR_JSON
