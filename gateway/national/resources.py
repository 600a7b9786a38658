"""FHIR shapes of national answers: pure functions from connector dataclasses to FHIR JSON.

- PDS: a UK Core Patient (NHS number with its verification status, name, gender, birth date,
  death, address, telecom, GP as `generalPractitioner` with its ODS code, `meta.security` R for
  a restricted record and U otherwise, `link` to a superseded NHS number).
- CP-IS: the England patient-flag shape, Flag -> CarePlan -> CareTeam, with the responsible local
  authority as an Organization (an unborn child plan names the mother, whose NHS number it is
  recorded under, and the expected delivery date); an access to a child's CP-IS record as an
  AuditEvent; an access-to-service notification as a Communication to the local authority; an
  inactive-NHS-number notification as one administrative Flag per NHS number (on the child) and
  a Communication to the local authority about them.

Nothing here does I/O; ids are derived deterministically from what the national service said,
so the same answer always has the same shape.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Any

from connectors.cpis import (
    AccessNotification,
    CpisAccess,
    CpisPlan,
    InactiveNhsNumber,
    InactiveNhsNumberNotification,
    LocalAuthority,
)
from connectors.pds import Address, PdsPatient, Telecom
from vocab import systems

UKCORE_PATIENT_PROFILE = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"
ENGLAND_FLAG_PROFILE = "https://fhir.nhs.uk/England/StructureDefinition/England-Flag-PatientFlag"
ENGLAND_CAREPLAN_PROFILE = "https://fhir.nhs.uk/England/StructureDefinition/England-CarePlan-Flag"
ENGLAND_CARETEAM_PROFILE = "https://fhir.nhs.uk/England/StructureDefinition/England-CareTeam-Flag"
ENGLAND_FLAG_CATEGORY = "https://fhir.nhs.uk/England/CodeSystem/England-FlagCategoryPatient"
CPIS_FLAG_CATEGORY = "child-protection-information-system-flag"
# HL7v3 vocabularies of the spine, as urn:oid: systems.
PDS_RESPONSE_CODE_SYSTEM = "urn:oid:2.16.840.1.113883.2.1.3.2.4.17.285"
ITK_ERROR_CODE_SYSTEM = "urn:oid:2.16.840.1.113883.2.1.3.2.4.17.268"
CPIS_FILE_CODE_SYSTEM = "urn:oid:2.16.840.1.113883.2.1.3.2.4.17.474"
CPIS_RECORD_CODE_SYSTEM = "urn:oid:2.16.840.1.113883.2.1.3.2.4.17.473"
CPIS_MESSAGE_TYPE_SYSTEM = "urn:oid:2.16.840.1.113883.2.1.3.2.4.17.470"
AUDIT_ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
FLAG_CATEGORY = "http://terminology.hl7.org/CodeSystem/flag-category"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
URI_IDENTIFIER = "urn:ietf:rfc:3986"

# Plan type -> (SNOMED CT concept from England-ChildProtectionPlan, display).
PLAN_TYPES: dict[str, tuple[str, str]] = {
    "CPP": ("342191000000101", "Subject of child protection plan"),
    "LAC": ("764841000000100", "Looked after child"),
    "UCPP": ("818901000000100", "Unborn child subject to child protection plan"),
}
PLAN_TYPE_FROM_SNOMED = {code: plan for plan, (code, _) in PLAN_TYPES.items()}
# An unborn child plan's expected delivery date: a CarePlan activity with this code whose
# scheduledPeriod.start is the date (read back the same way for uploads).
EXPECTED_DELIVERY = {"system": systems.LOINC, "code": "11778-8",
                     "display": "Delivery date Estimated"}
_PLAN_PHRASES = {"CPP": "on a child protection plan", "LAC": "who is looked after",
                 "UCPP": "subject to an unborn child protection plan"}

VERIFIED = {"system": systems.UKCORE_NHS_NUMBER_VERIFICATION_STATUS, "code": "01",
            "display": "Number present and verified"}
_SECURITY = {
    True: {"system": systems.CONFIDENTIALITY, "code": "R", "display": "restricted"},
    False: {"system": systems.CONFIDENTIALITY, "code": "U", "display": "unrestricted"},
}
_NAME_USE = {"L": "official", "U": "usual", "A": "anonymous", "P": "nickname"}
_ADDRESS_USE = {"H": "home", "HP": "home", "HV": "temp", "TMP": "temp", "WP": "work",
                "PST": "billing"}
_TELECOM_USE = {"H": "home", "HP": "home", "HV": "temp", "TMP": "temp", "WP": "work",
                "MC": "mobile", "PG": "mobile"}
_TELECOM_SYSTEM = {"tel": "phone", "fax": "fax", "mailto": "email", "http": "url",
                   "https": "url"}

# Namespace of the deterministic ids of national resources (uuid5).
ID_NAMESPACE = uuid.UUID("6f1d4c3e-8a52-5b9e-a1f7-2d0c9e4b7a61")

PDS_RESPONSE_DISPLAY = {
    "SMSP-0000": "Success",
    "SMSP-0001": "Input message validation error",
    "SMSP-0002": "Response message validation error",
    "SMSP-0003": "Success; the data came from the provider's local store",
    "SMSP-9999": "Generic provider failure",
    "DEMOG-0001": "No match",
    "DEMOG-0007": "Multiple matches found",
    "DEMOG-0017": "Success; the NHS number has been superseded",
    "DEMOG-0022": "The NHS number of the record has been invalidated",
    "DEMOG-0040": "NHS number not verified",
    "DEMOG-0042": "NHS number is not a new style number",
    "DEMOG-9999": "Generic spine error",
}


def stable_id(*parts: str) -> str:
    """Return a deterministic resource id for the given parts."""
    return str(uuid.uuid5(ID_NAMESPACE, "|".join(parts)))


def nhs_identifier(nhs_number: str, *, verified: bool = False) -> dict[str, Any]:
    """Return the NHS number Identifier (with the UK Core verification status when verified)."""
    identifier: dict[str, Any] = {"system": systems.NHS_NUMBER, "value": nhs_number}
    if verified:
        identifier["extension"] = [{
            "url": systems.UKCORE_NHS_NUMBER_VERIFICATION_EXTENSION,
            "valueCodeableConcept": {"coding": [VERIFIED]},
        }]
    return identifier


def instant(moment: datetime) -> str:
    """Return a FHIR instant (UTC, seconds) for an aware or naive-UTC datetime."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- PDS -------------------------------------------------------------------------------------
