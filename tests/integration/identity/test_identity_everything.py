"""Patient/$everything on a golden Patient: every agency's records for the child, through policy.

C0020 is known to all five sources. Social care (reads everything) gets resources from all five;
education gets the rest and no trace of what it may not see: not in the entries, not in the
total, not in any text of any page.
"""
from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gateway.identity.service import as_gateway
from tests.conftest import client_as
from tests.integration.identity.conftest import (
    SOURCE_NAMES,
    golden_of,
    identity_of,
    store_children,
)


@pytest.fixture
def child(app: Flask) -> dict[str, Any]:
    """Store C0020's records from all five sources and link them; return ids."""
    patients = store_children(app, {"C0020"})
    with as_gateway():
        identity_of(app).rebuild()
    assert identity_of(app).report().goldens == 1
    return {"golden": golden_of(app, patients["social-care"]), "patients": patients}


def _all_pages(client: FlaskClient, url: str) -> tuple[list[dict[str, Any]], list[str], int]:
    entries: list[dict[str, Any]] = []
    bodies = []
    totals = set()
    while url:
        resp = client.get(url)
        assert resp.status_code == 200, resp.get_json()
        bodies.append(resp.get_data(as_text=True))
        bundle = resp.get_json()
        totals.add(bundle["total"])
        entries += bundle.get("entry", [])
        nxt = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        url = re.sub(r"^https?://[^/]+", "", nxt[0]) if nxt else ""
    assert len(totals) == 1
    return entries, bodies, totals.pop()


def _keys(entries: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(e["resource"]["resourceType"], e["resource"]["id"]) for e in entries}


def test_everything_spans_five_agencies_and_hides_the_rest(app: Flask, client: FlaskClient,
                                                           child: dict[str, Any]) -> None:
    golden = child["golden"]
    entries, _, total = _all_pages(client, f"/fhir/Patient/{golden}/$everything?_count=7")
    assert total == len(entries) == len(_keys(entries))
    assert entries[0]["resource"]["id"] == golden
    origins = {e["resource"].get("meta", {}).get("source") for e in entries}
    assert {f"urn:wraparound:source:{s}" for s in SOURCE_NAMES} <= origins
    assert set(child["patients"].values()) <= {i for t, i in _keys(entries) if t == "Patient"}
    everything = _keys(entries)

    education = client_as(app, "education")
    seen_entries, bodies, seen_total = _all_pages(
        education, f"/fhir/Patient/{golden}/$everything?_count=5")
    seen = _keys(seen_entries)
    hidden = everything - seen
    assert seen < everything and hidden
    assert seen_total == len(seen_entries) == len(seen)
    for res_type, res_id in hidden:
        assert all(res_id not in body for body in bodies), (res_type, res_id)
        assert education.get(f"/fhir/{res_type}/{res_id}").status_code == 404
    for res_type, res_id in seen:
        assert education.get(f"/fhir/{res_type}/{res_id}").status_code == 200
    assert any(t == "Observation" for t, _ in seen)  # the school's own records
    assert not any(t == "EpisodeOfCare" and
                   e["resource"]["meta"]["source"].endswith("social-care")
                   for e in seen_entries for t in [e["resource"]["resourceType"]])

    assert client_as(app, "auditor").get(f"/fhir/Patient/{golden}/$everything").status_code == 403
    flags_only = client_as(app, "social-care", scopes=("system/Flag.rs",))
    assert flags_only.get(f"/fhir/Patient/{golden}/$everything").status_code == 403
    health = client_as(app, "health").get(
        f"/fhir/Patient/{golden}/$everything?_count=500").get_json()
    assert "Immunization" in {e["resource"]["resourceType"] for e in health["entry"]}
    assert not [e for e in health["entry"] if e["resource"]["resourceType"] == "EpisodeOfCare"
                and e["resource"]["meta"]["source"].endswith("social-care")]


def test_everything_filters_and_pages(client: FlaskClient, child: dict[str, Any]) -> None:
    golden = child["golden"]
    base = f"/fhir/Patient/{golden}/$everything"
    full = client.get(f"{base}?_count=500").get_json()
    some = client.get(f"{base}?_type=Patient,EpisodeOfCare&_count=500").get_json()
    assert {e["resource"]["resourceType"] for e in some["entry"]} == {"Patient", "EpisodeOfCare"}
    assert some["total"] < full["total"]
    first = client.get(f"{base}?_count=3").get_json()
    assert len(first["entry"]) == 3 and first["total"] == full["total"]
    assert [link["relation"] for link in first["link"]] == ["self", "next"]
    later = client.get(f"{base}?_since=2999-01-01T00:00:00Z").get_json()
    assert later["total"] == 0 and "entry" not in later
    assert client.get(f"{base}?_since=yesterday").status_code == 400
    assert client.get(f"{base}?_type=Nonsense").status_code == 404
    source = child["patients"]["school"]
    alone = client.get(f"/fhir/Patient/{source}/$everything?_count=500").get_json()
    assert 0 < alone["total"] < full["total"]
    assert {e["resource"].get("meta", {}).get("source") for e in alone["entry"]
            if e["resource"]["resourceType"] != "Organization"} == {
        "urn:wraparound:source:school", "urn:wraparound:identity"}  # the golden refers to it
