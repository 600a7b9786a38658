"""The CP-IS façade service: query a child's plans, read the access history, upload the LA's plans.

The query answers the England patient-flag shape (Flag -> CarePlan -> CareTeam, the responsible
local authority as an Organization). The upload sends the child-protection, looked-after and
unborn-child plans the gateway holds (or a Bundle of Flag/CarePlan the caller sends) and answers
the service's file- and record-level acknowledgement codes as an OperationOutcome.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import orjson

from connectors.cpis import (
    FILE_CODES,
    RECORD_CODES,
    Accessor,
    CpisClient,
    LocalAuthority,
    UploadAcknowledgement,
    UploadRecord,
)
from gateway.config import Settings
from gateway.errors import BadRequest, GatewayError, Issue
from gateway.fhir.service import FhirService
from gateway.national.calls import CallIds
from gateway.national.pds import check_nhs_number
from gateway.national.resources import (
    CPIS_FILE_CODE_SYSTEM,
    CPIS_RECORD_CODE_SYSTEM,
    EXPECTED_DELIVERY,
    PLAN_TYPE_FROM_SNOMED,
    PLAN_TYPES,
    VERIFIED,
    access_event,
    cpis_plan_resources,
    organization_for,
)
from gateway.security.context import Caller
from vocab import systems

ACCESS_TYPES = ("scheduled", "unscheduled")
MAX_PATIENTS = 100
MAX_RECORDS = 1000  # the CP-IS schema's limit per file
_PLAN_SYSTEMS = (systems.CP_PLAN_TYPE, systems.FLAG_CODE)
# File codes -> (HTTP status, issue severity, issue code).
FILE_STATUS: dict[str, tuple[int, str, str]] = {
    "CPF01": (422, "error", "processing"),
    "CPF02": (200, "information", "informational"),
    "CPF03": (200, "warning", "incomplete"),
    "CPF04": (422, "error", "processing"),
    "CPF05": (503, "error", "transient"),
    "CPF06": (422, "error", "not-supported"),
}
RECORD_ISSUE_CODES = {"CPR01": "not-found", "CPR02": "security", "CPR03": "invalid",
                      "CPR04": "invalid", "CPR05": "processing", "CPR06": "informational",
                      "CPR07": "processing"}


def local_authority(settings: Settings) -> LocalAuthority:
    """Return the local authority the gateway serves, as CP-IS knows it."""
    return LocalAuthority(ods_code=settings.la_ods_code, name=settings.la_name,
                          office_hours_phone=settings.la_office_phone,
                          emergency_duty_phone=settings.la_emergency_phone)


def accessor_for(caller: Caller, settings: Settings) -> Accessor:
    """Return who is looking, as CP-IS records it: the user (or client) and the organisation."""
    user = (caller.user or caller.client_id)[:200]
    return Accessor(user_id=user, name=user, role=f"{caller.agency} practitioner"[:200],
                    organisation_ods_code=settings.la_ods_code,
                    organisation_name=settings.la_name[:200])


def nhs_number_param(pairs: Sequence[tuple[str, str]], names: Sequence[str],
                     allowed: Sequence[str] = ()) -> str:
    """Return the one NHS number named by the parameters, or raise 400."""
    found: list[str] = []
    for name, value in pairs:
        if name in names:
            found.append(value.strip())
        elif name not in allowed and name != "_format":
            raise BadRequest(f"unknown search parameter '{name}'; use one of "
                             + ", ".join((*names, *allowed)))
    if len(found) != 1:
        raise BadRequest("give the child's NHS number once: " + " or ".join(
            f"{n}={systems.NHS_NUMBER}|<NHS number>" for n in names))
    system, sep, number = found[0].rpartition("|")
    if sep and system != systems.NHS_NUMBER:
        raise BadRequest(f"the identifier system must be {systems.NHS_NUMBER}")
    return check_nhs_number(number)


def access_type_of(header: str | None, param: str | None) -> str:
    """Return the access type (header first, then parameter; default scheduled) or raise 400."""
    value = (header or param or "scheduled").strip().lower()
    if value not in ACCESS_TYPES:
        raise BadRequest("the access type must be scheduled or unscheduled")
    return value


class FileSequence:
    """Upload file sequence numbers: increasing within the process and across restarts.

    CP-IS refuses a file whose number is not above the last one it accepted from the local
    authority; milliseconds since the epoch keep that true across restarts.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        """Return the next number."""
        with self._lock:
            self._last = max(self._last + 1, int(self._clock() * 1000))
            return self._last


