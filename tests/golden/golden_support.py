"""Helpers shared by the golden and invariant tests: sample discovery and mapping."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mappings import MappedRecord, MappingError, Registry
from mappings.inputs import check_record

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ROOT / "fixtures" / "sources"


@dataclass
class MappedSample:
    """One sample file mapped record by record (raw record, typed inputs and outcome)."""

    source: str
    path: Path
    records: list[tuple[str, dict[str, Any], dict[str, Any], MappedRecord | MappingError]]


def sample_files() -> list[Path]:
    """Return every sample, discovered by folder: fixtures/sources/<source>/sample.*."""
    return sorted(p for p in SOURCES.glob("*/sample.*") if p.is_file())


_CACHE: dict[Path, MappedSample] = {}


def map_sample(registry: Registry, path: Path) -> MappedSample:
    """Map every record of a sample once per session."""
    if path not in _CACHE:
        source = path.parent.name
        mapping = registry.mapping(source)
        records = []
        with path.open("rb") as stream:
            for location, raw in registry.read_records(source, stream):
                typed, _, _ = check_record(mapping.inputs, raw, location)
                try:
                    outcome: MappedRecord | MappingError = registry.map_record(
                        source, raw, location)
                except MappingError as exc:
                    outcome = exc
                records.append((location, raw, typed, outcome))
        _CACHE[path] = MappedSample(source, path, records)
    return _CACHE[path]


def walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Yield (path, value) for every node of a JSON value."""
    yield path, value
    if isinstance(value, dict):
        for key, child in value.items():
            yield from walk(child, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from walk(child, f"{path}[{index}]")
