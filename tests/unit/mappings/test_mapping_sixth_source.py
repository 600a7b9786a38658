"""A sixth source needs only a folder: a mapping file, a code table and a sample."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from mappings import BUILTIN_SOURCES, MappingDefinitionError, MappingError, load_registry

MAPPING = """
source: early-years
record_type: child
description: A nursery provider's funded-place list.
format: {type: csv, encoding: cp1252}
record_id: "{{ ChildRef }}"
inputs:
  ChildRef: {type: string, required: true}
  Name: {type: string, required: true}
  Surname: {type: string, required: true}
  DOB: {type: date, required: true}
  NHS: string
  Setting: {type: string, required: true}
  Funding: {type: code, required: true, table: funding}
resources:
  - resourceType: Patient
    $key: "{{ ChildRef }}"
    identifier:
      - $include: local-id
        $with: {value: "{{ ChildRef }}"}
      - $include: nhs-number
        $with: {value: "{{ NHS }}"}
    name:
      - $include: human-name
        $with: {family: "{{ Surname }}", given: "{{ Name }}"}
    birthDate: "{{ DOB }}"
  - resourceType: Organization
    $key: "{{ Setting }}"
    name: "{{ Setting }}"
  - resourceType: EpisodeOfCare
    $key: ["{{ ChildRef }}", "{{ Setting }}"]
    status: active
    type:
      - $include: codeable-concept
        $with: {table: funding, value: "{{ Funding }}"}
    patient: {reference: "{{ ref('Patient', ChildRef) }}"}
    managingOrganization: {reference: "{{ ref('Organization', Setting) }}"}
"""

TABLE = """
table: funding
system: https://example.org/CodeSystem/early-years-funding
codes:
  "2YO": {code: two-year-old, display: Funded place for a two-year-old}
  "3YO": {code: universal, display: Universal 15 hours}
"""



def make_folder(root: Path) -> Path:
    folder = root / "early-years"
    (folder / "tables").mkdir(parents=True)
    (folder / "child.yaml").write_text(textwrap.dedent(MAPPING), encoding="utf-8")
    (folder / "tables" / "funding.yaml").write_text(TABLE, encoding="utf-8")
    sample = ("ChildRef,Name,Surname,DOB,NHS,Setting,Funding\r\n"
              "EY1,Zoë,BROWN,02/03/2023,999 000 0018,Little Acorns,2YO\r\n"
              "EY2,Ava,Khan,2022-11-30,,Little Acorns,3yo\r\n"
              "EY3,Mia,Shaw,31/02/2022,,Little Acorns,3YO\r\n")
    (folder / "sample.csv").write_bytes(sample.encode("cp1252"))
    return folder


def test_sixth_source_from_a_folder(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "extra")
    registry = load_registry([BUILTIN_SOURCES, tmp_path / "extra"])
    assert "early-years" in registry.sources()
    assert len(registry.sources()) == 6
    with (folder / "sample.csv").open("rb") as stream:
        outcomes = list(registry.map_stream("early-years", stream))
    first, second, third = outcomes
    assert not isinstance(first, MappingError) and not isinstance(second, MappingError)
    patient = first.resources[0]
    assert patient["name"][0] == {"use": "official", "family": "Brown", "given": ["Zoë"]}
    assert patient["identifier"][1]["value"] == "9990000018"
    episode = second.resources[2]
    assert episode["type"][0]["coding"][0]["code"] == "universal"
    assert isinstance(third, MappingError)
    assert (third.location, third.field) == ("row 4", "DOB")


def test_a_source_folder_can_be_loaded_on_its_own(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    assert load_registry([folder]).sources() == ["early-years"]


def test_a_source_defined_twice_is_refused(tmp_path: Path) -> None:
    make_folder(tmp_path / "a")
    make_folder(tmp_path / "b")
    with pytest.raises(MappingDefinitionError, match="already defined"):
        load_registry([tmp_path / "a", tmp_path / "b"])