@dataclass(frozen=True)
class Candidate:
    """A Flag or CarePlan that may become an upload record, and how to name it in outcomes."""

    label: str
    resource: dict[str, Any]
    full_url: str | None = None


@dataclass
class UploadBatch:
    """The records to upload, where each came from, and what was left out and why."""

    records: list[UploadRecord] = field(default_factory=list)
    skipped: list[Issue] = field(default_factory=list)


def _plan_type(resource: dict[str, Any]) -> str | None:
    concepts = (resource.get("category") or []) if resource.get("resourceType") == "CarePlan" \
        else [resource.get("code") or {}]
    for concept in concepts:
        for coding in (concept or {}).get("coding") or ():
            system, code = coding.get("system"), coding.get("code")
            if system in _PLAN_SYSTEMS and code in PLAN_TYPES:
                return str(code)
            if system == systems.SNOMED and code in PLAN_TYPE_FROM_SNOMED:
                return PLAN_TYPE_FROM_SNOMED[code]
    return None


def expected_delivery(resource: dict[str, Any]) -> date | None:
    """Return the expected delivery date of an unborn child plan (CarePlan), if it has one.

    It is the `scheduledPeriod.start` of the activity coded "Delivery date Estimated", the shape
    the CP-IS facade answers with.
    """
    if resource.get("resourceType") != "CarePlan":
        return None
    for activity in resource.get("activity") or ():
        detail = activity.get("detail") or {}
        codings = (detail.get("code") or {}).get("coding") or ()
        if any(c.get("system") == EXPECTED_DELIVERY["system"]
               and c.get("code") == EXPECTED_DELIVERY["code"] for c in codings):
            return _day((detail.get("scheduledPeriod") or {}).get("start"))
    return None


def _day(value: object) -> date | None:
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def _nhs_of(identifiers: Sequence[dict[str, Any]]) -> tuple[str, bool] | None:
    for identifier in identifiers:
        if identifier.get("system") == systems.NHS_NUMBER and identifier.get("value"):
            verified = any(
                coding.get("system") == VERIFIED["system"] and coding.get("code") == "01"
                for ext in identifier.get("extension") or ()
                if ext.get("url") == systems.UKCORE_NHS_NUMBER_VERIFICATION_EXTENSION
                for coding in (ext.get("valueCodeableConcept") or {}).get("coding") or ())
            return str(identifier["value"]), verified
    return None