def is_restricted(patient: PdsPatient) -> bool:
    """Return True when PDS answered a restricted (S-flag) record.

    Spine Mini Services carry no confidentiality code: a restricted record is answered without
    address, telecom and GP practice, which an unrestricted record always has.
    """
    return not patient.addresses and not patient.telecoms and patient.gp is None


def _address(address: Address) -> dict[str, Any] | None:
    out: dict[str, Any] = {}
    use = _ADDRESS_USE.get(address.use or "")
    if use:
        out["use"] = use
    lines = [line for line in address.lines if line]
    if lines:
        out["line"] = lines
    if address.postcode:
        out["postalCode"] = address.postcode
    return out if ("line" in out or "postalCode" in out) else None


def _telecom(telecom: Telecom) -> dict[str, Any] | None:
    scheme, sep, rest = telecom.value.partition(":")
    if not sep or not rest.strip():
        return None
    system = _TELECOM_SYSTEM.get(scheme.lower(), "other")
    out: dict[str, Any] = {"system": system,
                           "value": telecom.value if system == "url" else rest.strip()}
    use = _TELECOM_USE.get(telecom.use or "")
    if use:
        out["use"] = use
    return out


def patient_from_pds(patient: PdsPatient) -> dict[str, Any]:
    """Return the UK Core Patient for a PDS answer (the id is the current NHS number)."""
    restricted = is_restricted(patient)
    out: dict[str, Any] = {
        "resourceType": "Patient",
        "id": patient.nhs_number,
        "meta": {"profile": [UKCORE_PATIENT_PROFILE], "security": [_SECURITY[restricted]]},
        "identifier": [nhs_identifier(patient.nhs_number, verified=True)],
    }
    if patient.name is not None and (patient.name.family or patient.name.given):
        name: dict[str, Any] = {"use": _NAME_USE.get(patient.name.use or "", "usual")}
        if patient.name.family:
            name["family"] = patient.name.family
        if patient.name.given:
            name["given"] = list(patient.name.given)
        if patient.name.prefix:
            name["prefix"] = [patient.name.prefix]
        out["name"] = [name]
    if patient.gender:
        out["gender"] = patient.gender
    if patient.birth_date is not None:
        out["birthDate"] = patient.birth_date.isoformat()
    if patient.deceased_date is not None:
        out["deceasedDateTime"] = patient.deceased_date.isoformat()
    if not restricted:
        telecoms = [t for t in (_telecom(t) for t in patient.telecoms) if t]
        if telecoms:
            out["telecom"] = telecoms
        addresses = [a for a in (_address(a) for a in patient.addresses) if a]
        if addresses:
            out["address"] = addresses
        if patient.gp is not None and patient.gp.ods_code:
            gp: dict[str, Any] = {"type": "Organization", "identifier": {
                "system": systems.ODS_ORGANIZATION_CODE, "value": patient.gp.ods_code}}
            if patient.gp.name:
                gp["display"] = patient.gp.name
            out["generalPractitioner"] = [gp]
    if patient.superseded_nhs_number:
        out["link"] = [{"other": {"identifier": nhs_identifier(patient.superseded_nhs_number),
                                  "display": "superseded NHS number"},
                        "type": "replaces"}]
    return out


