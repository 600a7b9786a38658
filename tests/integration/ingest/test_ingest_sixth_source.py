"""A sixth source is a folder (mapping file, code table, sample), ingested end to end unchanged.

The folder is written to a temporary directory; the only thing that differs from the built-in
gateway is the registry the IngestService is built with.
"""
from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path
from urllib.parse import quote

from flask import Flask
from flask.testing import FlaskClient
from ingest_support import match_ids, stored, version_count

from gateway.ingest.service import IngestService
from gateway.security.context import Caller, acting_as
from mappings import BUILTIN_SOURCES, load_registry, source_uri
from vocab import systems

MAPPING = """
source: short-breaks
record_type: child
description: A disabled children's short-breaks service's JSON export.
format: {type: json, date_format: uk}
record_id: "{{ ref_no }}"
inputs:
  ref_no: {type: string, required: true, pattern: "SB[0-9]{4}"}
  forename: {type: string, required: true, from: child/forename}
  surname: {type: string, required: true, from: child/surname}
  dob: {type: date, required: true, from: child/dob}
  nhs: {type: string, from: child/nhs}
  provider: {type: string, required: true}
  breaks:
    type: list
    items:
      kind: {type: code, required: true, table: break-type}
      start: {type: date, required: true}
      end: date
resources:
  - resourceType: Patient
    $key: "{{ ref_no }}"
    identifier:
      - $include: local-id
        $with: {value: "{{ ref_no }}"}
      - $include: nhs-number
        $with: {value: "{{ nhs }}"}
    name:
      - $include: human-name
        $with: {family: "{{ surname }}", given: "{{ forename }}"}
    birthDate: "{{ dob }}"
  - resourceType: Organization
    $key: "{{ provider }}"
    name: "{{ provider }}"
  - resourceType: EpisodeOfCare
    $each: "{{ breaks }}"
    $as: stay
    $key: ["{{ ref_no }}", "{{ stay.kind }}", "{{ stay.start }}"]
    status: "{{ 'finished' if present(stay.end) else 'active' }}"
    type:
      - $include: codeable-concept
        $with: {table: break-type, value: "{{ stay.kind }}"}
    patient: {reference: "{{ ref('Patient', ref_no) }}"}
    managingOrganization: {reference: "{{ ref('Organization', provider) }}"}
    period:
      start: "{{ stay.start }}"
      end: "{{ stay.end }}"
"""

TABLE = """
table: break-type
system: https://example.org/CodeSystem/short-break-type
codes:
  OVN: {code: overnight, display: Overnight short break}
  DAY: {code: day, display: Day-time short break}
"""

SAMPLE = [
    {"ref_no": "SB0001", "child": {"forename": "Zoë", "surname": "BROWN", "dob": "02/03/2015",
                                   "nhs": "999 000 0018"},
     "provider": "Rainbow House", "breaks": [{"kind": "OVN", "start": "01/09/2025",
                                              "end": "03/09/2025"},
                                             {"kind": "day", "start": "10/10/2025"}]},
    {"ref_no": "SB0002", "child": {"forename": "ava", "surname": "Khan", "dob": "2014-11-30"},
     "provider": "Rainbow House", "breaks": [{"kind": "DAY", "start": "04/04/2025"}]},
    {"ref_no": "SB0003", "child": {"forename": "Mia", "surname": "Shaw", "dob": "31/02/2016"},
     "provider": "Rainbow House", "breaks": []},
    {"ref_no": "SB0004", "child": {"forename": "Leo", "surname": "Hart", "dob": "05/06/2013"},
     "provider": "Oak Lodge", "breaks": [{"kind": "WKND", "start": "01/02/2025"}]},
]


def make_source(root: Path) -> Path:
    """Write the short-breaks source folder: a mapping file, a code table and a sample."""
    folder = root / "short-breaks"
    (folder / "tables").mkdir(parents=True)
    (folder / "child.yaml").write_text(textwrap.dedent(MAPPING), encoding="utf-8")
    (folder / "tables" / "break-type.yaml").write_text(TABLE, encoding="utf-8")
    (folder / "sample.json").write_text(json.dumps(SAMPLE, ensure_ascii=False), encoding="utf-8")
    return folder


def test_a_sixth_source_from_a_folder_is_ingested_end_to_end(
        app: Flask, client: FlaskClient, tmp_path: Path) -> None:
    folder = make_source(tmp_path / "extra")
    registry = load_registry([BUILTIN_SOURCES, tmp_path / "extra"])
    services = app.extensions["wraparound"]
    service = IngestService(registry, services.fhir, services.policy)
    assert "short-breaks" in service.sources() and len(service.sources()) == 6
    assert service.resource_types("short-breaks") == [
        "EpisodeOfCare", "Organization", "Patient", "Provenance"]

    def ingest() -> dict[str, int]:
        with acting_as(Caller.internal(service.agency_for("short-breaks"))), \
                (folder / "sample.json").open("rb") as stream:
            report = service.run("short-breaks", stream, None)  # the format's own content type
        problems = [p.diagnostics for o in report.outcomes for p in o.problems]
        assert report.stream_error is None
        assert any(p.startswith("record 3, field child/dob: not a valid date") for p in problems)
        assert any(p.startswith("record 4, field breaks.kind: code 'WKND' is not in code "
                                "table 'break-type'") for p in problems), problems
        return dict(report.counts)

    assert ingest() == {"created": 2, "rejected": 2}
    versions = version_count(app)
    assert ingest() == {"unchanged": 2, "rejected": 2}
    assert version_count(app) == versions

    rows = stored(app)
    by_type: dict[str, int] = {}
    for (res_type, _), resource in rows.items():
        by_type[res_type] = by_type.get(res_type, 0) + 1
        assert resource["meta"]["source"] == source_uri("short-breaks")
    assert by_type == {"Patient": 2, "Organization": 1, "EpisodeOfCare": 3, "Provenance": 2}
    assert "SB0003" not in json.dumps(list(rows.values()))
    assert "Oak Lodge" not in json.dumps(list(rows.values()))  # only the rejected record has it

    # The gateway's ordinary API finds the new source's children by each identifier.
    local = systems.local_id_system("short-breaks", "record")
    (zoe,) = match_ids(client, f"Patient?identifier={quote(f'{local}|SB0001')}")
    assert match_ids(client, f"Patient?identifier={quote(f'{systems.NHS_NUMBER}|9990000018')}"
                     ) == {zoe}
    patient = client.get(f"/fhir/Patient/{zoe}").get_json()
    assert patient["name"] == [{"use": "official", "family": "Brown", "given": ["Zoë"]}]
    provenance = client.get(f"/fhir/Provenance?target=Patient/{zoe}").get_json()
    (entry,) = provenance["entry"]
    assert entry["resource"]["entity"][0]["what"]["identifier"]["value"] == "SB0001"

    # Sent through the dry run, the same folder's sample maps without touching the store.
    with acting_as(Caller.internal("short-breaks")):
        report = service.run("short-breaks", io.BytesIO((folder / "sample.json").read_bytes()),
                             "application/json", dry_run=True)
    assert dict(report.counts) == {"valid": 2, "rejected": 2}
    assert version_count(app) == versions