class UploadCollector:
    """Turn stored or supplied Flag/CarePlan resources into CP-IS upload records.

    Reads go through the FHIR service as the caller, so only what the caller may see is sent.
    """

    def __init__(self, fhir: FhirService, today: Callable[[], date]) -> None:
        self.fhir = fhir
        self.today = today

    def from_parameters(self, parameters: dict[str, Any]) -> UploadBatch:
        """Collect the stored plans of the Patients named by `patient` parameters."""
        refs: list[str] = []
        for param in parameters.get("parameter") or ():
            if param.get("name") != "patient":
                raise BadRequest(f"unknown $upload parameter '{param.get('name')}'")
            ref = (param.get("valueReference") or {}).get("reference", "")
            if not isinstance(ref, str) or not ref.startswith("Patient/") or ref.count("/") != 1:
                raise BadRequest("each patient parameter needs valueReference Patient/<id>")
            refs.append(ref)
        if not refs or len(refs) > MAX_PATIENTS:
            raise BadRequest(f"$upload takes 1 to {MAX_PATIENTS} patient parameters")
        batch = UploadBatch()
        for ref in dict.fromkeys(refs):
            patient = orjson.loads(self.fhir.read("Patient", ref.split("/", 1)[1]).content or "{}")
            number = _nhs_of(patient.get("identifier") or ())
            if number is None:
                batch.skipped.append(Issue("warning", "incomplete",
                                           f"{ref} has no NHS number; its plans were not sent"))
                continue
            plans = self._stored(ref, "CarePlan", "category",
                                 [f"{systems.CP_PLAN_TYPE}|{t}" for t in PLAN_TYPES])
            flags = self._stored(ref, "Flag", "code",
                                 [f"{systems.FLAG_CODE}|{t}" for t in PLAN_TYPES])
            self._add(batch, [*plans, *flags], {ref: number})
        return batch

    def from_bundle(self, bundle: dict[str, Any]) -> UploadBatch:
        """Collect the Flag/CarePlan resources of a Bundle (Patients may ride along)."""
        resources: list[Candidate] = []
        patients: dict[str, tuple[str, bool]] = {}
        for index, entry in enumerate(bundle.get("entry") or ()):
            resource = entry.get("resource") or {}
            rtype = resource.get("resourceType")
            where = f"Bundle.entry[{index}]"
            if rtype == "Patient":
                number = _nhs_of(resource.get("identifier") or ())
                if number is not None:
                    for key in (entry.get("fullUrl"), f"Patient/{resource.get('id')}"):
                        if key:
                            patients[key] = number
            elif rtype in ("Flag", "CarePlan"):
                self.fhir.check_valid(resource, rtype, location=where)
                label = f"{rtype}/{resource['id']}" if resource.get("id") else where
                resources.append(Candidate(label, resource, entry.get("fullUrl")))
            else:
                raise BadRequest(f"{where}: $upload takes Flag, CarePlan and Patient resources")
        batch = UploadBatch()
        self._add(batch, resources, patients)
        return batch

    def _stored(self, patient_ref: str, rtype: str, param: str,
                codes: list[str]) -> list[Candidate]:
        result = self.fhir.search(rtype, [("patient", patient_ref), (param, ",".join(codes)),
                                          ("_count", str(MAX_RECORDS))])
        return [Candidate(f"{s.res_type}/{s.res_id}", orjson.loads(s.content))
                for s in result.matches if s.content]

    def _subject(self, resource: dict[str, Any],
                 patients: dict[str, tuple[str, bool]]) -> tuple[str, bool] | None:
        subject = resource.get("subject") or {}
        if subject.get("identifier"):
            return _nhs_of([subject["identifier"]])
        ref = subject.get("reference")
        if not isinstance(ref, str):
            return None
        if ref in patients:
            return patients[ref]
        if ref.startswith("Patient/") and ref.count("/") == 1:
            try:
                stored = self.fhir.read("Patient", ref.split("/", 1)[1])
            except GatewayError:
                return None
            found = _nhs_of(orjson.loads(stored.content or "{}").get("identifier") or ())
            if found is not None:
                patients[ref] = found
            return found
        return None

    def _add(self, batch: UploadBatch, candidates: Sequence[Candidate],
             patients: dict[str, tuple[str, bool]]) -> None:
        plan_refs = {ref for c in candidates if c.resource.get("resourceType") == "CarePlan"
                     for ref in (c.label, c.full_url) if ref}
        for candidate in candidates:
            label, resource = candidate.label, candidate.resource
            detail = next((ext.get("valueReference", {}).get("reference")
                           for ext in resource.get("extension") or ()
                           if ext.get("url") == systems.FLAG_DETAIL_EXTENSION), None)
            if resource.get("resourceType") == "Flag" and detail in plan_refs:
                continue  # the CarePlan it points at is sent instead
            plan_type = _plan_type(resource)
            if plan_type is None:
                batch.skipped.append(Issue("warning", "not-supported", f"{label} is not a child "
                                           "protection, looked-after or unborn-child plan"))
                continue
            period = resource.get("period") or {}
            start = _day(period.get("start"))
            if start is None:
                batch.skipped.append(Issue("warning", "required",
                                           f"{label} has no full start date; not sent"))
                continue
            number = self._subject(resource, patients)
            if number is None:
                batch.skipped.append(Issue("warning", "incomplete", f"{label}: the child's NHS "
                                           "number could not be found; not sent"))
                continue
            deleted = resource.get("status") == "entered-in-error"
            batch.records.append(UploadRecord(
                local_id=label[:200], nhs_number=number[0], nhs_number_verified=number[1],
                plan_type=plan_type, start_date=start, end_date=_day(period.get("end")),
                delete_date=self.today() if deleted else None,
                expected_delivery_date=expected_delivery(resource) if plan_type == "UCPP"
                else None))
        if len(batch.records) > MAX_RECORDS:
            raise BadRequest(f"one upload may carry at most {MAX_RECORDS} records")