def pds_response_coding(code: str) -> dict[str, str]:
    """Return the Coding of an SMSP/DEMOG response code."""
    coding = {"system": PDS_RESPONSE_CODE_SYSTEM, "code": code}
    display = PDS_RESPONSE_DISPLAY.get(code)
    if display:
        coding["display"] = display
    return coding


def service_code_coding(code: str | None) -> dict[str, str] | None:
    """Return a Coding for a code a national service answered with, when its system is known."""
    if not code:
        return None
    if code.startswith(("SMSP-", "DEMOG-")):
        return pds_response_coding(code)
    if code.isdigit():
        return {"system": ITK_ERROR_CODE_SYSTEM, "code": code}
    if code.startswith("CPF"):
        return {"system": CPIS_FILE_CODE_SYSTEM, "code": code}
    if code.startswith("CPR"):
        return {"system": CPIS_RECORD_CODE_SYSTEM, "code": code}
    return None


# --- CP-IS -----------------------------------------------------------------------------------
def _plan_concept(plan_type: str) -> dict[str, Any]:
    snomed, display = PLAN_TYPES[plan_type]
    return {"coding": [{"system": systems.SNOMED, "code": snomed, "display": display},
                       {"system": systems.CP_PLAN_TYPE, "code": plan_type}],
            "text": display}


def _period(plan: CpisPlan) -> dict[str, str]:
    period = {"start": plan.start_date.isoformat()}
    if plan.end_date is not None:
        period["end"] = plan.end_date.isoformat()
    return period


def la_organization_id(la: LocalAuthority) -> str:
    """Return the id of the local authority's Organization."""
    return stable_id("cpis-la", la.ods_code)


def la_telecom(la: LocalAuthority) -> list[dict[str, str]]:
    """Return the local authority's office-hours (work) and emergency duty (mobile) numbers."""
    return [{"system": "phone", "value": la.office_hours_phone, "use": "work"},
            {"system": "phone", "value": la.emergency_duty_phone, "use": "mobile"}]


def organization_for(la: LocalAuthority) -> dict[str, Any]:
    """Return the responsible local authority as an Organization."""
    return {
        "resourceType": "Organization",
        "id": la_organization_id(la),
        "identifier": [{"system": systems.ODS_ORGANIZATION_CODE, "value": la.ods_code}],
        "active": True,
        "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/organization-type",
                              "code": "govt", "display": "Government"}]}],
        "name": la.name,
        "telecom": la_telecom(la),
    }


