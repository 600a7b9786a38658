"""The CapabilityStatement, generated from the registry so it cannot drift from the code."""
from __future__ import annotations

from typing import Any

from gateway.fhir.registry import INTERACTIONS, Registry

SOFTWARE_VERSION = "0.1.0"


def capability_statement(registry: Registry, base: str) -> dict[str, Any]:
    """Return the server's CapabilityStatement."""
    resources: list[dict[str, Any]] = []
    ref_params = {
        rt.name: sorted(p.name for p in rt.params.values() if p.type == "reference")
        for rt in registry.types()
    }
    for rt in registry.types():
        search_params = [
            {"name": "_id", "type": "token", "documentation": "Logical id"},
            {"name": "_lastUpdated", "type": "date", "documentation": "When last changed"},
        ] + [
            {"name": p.name, "type": p.type, "documentation": f"Indexes {p.expression}"}
            for p in sorted(rt.params.values(), key=lambda p: p.name)
        ]
        revincludes = sorted(
            f"{src}:{pname}"
            for src, pnames in ref_params.items()
            for pname in pnames
            if not (registry.get(src).params[pname].targets)  # type: ignore[union-attr]
            or rt.name in registry.get(src).params[pname].targets  # type: ignore[union-attr]
        )
        entry: dict[str, Any] = {
            "type": rt.name,
            "interaction": [{"code": code} for code in INTERACTIONS],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalRead": "not-supported",
            "conditionalUpdate": True,
            "conditionalDelete": "not-supported",
            "searchParam": search_params,
            "operation": [{"name": "validate",
                           "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"}],
        }
        if ref_params[rt.name]:
            entry["searchInclude"] = [f"{rt.name}:{p}" for p in ref_params[rt.name]]
        if revincludes:
            entry["searchRevInclude"] = revincludes
        resources.append(entry)
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-26",
        "publisher": "Wraparound",
        "kind": "instance",
        "software": {"name": "Wraparound", "version": SOFTWARE_VERSION},
        "implementation": {"description": "Wraparound children's services gateway", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "resource": resources,
            "interaction": [{"code": "transaction"}, {"code": "batch"},
                            {"code": "history-system"}],
        }],
    }