def acknowledgement_outcome(ack: UploadAcknowledgement,
                            skipped: Sequence[Issue]) -> tuple[int, dict[str, Any]]:
    """Return (HTTP status, OperationOutcome) for an upload acknowledgement."""
    status, severity, code = FILE_STATUS.get(ack.file_code, (502, "error", "exception"))
    issues: list[dict[str, Any]] = [{
        "severity": severity, "code": code,
        "details": {"coding": [{"system": CPIS_FILE_CODE_SYSTEM, "code": ack.file_code,
                                "display": FILE_CODES.get(ack.file_code, ack.file_code)}]},
        "diagnostics": (f"CP-IS file {ack.file_sequence_number}: {ack.transmission_quantity} "
                        f"records processed, "
                        f"{sum(r.accepted for r in ack.records)} accepted"),
    }]
    for record in ack.records:
        issues.append({
            "severity": "information" if record.accepted else "error",
            "code": RECORD_ISSUE_CODES.get(record.code, "processing"),
            "details": {"coding": [{"system": CPIS_RECORD_CODE_SYSTEM, "code": record.code,
                                    "display": RECORD_CODES.get(record.code, record.code)}]},
            "diagnostics": f"{record.local_id}: {record.detail or RECORD_CODES.get(record.code)}",
        })
    issues.extend(i.to_fhir() for i in skipped)
    return status, {"resourceType": "OperationOutcome", "issue": issues}


class CpisFacade:
    """Query, access history and upload through the CP-IS client."""

    def __init__(self, client: Callable[[], CpisClient], settings: Settings, *,
                 today: Callable[[], date] | None = None,
                 sequence: FileSequence | None = None) -> None:
        self._client = client
        self.settings = settings
        self.today = today or (lambda: datetime.now(UTC).date())
        self.sequence = sequence or FileSequence()

    def flags(self, nhs_number: str, *, access_type: str, accessor: Accessor,
              care_setting: str | None, call: CallIds
              ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Return (Flags, their CarePlans/CareTeams/Organizations) for a child."""
        result = self._client().query(
            nhs_number, access_type=access_type, accessor=accessor, care_setting=care_setting,
            message_id=call.message_id, correlation_id=call.correlation_id)
        flags: list[dict[str, Any]] = []
        included: list[dict[str, Any]] = []
        organizations: dict[str, dict[str, Any]] = {}
        today = self.today()
        for plan in result.plans if result.found else ():
            flag, care_plan, care_team = cpis_plan_resources(nhs_number, plan, today)
            flags.append(flag)
            included.extend((care_plan, care_team))
            org = organization_for(plan.local_authority)
            organizations.setdefault(org["id"], org)
        return flags, included + list(organizations.values())

    def access_history(self, nhs_number: str, call: CallIds) -> list[dict[str, Any]]:
        """Return the recorded accesses to a child's CP-IS record (most recent first)."""
        accesses = self._client().access_history(
            nhs_number, message_id=call.message_id, correlation_id=call.correlation_id)
        return [access_event(nhs_number, access) for access in accesses]

    def upload(self, batch: UploadBatch, call: CallIds) -> tuple[int, dict[str, Any]]:
        """Upload the records; return (HTTP status, OperationOutcome of the acknowledgement)."""
        if not batch.records:
            issues = [Issue("error", "not-found", "nothing to upload: no child protection, "
                            "looked-after or unborn-child plan with an NHS number was found"),
                      *batch.skipped]
            raise GatewayError("nothing to upload", status=422, issues=issues)
        ack = self._client().upload(
            batch.records, file_sequence_number=self.sequence.next(),
            local_authority=local_authority(self.settings),
            message_id=call.message_id, correlation_id=call.correlation_id)
        return acknowledgement_outcome(ack, batch.skipped)


__all__ = ["ACCESS_TYPES", "CpisFacade", "FileSequence", "UploadBatch", "UploadCollector",
           "access_type_of", "accessor_for", "acknowledgement_outcome", "expected_delivery",
           "local_authority", "nhs_number_param"]
