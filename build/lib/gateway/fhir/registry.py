"""The registry of resource types served at /fhir and their search parameters, loaded from data."""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

PARAM_TYPES = ("string", "token", "date", "reference", "number", "uri")
INTERACTIONS = (
    "read", "vread", "update", "delete", "history-instance", "history-type", "create",
    "search-type",
)


@dataclass(frozen=True)
class SearchParam:
    """One search parameter of one resource type."""

    name: str
    type: str
    paths: tuple[tuple[str, ...], ...]
    targets: frozenset[str] = frozenset()
    shape: str | None = None

    @property
    def expression(self) -> str:
        """Return the FHIRPath-like expression the parameter indexes (for the CapabilityStatement)."""
        return " | ".join(".".join(p) for p in self.paths)


@dataclass(frozen=True)
class ResourceType:
    """A resource type the server serves, with its search parameters by name."""

    name: str
    params: dict[str, SearchParam] = field(default_factory=dict)


class Registry:
    """The resource types served, keyed by name."""

    def __init__(self, types: dict[str, ResourceType]) -> None:
        self._types = dict(types)

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def get(self, name: str) -> ResourceType | None:
        """Return the registration for a type, or None."""
        return self._types.get(name)

    def names(self) -> list[str]:
        """Return the registered type names, sorted."""
        return sorted(self._types)

    def types(self) -> list[ResourceType]:
        """Return every registration, sorted by name."""
        return [self._types[n] for n in self.names()]

    def register(self, rtype: ResourceType) -> None:
        """Add or replace one resource type."""
        self._types[rtype.name] = rtype


def _parse(data: dict[str, Any]) -> dict[str, ResourceType]:
    out: dict[str, ResourceType] = {}
    for type_name, params in data.items():
        parsed: dict[str, SearchParam] = {}
        for pname, spec in (params or {}).items():
            ptype = spec["type"]
            if ptype not in PARAM_TYPES:
                raise ValueError(f"{type_name}.{pname}: unknown search parameter type {ptype}")
            parsed[pname] = SearchParam(
                name=pname,
                type=ptype,
                paths=tuple(tuple(p.split(".")) for p in spec["paths"]),
                targets=frozenset(spec.get("targets", ())),
                shape=spec.get("shape"),
            )
        out[type_name] = ResourceType(type_name, parsed)
    return out


# Parameters every type supports, over Resource.meta (the policy layer filters on them).
COMMON_PARAMS: dict[str, Any] = {
    "_tag": {"type": "token", "paths": ["meta.tag"]},
    "_security": {"type": "token", "paths": ["meta.security"]},
    "_profile": {"type": "uri", "paths": ["meta.profile"]},
    "_source": {"type": "uri", "paths": ["meta.source"]},
}


def load_registry() -> Registry:
    """Load the built-in resource type registrations."""
    text = resources.files("gateway.fhir").joinpath("resource_types.yaml").read_text("utf-8")
    data = yaml.safe_load(text)
    for params in data.values():
        for name, spec in COMMON_PARAMS.items():
            params.setdefault(name, spec)
    return Registry(_parse(data))