def cpis_plan_resources(nhs_number: str, plan: CpisPlan, today: date) -> list[dict[str, Any]]:
    """Return Flag, CarePlan and CareTeam for one CP-IS plan (the child by NHS number)."""
    key = (nhs_number, plan.plan_type, plan.start_date.isoformat())
    flag_id = stable_id("cpis-flag", *key)
    plan_id = stable_id("cpis-careplan", *key)
    team_id = stable_id("cpis-careteam", *key)
    ended = plan.end_date is not None and plan.end_date < today
    unborn = plan.plan_type == "UCPP"
    # An unborn child's plan is recorded under the mother's NHS number.
    subject = {"identifier": nhs_identifier(nhs_number),
               "display": "the mother (unborn child's plan)" if unborn else "the child"}
    org_ref = {"reference": f"Organization/{la_organization_id(plan.local_authority)}",
               "display": plan.local_authority.name}
    concept = _plan_concept(plan.plan_type)
    flag = {
        "resourceType": "Flag",
        "id": flag_id,
        "meta": {"profile": [ENGLAND_FLAG_PROFILE]},
        "extension": [{"url": systems.FLAG_DETAIL_EXTENSION,
                       "valueReference": {"reference": f"CarePlan/{plan_id}"}}],
        "status": "inactive" if ended else "active",
        "category": [{"coding": [{"system": ENGLAND_FLAG_CATEGORY, "code": CPIS_FLAG_CATEGORY,
                                  "display": "Child Protection Information System Flag"}]}],
        "code": {"coding": [*concept["coding"],
                            {"system": systems.FLAG_CODE, "code": plan.plan_type}],
                 "text": concept["text"]},
        "subject": subject,
        "period": _period(plan),
        "author": org_ref,
    }
    care_plan = {
        "resourceType": "CarePlan",
        "id": plan_id,
        "meta": {"profile": [ENGLAND_CAREPLAN_PROFILE]},
        "status": "completed" if ended else "active",
        "intent": "plan",
        "category": [concept],
        "title": concept["text"],
        "subject": subject,
        "period": _period(plan),
        "author": org_ref,
        "careTeam": [{"reference": f"CareTeam/{team_id}"}],
    }
    if unborn and plan.expected_delivery_date is not None:
        care_plan["description"] = ("Unborn child protection plan; expected delivery date "
                                    f"{plan.expected_delivery_date.isoformat()}")
        care_plan["activity"] = [{"detail": {
            "kind": "Appointment", "code": {"coding": [EXPECTED_DELIVERY]}, "status": "not-started",
            "description": "expected delivery",
            "scheduledPeriod": {"start": plan.expected_delivery_date.isoformat()}}}]
    care_team = {
        "resourceType": "CareTeam",
        "id": team_id,
        "meta": {"profile": [ENGLAND_CARETEAM_PROFILE]},
        "status": "inactive" if ended else "active",
        "category": [concept],
        "name": plan.local_authority.name,
        "subject": subject,
        "period": _period(plan),
        "participant": [{"role": [{"text": "responsible local authority"}],
                         "member": org_ref}],
        "managingOrganization": [org_ref],
        "telecom": la_telecom(plan.local_authority),
    }
    return [flag, care_plan, care_team]


def access_event(nhs_number: str, access: CpisAccess, *, event_id: str | None = None,
                 patient_reference: str | None = None,
                 plan_types: Sequence[str] = ()) -> dict[str, Any]:
    """Return the AuditEvent for one recorded access to a child's CP-IS record."""
    accessor = access.accessor
    when = instant(access.access_time)
    # The user id at the accessing organisation (a smartcard id, or a client id for a system).
    who: dict[str, Any] = {"identifier": {"value": accessor.user_id}, "display": accessor.name}
    person: dict[str, Any] = {"who": who, "requestor": True, "role": [{"text": accessor.role}]}
    if access.care_setting:
        person["location"] = {"display": access.care_setting}
    organisation = {"who": {"identifier": {"system": systems.ODS_ORGANIZATION_CODE,
                                           "value": accessor.organisation_ods_code},
                            "display": accessor.organisation_name},
                    "requestor": False,
                    "type": {"coding": [{"system": systems.DICOM_AUDIT_ROLE, "code": "110150",
                                         "display": "Application"}],
                             "text": "accessing organisation"}}
    what: dict[str, Any] = {"identifier": nhs_identifier(nhs_number)}
    if patient_reference:
        what["reference"] = patient_reference
    entity: dict[str, Any] = {
        "what": what,
        "type": {"system": AUDIT_ENTITY_TYPE, "code": "1", "display": "Person"},
        "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"},
    }
    if plan_types:
        entity["detail"] = [{"type": "plan-type", "valueString": " ".join(plan_types)}]
    return {
        "resourceType": "AuditEvent",
        "id": event_id or stable_id("cpis-access", nhs_number, when, accessor.user_id),
        "type": {"system": systems.DICOM_AUDIT_ROLE, "code": "110110",
                 "display": "Patient Record"},
        "action": "R",
        "recorded": when,
        "outcome": "0",
        "outcomeDesc": "unscheduled-care access to the child's CP-IS record",
        "agent": [person, organisation],
        "source": {"site": "CP-IS", "observer": {"display": "CP-IS (national service)"}},
        "entity": [entity],
    }


