"""POST /ingest/{source}: the five samples load, reload unchanged, and are found by identifier.

Every test runs on SQLite and on PostgreSQL (the `app` fixture takes `db_url`).
"""
from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from ingest_support import (
    AGENCIES,
    LOCAL_PREFIX,
    counts,
    dry_run_parts,
    errors,
    local_ids,
    match_ids,
    post,
    sample,
    stored,
    version_count,
)

from gateway.fhir.validation import validate_resource
from mappings import source_uri
from tests.conftest import client_as
from vocab import systems

VOLATILE_META = ("versionId", "lastUpdated", "tag")


def _without_volatile(resource: dict[str, Any]) -> dict[str, Any]:
    out = dict(resource)
    out["meta"] = {k: v for k, v in resource.get("meta", {}).items() if k not in VOLATILE_META}
    if out["resourceType"] == "Provenance":
        out.pop("recorded")
    return out


@pytest.mark.parametrize("source", sorted(AGENCIES))
def test_a_sample_loads_then_reloads_unchanged_and_each_child_is_found(
        app: Flask, client: FlaskClient, source: str) -> None:
    agency_client = client_as(app, AGENCIES[source])
    data, content_type = sample(source)

    # A dry run maps and validates every record, returns them as a collection, stores nothing.
    resp = post(agency_client, source, data, content_type, dry_run=True)
    assert resp.status_code == 200, resp.get_json()
    produced, outcome = dry_run_parts(resp.get_json())
    dry = counts(outcome)
    assert dry["rejected"] == 0 and errors(outcome) == [], errors(outcome)[:3]
    records = dry["valid"]
    assert records >= 50
    full_urls = [e.get("fullUrl") for e in resp.get_json()["entry"][:-1]]
    assert len(full_urls) == len(set(full_urls)) == len(produced)  # shared resources once
    assert [i for i in validate_resource(resp.get_json(), "Bundle") if i.severity == "error"] == []
    provenances = [r for r in produced if r["resourceType"] == "Provenance"]
    assert len(provenances) == records  # one per source record
    assert stored(app) == {}

    # The first load creates every record.
    resp = post(agency_client, source, data, content_type)
    assert resp.status_code == 200, resp.get_json()
    assert counts(resp.get_json()) == {"created": records, "updated": 0, "unchanged": 0,
                                       "rejected": 0, "valid": 0}
    rows = stored(app)
    assert set(rows) == {(r["resourceType"], r["id"]) for r in produced}
    for resource in produced:  # stored as produced, plus the version and owner
        row = rows[resource["resourceType"], resource["id"]]
        assert _without_volatile(row) == _without_volatile(resource)
        assert row["meta"]["source"] == source_uri(source)
        assert {"system": systems.AGENCY, "code": AGENCIES[source]} in row["meta"]["tag"]
    versions = version_count(app)
    assert versions == len(rows)

    # Every resource is a target of a Provenance naming the source system and record.
    targets: set[str] = set()
    for prov in provenances:
        (agent,) = prov["agent"]
        assert agent["who"]["identifier"] == {"system": systems.SOURCE_SYSTEM, "value": source}
        (entity,) = prov["entity"]
        assert entity["role"] == "source"
        assert entity["what"]["identifier"]["system"].startswith(f"{LOCAL_PREFIX}{source}/")
        targets.update(t["reference"] for t in prov["target"])
    assert {f"{r['resourceType']}/{r['id']}" for r in produced
            if r["resourceType"] != "Provenance"} <= targets
    assert len(local_ids(produced, source)) == records

    # A second load changes nothing and adds no version.
    resp = post(agency_client, source, data, content_type)
    assert resp.status_code == 200, resp.get_json()
    assert counts(resp.get_json()) == {"created": 0, "updated": 0, "unchanged": records,
                                       "rejected": 0, "valid": 0}
    assert version_count(app) == versions

    # Each child is found by each of its identifiers (NHS number, UPN, the source's own id).
    patients = [r for r in produced if r["resourceType"] == "Patient"]
    kinds: set[str] = set()
    for patient in patients:
        assert any(i["system"].startswith(LOCAL_PREFIX) for i in patient["identifier"])
        for ident in patient["identifier"]:
            kinds.add(ident["system"])
            query = quote(f"{ident['system']}|{ident['value']}", safe="")
            assert patient["id"] in match_ids(client, f"Patient?identifier={query}"), ident
    assert len(kinds) >= 2  # the local id and at least one national identifier

    # ... and through the API, its Provenance names its source record.
    for prov in provenances[:3]:
        patient_refs = [t["reference"] for t in prov["target"] if t["reference"].startswith(
            "Patient/")]
        assert patient_refs
        found = client.get(f"/fhir/Provenance?target={patient_refs[0]}").get_json()
        entities = [e["resource"]["entity"] for e in found.get("entry", [])]
        assert prov["entity"] in entities
        for entry in found["entry"]:
            assert entry["resource"]["meta"]["source"] == source_uri(source)


