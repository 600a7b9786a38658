"""The mapping engine: local source records to FHIR R4 resources, declared as data.

Each source system is a folder of YAML: one mapping file per record type (its inputs, then
templates shaped like the FHIR they produce), code tables, optional partials. Mapping is pure:
no I/O beyond reading mapping files, no clock unless `recorded` is left out.

    registry = load_registry()                      # built-in sources
    registry = load_registry([BUILTIN_SOURCES, extra_folder])
    for location, raw in registry.read_records("school", stream, "application/xml"):
        mapped = registry.map_record("school", raw, location)   # or MappingError
"""
from __future__ import annotations

from mappings.errors import (
    HostileInputError,
    MappingDefinitionError,
    MappingError,
    MappingsError,
    Problem,
    ReaderError,
    UnknownSource,
)
from mappings.ids import resource_id, source_uri
from mappings.readers import read_records
from mappings.registry import (
    BUILTIN_SOURCES,
    MappedRecord,
    Mapping,
    Registry,
    SourceFormat,
    load_registry,
)
from mappings.tables import CodeTable, TableUsage

__all__ = [
    "BUILTIN_SOURCES",
    "CodeTable",
    "HostileInputError",
    "MappedRecord",
    "Mapping",
    "MappingDefinitionError",
    "MappingError",
    "MappingsError",
    "Problem",
    "ReaderError",
    "Registry",
    "SourceFormat",
    "TableUsage",
    "UnknownSource",
    "load_registry",
    "read_records",
    "resource_id",
    "source_uri",
]