def notification_ids(message_id: str) -> tuple[str, str]:
    """Return the (Communication id, AuditEvent id) stored for a notification's MessageID."""
    return (stable_id("cpis-notification", message_id),
            stable_id("cpis-notification-access", message_id))


def message_identifier(message_id: str) -> dict[str, str]:
    """Return the Identifier of an inbound message's WS-Addressing MessageID."""
    text = message_id.strip()
    try:
        value = f"urn:uuid:{uuid.UUID(text.removeprefix('urn:uuid:'))}"
    except ValueError:
        value = text
    return {"system": URI_IDENTIFIER, "value": value}


def notification_resources(notification: AccessNotification,
                           patient_reference: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the AuditEvent and the Communication to the local authority for a notification."""
    comm_id, event_id = notification_ids(notification.message_id)
    event = access_event(notification.nhs_number, notification.access, event_id=event_id,
                         patient_reference=patient_reference,
                         plan_types=notification.plan_types)
    access = notification.access
    accessor = access.accessor
    subject: dict[str, Any] = (
        {"reference": patient_reference} if patient_reference
        else {"identifier": nhs_identifier(notification.nhs_number)})
    plans = " and ".join(_PLAN_PHRASES[p] for p in notification.plan_types
                         if p in _PLAN_PHRASES) or "known to CP-IS"
    where = f" in {access.care_setting}" if access.care_setting else ""
    text = (f"CP-IS access to service notification: a child {plans} was looked up in "
            f"unscheduled care{where} by {accessor.name} ({accessor.role}), "
            f"{accessor.organisation_name} ({accessor.organisation_ods_code}), at "
            f"{event['recorded']}.")
    identifiers = [message_identifier(notification.message_id)]
    if notification.local_id:
        identifiers.append({"system": systems.local_id_system("cpis", "local-id"),
                            "value": notification.local_id})
    communication: dict[str, Any] = {
        "resourceType": "Communication",
        "id": comm_id,
        "identifier": identifiers,
        "status": "completed",
        "category": [{"coding": [{"system": CPIS_MESSAGE_TYPE_SYSTEM, "code": "05",
                                  "display": "CP-IS Access to Service Notification"}]}],
        "priority": "urgent",
        "subject": subject,
        "about": [{"reference": f"AuditEvent/{event_id}"}],
        "sent": event["recorded"],
        "recipient": [{"identifier": {"system": systems.ODS_ORGANIZATION_CODE,
                                      "value": notification.local_authority_ods_code},
                       "display": "responsible local authority"}],
        "sender": {"display": "CP-IS (national service)"},
        "payload": [{"contentString": text}],
    }
    return event, communication


def inactive_notification_id(message_id: str) -> str:
    """Return the id of the Communication stored for an inactive-NHS-number notification."""
    return stable_id("cpis-inactive-notification", message_id)


def inactive_flag_id(message_id: str, nhs_number: str) -> str:
    """Return the id of the Flag stored for one NHS number of an inactive-NHS-number notification."""
    return stable_id("cpis-inactive-flag", message_id, nhs_number)


_PLAN_RECORDS = {"CPP": "child protection plan", "LAC": "looked-after child",
                 "UCPP": "unborn child protection plan"}


def _inactive_text(record: InactiveNhsNumber) -> str:
    plans = " and ".join(_PLAN_RECORDS[p] for p in record.plan_types if p in _PLAN_RECORDS)
    local = f" {record.local_id}" if record.local_id else ""
    if record.replacement_nhs_number:
        why = f"has been superseded by NHS number {record.replacement_nhs_number}"
        fix = "upload the plan again under the current NHS number"
    elif record.reason == "superseded":
        why = "has been superseded"
        fix = "trace the current NHS number and upload the plan again under it"
    else:
        why = "is no longer active in PDS"
        fix = "trace the child's NHS number and upload the plan again, or delete it"
    return (f"NHS number {record.nhs_number} on the local authority's {plans or 'CP-IS'} "
            f"record{local} {why}; CP-IS cannot show the plan under it: {fix}.")


def inactive_nhs_number_resources(notification: InactiveNhsNumberNotification,
                                  children: dict[str, str | None]) -> list[dict[str, Any]]:
    """Return a Flag per NHS number and the Communication to the local authority, last.

    `children` maps an NHS number to the reference of the local Patient holding it, if any.
    """
    when = instant(notification.notified_at)
    identifier = message_identifier(notification.message_id)
    flags: list[dict[str, Any]] = []
    for record in notification.records:
        child = children.get(record.nhs_number)
        subject: dict[str, Any] = ({"reference": child} if child
                                   else {"identifier": nhs_identifier(record.nhs_number)})
        flags.append({
            "resourceType": "Flag",
            "id": inactive_flag_id(notification.message_id, record.nhs_number),
            "identifier": [identifier],
            "status": "active",
            "category": [{"coding": [{"system": FLAG_CATEGORY, "code": "admin",
                                      "display": "Administrative"}]}],
            "code": {"coding": [{"system": CPIS_MESSAGE_TYPE_SYSTEM, "code": "06",
                                 "display": "CP-IS Inactive NHS Number Notification"}],
                     "text": _inactive_text(record)},
            "subject": subject,
            "period": {"start": when},
            "author": {"display": "CP-IS (national service)"},
        })
    count = len(flags)
    communication: dict[str, Any] = {
        "resourceType": "Communication",
        "id": inactive_notification_id(notification.message_id),
        "identifier": [identifier],
        "status": "completed",
        "category": [{"coding": [{"system": CPIS_MESSAGE_TYPE_SYSTEM, "code": "06",
                                  "display": "CP-IS Inactive NHS Number Notification"}]}],
        "priority": "urgent",
        "about": [{"reference": f"Flag/{flag['id']}"} for flag in flags],
        "sent": when,
        "recipient": [{"identifier": {"system": systems.ODS_ORGANIZATION_CODE,
                                      "value": notification.local_authority_ods_code},
                       "display": "responsible local authority"}],
        "sender": {"display": "CP-IS (national service)"},
        "payload": [{"contentString": (
            f"CP-IS inactive NHS number notification: {count} NHS "
            f"number{'s' if count != 1 else ''} on the local authority's plans "
            f"{'are' if count != 1 else 'is'} no longer current in PDS.")},
            *({"contentString": flag["code"]["text"]} for flag in flags)],
    }
    if count == 1:
        communication["subject"] = flags[0]["subject"]
    return [*flags, communication]


# --- bundles and outcomes --------------------------------------------------------------------
def searchset(base: str, self_url: str, matches: Iterable[dict[str, Any]],
              includes: Iterable[dict[str, Any]] = (), *, now: str) -> dict[str, Any]:
    """Return a searchset Bundle of resources served from a national base."""
    entries: list[dict[str, Any]] = []
    total = 0
    for resource in matches:
        total += 1
        entries.append({"fullUrl": f"{base}/{resource['resourceType']}/{resource['id']}",
                        "resource": resource, "search": {"mode": "match"}})
    for resource in includes:
        entries.append({"fullUrl": f"{base}/{resource['resourceType']}/{resource['id']}",
                        "resource": resource, "search": {"mode": "include"}})
    bundle: dict[str, Any] = {"resourceType": "Bundle", "id": str(uuid.uuid4()),
                              "meta": {"lastUpdated": now}, "type": "searchset",
                              "total": total, "link": [{"relation": "self", "url": self_url}]}
    if entries:
        bundle["entry"] = entries
    return bundle


def outcome(issues: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Return an OperationOutcome of already-built issues."""
    return {"resourceType": "OperationOutcome",
            "issue": list(issues) or [{"severity": "information", "code": "informational",
                                       "diagnostics": "ok"}]}


__all__ = [
    "EXPECTED_DELIVERY", "PLAN_TYPES", "PLAN_TYPE_FROM_SNOMED", "UKCORE_PATIENT_PROFILE",
    "access_event", "cpis_plan_resources", "inactive_flag_id", "inactive_nhs_number_resources",
    "inactive_notification_id", "instant", "is_restricted", "la_organization_id",
    "message_identifier", "nhs_identifier", "notification_ids", "notification_resources", "organization_for",
    "outcome", "patient_from_pds", "pds_response_coding", "searchset", "service_code_coding",
    "stable_id",
]