# -- bad records -----------------------------------------------------------------------------
def _csv_rows(source: str) -> tuple[bytes, list[bytes]]:
    data, _ = sample(source)
    header, *rows = [line for line in data.split(b"\r\n") if line]
    return header, rows


def _social_care_with_bad_rows() -> tuple[bytes, list[str], list[str]]:
    header, rows = _csv_rows("social-care")
    good1, bad_date, bad_code, good2 = rows[1], rows[2], rows[3], rows[4]
    dob = re.search(rb",(\d\d/\d\d/\d{4}),", bad_date)
    assert dob is not None
    bad_date = bad_date.replace(dob.group(0), b",31/02/2015,", 1)
    assert b",CIN," in bad_code
    bad_code = bad_code.replace(b",CIN,", b",XYZ,", 1)
    data = b"\r\n".join([header, good1, bad_date, bad_code, good2]) + b"\r\n"
    ids = [r.split(b",", 1)[0].decode() for r in (good1, bad_date, bad_code, good2)]
    return data, [ids[0], ids[3]], [ids[1], ids[2]]


def _youth_justice_with_bad_record() -> tuple[bytes, list[str], list[str]]:
    records = json.loads(sample("youth-justice")[0])[:3]
    records[1]["person"]["dob"] = "31/02/2015"
    return (json.dumps(records).encode(), [records[0]["yot_id"], records[2]["yot_id"]],
            [records[1]["yot_id"]])


def _school_with_bad_pupil() -> tuple[bytes, list[str], list[str]]:
    data = sample("school")[0].decode("utf-8")
    head, *pupils = data.split("    <Pupil>")
    pupils = pupils[:3]
    pupils[-1] = pupils[-1].split("  </CTFpupilData>")[0]
    pupils[1] = re.sub(r"<DOB>[^<]*</DOB>", "<DOB>2015-02-31</DOB>", pupils[1], count=1)
    text = head + "".join("    <Pupil>" + p for p in pupils) + "  </CTFpupilData>\n</CTfile>\n"
    upns = [re.search(r"<UPN>([^<]*)</UPN>", p).group(1).upper()  # type: ignore[union-attr]
            for p in pupils]
    return text.encode("utf-8"), [upns[0], upns[2]], [upns[1]]


BAD_FILES = {
    # source: (build, content type, expected (location, text) of each rejected record)
    "social-care": (_social_care_with_bad_rows, "text/csv",
                    [("row 3", "DateOfBirth"), ("row 4", "episode-type")]),
    "youth-justice": (_youth_justice_with_bad_record, "application/json",
                      [("record 2", "dob")]),
    "school": (_school_with_bad_pupil, "application/xml",
               [("/CTfile/CTFpupilData/Pupil[2]", "DOB")]),
}


