"""The local authority's data feed into the child index: FHIR Patients in, per-record answers out.

`POST /national/contactpoint/$feed` takes either a Bundle of Patients (with RelatedPersons for
their parents and carers, linked by `RelatedPerson.patient`) or a Parameters resource whose
`patient` parameters name Patients the gateway holds. Each Patient becomes one feed record: an
update when it carries a child index id, otherwise a create (the index matches on NHS number,
then UPN). The answer is a `batch-response` Bundle with one entry per Patient, in order: `201`
created, `200` updated or unchanged (with the index id as the location), or the record's own
refusal as a 4xx with an OperationOutcome. A Patient the gateway cannot turn into a record (no
name, birth date or gender) is refused here and never sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import orjson

from connectors.contactpoint import Carer, FeedAcknowledgement, FeedRecord
from connectors.contactpoint.models import MAX_FEED_RECORDS
from gateway.errors import BadRequest
from gateway.fhir.service import FhirService
from vocab import systems

FAULT_SYSTEM = f"{systems.BASE}/CodeSystem/national-fault"
GENDERS = ("male", "female", "other", "unknown")
# A refused record: the index's fault code -> (HTTP status, OperationOutcome issue code).
RECORD_STATUS: dict[str, tuple[int, str]] = {
    "NotFound": (404, "not-found"),
    "RecordArchived": (410, "deleted"),
    "RecordShielded": (403, "suppressed"),
    "NotAuthorised": (403, "forbidden"),
    "ConsentRequired": (403, "forbidden"),
    "ValidationError": (400, "invalid"),
}


@dataclass(frozen=True)
class Refused:
    """A Patient that could not become a feed record, and why."""

    label: str
    text: str


@dataclass
class FeedBatch:
    """The feed: one slot per Patient, in order, each a record to send or a local refusal."""

    slots: list[FeedRecord | Refused] = field(default_factory=list)

    @property
    def records(self) -> list[FeedRecord]:
        """Return the records to send."""
        return [s for s in self.slots if isinstance(s, FeedRecord)]


def _identifier(patient: dict[str, Any], system: str) -> str | None:
    for identifier in patient.get("identifier") or ():
        if identifier.get("system") == system and isinstance(identifier.get("value"), str):
            value = str(identifier["value"]).strip()
            if value:
                return value
    return None


def _name(patient: dict[str, Any]) -> tuple[tuple[str, ...], str] | None:
    names = patient.get("name") or []
    official = [n for n in names if n.get("use") == "official"] or names
    for name in official:
        given = tuple(g.strip()[:200] for g in name.get("given") or () if str(g).strip())
        family = str(name.get("family") or "").strip()
        if given and family:
            return given[:3], family[:200]
    return None


def carer_of(person: dict[str, Any]) -> Carer | None:
    """Return a RelatedPerson as a feed carer (None without a usable name)."""
    names = person.get("name") or []
    name = names[0] if names else {}
    given = next((str(g).strip() for g in name.get("given") or () if str(g).strip()), "")
    family = str(name.get("family") or "").strip()
    if not given or not family:
        return None
    relationship = "carer"
    responsibility = False
    for concept in person.get("relationship") or ():
        codes = {(c.get("system"), c.get("code")) for c in concept.get("coding") or ()}
        if (systems.PARENTAL_RESPONSIBILITY, "PR") in codes:
            responsibility = True
        elif concept.get("text"):
            relationship = str(concept["text"]).strip()[:200] or relationship
        elif concept.get("coding"):
            coding = concept["coding"][0]
            relationship = str(coding.get("display") or coding.get("code") or relationship)[:200]
    phone = next(
        (
            str(t.get("value")).strip()[:200]
            for t in person.get("telecom") or ()
            if t.get("system") == "phone" and t.get("value")
        ),
        None,
    )
    return Carer(
        given=given[:200],
        family=family[:200],
        relationship=relationship,
        parental_responsibility=responsibility,
        phone=phone,
    )


def feed_record_of(
    patient: dict[str, Any], label: str, carers: tuple[Carer, ...] = ()
) -> FeedRecord | Refused:
    """Return a Patient as a feed record, or why it cannot be one."""
    name = _name(patient)
    if name is None:
        return Refused(label, "the Patient needs a name with a given and a family part")
    gender = patient.get("gender")
    if gender not in GENDERS:
        return Refused(label, "the Patient needs a gender")
    try:
        birth = date.fromisoformat(str(patient.get("birthDate") or ""))
    except ValueError:
        return Refused(label, "the Patient needs a full date of birth")
    index_id = _identifier(patient, systems.CHILD_INDEX_ID)
    if index_id is not None and not (
        len(index_id) == 10 and index_id.startswith("CP") and index_id[2:].isdigit()
    ):
        return Refused(label, "a child index id is CP followed by eight digits")
    addresses = [a for a in patient.get("address") or () if a.get("use") != "old"]
    address = addresses[0] if addresses else {}
    lines = [str(x).strip()[:200] for x in address.get("line") or () if str(x).strip()]
    if address.get("city"):
        lines.append(str(address["city"]).strip()[:200])
    return FeedRecord(
        record_id=label[:200],
        action="update" if index_id else "create",
        given=name[0],
        family=name[1],
        birth_date=birth,
        gender=str(gender),
        index_id=index_id,
        nhs_number=_identifier(patient, systems.NHS_NUMBER),
        upn=_identifier(patient, systems.UPN),
        address_lines=tuple(lines[:5]),
        postcode=(str(address.get("postalCode")).strip()[:200] or None)
        if address.get("postalCode") and lines
        else None,
        carers=carers[:10],
    )


def _check_size(count: int) -> None:
    if not 1 <= count <= MAX_FEED_RECORDS:
        raise BadRequest(f"$feed takes 1 to {MAX_FEED_RECORDS} Patients")


def from_bundle(bundle: dict[str, Any]) -> FeedBatch:
    """Collect the Patients of a Bundle (their RelatedPersons ride along as carers)."""
    patients: list[tuple[str, dict[str, Any], tuple[str, ...]]] = []
    carers: dict[str, list[Carer]] = {}
    for index, entry in enumerate(bundle.get("entry") or ()):
        resource = entry.get("resource") or {}
        kind = resource.get("resourceType")
        if kind == "Patient":
            keys = tuple(
                k
                for k in (
                    entry.get("fullUrl"),
                    f"Patient/{resource['id']}" if resource.get("id") else None,
                )
                if k
            )
            patients.append(
                (
                    str(resource.get("id") or entry.get("fullUrl") or f"entry-{index}"),
                    resource,
                    keys,
                )
            )
        elif kind == "RelatedPerson":
            ref = str((resource.get("patient") or {}).get("reference") or "")
            carer = carer_of(resource)
            if carer is not None:
                carers.setdefault(ref, []).append(carer)
        else:
            raise BadRequest(
                f"Bundle.entry[{index}] is a {kind}; $feed takes Patient and "
                "RelatedPerson resources"
            )
    _check_size(len(patients))
    batch = FeedBatch()
    for label, patient, keys in patients:
        found = tuple(c for k in keys for c in carers.get(k, ()))
        batch.slots.append(feed_record_of(patient, label, found))
    return batch


def from_parameters(parameters: dict[str, Any], fhir: FhirService) -> FeedBatch:
    """Collect the stored Patients named by `patient` parameters (with their RelatedPersons)."""
    refs: list[str] = []
    for param in parameters.get("parameter") or ():
        if param.get("name") != "patient":
            raise BadRequest(f"unknown $feed parameter '{param.get('name')}'; use patient")
        ref = (param.get("valueReference") or {}).get("reference", "")
        if not isinstance(ref, str) or not ref.startswith("Patient/") or ref.count("/") != 1:
            raise BadRequest("each patient parameter needs valueReference Patient/<id>")
        refs.append(ref)
    _check_size(len(refs))
    batch = FeedBatch()
    for ref in dict.fromkeys(refs):
        res_id = ref.split("/", 1)[1]
        patient = orjson.loads(fhir.read("Patient", res_id).content or "{}")
        related = fhir.search("RelatedPerson", [("patient", ref), ("_count", "10")])
        carers = tuple(
            c
            for c in (carer_of(orjson.loads(s.content)) for s in related.matches if s.content)
            if c is not None
        )
        batch.slots.append(feed_record_of(patient, res_id, carers))
    return batch


def _outcome(severity: str, code: str, text: str, fault: str | None = None) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": text[:500]}
    if fault:
        issue["details"] = {"coding": [{"system": FAULT_SYSTEM, "code": fault}]}
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def feed_response(
    batch: FeedBatch, ack: FeedAcknowledgement | None, base: str, now: str
) -> dict[str, Any]:
    """Return the feed's answer as a batch-response Bundle, one entry per Patient in order."""
    answers = {a.record_id: a for a in ack.records} if ack is not None else {}
    entries: list[dict[str, Any]] = []
    for slot in batch.slots:
        if isinstance(slot, Refused):
            entries.append(
                {
                    "response": {
                        "status": "400 Bad Request",
                        "outcome": _outcome(
                            "error", "invalid", f"Patient {slot.label}: {slot.text}; not sent"
                        ),
                    }
                }
            )
            continue
        answer = answers.get(slot.record_id[:200])
        if answer is None:
            entries.append(
                {
                    "response": {
                        "status": "500 Internal Server Error",
                        "outcome": _outcome(
                            "error", "exception", "the index did not acknowledge this record"
                        ),
                    }
                }
            )
            continue
        if answer.accepted:
            status = "201 Created" if answer.status == "created" else "200 OK"
            response: dict[str, Any] = {
                "status": status,
                "location": f"{base}/Patient/{answer.index_id}",
                "outcome": _outcome(
                    "information", "informational", f"Patient {slot.record_id}: {answer.status}"
                ),
            }
        else:
            code = answer.code or "ValidationError"
            http, issue = RECORD_STATUS.get(code, (400, "invalid"))
            response = {
                "status": str(http),
                "outcome": _outcome(
                    "error", issue, f"Patient {slot.record_id}: {answer.text or code}", code
                ),
            }
        entries.append({"response": response})
    return {"resourceType": "Bundle", "type": "batch-response", "timestamp": now, "entry": entries}


__all__ = [
    "RECORD_STATUS",
    "FeedBatch",
    "Refused",
    "carer_of",
    "feed_record_of",
    "feed_response",
    "from_bundle",
    "from_parameters",
]
