"""The mapping engine: input checks, expressions, directives, code tables, ids and provenance."""
from __future__ import annotations

import datetime as dt
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from mappings import (
    BUILTIN_SOURCES,
    MappingDefinitionError,
    MappingError,
    Registry,
    TableUsage,
    UnknownSource,
    load_registry,
    resource_id,
    source_uri,
)
from mappings.expressions import name_case, postcode
from mappings.inputs import parse_date, parse_datetime

MAPPING = """
source: demo
record_type: person
format: {type: csv}
record_id: "{{ id }}"
inputs:
  id: {type: string, required: true}
  family: {type: string, required: true}
  given: string
  born: date
  sex: {type: code, table: sex}
  score: {type: int, min: 0, max: 10}
  flag: bool
  visits:
    type: list
    columns: "Visit{n}_"
    items:
      Date: {type: date, required: true}
      Kind: {type: code, table: kind}
resources:
  - resourceType: Patient
    $key: "{{ id }}"
    identifier:
      - $include: local-id
        $with: {value: "{{ id }}"}
    name:
      - $include: human-name
        $with: {family: "{{ family }}", given: "{{ given }}"}
    gender: "{{ lookup('sex', sex) }}"
    birthDate: "{{ born }}"
    active: "{{ flag }}"
    extension:
      - $if: "{{ score is not none }}"
        url: http://example.org/score
        valueInteger: "{{ score }}"
  - resourceType: Encounter
    $each: "{{ visits }}"
    $as: visit
    $key: ["{{ id }}", "{{ visit.Date }}"]
    status: finished
    class: {system: http://terminology.hl7.org/CodeSystem/v3-ActCode, code: AMB}
    type:
      - coding: ["{{ code('kind', visit.Kind) }}"]
    subject: {reference: "{{ ref('Patient', id) }}"}
    period: {start: "{{ visit.Date }}"}
"""

SEX = """
table: sex
system: http://hl7.org/fhir/administrative-gender
codes:
  M: {code: male, display: Male}
  F: {code: female, display: Female}
"""

KIND = """
table: kind
system: http://example.org/kind
default: {code: other, display: Other}
codes:
  "01": {code: home, display: Home visit}
  CL: {code: clinic, display: Clinic}
"""