@pytest.mark.parametrize("source", sorted(BAD_FILES))
def test_a_bad_record_is_rejected_alone_and_nothing_of_it_is_stored(
        app: Flask, client: FlaskClient, source: str) -> None:
    build, content_type, expected = BAD_FILES[source]
    data, good_ids, bad_ids = build()
    resp = post(client_as(app, AGENCIES[source]), source, data, content_type)
    assert resp.status_code == 200, resp.get_json()
    outcome = resp.get_json()
    assert counts(outcome) == {"created": len(good_ids), "updated": 0, "unchanged": 0,
                               "rejected": len(bad_ids), "valid": 0}
    messages = [i["diagnostics"] for i in errors(outcome)]
    for location, text in expected:
        located = [m for m in messages if m.startswith((f"{location}, field", f"{location}:"))]
        assert any(text in m for m in located), (location, messages)
    assert "not a valid date" in " ".join(messages)

    rows = stored(app)
    provenance_records = {e["what"]["identifier"]["value"] for (t, _), r in rows.items()
                          if t == "Provenance" for e in r["entity"]}
    assert provenance_records == set(good_ids)
    local = f"{LOCAL_PREFIX}{source}/record"
    for record_id in good_ids:
        assert len(match_ids(client, f"Patient?identifier={quote(f'{local}|{record_id}')}")) == 1
    for record_id in bad_ids:
        assert match_ids(client, f"Patient?identifier={quote(f'{local}|{record_id}')}") == set()
    # Nothing stored mentions a rejected record (no Patient, episode, observation, ...).
    dumped = json.dumps(list(rows.values()))
    for record_id in bad_ids:
        assert record_id not in dumped


