"""The CapabilityStatements of the national FHIR bases (/national/pds, /national/cpis)."""
from __future__ import annotations

from typing import Any

from gateway.fhir.capability import SOFTWARE_VERSION
from gateway.national.resources import UKCORE_PATIENT_PROFILE
from vocab import systems

DATE = "2026-11-26"
SMART = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                     "code": "SMART-on-FHIR"}]}


def _statement(base: str, description: str, security: str, resources: list[dict[str, Any]],
               operations: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    rest: dict[str, Any] = {"mode": "server", "documentation": description,
                            "security": {"service": [SMART], "description": security},
                            "resource": resources}
    if operations:
        rest["operation"] = operations
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": DATE,
        "publisher": "Wraparound",
        "kind": "instance",
        "software": {"name": "Wraparound", "version": SOFTWARE_VERSION},
        "implementation": {"description": description, "url": base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [rest],
    }


def _param(name: str, type_: str, doc: str) -> dict[str, str]:
    return {"name": name, "type": type_, "documentation": doc}


def pds_capability(base: str) -> dict[str, Any]:
    """Return the CapabilityStatement of the PDS façade."""
    patient = {
        "type": "Patient",
        "profile": UKCORE_PATIENT_PROFILE,
        "documentation": "The id is the NHS number (Modulus 11 checked). A superseded number "
                         "answers the current record, whose link names the number asked for. "
                         "A restricted record carries meta.security R and no address, "
                         "telecom or GP.",
        "interaction": [{"code": "read"}, {"code": "search-type",
                                            "documentation": "One match or none; several "
                                                             "matches answer 422"}],
        "searchParam": [
            _param("family", "string", "Family name (required)"),
            _param("birthdate", "date", "Date of birth, a full date (required)"),
            _param("gender", "token", "male, female, other or unknown (required)"),
            _param("given", "string", "Given name (prefix match)"),
            _param("address-postalcode", "string", "Postcode (restricted records never match)"),
        ],
        "operation": [{"name": "verify",
                       "definition": f"{systems.BASE}/OperationDefinition/Patient-verify",
                       "documentation": "POST Parameters nhs-number, birthdate and optionally "
                                        "name; answers verified and the PDS response code"}],
    }
    return _statement(base, "Wraparound façade for the health-spine-like PDS "
                            "(Spine Mini Services over SOAP)",
                      "Bearer token; read and $verify need system/Patient.r, search needs "
                      "system/Patient.s; the agency's policy must allow the pds service",
                      [patient])


def cpis_capability(base: str) -> dict[str, Any]:
    """Return the CapabilityStatement of the CP-IS façade."""
    nhs = (f"The child's NHS number, as {systems.NHS_NUMBER}|<number> "
           "(patient.identifier and patient:identifier are accepted too)")
    flag = {
        "type": "Flag",
        "documentation": "The CP-IS query: one Flag per plan (CPP, LAC, UCPP), including its "
                         "CarePlan, CareTeam and the responsible local authority as an "
                         "Organization. The access type comes from the X-Access-Type header or "
                         "the access-type parameter (scheduled: a silent read; unscheduled: "
                         "recorded and notified to the local authority).",
        "interaction": [{"code": "search-type"}],
        "searchParam": [_param("nhs-number", "token", nhs),
                        _param("access-type", "token", "scheduled (default) or unscheduled")],
    }
    audit = {
        "type": "AuditEvent",
        "documentation": "The last 25 unscheduled-care accesses to the child's CP-IS record",
        "interaction": [{"code": "search-type"}],
        "searchParam": [_param("patient", "reference", nhs)],
    }
    upload = [{"name": "upload", "definition": f"{systems.BASE}/OperationDefinition/cpis-upload",
               "documentation": "POST Parameters with patient references (their stored plans "
                                "are sent) or a Bundle of Flag/CarePlan; answers the file and "
                                "record acknowledgement codes as an OperationOutcome"}]
    return _statement(base, "Wraparound façade for the health-spine-like CP-IS service",
                      "Bearer token; the query needs system/Flag.s, CarePlan.s, CareTeam.s and "
                      "Organization.s; the access history system/Flag.s and Patient.r; $upload "
                      "system/Patient.r, CarePlan.s and Flag.s; the agency's policy must allow "
                      "cpis (cpis-upload for $upload)",
                      [flag, audit], upload)


__all__ = ["cpis_capability", "pds_capability"]
