"""Invariants over every record of every sample, besides the golden comparison.

- every record of a shipped sample maps (samples are messy, but within what the mappings handle);
- ids are valid FHIR ids, unique within a record's output, and Patients are unique per record;
- every reference resolves within the record's output;
- no empty elements (null, "", [], {}) and no untrimmed strings;
- every resource carries meta.source, and the Provenance targets every other resource;
- every output value traces to an input: each word of each string leaf occurs in the record's
  input (raw or as typed, e.g. a UK date as ISO), in the mapping's constants, in a code table of
  the source, or in vocab's systems; engine-made ids and references are exempt;
- every output validates with no error-severity issues (when the validator is available).
"""
from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import pytest
from golden_support import map_sample, sample_files, walk

from mappings import MappedRecord, MappingError, Registry, source_uri
from mappings.engine import clean
from mappings.expressions import SYSTEMS

FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
WORD = re.compile(r"[0-9]+|[^\W\d_]+")
SAMPLES = sample_files()
IDS = [f"{p.parent.name}/{p.name}" for p in SAMPLES]


def _words(value: Any) -> set[str]:
    out: set[str] = set()
    for _, node in walk(value):
        if isinstance(node, str):
            out |= {w.casefold() for w in WORD.findall(node)}
        elif isinstance(node, (int, float)) and not isinstance(node, bool):
            out |= {w.casefold() for w in WORD.findall(str(node))}
    return out


def _mapped(registry: Registry, sample: Path) -> list[tuple[str, dict[str, Any], dict[str, Any],
                                                            MappedRecord]]:
    out = []
    for location, raw, typed, outcome in map_sample(registry, sample).records:
        assert not isinstance(outcome, MappingError), f"{location}: {outcome}"
        out.append((location, raw, typed, outcome))
    return out


@pytest.mark.parametrize("sample", SAMPLES, ids=IDS)
def test_sample_has_fifty_children_and_all_map(registry: Registry, sample: Path) -> None:
    records = _mapped(registry, sample)
    assert len(records) >= 50


@pytest.mark.parametrize("sample", SAMPLES, ids=IDS)
def test_ids_are_valid_and_unique(registry: Registry, sample: Path) -> None:
    patients: set[str] = set()
    for location, _, _, mapped in _mapped(registry, sample):
        keys = [(r["resourceType"], r["id"]) for r in mapped.resources]
        assert len(keys) == len(set(keys)), location
        assert all(FHIR_ID.match(rid) for _, rid in keys), location
        record_patients = {rid for kind, rid in keys if kind == "Patient"}
        assert len(record_patients) == 1, location
        assert not record_patients & patients, f"{location}: Patient id reused"
        patients |= record_patients


@pytest.mark.parametrize("sample", SAMPLES, ids=IDS)
def test_references_resolve_within_the_record(registry: Registry, sample: Path) -> None:
    for location, _, _, mapped in _mapped(registry, sample):
        known = {f"{r['resourceType']}/{r['id']}" for r in mapped.resources}
        for resource in mapped.resources:
            for path, node in walk(resource):
                if path.endswith("reference") and isinstance(node, str):
                    assert node in known, f"{location} {resource['resourceType']}.{path}"


@pytest.mark.parametrize("sample", SAMPLES, ids=IDS)
def test_no_empty_elements(registry: Registry, sample: Path) -> None:
    for location, _, _, mapped in _mapped(registry, sample):
        for resource in mapped.resources:
            for path, node in walk(resource):
                where = f"{location} {resource['resourceType']}.{path}"
                assert node not in (None, "", [], {}), where
                if isinstance(node, str):
                    assert node == node.strip(), where


@pytest.mark.parametrize("sample", SAMPLES, ids=IDS)
def test_meta_source_and_provenance(registry: Registry, sample: Path) -> None:
    source = sample.parent.name
    for location, _, _, mapped in _mapped(registry, sample):
        assert all(r["meta"]["source"] == source_uri(source) for r in mapped.resources)
        provenance = mapped.resources[-1]
        assert provenance["resourceType"] == "Provenance"
        targets = [t["reference"] for t in provenance["target"]]
        assert targets == [f"{r['resourceType']}/{r['id']}" for r in mapped.resources[:-1]]
        assert provenance["entity"][0]["what"]["identifier"]["value"] == mapped.source_record_id


@pytest.mark.parametrize("sample", SAMPLES, ids=IDS)
def test_every_value_traces_to_an_input(registry: Registry, sample: Path) -> None:
    source = sample.parent.name
    mapping = registry.mapping(source)
    allowed = _words(sorted(mapping.constants)) | _words(list(SYSTEMS.values())) | _words(source)
    for table in registry.tables(source).values():
        allowed |= _words([table.system or "", list(table.entries), list(table.entries.values()),
                           table.default or {}])
    for location, raw, typed, mapped in _mapped(registry, sample):
        inputs = allowed | _words(raw) | _words(clean(typed))
        # Re-spaced values ("nr312uf" -> "NR31 2UF") trace by their letters and digits.
        compact = " ".join(
            re.sub(r"\W", "", str(v)).casefold() for _, v in walk(raw) if isinstance(v, str)
        )
        for resource in mapped.resources[:-1]:
            for path, node in walk(resource):
                if not isinstance(node, str) or path in ("id", "meta.source", "resourceType"):
                    continue
                if path.endswith("reference"):
                    continue
                words = {w.casefold() for w in WORD.findall(node)}
                stray = {w for w in words - inputs if w not in compact}
                assert not stray, f"{location} {resource['resourceType']}.{path}: {sorted(stray)}"


def _validator() -> Any:
    try:
        module = importlib.import_module("gateway.fhir.validation")
    except ModuleNotFoundError:
        return None
    return getattr(module, "validate_resource", None)


@pytest.mark.parametrize("sample", SAMPLES, ids=IDS)
def test_every_output_validates(registry: Registry, sample: Path) -> None:
    validate = _validator()
    if validate is None:
        pytest.skip("gateway.fhir.validation.validate_resource is not available yet")
    for location, _, _, mapped in _mapped(registry, sample):
        for resource in mapped.resources:
            issues = validate(resource)
            errors = [i for i in issues if _severity(i) in ("error", "fatal")]
            assert not errors, f"{location} {resource['resourceType']}: {errors}"


def _severity(issue: Any) -> str:
    if isinstance(issue, dict):
        return str(issue.get("severity", "error"))
    return str(getattr(issue, "severity", "error"))


def test_truth_names_every_sample_record(registry: Registry) -> None:
    import csv

    truth_path = SAMPLES[0].parents[1] / "truth.csv"
    with truth_path.open(encoding="utf-8", newline="") as stream:
        truth = {(row["source"], row["record_id"]): row["child_id"]
                 for row in csv.DictReader(stream)}
    mapped = {(s.parent.name, m.source_record_id) for s in SAMPLES
              for _, _, _, m in _mapped(registry, s)}
    assert mapped == set(truth)
    assert all(re.fullmatch(r"C\d{4}", child) for child in truth.values())