def write_source(folder: Path, mapping: str = MAPPING, tables: dict[str, str] | None = None,
                 name: str = "person.yaml") -> Path:
    """Write a source folder (mapping and code tables) and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(textwrap.dedent(mapping), encoding="utf-8")
    (folder / "tables").mkdir(exist_ok=True)
    for table_name, text in (tables if tables is not None else {"sex": SEX, "kind": KIND}).items():
        (folder / "tables" / f"{table_name}.yaml").write_text(text, encoding="utf-8")
    return folder


@pytest.fixture()
def demo(tmp_path: Path) -> Registry:
    return load_registry([write_source(tmp_path / "demo")])


def record(**fields: str) -> dict[str, str]:
    base = {"id": "P1", "family": "SMITH", "given": "jo anne", "born": "13/09/2015",
            "sex": "F", "score": "", "flag": "Y"}
    base.update(fields)
    return base


def resources(registry: Registry, raw: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    mapped = registry.map_record("demo", raw, "row 2", recorded="2026-09-01T00:00:00Z")
    out: dict[str, list[dict[str, Any]]] = {}
    for resource in mapped.resources:
        out.setdefault(resource["resourceType"], []).append(resource)
    return out


# -- input values ------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("13/09/2015", dt.date(2015, 9, 13)),
    ("3/9/2015", dt.date(2015, 9, 3)),
    ("13-09-2015", dt.date(2015, 9, 13)),
    ("13.09.2015", dt.date(2015, 9, 13)),
    ("2015-09-13", dt.date(2015, 9, 13)),
    ("2015-09-13T00:00:00Z", dt.date(2015, 9, 13)),
    (" 05/04/2010 ", dt.date(2010, 4, 5)),
])
def test_dates_are_uk_day_first_and_iso_is_tolerated(text: str, expected: dt.date) -> None:
    assert parse_date(text) == expected


@pytest.mark.parametrize("text", ["09/13/2015", "31/02/2015", "2015-13-01", "13/09/15", "today",
                                  "01/01/1850", ""])
def test_impossible_or_ambiguous_dates_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="date"):
        parse_date(text)


@pytest.mark.parametrize(("text", "expected"), [
    ("04/03/2026 14:05", "2026-03-04T14:05:00+00:00"),
    ("04/07/2026 14:05", "2026-07-04T14:05:00+01:00"),
    ("2026-07-04T14:05:00Z", "2026-07-04T14:05:00+00:00"),
    ("2026-07-04T14:05:09.123+02:00", "2026-07-04T14:05:09+02:00"),
])
def test_datetimes_without_zone_are_uk_local_time(text: str, expected: str) -> None:
    assert parse_datetime(text).isoformat() == expected


@pytest.mark.parametrize(("field", "value", "message"), [
    ("id", "", "required but missing"),
    ("family", "  ", "required but missing"),
    ("born", "31/02/2015", "not a valid date"),
    ("score", "eleven", "whole number"),
    ("score", "11", "more than 10"),
    ("score", "-1", "less than 0"),
    ("flag", "perhaps", "yes/no"),
    ("Visit1_Date", "", "required but missing"),
])
def test_bad_input_is_rejected_with_row_and_field(demo: Registry, field: str, value: str,
                                                  message: str) -> None:
    raw = record(Visit1_Kind="CL", Visit1_Date="01/02/2026")
    raw[field] = value
    with pytest.raises(MappingError) as caught:
        demo.map_record("demo", raw, "row 7")
    problem = caught.value.problems[0]
    assert problem.location == "row 7"
    assert field in (problem.field or "")
    assert message in problem.message


def test_all_input_problems_are_reported_together(demo: Registry) -> None:
    with pytest.raises(MappingError) as caught:
        demo.map_record("demo", record(id="", born="x", score="y"), "row 3")
    assert {p.field for p in caught.value.problems} == {"id", "born", "score"}


@pytest.mark.parametrize("raw", [None, [], "text", 7])
def test_a_record_that_is_not_an_object_is_rejected(demo: Registry, raw: Any) -> None:
    with pytest.raises(MappingError, match="must be an object"):
        demo.map_record("demo", raw, "record 1")


def test_extra_csv_values_reject_the_row(demo: Registry) -> None:
    with pytest.raises(MappingError, match="more values than the header"):
        demo.map_record("demo", {**record(), "__extra__": ["x"]}, "row 4")


# -- templates -------------------------------------------------------------------------------------

def test_structure_is_kept_and_values_are_typed(demo: Registry) -> None:
    patient = resources(demo, record(score="7"))["Patient"][0]
    assert patient["birthDate"] == "2015-09-13"
    assert patient["active"] is True
    assert patient["gender"] == "female"
    assert patient["name"] == [{"use": "official", "family": "Smith", "given": ["Jo", "Anne"]}]
    assert patient["extension"] == [{"url": "http://example.org/score", "valueInteger": 7}]


def test_empty_elements_are_dropped(demo: Registry) -> None:
    patient = resources(demo, record(given="", born="", sex="", flag=""))["Patient"][0]
    assert patient["name"] == [{"use": "official", "family": "Smith"}]
    for absent in ("gender", "birthDate", "active", "extension"):
        assert absent not in patient


def test_each_repeats_and_conditions_select(demo: Registry) -> None:
    raw = record(Visit1_Date="01/02/2026", Visit1_Kind="01", Visit2_Date="", Visit2_Kind="",
                 Visit3_Date="03/02/2026", Visit3_Kind="CL")
    encounters = resources(demo, raw)["Encounter"]
    assert [e["period"]["start"] for e in encounters] == ["2026-02-01", "2026-02-03"]
    assert [e["type"][0]["coding"][0]["code"] for e in encounters] == ["home", "clinic"]
    assert not resources(demo, record()).get("Encounter")


def test_unmapped_code_uses_the_declared_default(demo: Registry) -> None:
    usage = TableUsage()
    raw = record(Visit1_Date="01/02/2026", Visit1_Kind="ZZ")
    mapped = demo.map_record("demo", raw, "row 2", usage=usage)
    encounter = next(r for r in mapped.resources if r["resourceType"] == "Encounter")
    assert encounter["type"][0]["coding"][0]["code"] == "other"
    assert usage.missing == {"kind": {"ZZ": 1}}
    assert usage.used["sex"] == {"F"}


def test_unmapped_code_without_default_is_a_located_error(demo: Registry) -> None:
    with pytest.raises(MappingError) as caught:
        demo.map_record("demo", record(sex="X"), "row 9")
    problem = caught.value.problems[0]
    assert (problem.location, problem.field) == ("row 9", "sex")
    assert "'X' is not in code table 'sex'" in problem.message
    assert problem.fhir_path == "Patient.gender"


def test_codes_match_without_regard_to_case_or_spacing(demo: Registry) -> None:
    assert resources(demo, record(sex=" f "))["Patient"][0]["gender"] == "female"


def test_references_use_the_deterministic_ids(demo: Registry) -> None:
    out = resources(demo, record(Visit1_Date="01/02/2026", Visit1_Kind="CL"))
    patient = out["Patient"][0]
    assert patient["id"] == resource_id("demo", "Patient", ["P1"])
    assert out["Encounter"][0]["subject"]["reference"] == f"Patient/{patient['id']}"


# -- ids and provenance ------------------------------------------------------------------------------

@pytest.mark.parametrize(("a", "b", "same"), [
    (("s", "Patient", ["1"]), ("s", "Patient", ["1"]), True),
    (("s", "Patient", ["AB1"]), ("s", "Patient", [" ab1 "]), True),
    (("s", "Patient", ["1"]), ("t", "Patient", ["1"]), False),
    (("s", "Patient", ["1"]), ("s", "Practitioner", ["1"]), False),
    (("s", "Patient", ["a|b", "c"]), ("s", "Patient", ["a", "b|c"]), False),
    (("s", "Patient", [dt.date(2020, 1, 2)]), ("s", "Patient", ["2020-01-02"]), True),
])
def test_resource_ids(a: tuple[Any, ...], b: tuple[Any, ...], same: bool) -> None:
    first, second = resource_id(*a), resource_id(*b)
    assert (first == second) is same
    assert len(first) <= 64


def test_mapping_is_deterministic_and_carries_provenance(demo: Registry) -> None:
    raw = record(Visit1_Date="01/02/2026", Visit1_Kind="CL")
    one = demo.map_record("demo", raw, "row 2", recorded="2026-09-01T00:00:00Z")
    two = demo.map_record("demo", dict(raw), "row 2",
                          recorded=dt.datetime(2026, 9, 1, tzinfo=dt.UTC))
    assert one.resources == two.resources
    assert one.source_record_id == "P1"
    provenance = one.resources[-1]
    assert provenance["resourceType"] == "Provenance"
    assert provenance["recorded"] == "2026-09-01T00:00:00Z"
    assert [t["reference"] for t in provenance["target"]] == [
        f"{r['resourceType']}/{r['id']}" for r in one.resources[:-1]]
    assert provenance["agent"][0]["who"]["identifier"]["value"] == "demo"
    assert provenance["entity"][0]["what"]["identifier"]["value"] == "P1"
    assert {r["meta"]["source"] for r in one.resources} == {source_uri("demo")}


# -- mapping definitions ------------------------------------------------------------------------------

@pytest.mark.parametrize(("change", "message"), [
    (("{{ ref('Patient', id) }}", "Patient/{{ id }}"), "text templating is not allowed"),
    (('"{{ born }}"', '"{{ borm }}"'), "undeclared name"),
    (("$include: local-id", "$include: no-such-partial"), "no partial named"),
    (("lookup('sex', sex)", "lookup('gender-x', sex)"), "no code table"),
    (("$as: visit", "$ass: visit"), "unknown directives"),
    (('"{{ id }}"\ninputs', '"{{ id ) }}"\ninputs'), "bad expression"),
    (("type: int, min: 0", "type: integer, min: 0"), "unknown type"),
    (("    $key: \"{{ id }}\"\n", ""), "needs `$key`"),
])
def test_broken_mappings_fail_to_load_with_a_place(tmp_path: Path, change: tuple[str, str],
                                                   message: str) -> None:
    old, new = change
    assert old in MAPPING
    write_source(tmp_path / "demo", MAPPING.replace(old, new, 1))
    with pytest.raises(MappingDefinitionError, match=re.escape(message)) as caught:
        load_registry([tmp_path / "demo"])
    assert "person.yaml" in str(caught.value)


def test_code_table_keys_stay_text(tmp_path: Path) -> None:
    registry = load_registry([write_source(tmp_path / "demo")])
    assert "01" in registry.tables("demo")["kind"].entries


def test_unknown_source_and_record_type() -> None:
    registry = load_registry()
    with pytest.raises(UnknownSource):
        registry.mapping("no-such-source")
    with pytest.raises(UnknownSource):
        registry.mapping("school", "no-such-type")


def test_builtin_sources_are_listed() -> None:
    registry = load_registry([BUILTIN_SOURCES])
    assert registry.sources() == ["child-health", "school", "social-care", "youth-justice",
                                  "youth-support"]


def test_declared_but_unread_inputs_are_reported(tmp_path: Path) -> None:
    text = MAPPING.replace("  flag: bool\n", "  flag: bool\n  spare: string\n")
    registry = load_registry([write_source(tmp_path / "demo", text)])
    assert registry.mapping("demo").unused_inputs() == ["spare"]


@pytest.mark.parametrize(("text", "expected"), [
    ("SMITH", "Smith"), ("o'brien", "O'Brien"), ("SMITH-HOWARD", "Smith-Howard"),
    ("mcdonald", "McDonald"), ("McDonald", "McDonald"), ("de Souza", "de Souza"),
    ("ZOË", "Zoë"), ("  jo   anne ", "Jo Anne"),
])
def test_name_case(text: str, expected: str) -> None:
    assert name_case(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("nr312uf", "NR31 2UF"), ("NR31 2UF", "NR31 2UF"), ("  pe30  1ab ", "PE30 1AB"),
    ("SW1A1AA", "SW1A 1AA"), ("not a postcode", "NOT A POSTCODE"),
])
def test_postcode(text: str, expected: str) -> None:
    assert postcode(text) == expected


def test_sandbox_refuses_unsafe_attribute_access(tmp_path: Path) -> None:
    text = MAPPING.replace('birthDate: "{{ born }}"',
                           'birthDate: "{{ family.__class__.__mro__ }}"')
    registry = load_registry([write_source(tmp_path / "demo", text)])
    with pytest.raises(MappingError) as caught:
        registry.map_record("demo", record(), "row 2")
    assert caught.value.problems[0].fhir_path == "Patient.birthDate"


def test_a_source_with_two_record_types_selects_by_expression(tmp_path: Path) -> None:
    folder = write_source(tmp_path / "demo", MAPPING.replace(
        'record_id: "{{ id }}"', 'record_id: "{{ id }}"\nselect: "{{ kind == \'person\' }}"'))
    carer = textwrap.dedent("""
        source: demo
        record_type: carer
        format: {type: csv}
        select: "{{ kind == 'carer' }}"
        record_id: "{{ id }}"
        inputs:
          id: {type: string, required: true}
          family: {type: string, required: true}
        resources:
          - resourceType: RelatedPerson
            $key: "{{ id }}"
            name:
              - $include: human-name
                $with: {family: "{{ family }}"}
        """)
    (folder / "carer.yaml").write_text(carer, encoding="utf-8")
    registry = load_registry([folder])
    assert registry.record_types("demo") == ["carer", "person"]
    as_carer = registry.map_record("demo", {"kind": "carer", "id": "C1", "family": "Shaw"},
                                   "row 2")
    assert as_carer.record_type == "carer"
    assert as_carer.resources[0]["resourceType"] == "RelatedPerson"
    as_person = registry.map_record("demo", {**record(), "kind": "person"}, "row 3")
    assert as_person.record_type == "person"
    with pytest.raises(MappingError, match="no record type"):
        registry.map_record("demo", {"kind": "pet", "id": "D1"}, "row 4")


def test_a_problem_inside_a_partial_is_reported_where_the_mapping_uses_it(tmp_path: Path) -> None:
    text = MAPPING.replace("      - coding: [\"{{ code('kind', visit.Kind) }}\"]",
                           "      - $include: codeable-concept\n"
                           "        $with: {table: sex, value: \"{{ visit.Kind }}\"}")
    registry = load_registry([write_source(tmp_path / "demo", text)])
    with pytest.raises(MappingError) as caught:
        registry.map_record("demo", record(Visit1_Date="01/02/2026", Visit1_Kind="CL"), "row 5")
    problem = caught.value.problems[0]
    assert (problem.location, problem.field) == ("row 5", "visits.Kind")
    assert problem.fhir_path == "Encounter.type[0]"
