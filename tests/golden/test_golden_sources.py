"""Each source sample maps to exactly the FHIR in its golden file (volatile paths removed)."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from golden_support import map_sample, sample_files

from mappings import MappingError, Registry

# Values that legitimately differ between runs; removed from both sides before comparing.
VOLATILE_PATHS = {
    "Provenance": [("recorded",)],
    "*": [("meta", "lastUpdated"), ("meta", "versionId")],
}


def _strip(resource: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(resource)
    for path in VOLATILE_PATHS.get(out.get("resourceType", ""), []) + VOLATILE_PATHS["*"]:
        node: Any = out
        for key in path[:-1]:
            node = node.get(key, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(path[-1], None)
    return out


def _golden_path(sample: Path) -> Path:
    return sample.parent / "golden" / f"{sample.stem}.json"


def _document(registry: Registry, sample: Path) -> dict[str, Any]:
    mapped = map_sample(registry, sample)
    records = []
    for location, _, _, outcome in mapped.records:
        if isinstance(outcome, MappingError):
            records.append({"location": location,
                            "problems": [str(p) for p in outcome.problems]})
        else:
            records.append({"location": location, "record_id": outcome.source_record_id,
                            "resources": [_strip(r) for r in outcome.resources]})
    return {"source": mapped.source, "sample": sample.name,
            "volatile_paths": ["Provenance.recorded", "*.meta.lastUpdated", "*.meta.versionId"],
            "records": records}


@pytest.mark.parametrize("sample", sample_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_sample_matches_golden(registry: Registry, sample: Path, regen_golden: bool) -> None:
    actual = _document(registry, sample)
    golden = _golden_path(sample)
    if regen_golden:
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(json.dumps(actual, indent=1, ensure_ascii=False) + "\n",
                          encoding="utf-8")
        return
    assert golden.exists(), f"no golden file {golden}; run pytest tests/golden --regen-golden"
    expected = json.loads(golden.read_text(encoding="utf-8"))
    expected["records"] = [
        {**r, "resources": [_strip(x) for x in r["resources"]]} if "resources" in r else r
        for r in expected["records"]
    ]
    assert len(actual["records"]) == len(expected["records"])
    for got, want in zip(actual["records"], expected["records"]):
        assert got == want, f"{sample.parent.name} {got['location']} differs from golden"
    assert actual == expected


def test_every_source_has_a_sample(registry: Registry) -> None:
    sources_with_samples = {p.parent.name for p in sample_files()}
    assert set(registry.sources()) <= sources_with_samples