def test_a_record_the_database_refuses_leaves_nothing_of_itself(
        app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """A record that fails half-way through being stored is rolled back whole; others stay."""
    header, rows = _csv_rows("youth-support")
    data = b"\r\n".join([header, *rows[:4]]) + b"\r\n"
    victim = rows[1].split(b",", 1)[0].decode()  # row 3 of the file
    youth_support = client_as(app, "youth-support")
    produced, _ = dry_run_parts(post(youth_support, "youth-support", data, "text/csv",
                                     dry_run=True).get_json())
    (victim_patient,) = [r["id"] for r in produced if r["resourceType"] == "Patient"
                         and any(i["value"] == victim for i in r["identifier"])]
    fhir = app.extensions["wraparound"].fhir
    real = fhir._stage_update_in
    written: list[str] = []

    def refusing(tx: Any, current: Any, res_type: str, res_id: str, body: dict[str, Any]) -> Any:
        if res_type == "Observation" and body["subject"]["reference"] == f"Patient/{victim_patient}":
            assert f"Patient/{victim_patient}" in written  # its Patient went in first ...
            raise RuntimeError("simulated refusal")  # ... then a later resource fails
        result = real(tx, current, res_type, res_id, body)
        written.append(f"{res_type}/{res_id}")
        return result

    monkeypatch.setattr(fhir, "_stage_update_in", refusing)
    resp = post(youth_support, "youth-support", data, "text/csv")
    assert resp.status_code == 200, resp.get_json()
    outcome = resp.get_json()
    assert counts(outcome) == {"created": 3, "updated": 0, "unchanged": 0, "rejected": 1,
                               "valid": 0}
    (issue,) = errors(outcome)
    assert issue["diagnostics"] == "row 3: could not be stored (RuntimeError)"
    rows = stored(app)
    assert ("Patient", victim_patient) not in rows
    assert victim not in json.dumps(list(rows.values()))
    assert sum(1 for t, _ in rows if t == "Patient") == 3


# -- refusals --------------------------------------------------------------------------------
def test_the_endpoint_refuses_what_it_must(app: Flask, client: FlaskClient,
                                           anonymous: FlaskClient) -> None:
    data, content_type = sample("youth-support")
    cases = [
        (anonymous, "youth-support", content_type, 401, "login"),
        (client, "youth-support", content_type, 403, "forbidden"),  # social-care's token
        (client_as(app, "youth-support", ("system/*.rs",)), "youth-support", content_type, 403,
         "forbidden"),  # the right agency, but a token that may not write
        (client, "no-such-source", content_type, 404, "not-found"),
        (client_as(app, "youth-support"), "youth-support", "application/pdf", 415,
         "not-supported"),
        (client_as(app, "youth-support"), "youth-support", None, 415, "not-supported"),
    ]
    for who, source, ctype, status, code in cases:
        resp = post(who, source, data, ctype)
        assert resp.status_code == status, (source, ctype, status, resp.get_json())
        body = resp.get_json()
        assert body["resourceType"] == "OperationOutcome"
        assert body["issue"][0]["code"] == code
        assert body["issue"][0]["diagnostics"]
    assert stored(app) == {}
    # A read-only token may still dry-run its agency's export: nothing is stored by it.
    resp = post(client_as(app, "youth-support", ("system/*.rs",)), "youth-support", data,
                content_type, dry_run=True)
    assert resp.status_code == 200


def test_an_export_with_nothing_good_is_unprocessable(app: Flask) -> None:
    data, _ = sample("school")
    resp = post(client_as(app, "education"), "school", data, "text/csv")  # XML sent as CSV
    assert resp.status_code == 422
    outcome = resp.get_json()
    assert counts(outcome)["rejected"] > 0 and counts(outcome)["created"] == 0
    assert stored(app) == {}


HOSTILE_DOCTYPE = (b'<?xml version="1.0" encoding="UTF-8"?>\n'
                   b'<!DOCTYPE CTfile [<!ENTITY xxe SYSTEM "file:///etc/passwd">\n'
                   b'  <!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;">]>\n')


def test_hostile_xml_is_refused_and_nothing_is_stored(app: Flask) -> None:
    data, _ = sample("school")
    body = data.split(b"?>", 1)[1]
    education = client_as(app, "education")
    for dry_run in (False, True):
        resp = post(education, "school", HOSTILE_DOCTYPE + body.replace(
            b"<Surname>", b"<Surname>&xxe;&lol2;", 1), "application/xml", dry_run=dry_run)
        assert resp.status_code == 422, resp.get_json()
        outcome = (dry_run_parts(resp.get_json())[1] if dry_run else resp.get_json())
        (issue,) = errors(outcome)
        assert issue["code"] == "security"
        assert "DOCTYPE" in issue["diagnostics"]
        assert "passwd" not in json.dumps(resp.get_json())
    assert stored(app) == {}


def test_an_undeclared_entity_in_the_first_record_stores_nothing(app: Flask) -> None:
    data, _ = sample("school")
    resp = post(client_as(app, "education"), "school",
                data.replace(b"<Surname>", b"<Surname>&xxe;", 1), "application/xml")
    assert resp.status_code == 422, resp.get_json()
    outcome = resp.get_json()
    assert counts(outcome)["created"] == 0
    assert [i["code"] for i in errors(outcome)] == ["security"]
    assert stored(app) == {}


def test_an_undeclared_entity_is_reported_as_hostile_at_its_line(app: Flask) -> None:
    data, _ = sample("school")
    line = data[:data.index(b"<Surname>")].count(b"\n") + 1
    resp = post(client_as(app, "education"), "school",
                data.replace(b"<Surname>", b"<Surname>&xxe;", 1), "application/xml")
    (issue,) = errors(resp.get_json())
    assert issue["code"] == "security"
    assert issue["diagnostics"] == f"line {line}: entity references are refused"


def test_a_record_that_changed_is_updated_and_gets_a_new_provenance_version(app: Flask) -> None:
    """A known record that gains a contact is 'updated' (not 'created'), the others unchanged."""
    header, rows = _csv_rows("youth-support")
    first = [rows[0], rows[1], rows[2]]
    assert rows[1].endswith(b",,,,,,")  # one contact only
    changed = rows[1][:-6] + b",10/07/2026,F2F,ENG,,,"
    youth_support = client_as(app, "youth-support")
    resp = post(youth_support, "youth-support", b"\r\n".join([header, *first]) + b"\r\n",
                "text/csv")
    assert counts(resp.get_json())["created"] == 3
    before = stored(app)
    resp = post(youth_support, "youth-support",
                b"\r\n".join([header, first[0], changed, first[2]]) + b"\r\n", "text/csv")
    assert resp.status_code == 200, resp.get_json()
    assert counts(resp.get_json()) == {"created": 0, "updated": 1, "unchanged": 2, "rejected": 0,
                                       "valid": 0}
    after = stored(app)
    new = set(after) - set(before)
    assert [t for t, _ in new] == ["Encounter"]
    provenance_versions = {key: row["meta"]["versionId"] for key, row in after.items()
                           if key[0] == "Provenance"}
    assert sorted(provenance_versions.values()) == ["1", "1", "2"]
