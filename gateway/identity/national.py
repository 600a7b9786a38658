"""Live enrichment of the child's view and of $match from the national services.

Each national part comes back as a FHIR resource whose `meta.source` names the service
(`urn:wraparound:national:pds`, `...:cpis`). A service that fails, refuses, or is not connected
to this gateway yields an OperationOutcome instead; the view it belongs to never fails because
of it. Clients are built on first use, once, from the gateway settings (factories injectable).
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from connectors.cpis import Accessor, CpisClient, build_cpis_client
from connectors.errors import ConnectorError, NotFound, TooManyMatches
from connectors.pds import PdsClient, PdsPatient, build_pds_client
from connectors.soap import SoapSettings
from gateway.config import Settings
from vocab import systems

PDS_SOURCE = "urn:wraparound:national:pds"
CPIS_SOURCE = "urn:wraparound:national:cpis"
NOT_CONNECTED = {
    "child-index": "the national child index (involvements) is not connected to this gateway",
    "ecaf": "the national CAF store (CAF indicator) is not connected to this gateway",
}


@dataclass
class NationalPart:
    """What one national service contributed: resources, or an OperationOutcome saying why not."""

    service: str
    resources: list[dict[str, Any]] = field(default_factory=list)
    outcome: dict[str, Any] | None = None


def outcome(service: str, severity: str, code: str, text: str) -> dict[str, Any]:
    """Return an OperationOutcome about one national service (no personal data)."""
    return {"resourceType": "OperationOutcome",
            "meta": {"source": f"urn:wraparound:national:{service}"},
            "issue": [{"severity": severity, "code": code, "diagnostics": f"{service}: {text}"}]}


def failure(service: str, exc: ConnectorError) -> NationalPart:
    """Return the part for a failed call: the connector's issue code and a safe message."""
    return NationalPart(service, outcome=outcome(
        service, "error" if exc.retryable or exc.http_status >= 500 else "warning",
        exc.issue_code, f"{exc.code}" + (f" ({exc.correlation_id})" if exc.correlation_id
                                         else "")))


def _pds_patient(patient: PdsPatient) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resourceType": "Patient",
        "id": f"pds-{patient.nhs_number}",
        "meta": {"source": PDS_SOURCE},
        "identifier": [{"system": systems.NHS_NUMBER, "value": patient.nhs_number}],
    }
    if patient.name and (patient.name.family or patient.name.given):
        name: dict[str, Any] = {"use": "official"}
        if patient.name.family:
            name["family"] = patient.name.family
        if patient.name.given:
            name["given"] = list(patient.name.given)
        out["name"] = [name]
    if patient.gender:
        out["gender"] = patient.gender
    if patient.birth_date:
        out["birthDate"] = patient.birth_date.isoformat()
    if patient.deceased_date:
        out["deceasedDateTime"] = patient.deceased_date.isoformat()
    addresses = []
    for address in patient.addresses:
        entry: dict[str, Any] = {}
        if address.lines:
            entry["line"] = list(address.lines)
        if address.postcode:
            entry["postalCode"] = address.postcode
        if entry:
            addresses.append(entry)
    if addresses:
        out["address"] = addresses
    if patient.gp and patient.gp.ods_code:
        out["generalPractitioner"] = [{"identifier": {
            "system": systems.ODS_ORGANIZATION_CODE, "value": patient.gp.ods_code}}]
    return out


class NationalLookup:
    """PDS and CP-IS lookups for the identity service."""

    def __init__(self, settings: Settings, *,
                 pds_factory: Callable[[SoapSettings], PdsClient] = build_pds_client,
                 cpis_factory: Callable[[SoapSettings], CpisClient] = build_cpis_client) -> None:
        self.settings = settings
        self._factories: dict[str, tuple[Callable[[SoapSettings], Any], str]] = {
            "pds": (pds_factory, settings.pds_address),
            "cpis": (cpis_factory, settings.cpis_address),
        }
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _client(self, name: str) -> Any:
        with self._lock:
            if name not in self._clients:
                factory, address = self._factories[name]
                s = self.settings
                self._clients[name] = factory(SoapSettings(
                    address=address, connect_timeout=s.national_connect_timeout,
                    read_timeout=s.national_read_timeout,
                    operation_timeout=s.national_call_timeout,
                    username=s.national_username, password=s.national_password))
            return self._clients[name]

    def pds_by_nhs_number(self, nhs_number: str, *, correlation_id: str | None) -> NationalPart:
        """Return PDS demographics for an NHS number."""
        try:
            client: PdsClient = self._client("pds")
            found = client.get_patient_details_by_nhs_number(nhs_number,
                                                             correlation_id=correlation_id)
        except NotFound:
            return NationalPart("pds", outcome=outcome("pds", "information", "not-found",
                                                       "no PDS record for the NHS number"))
        except ConnectorError as exc:
            return failure("pds", exc)
        return NationalPart("pds", [_pds_patient(found)])

    def pds_search(self, *, birth_date: str, gender: str, family: str, given: str | None,
                   postcode: str | None, correlation_id: str | None) -> NationalPart:
        """Return the one PDS record matching demographics, if PDS finds exactly one."""
        try:
            client: PdsClient = self._client("pds")
            found = client.search(birth_date=date.fromisoformat(birth_date), gender=gender,
                                  family=family, given=given, postcode=postcode,
                                  correlation_id=correlation_id)
        except TooManyMatches:
            return NationalPart("pds", outcome=outcome("pds", "information", "multiple-matches",
                                                       "PDS found more than one person"))
        except ConnectorError as exc:
            return failure("pds", exc)
        if found is None:
            return NationalPart("pds", outcome=outcome("pds", "information", "not-found",
                                                       "PDS found nobody"))
        return NationalPart("pds", [_pds_patient(found)])

    def cpis_flags(self, nhs_number: str, subject: str, accessor: Accessor, *,
                   correlation_id: str | None) -> NationalPart:
        """Return the child's CP-IS plans as Flags (a scheduled, silent query)."""
        try:
            client: CpisClient = self._client("cpis")
            result = client.query(nhs_number, access_type="scheduled", accessor=accessor,
                                  correlation_id=correlation_id)
        except ConnectorError as exc:
            return failure("cpis", exc)
        flags = []
        for n, plan in enumerate(result.plans):
            flag: dict[str, Any] = {
                "resourceType": "Flag",
                "id": f"cpis-{nhs_number}-{n + 1}",
                "meta": {"source": CPIS_SOURCE},
                "status": "active" if plan.end_date is None else "inactive",
                "category": [{"coding": [{"system": systems.FLAG_CATEGORY, "code": "safety",
                                          "display": "Safety"}]}],
                "code": {"coding": [{"system": systems.FLAG_CODE, "code": plan.plan_type}],
                         "text": f"CP-IS: {plan.plan_type}"},
                "subject": {"reference": subject},
                "period": {"start": plan.start_date.isoformat()},
                "author": {"identifier": {"system": systems.ODS_ORGANIZATION_CODE,
                                          "value": plan.local_authority.ods_code},
                           "display": plan.local_authority.name},
            }
            if plan.end_date:
                flag["period"]["end"] = plan.end_date.isoformat()
            flags.append(flag)
        if not flags:
            return NationalPart("cpis", outcome=outcome(
                "cpis", "information", "informational", "no child protection information held"))
        return NationalPart("cpis", flags)


__all__ = [
    "CPIS_SOURCE",
    "NOT_CONNECTED",
    "PDS_SOURCE",
    "NationalLookup",
    "NationalPart",
    "failure",
    "outcome",
]
