"""Validate FHIR R4 JSON resources strictly, beyond what ``fhir.resources`` checks.

``fhir.resources`` (its R4B models, the closest it ships to R4) coerces values, ignores required
bindings and invariants and accepts empty elements. This layer walks the parsed JSON against
element tables built once per type from the model metadata (names, types, cardinality, required
elements, choice groups), reconciled with the R4 element list that ``fhirpathpy`` ships, and
reports :class:`ValidationIssue` objects:

- ``structure``: JSON types, unknown elements, arrays vs single values, choice variants, empty
  arrays, nulls, nesting depth;
- ``value``: primitive formats (id, date, dateTime, instant, time, code, uri, base64Binary, ...),
  string rules and integer ranges, XHTML that does not parse;
- ``required``: elements with a minimum cardinality of one;
- ``code-invalid``: codes outside a required value set (tables below);
- ``invariant``: ele-1 and the FHIRPath constraints below, evaluated with ``fhirpathpy``;
- ``security``: narrative XHTML with scripts, event handlers, unsafe URLs, DOCTYPE or entities;
- ``not-supported`` / ``invalid``: resource types this gateway does not serve / does not exist.

Diagnostics name the element and the rule, never the offending value.
"""

from __future__ import annotations

import datetime
import math
import re
import threading
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

__all__ = ["ValidationIssue", "known_resource_types", "validate_resource"]


@dataclass(frozen=True)
class ValidationIssue:
    """One problem found in a resource, shaped like an ``OperationOutcome.issue``."""

    severity: str
    code: str
    expression: str
    diagnostics: str


# --------------------------------------------------------------------------------------------
# Data: resource types served, required bindings, invariants
# --------------------------------------------------------------------------------------------

SUPPORTED_RESOURCE_TYPES: frozenset[str] = frozenset({
    "Patient", "RelatedPerson", "Practitioner", "PractitionerRole", "Organization", "CareTeam",
    "EpisodeOfCare", "Encounter", "Flag", "CarePlan", "Observation", "Immunization", "Condition",
    "Questionnaire", "QuestionnaireResponse", "Consent", "Communication", "DocumentReference",
    "Provenance", "AuditEvent", "Subscription", "Bundle", "OperationOutcome", "Parameters",
    "CapabilityStatement",
})

# R4 (4.0.1) value sets bound with strength "required" to the elements below. "resource-types" and
# "all-types" are filled from the R4 type list that fhirpathpy ships.
_VALUE_SETS: dict[str, tuple[str, ...]] = {
    "administrative-gender": ("male", "female", "other", "unknown"),
    "identifier-use": ("usual", "official", "temp", "secondary", "old"),
    "name-use": ("usual", "official", "temp", "nickname", "anonymous", "old", "maiden"),
    "contact-point-system": ("phone", "fax", "email", "pager", "url", "sms", "other"),
    "contact-point-use": ("home", "work", "temp", "old", "mobile"),
    "address-use": ("home", "work", "temp", "old", "billing"),
    "address-type": ("postal", "physical", "both"),
    "quantity-comparator": ("<", "<=", ">=", ">"),
    "days-of-week": ("mon", "tue", "wed", "thu", "fri", "sat", "sun"),
    "units-of-time": ("s", "min", "h", "d", "wk", "mo", "a"),
    "event-timing": ("MORN", "MORN.early", "MORN.late", "NOON", "AFT", "AFT.early", "AFT.late",
                     "EVE", "EVE.early", "EVE.late", "NIGHT", "PHS", "HS", "WAKE", "C", "CM",
                     "CD", "CV", "AC", "ACM", "ACD", "ACV", "PC", "PCM", "PCD", "PCV"),
    "narrative-status": ("generated", "extensions", "additional", "empty"),
    "contributor-type": ("author", "editor", "reviewer", "endorser"),
    "sort-direction": ("ascending", "descending"),
    "operation-parameter-use": ("in", "out"),
    "related-artifact-type": ("documentation", "justification", "citation", "predecessor",
                              "successor", "derived-from", "depends-on", "composed-of"),
    "trigger-type": ("named-event", "periodic", "data-changed", "data-added", "data-modified",
                     "data-removed", "data-accessed", "data-access-ended"),
    "link-type": ("replaced-by", "replaces", "refer", "seealso"),
    "care-team-status": ("proposed", "active", "suspended", "inactive", "entered-in-error"),
    "episode-of-care-status": ("planned", "waitlist", "active", "onhold", "finished",
                               "cancelled", "entered-in-error"),
    "encounter-status": ("planned", "arrived", "triaged", "in-progress", "onleave", "finished",
                         "cancelled", "entered-in-error", "unknown"),
    "encounter-location-status": ("planned", "active", "reserved", "completed"),
    "flag-status": ("active", "inactive", "entered-in-error"),
    "request-status": ("draft", "active", "on-hold", "revoked", "completed", "entered-in-error",
                       "unknown"),
    "care-plan-intent": ("proposal", "plan", "order", "option"),
    "care-plan-activity-kind": ("Appointment", "CommunicationRequest", "DeviceRequest",
                                "MedicationRequest", "NutritionOrder", "Task", "ServiceRequest",
                                "VisionPrescription"),
    "care-plan-activity-status": ("not-started", "scheduled", "in-progress", "on-hold",
                                  "completed", "cancelled", "stopped", "unknown",
                                  "entered-in-error"),
    "observation-status": ("registered", "preliminary", "final", "amended", "corrected",
                           "cancelled", "entered-in-error", "unknown"),
    "immunization-status": ("completed", "entered-in-error", "not-done"),
    "publication-status": ("draft", "active", "retired", "unknown"),
    "item-type": ("group", "display", "boolean", "decimal", "integer", "date", "dateTime",
                  "time", "string", "text", "url", "choice", "open-choice", "attachment",
                  "reference", "quantity"),
    "questionnaire-enable-operator": ("exists", "=", "!=", ">", "<", ">=", "<="),
    "questionnaire-enable-behavior": ("all", "any"),
    "questionnaire-answers-status": ("in-progress", "completed", "amended", "entered-in-error",
                                     "stopped"),
    "consent-state-codes": ("draft", "proposed", "active", "rejected", "inactive",
                            "entered-in-error"),
    "consent-provision-type": ("deny", "permit"),
    "consent-data-meaning": ("instance", "related", "dependents", "authoredby"),
    "event-status": ("preparation", "in-progress", "not-done", "on-hold", "stopped",
                     "completed", "entered-in-error", "unknown"),
    "request-priority": ("routine", "urgent", "asap", "stat"),
    "document-reference-status": ("current", "superseded", "entered-in-error"),
    "composition-status": ("preliminary", "final", "amended", "entered-in-error"),
    "document-relationship-type": ("replaces", "transforms", "signs", "appends"),
    "provenance-entity-role": ("derivation", "revision", "quotation", "source", "removal"),
    "audit-event-action": ("C", "R", "U", "D", "E"),
    "audit-event-outcome": ("0", "4", "8", "12"),
    "network-type": ("1", "2", "3", "4", "5"),
    "subscription-status": ("requested", "active", "error", "off"),
    "subscription-channel-type": ("rest-hook", "websocket", "email", "sms", "message"),
    "bundle-type": ("document", "message", "transaction", "transaction-response", "batch",
                    "batch-response", "history", "searchset", "collection"),
    "http-verb": ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"),
    "search-entry-mode": ("match", "include", "outcome"),
    "issue-severity": ("fatal", "error", "warning", "information"),
    "issue-type": ("invalid", "structure", "required", "value", "invariant", "security", "login",
                   "unknown", "expired", "forbidden", "suppressed", "processing",
                   "not-supported", "duplicate", "multiple-matches", "not-found", "deleted",
                   "too-long", "code-invalid", "extension", "too-costly", "business-rule",
                   "conflict", "transient", "lock-error", "no-store", "exception", "timeout",
                   "incomplete", "throttled", "informational"),
    "capability-statement-kind": ("instance", "capability", "requirements"),
    "FHIR-version": ("0.01", "0.05", "0.06", "0.11", "0.0.80", "0.0.81", "0.0.82", "0.4.0",
                     "0.5.0", "1.0.0", "1.0.1", "1.0.2", "1.1.0", "1.4.0", "1.6.0", "1.8.0",
                     "3.0.0", "3.0.1", "3.3.0", "3.5.0", "4.0.0", "4.0.1"),
    "restful-capability-mode": ("client", "server"),
    "system-restful-interaction": ("transaction", "batch", "search-system", "history-system"),
    "type-restful-interaction": ("read", "vread", "update", "patch", "delete",
                                 "history-instance", "history-type", "create", "search-type"),
    "versioning-policy": ("no-version", "versioned", "versioned-update"),
    "conditional-read-status": ("not-supported", "modified-since", "not-match", "full-support"),
    "conditional-delete-status": ("not-supported", "single", "multiple"),
    "reference-handling-policy": ("literal", "logical", "resolves", "enforced", "local"),
    "search-param-type": ("number", "date", "string", "token", "reference", "composite",
                          "quantity", "uri", "special"),
    "event-capability-mode": ("sender", "receiver"),
    "document-mode": ("producer", "consumer"),
    "condition-clinical": ("active", "recurrence", "relapse", "inactive", "remission",
                           "resolved"),
    "condition-ver-status": ("unconfirmed", "provisional", "differential", "confirmed",
                             "refuted", "entered-in-error"),
}

# Value sets too large to enumerate here, checked by syntax only.
_PATTERN_VALUE_SETS: dict[str, str] = {
    "mimetypes": r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
                 r"(\s*;\s*[A-Za-z0-9!#$&^_.+-]+=(\"[^\"]*\"|[A-Za-z0-9!#$&^_.+-]+))*",
    "capability-formats": r"xml|json|ttl|[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/"
                          r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}(\s*;.*)?",
    "currencies": r"[A-Z]{3}",
}

# Element definition path -> value set. Datatype paths also apply to their specialisations
# (Quantity.comparator covers Age, Count, Distance and Duration).
_CODE_BINDINGS: dict[str, str] = {
    "Patient.gender": "administrative-gender",
    "Patient.contact.gender": "administrative-gender",
    "Patient.link.type": "link-type",
    "RelatedPerson.gender": "administrative-gender",
    "Practitioner.gender": "administrative-gender",
    "PractitionerRole.availableTime.daysOfWeek": "days-of-week",
    "CareTeam.status": "care-team-status",
    "EpisodeOfCare.status": "episode-of-care-status",
    "EpisodeOfCare.statusHistory.status": "episode-of-care-status",
    "Encounter.status": "encounter-status",
    "Encounter.statusHistory.status": "encounter-status",
    "Encounter.location.status": "encounter-location-status",
    "Flag.status": "flag-status",
    "CarePlan.status": "request-status",
    "CarePlan.intent": "care-plan-intent",
    "CarePlan.activity.detail.kind": "care-plan-activity-kind",
    "CarePlan.activity.detail.status": "care-plan-activity-status",
    "Observation.status": "observation-status",
    "Immunization.status": "immunization-status",
    "Questionnaire.status": "publication-status",
    "Questionnaire.subjectType": "resource-types",
    "Questionnaire.item.type": "item-type",
    "Questionnaire.item.enableWhen.operator": "questionnaire-enable-operator",
    "Questionnaire.item.enableBehavior": "questionnaire-enable-behavior",
    "QuestionnaireResponse.status": "questionnaire-answers-status",
    "Consent.status": "consent-state-codes",
    "Consent.provision.type": "consent-provision-type",
    "Consent.provision.data.meaning": "consent-data-meaning",
    "Communication.status": "event-status",
    "Communication.priority": "request-priority",
    "DocumentReference.status": "document-reference-status",
    "DocumentReference.docStatus": "composition-status",
    "DocumentReference.relatesTo.code": "document-relationship-type",
    "Provenance.entity.role": "provenance-entity-role",
    "AuditEvent.action": "audit-event-action",
    "AuditEvent.outcome": "audit-event-outcome",
    "AuditEvent.agent.network.type": "network-type",
    "Subscription.status": "subscription-status",
    "Subscription.channel.type": "subscription-channel-type",
    "Subscription.channel.payload": "mimetypes",
    "Bundle.type": "bundle-type",
    "Bundle.entry.request.method": "http-verb",
    "Bundle.entry.search.mode": "search-entry-mode",
    "OperationOutcome.issue.severity": "issue-severity",
    "OperationOutcome.issue.code": "issue-type",
    "CapabilityStatement.status": "publication-status",
    "CapabilityStatement.kind": "capability-statement-kind",
    "CapabilityStatement.fhirVersion": "FHIR-version",
    "CapabilityStatement.format": "capability-formats",
    "CapabilityStatement.patchFormat": "mimetypes",
    "CapabilityStatement.rest.mode": "restful-capability-mode",
    "CapabilityStatement.rest.interaction.code": "system-restful-interaction",
    "CapabilityStatement.rest.resource.type": "resource-types",
    "CapabilityStatement.rest.resource.interaction.code": "type-restful-interaction",
    "CapabilityStatement.rest.resource.versioning": "versioning-policy",
    "CapabilityStatement.rest.resource.conditionalRead": "conditional-read-status",
    "CapabilityStatement.rest.resource.conditionalDelete": "conditional-delete-status",
    "CapabilityStatement.rest.resource.referencePolicy": "reference-handling-policy",
    "CapabilityStatement.rest.resource.searchParam.type": "search-param-type",
    "CapabilityStatement.messaging.supportedMessage.mode": "event-capability-mode",
    "CapabilityStatement.document.mode": "document-mode",
    "Identifier.use": "identifier-use",
    "HumanName.use": "name-use",
    "ContactPoint.system": "contact-point-system",
    "ContactPoint.use": "contact-point-use",
    "Address.use": "address-use",
    "Address.type": "address-type",
    "Quantity.comparator": "quantity-comparator",
    "Timing.repeat.dayOfWeek": "days-of-week",
    "Timing.repeat.durationUnit": "units-of-time",
    "Timing.repeat.periodUnit": "units-of-time",
    "Timing.repeat.when": "event-timing",
    "Narrative.status": "narrative-status",
    "Contributor.type": "contributor-type",
    "DataRequirement.type": "all-types",
    "DataRequirement.sort.direction": "sort-direction",
    "ParameterDefinition.use": "operation-parameter-use",
    "ParameterDefinition.type": "all-types",
    "RelatedArtifact.type": "related-artifact-type",
    "TriggerDefinition.type": "trigger-type",
    "Attachment.contentType": "mimetypes",
    "Signature.targetFormat": "mimetypes",
    "Signature.sigFormat": "mimetypes",
    "Money.currency": "currencies",
}

# CodeableConcept/Coding elements with a required binding: path -> (code system, value set).
_CONCEPT_BINDINGS: dict[str, tuple[str, str]] = {
    "Condition.clinicalStatus": ("http://terminology.hl7.org/CodeSystem/condition-clinical",
                                 "condition-clinical"),
    "Condition.verificationStatus": (
        "http://terminology.hl7.org/CodeSystem/condition-ver-status", "condition-ver-status"),
}

# Invariants from the R4 specification: (context, key, severity, human, expression, guard).
# The context is a type, a backbone element path or (org-2/org-3) an element of a datatype.
# The guard is a cheap necessary condition for the invariant to fail, checked on the JSON
# before FHIRPath runs: ("all"|"any"|"none"|"notall", names...), ("one", names...) (fails
# unless exactly one is present), ("is"|"isnot", name, values...), ("has"|"starts", name, text),
# ("unordered", a, b) (a and b are present and not plainly in order as date/time text),
# ("greater", a, b) (a.value > b.value as numbers), ("negative", name) (a number below zero).
# A name ending in [x] stands for every variant of that choice element.
# Adapted for fhirpathpy (same meaning, marked "adapted"): per-1 and rng-2 (fhirpathpy compares
# date/time and Quantity nodes as raw JSON), dom-3 (its as() needs a singleton, ofType() is the
# collection form), qrs-2 (see there), ref-1 (the R4 technical correction that allows "#" from
# contained resources). ele-1 and txt-1/txt-2 (htmlChecks) are checked natively.
_Guard = tuple[Any, ...]


class _Rule(typing.NamedTuple):
    context: str
    key: str
    severity: str
    human: str
    expression: str
    guard: tuple[_Guard, ...]


_INVARIANTS: tuple[_Rule, ...] = (
    _Rule(
        "DomainResource", "dom-2", "error",
        "If the resource is contained in another resource, it SHALL NOT contain nested Resources",
        "contained.contained.empty()", (("any", "contained"),)),
    _Rule(
        "DomainResource", "dom-3", "error",
        "If the resource is contained in another resource, it SHALL be referred to from elsewhere "
        "in the resource or SHALL refer to the containing resource",
        # adapted
        "contained.where((('#'+id in (%resource.descendants().reference"
        " | %resource.descendants().ofType(canonical) | %resource.descendants().ofType(uri)"
        " | %resource.descendants().ofType(url))) or descendants().where(reference = '#').exists()"
        " or descendants().ofType(canonical).where($this = '#').exists()"
        " or descendants().ofType(uri).where($this = '#').exists()).not()).empty()",
        (("any", "contained"),)),
    _Rule(
        "DomainResource", "dom-4", "error",
        "If a resource is contained in another resource, it SHALL NOT have a meta.versionId or a "
        "meta.lastUpdated",
        "contained.meta.versionId.empty() and contained.meta.lastUpdated.empty()",
        (("any", "contained"),)),
    _Rule(
        "DomainResource", "dom-5", "error",
        "If a resource is contained in another resource, it SHALL NOT have a security label",
        "contained.meta.security.empty()", (("any", "contained"),)),
    _Rule(
        "DomainResource", "dom-6", "warning",
        "A resource should have narrative for robust management",
        "text.`div`.exists()", (("none", "text"),)),
    _Rule(
        "Extension", "ext-1", "error", "Must have either extensions or value[x], not both",
        "extension.exists() != value.exists()", (("one", "extension", "value[x]"),)),
    _Rule(
        "Period", "per-1", "error", "If present, start SHALL have a lower value than end",
        # adapted
        "start.hasValue().not() or end.hasValue().not() or"
        " (start.toDateTime() <= end.toDateTime())", (("unordered", "start", "end"),)),
    _Rule(
        "Reference", "ref-1", "error",
        "SHALL have a contained resource if a local reference is provided",
        # adapted
        "reference.startsWith('#').not() or (reference.substring(1) in %rootResource.contained.id)"
        " or (reference = '#' and %rootResource != %resource)", (("starts", "reference", "#"),)),
    _Rule(
        "Quantity", "qty-3", "error",
        "If a code for the unit is present, the system SHALL also be present",
        "code.empty() or system.exists()", (("all", "code"), ("none", "system"))),
    _Rule(
        "Age", "age-1", "error",
        "There SHALL be a code if there is a value and it SHALL be an expression of time. If "
        "system is present, it SHALL be UCUM. If value is present, it SHALL be positive.",
        "(code.exists() or value.empty()) and (system.empty() or system = %ucum) and"
        " (value.empty() or value.hasValue().not() or value > 0)",
        (("any", "code", "value", "system"),)),
    _Rule(
        "Count", "cnt-3", "error",
        "There SHALL be a code with a value of \"1\" if there is a value. If system is present, it "
        "SHALL be UCUM. If present, the value SHALL be a whole number.",
        "(code.exists() or value.empty()) and (system.empty() or system = %ucum) and"
        " (code.empty() or code = '1') and (value.empty() or value.hasValue().not() or"
        " value.toString().contains('.').not())", (("any", "code", "value", "system"),)),
    _Rule(
        "Distance", "dis-1", "error",
        "There SHALL be a code if there is a value and it SHALL be an expression of length. If "
        "system is present, it SHALL be UCUM.",
        "(code.exists() or value.empty()) and (system.empty() or system = %ucum)",
        (("any", "value", "system"),)),
    _Rule(
        "Duration", "drt-1", "error",
        "There SHALL be a code if there is a value and it SHALL be an expression of time. If "
        "system is present, it SHALL be UCUM.",
        "code.exists() implies ((system = %ucum) and value.exists())", (("all", "code"),)),
    _Rule(
        "Range", "rng-2", "error", "If present, low SHALL have a lower value than high",
        # adapted: compared when both bounds use the same unit
        "low.value.empty() or high.value.empty() or"
        " (low.code ~ high.code and low.system ~ high.system).not() or (low.value <= high.value)",
        (("greater", "low", "high"),)),
    _Rule(
        "Ratio", "rat-1", "error",
        "Numerator and denominator SHALL both be present, or both are absent. If both are absent, "
        "there SHALL be some extension present",
        "(numerator.empty() xor denominator.exists()) and (numerator.exists() or"
        " extension.exists())", (("notall", "numerator", "denominator"),)),
    _Rule(
        "Attachment", "att-1", "error", "If the Attachment has data, it SHALL have a contentType",
        "data.empty() or contentType.exists()", (("all", "data"), ("none", "contentType"))),
    _Rule(
        "ContactPoint", "cpt-2", "error", "A system is required if a value is provided.",
        "value.empty() or system.exists()", (("all", "value"), ("none", "system"))),
    _Rule(
        "Expression", "exp-1", "error", "An expression or a reference must be provided",
        "expression.exists() or reference.exists()", (("none", "expression", "reference"),)),
    _Rule(
        "Timing.repeat", "tim-1", "error",
        "if there's a duration, there needs to be duration units",
        "duration.empty() or durationUnit.exists()",
        (("all", "duration"), ("none", "durationUnit"))),
    _Rule(
        "Timing.repeat", "tim-2", "error", "if there's a period, there needs to be period units",
        "period.empty() or periodUnit.exists()", (("all", "period"), ("none", "periodUnit"))),
    _Rule(
        "Timing.repeat", "tim-4", "error", "duration SHALL be a non-negative value",
        "duration.exists() implies duration >= 0", (("negative", "duration"),)),
    _Rule(
        "Timing.repeat", "tim-5", "error", "period SHALL be a non-negative value",
        "period.exists() implies period >= 0", (("negative", "period"),)),
    _Rule(
        "Timing.repeat", "tim-6", "error", "If there's a periodMax, there must be a period",
        "periodMax.empty() or period.exists()", (("all", "periodMax"), ("none", "period"))),
    _Rule(
        "Timing.repeat", "tim-7", "error", "If there's a durationMax, there must be a duration",
        "durationMax.empty() or duration.exists()", (("all", "durationMax"), ("none", "duration"))),
    _Rule(
        "Timing.repeat", "tim-8", "error", "If there's a countMax, there must be a count",
        "countMax.empty() or count.exists()", (("all", "countMax"), ("none", "count"))),
    _Rule(
        "Timing.repeat", "tim-9", "error",
        "If there's an offset, there must be a when (and not C, CM, CD, CV)",
        "offset.empty() or (when.exists() and ((when in ('C' | 'CM' | 'CD' | 'CV')).not()))",
        (("all", "offset"),)),
    _Rule(
        "Timing.repeat", "tim-10", "error",
        "If there's a timeOfDay, there cannot be a when, or vice versa",
        "timeOfDay.empty() or when.empty()", (("all", "timeOfDay", "when"),)),
    _Rule(
        "DataRequirement.codeFilter", "drq-1", "error",
        "Either a path or a searchParam must be provided, but not both",
        "path.exists() xor searchParam.exists()", (("one", "path", "searchParam"),)),
    _Rule(
        "DataRequirement.dateFilter", "drq-2", "error",
        "Either a path or a searchParam must be provided, but not both",
        "path.exists() xor searchParam.exists()", (("one", "path", "searchParam"),)),
    _Rule(
        "TriggerDefinition", "trd-1", "error", "Either timing, or a data requirement, but not both",
        "data.empty() or timing.empty()", (("all", "data", "timing[x]"),)),
    _Rule(
        "TriggerDefinition", "trd-2", "error", "A condition only if there is a data requirement",
        "condition.exists() implies data.exists()", (("all", "condition"), ("none", "data"))),
    _Rule(
        "Patient.contact", "pat-1", "error",
        "SHALL at least contain a contact's details or a reference to an organization",
        "name.exists() or telecom.exists() or address.exists() or organization.exists()",
        (("none", "name", "telecom", "address", "organization"),)),
    _Rule(
        "Organization", "org-1", "error",
        "The organization SHALL at least have a name or an identifier, and possibly more than one",
        "(identifier.count() + name.count()) > 0", (("none", "identifier", "name"),)),
    _Rule(
        "Organization.address", "org-2", "error",
        "An address of an organization can never be of use 'home'",
        "where(use = 'home').empty()", (("is", "use", "home"),)),
    _Rule(
        "Organization.telecom", "org-3", "error",
        "The telecom of an organization can never be of use 'home'",
        "where(use = 'home').empty()", (("is", "use", "home"),)),
    _Rule(
        "CarePlan.activity", "cpl-3", "error", "Provide a reference or detail, not both",
        "detail.empty() or reference.empty()", (("all", "detail", "reference"),)),
    _Rule(
        "Observation", "obs-6", "error",
        "dataAbsentReason SHALL only be present if Observation.value[x] is not present",
        "dataAbsentReason.empty() or value.empty()", (("all", "dataAbsentReason", "value[x]"),)),
    _Rule(
        "Observation", "obs-7", "error",
        "If Observation.code is the same as an Observation.component.code then the value element "
        "associated with the code SHALL NOT be present",
        "value.empty() or component.code.where(coding.intersect(%resource.code.coding).exists())"
        ".empty()", (("all", "value[x]", "component"),)),
    _Rule(
        "Observation.referenceRange", "obs-3", "error",
        "Must have at least a low or a high or text",
        "low.exists() or high.exists() or text.exists()", (("none", "low", "high", "text"),)),
    _Rule(
        "Immunization.education", "imm-1", "error",
        "One of documentType or reference SHALL be present",
        "documentType.exists() or reference.exists()", (("none", "documentType", "reference"),)),
    _Rule(
        "Condition", "con-3", "warning",
        "Condition.clinicalStatus SHALL be present if verificationStatus is not entered-in-error "
        "and category is problem-list-item",
        "clinicalStatus.exists() or verificationStatus.coding.where(system="
        "'http://terminology.hl7.org/CodeSystem/condition-ver-status' and code = "
        "'entered-in-error').exists() or category.select($this='problem-list-item').empty()",
        (("all", "category"), ("none", "clinicalStatus"))),
    _Rule(
        "Condition", "con-4", "error",
        "If condition is abated, then clinicalStatus must be either inactive, resolved, or "
        "remission",
        "abatement.empty() or clinicalStatus.coding.where(system="
        "'http://terminology.hl7.org/CodeSystem/condition-clinical' and (code='resolved' or "
        "code='remission' or code='inactive')).exists()", (("all", "abatement[x]"),)),
    _Rule(
        "Condition", "con-5", "error",
        "Condition.clinicalStatus SHALL NOT be present if verification Status is entered-in-error",
        "verificationStatus.coding.where(system="
        "'http://terminology.hl7.org/CodeSystem/condition-ver-status' and "
        "code='entered-in-error').empty() or clinicalStatus.empty()",
        (("all", "verificationStatus", "clinicalStatus"),)),
    _Rule(
        "Condition.stage", "con-1", "error", "Stage SHALL have summary or assessment",
        "summary.exists() or assessment.exists()", (("none", "summary", "assessment"),)),
    _Rule(
        "Condition.evidence", "con-2", "error", "evidence SHALL have code or details",
        "code.exists() or detail.exists()", (("none", "code", "detail"),)),
    _Rule(
        "Questionnaire", "que-2", "error",
        "The link ids for groups and questions must be unique within the Questionnaire",
        "descendants().linkId.isDistinct()", (("any", "item"),)),
    _Rule(
        "Questionnaire.item", "que-1", "error",
        "Group items must have nested items, display items cannot have nested items",
        "(type='group' implies item.empty().not()) and (type='display' implies item.empty())",
        (("is", "type", "group", "display"),)),
    _Rule(
        "Questionnaire.item", "que-3", "error", "Display items cannot have a \"code\" asserted",
        "type!='display' or code.empty()", (("is", "type", "display"), ("all", "code"))),
    _Rule(
        "Questionnaire.item", "que-4", "error",
        "A question cannot have both answerOption and answerValueSet",
        "answerOption.empty() or answerValueSet.empty()",
        (("all", "answerOption", "answerValueSet"),)),
    _Rule(
        "Questionnaire.item", "que-5", "error",
        "Only 'choice' and 'open-choice' items can have answerValueSet",
        "(type ='choice' or type = 'open-choice' or type = 'decimal' or type = 'integer' or "
        "type = 'date' or type = 'dateTime' or type = 'time' or type = 'string' or "
        "type = 'quantity') or (answerValueSet.empty() and answerOption.empty())",
        (("any", "answerValueSet", "answerOption"),)),
    _Rule(
        "Questionnaire.item", "que-6", "error",
        "Required and repeat aren't permitted for display items",
        "type!='display' or (required.empty() and repeats.empty())",
        (("is", "type", "display"), ("any", "required", "repeats"))),
    _Rule(
        "Questionnaire.item", "que-8", "error",
        "Initial values can't be specified for groups or display items",
        "(type!='group' and type!='display') or initial.empty()", (("any", "initial"),)),
    _Rule(
        "Questionnaire.item", "que-9", "error",
        "Read-only can't be specified for \"display\" items",
        "type!='display' or readOnly.empty()", (("is", "type", "display"), ("all", "readOnly"))),
    _Rule(
        "Questionnaire.item", "que-10", "error",
        "Maximum length can only be declared for simple question types",
        "(type in ('boolean' | 'decimal' | 'integer' | 'string' | 'text' | 'url' | 'open-choice'))"
        " or maxLength.empty()", (("all", "maxLength"),)),
    _Rule(
        "Questionnaire.item", "que-11", "error",
        "If one or more answerOption is present, initial[x] must be missing",
        "answerOption.empty() or initial.empty()", (("all", "answerOption", "initial"),)),
    _Rule(
        "Questionnaire.item", "que-12", "error",
        "If there are more than one enableWhen, enableBehavior must be specified",
        "enableWhen.count() > 2 implies enableBehavior.exists()",
        (("all", "enableWhen"), ("none", "enableBehavior"))),
    _Rule(
        "Questionnaire.item", "que-13", "error",
        "Can only have multiple initial values for repeating items",
        "repeats=true or initial.count() <= 1", (("all", "initial"),)),
    _Rule(
        "Questionnaire.item.enableWhen", "que-7", "error",
        "If the operator is 'exists', the value must be a boolean",
        "operator = 'exists' implies (answer is boolean)", (("is", "operator", "exists"),)),
    _Rule(
        "QuestionnaireResponse", "qrs-2", "error",
        "Repeated answers are combined in the answers array of a single item",
        # adapted: fhirpathpy's repeat() loses nodes of a union; descendants() visits the same items
        "descendants().select(item.where(answer.value.exists()).linkId.isDistinct()).allTrue()",
        (("any", "item"),)),
    _Rule(
        "QuestionnaireResponse.item", "qrs-1", "error",
        "Nested item can't be beneath both item and answer",
        "(answer.exists() and item.exists()).not()", (("all", "answer", "item"),)),
    _Rule(
        "Consent", "ppc-1", "error", "Either a Policy or PolicyRule",
        "policy.exists() or policyRule.exists()", (("none", "policy", "policyRule"),)),
    _Rule(
        "Consent", "ppc-2", "error", "IF Scope=privacy, there must be a patient",
        "patient.exists() or scope.coding.where(system='something' and code='patient-privacy')"
        ".exists().not()", (("none", "patient"),)),
    _Rule(
        "Consent", "ppc-3", "error", "IF Scope=research, there must be a patient",
        "patient.exists() or scope.coding.where(system='something' and code='research')"
        ".exists().not()", (("none", "patient"),)),
    _Rule(
        "Consent", "ppc-4", "error", "IF Scope=adr, there must be a patient",
        "patient.exists() or scope.coding.where(system='something' and code='adr')"
        ".exists().not()", (("none", "patient"),)),
    _Rule(
        "Consent", "ppc-5", "error", "IF Scope=treatment, there must be a patient",
        "patient.exists() or scope.coding.where(system='something' and code='treatment')"
        ".exists().not()", (("none", "patient"),)),
    _Rule(
        "AuditEvent.entity", "sev-1", "error", "Either a name or a query (NOT both)",
        "name.empty() or query.empty()", (("all", "name", "query"),)),
    _Rule(
        "Bundle", "bdl-1", "error", "total only when a search or history",
        "total.empty() or (type = 'searchset') or (type = 'history')",
        (("all", "total"), ("isnot", "type", "searchset", "history"))),
    _Rule(
        "Bundle", "bdl-2", "error", "entry.search only when a search",
        "entry.search.empty() or (type = 'searchset')",
        (("any", "entry"), ("isnot", "type", "searchset"))),
    _Rule(
        "Bundle", "bdl-3", "error",
        "entry.request mandatory for batch/transaction/history, otherwise prohibited",
        "entry.all(request.exists() = (%resource.type = 'batch' or %resource.type = 'transaction'"
        " or %resource.type = 'history'))", (("any", "entry"),)),
    _Rule(
        "Bundle", "bdl-4", "error",
        "entry.response mandatory for batch-response/transaction-response/history, otherwise "
        "prohibited",
        "entry.all(response.exists() = (%resource.type = 'batch-response' or %resource.type = "
        "'transaction-response' or %resource.type = 'history'))", (("any", "entry"),)),
    _Rule(
        "Bundle", "bdl-7", "error",
        "FullUrl must be unique in a bundle, or else entries with the same fullUrl must have "
        "different meta.versionId (except in history bundles)",
        "(type = 'history') or entry.where(fullUrl.exists()).select(fullUrl&resource.meta"
        ".versionId).isDistinct()", (("any", "entry"), ("isnot", "type", "history"))),
    _Rule(
        "Bundle", "bdl-9", "error", "A document must have an identifier with a system and a value",
        "type = 'document' implies (identifier.system.exists() and identifier.value.exists())",
        (("is", "type", "document"),)),
    _Rule(
        "Bundle", "bdl-10", "error", "A document must have a date",
        "type = 'document' implies (timestamp.hasValue())", (("is", "type", "document"),)),
    _Rule(
        "Bundle", "bdl-11", "error", "A document must have a Composition as the first resource",
        "type = 'document' implies entry.first().resource.is(Composition)",
        (("is", "type", "document"),)),
    _Rule(
        "Bundle", "bdl-12", "error", "A message must have a MessageHeader as the first resource",
        "type = 'message' implies entry.first().resource.is(MessageHeader)",
        (("is", "type", "message"),)),
    _Rule(
        "Bundle.entry", "bdl-5", "error", "must be a resource unless there's a request or response",
        "resource.exists() or request.exists() or response.exists()",
        (("none", "resource", "request", "response"),)),
    _Rule(
        "Bundle.entry", "bdl-8", "error", "fullUrl cannot be a version specific reference",
        "fullUrl.contains('/_history/').not()", (("has", "fullUrl", "/_history/"),)),
    _Rule(
        "Parameters.parameter", "inv-1", "error",
        "A parameter must have one and only one of (value, resource, part)",
        "(part.exists() and value.empty() and resource.empty()) or (part.empty() and"
        " (value.exists() xor resource.exists()))", (("one", "part", "value[x]", "resource"),)),
    _Rule(
        "CapabilityStatement", "cpb-1", "error",
        "A Capability Statement SHALL have at least one of REST, messaging or document element.",
        "rest.exists() or messaging.exists() or document.exists()",
        (("none", "rest", "messaging", "document"),)),
    _Rule(
        "CapabilityStatement", "cpb-2", "error",
        "A Capability Statement SHALL have at least one of description, software, or "
        "implementation element.",
        "(description.count() + software.count() + implementation.count()) > 0",
        (("none", "description", "software", "implementation"),)),
    _Rule(
        "CapabilityStatement.rest", "cpb-9", "error",
        "A given resource can only be described once per RESTful mode.",
        "resource.select(type).isDistinct()", (("any", "resource"),)),
    _Rule(
        "CapabilityStatement.rest.resource", "cpb-12", "error",
        "Search parameter names must be unique in the context of a resource.",
        "searchParam.select(name).isDistinct()", (("any", "searchParam"),)),
)

_ELE_1 = "ele-1: All FHIR elements must have a @value or children"

# Narrative XHTML: the elements and attributes of the basic HTML subset FHIR allows (txt-1).
_XHTML_NS = "http://www.w3.org/1999/xhtml"
_XML_NS = "http://www.w3.org/XML/1998/namespace"
_XHTML_ELEMENTS = frozenset({
    "p", "br", "div", "h1", "h2", "h3", "h4", "h5", "h6", "a", "span", "b", "em", "i", "strong",
    "small", "big", "tt", "dfn", "q", "var", "abbr", "acronym", "cite", "blockquote", "hr",
    "address", "bdo", "kbd", "sub", "sup", "ul", "ol", "li", "dl", "dt", "dd", "pre", "table",
    "caption", "colgroup", "col", "thead", "tr", "tfoot", "tbody", "th", "td", "code", "samp",
    "img", "map", "area",
})
_XHTML_UNSAFE_ELEMENTS = frozenset({
    "script", "object", "applet", "iframe", "frame", "frameset", "embed", "form", "input",
    "button", "select", "option", "textarea", "base", "link", "style", "meta", "head", "body",
    "html", "title", "noscript", "param", "svg", "math", "template", "isindex", "portal",
})
_XHTML_ATTRIBUTES = frozenset({
    "title", "style", "class", "id", "lang", "dir", "accesskey", "tabindex", "span", "colspan",
    "rowspan", "abbr", "axis", "headers", "scope", "align", "valign", "char", "charoff", "width",
    "height", "border", "cellpadding", "cellspacing", "frame", "rules", "summary", "href",
    "name", "src", "alt", "longdesc", "usemap", "ismap", "shape", "coords", "nohref", "start",
    "type", "value", "compact", "cite", "hreflang", "rel", "rev",
})
_XHTML_URL_ATTRIBUTES = frozenset({"href", "src", "longdesc", "usemap", "cite"})
_XHTML_LINK_SCHEMES = frozenset({"http", "https", "mailto", "tel"})
_XHTML_SOURCE_SCHEMES = frozenset({"http", "https"})
_XHTML_PREDEFINED_ENTITIES = frozenset({"lt", "gt", "amp", "quot", "apos"})

_MAX_DEPTH = 100  # nested JSON objects; deeper input is rejected, not walked
_MAX_STRING_BYTES = 1024 * 1024
_INT32 = (-2_147_483_648, 2_147_483_647)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------

def known_resource_types() -> frozenset[str]:
    """Return the FHIR resource types the validator can check."""
    return SUPPORTED_RESOURCE_TYPES


def validate_resource(resource: object, expected_type: str | None = None) -> list[ValidationIssue]:
    """Return the issues found in a parsed FHIR R4 JSON resource (empty when it is valid)."""
    walker = _Walker()
    try:
        walker.top(resource, expected_type)
    except Exception:  # noqa: BLE001 - never raise on hostile input; report instead
        walker.issues.append(ValidationIssue(
            "error", "invalid", expected_type or "Resource",
            "The resource could not be validated completely"))
    return walker.issues


# --------------------------------------------------------------------------------------------
# Primitive checks
# --------------------------------------------------------------------------------------------

_YEAR = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
_MONTH = r"(0[1-9]|1[0-2])"
_DAY = r"(0[1-9]|[1-2][0-9]|3[0-1])"
_TIME = r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"
_ZONE = r"(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
_RE_DATE = re.compile(rf"{_YEAR}(-{_MONTH}(-{_DAY})?)?")
_RE_DATETIME = re.compile(rf"{_YEAR}(-{_MONTH}(-{_DAY}(T{_TIME}{_ZONE})?)?)?")
_RE_INSTANT = re.compile(rf"{_YEAR}-{_MONTH}-{_DAY}T{_TIME}{_ZONE}")
_RE_TIME = re.compile(_TIME)
_RE_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_RE_CODE = re.compile(r"[^\s]+(\s[^\s]+)*")
_RE_URI = re.compile(r"\S*")
_RE_OID = re.compile(r"urn:oid:[0-2](\.(0|[1-9][0-9]*))+")
_RE_UUID = re.compile(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_RE_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_RE_WHITESPACE = re.compile(r"\s+")
_RE_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")

_Problem = tuple[str, str] | None  # (issue code, rule) or None when the value is fine
_TOO_LONG = "must not exceed 1 MB"


def _string_problem(value: object) -> _Problem:
    if type(value) is not str:
        return "structure", "must be a JSON string"
    if not value:
        return "value", "must not be an empty string"
    if len(value) > _MAX_STRING_BYTES // 4 or not value.isascii():
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            return "value", "must be valid Unicode text"
        if size > _MAX_STRING_BYTES:
            return "value", _TOO_LONG
    if _RE_CONTROL.search(value):
        return "value", "must not contain control characters other than tab, CR and LF"
    return None


def _pattern_checker(pattern: re.Pattern[str], rule: str) -> Callable[[object], _Problem]:
    def check(value: object) -> _Problem:
        problem = _string_problem(value)
        if problem is not None or not isinstance(value, str):
            return problem
        if pattern.fullmatch(value) is None:
            return "value", rule
        return None
    return check


def _calendar_ok(value: str) -> bool:
    if len(value) < 10:
        return True
    try:
        datetime.date(int(value[0:4]), int(value[5:7]), int(value[8:10]))
    except ValueError:
        return False
    return True


def _date_checker(pattern: re.Pattern[str], rule: str) -> Callable[[object], _Problem]:
    def check(value: object) -> _Problem:
        problem = _string_problem(value)
        if problem is not None or not isinstance(value, str):
            return problem
        if pattern.fullmatch(value) is None:
            return "value", rule
        if not _calendar_ok(value):
            return "value", "must be a date that exists in the calendar"
        return None
    return check


def _check_boolean(value: object) -> _Problem:
    if type(value) is bool:
        return None
    return "structure", "must be a JSON boolean (true or false)"


def _integer_checker(low: int, high: int, rule: str) -> Callable[[object], _Problem]:
    def check(value: object) -> _Problem:
        if type(value) is not int:
            return "structure", "must be a JSON integer"
        if not low <= value <= high:
            return "value", rule
        return None
    return check


def _check_decimal(value: object) -> _Problem:
    if type(value) is int:
        return None
    if isinstance(value, float) and type(value) is float:
        return None if math.isfinite(value) else ("value", "must be a finite number")
    if isinstance(value, Decimal) and type(value) is Decimal:
        return None if value.is_finite() else ("value", "must be a finite number")
    return "structure", "must be a JSON number"


def _check_base64(value: object) -> _Problem:
    problem = _string_problem(value)
    if not isinstance(value, str) or (problem is not None and problem[1] != _TOO_LONG):
        return problem  # base64Binary has no size limit
    text = _RE_WHITESPACE.sub("", value)
    if not text or _RE_BASE64.fullmatch(text) is None:
        return "value", "must be base64 encoded"
    return None


def _check_xhtml(value: object) -> _Problem:
    if type(value) is not str:
        return "structure", "must be a JSON string"
    if not value:
        return "value", "must not be an empty string"
    return None


_PRIMITIVE_CHECKS: dict[str, Callable[[object], _Problem]] = {
    "boolean": _check_boolean,
    "integer": _integer_checker(*_INT32, "must be a 32-bit integer"),
    "unsignedInt": _integer_checker(0, _INT32[1], "must be a non-negative 32-bit integer"),
    "positiveInt": _integer_checker(1, _INT32[1], "must be a positive 32-bit integer"),
    "integer64": _integer_checker(-(2**63), 2**63 - 1, "must be a 64-bit integer"),
    "decimal": _check_decimal,
    "string": _string_problem,
    "markdown": _string_problem,
    "code": _pattern_checker(_RE_CODE, "must be a code without leading, trailing or repeated "
                                       "whitespace"),
    "id": _pattern_checker(_RE_ID, "must be 1-64 characters of A-Z, a-z, 0-9, '-' and '.'"),
    "uri": _pattern_checker(_RE_URI, "must be a URI without whitespace"),
    "url": _pattern_checker(_RE_URI, "must be a URL without whitespace"),
    "canonical": _pattern_checker(_RE_URI, "must be a canonical URL without whitespace"),
    "oid": _pattern_checker(_RE_OID, "must be an OID URI (urn:oid:...)"),
    "uuid": _pattern_checker(_RE_UUID, "must be a lower-case UUID URI (urn:uuid:...)"),
    "date": _date_checker(_RE_DATE, "must be a date (YYYY, YYYY-MM or YYYY-MM-DD)"),
    "dateTime": _date_checker(_RE_DATETIME, "must be a dateTime (a date, or a date and time "
                                            "with a time zone)"),
    "instant": _date_checker(_RE_INSTANT, "must be an instant (date and time to the second "
                                          "with a time zone)"),
    "time": _pattern_checker(_RE_TIME, "must be a time (hh:mm:ss)"),
    "base64Binary": _check_base64,
    "xhtml": _check_xhtml,
}


# --------------------------------------------------------------------------------------------
# Element tables built from fhir.resources model metadata
# --------------------------------------------------------------------------------------------

_PRIMITIVE, _COMPLEX, _RESOURCE = 0, 1, 2


class _Element:
    """One element of a type: its JSON name, type, cardinality and binding."""

    __slots__ = (
        "check",
        "choice",
        "code_pattern",
        "codes",
        "concept",
        "good",
        "invariants",
        "kind",
        "many",
        "name",
        "path",
        "ptype",
        "required",
        "table",
        "targets",
        "value_set",
    )

    def __init__(self, name: str, path: str) -> None:
        self.name = name
        self.path = path  # definition path, e.g. "Patient.contact.gender"
        self.kind = _PRIMITIVE
        self.ptype = ""
        self.check: Callable[[object], _Problem] = _string_problem
        self.table: _Table | None = None
        self.many = False
        self.required = False
        self.choice = ""
        self.codes: frozenset[str] | None = None
        self.code_pattern: re.Pattern[str] | None = None
        self.value_set = ""
        self.concept: tuple[str, frozenset[str], str] | None = None
        self.invariants: tuple[_Invariant, ...] = ()
        self.targets: frozenset[str] | None = None  # resource types a Reference may point to
        # Short strings already found valid here (see _Walker.primitive): bounded, so memory
        # stays flat however many distinct values an export holds.
        self.good: set[str] = set()


class _Table:
    """The elements of one type or backbone element, with its constraints."""

    __slots__ = (
        "choices",
        "elements",
        "fhirpath_type",
        "invariants",
        "is_resource",
        "path",
        "required",
        "required_choices",
    )

    def __init__(self, path: str, fhirpath_type: str, is_resource: bool) -> None:
        self.path = path
        self.fhirpath_type = fhirpath_type
        self.elements: dict[str, _Element] = {}
        self.required: tuple[_Element, ...] = ()
        self.choices: dict[str, tuple[str, ...]] = {}
        self.required_choices: tuple[str, ...] = ()
        self.invariants: tuple[_Invariant, ...] = ()
        self.is_resource = is_resource


# Invariants that are false on a node lacking one element (neither it nor its `_` extension
# is present), so need no evaluation there. `text` is not a choice element.
_FALSE_WITHOUT = {"text.`div`.exists()": "text"}


def _codings(concept: Any) -> list[Any]:
    """Return the codings of a CodeableConcept as FHIRPath's `code.coding` sees it."""
    if not isinstance(concept, Mapping):
        return []
    coding = concept.get("coding")
    return coding if isinstance(coding, list) else [coding] if coding is not None else []


def _obs7(node: Mapping[str, Any], resource: Any) -> bool | None:
    """obs-7, evaluated as its FHIRPath reads: holds unless the Observation has a value and a
    component whose code shares a coding (equal in every element) with `%resource.code`.
    None (undecided: evaluate the expression) when the value is only a primitive's extension."""
    if any(key.startswith("_value") for key in node):
        return None
    if not any(key.startswith("value") and key[5:6].isupper() for key in node):
        return True
    own = _codings(resource.get("code")) if isinstance(resource, Mapping) else []
    components = node.get("component")
    if not own or not isinstance(components, list):
        return True
    return not any(coding in own for component in components
                   if isinstance(component, Mapping)
                   for coding in _codings(component.get("code")))


# Invariants evaluated in Python, exactly as their expression reads (a test compares the two on
# every sample): ingest asks obs-7 of every Observation that has components, and the FHIRPath
# engine took a tenth of a millisecond each time.
_NATIVE: dict[str, Callable[[Mapping[str, Any], Any], bool | None]] = {
    "value.empty() or component.code.where(coding.intersect(%resource.code.coding).exists())"
    ".empty()": _obs7,
}


class _Invariant:
    """One FHIRPath constraint, compiled on first use."""

    __slots__ = ("_native", "_needs", "_parsed", "expression", "guard", "human", "key",
                 "message", "severity")

    def __init__(self, key: str, severity: str, human: str, expression: str,
                 guard: Callable[[Mapping[str, Any]], bool]) -> None:
        self.key = key
        self.severity = severity
        self.human = human
        self.expression = expression
        self.guard = guard
        self.message = f"{key}: {human}"
        self._parsed: Any = None
        # dom-6 (`text.`div`.exists()`) is asked of every resource, which rarely has a
        # narrative: without `text` it is false without evaluating it; with it, evaluated.
        self._needs: str | None = _FALSE_WITHOUT.get(expression)
        self._native = _NATIVE.get(expression)

    def holds(self, node: Mapping[str, Any], type_name: str, resource: Any, root: Any) -> bool:
        """Return False only when the expression evaluates to false on the node."""
        if self._needs is not None and self._needs not in node \
                and "_" + self._needs not in node:
            return False
        if self._native is not None:
            decided = self._native(node, resource)
            if decided is not None:
                return decided
        fp = _fhirpath()
        if self._parsed is None:
            self._parsed = fp.parse(self.expression)
        try:
            result = fp.apply_parsed_path(
                fp.create_node(node, type_name), self._parsed,
                {"resource": resource, "rootResource": root}, fp.model, fp.options)
        except Exception:  # noqa: BLE001 - an engine limitation is not a finding
            return True
        return not (isinstance(result, list) and len(result) == 1 and result[0] is False)


class _FhirPath:
    """The parts of fhirpathpy the invariants use, imported once."""

    def __init__(self) -> None:
        from fhirpathpy import apply_parsed_path
        from fhirpathpy.engine.nodes import ResourceNode
        from fhirpathpy.models import models
        from fhirpathpy.parser import parse

        self.apply_parsed_path: Callable[..., Any] = apply_parsed_path
        self.create_node: Callable[[Any, str], Any] = ResourceNode.create_node
        self.parse: Callable[[str], Any] = parse
        self.model: dict[str, Any] = models["r4"]
        self.options = {
            "userInvocationTable": {"hasValue": {"fn": _has_value, "arity": {0: []}}},
            "traceFn": _ignore_trace,
        }


def _has_value(inputs: list[Any]) -> list[bool]:
    return [len(inputs) == 1 and inputs[0] is not None
            and not isinstance(inputs[0], (dict, list))]


def _ignore_trace(*_args: object) -> None:
    return None


_FHIRPATH: _FhirPath | None = None


def _fhirpath() -> _FhirPath:
    global _FHIRPATH
    if _FHIRPATH is None:
        _FHIRPATH = _FhirPath()
    return _FHIRPATH


class _R4:
    """R4 type and element lists (from fhirpathpy's R4 model) and the derived lookups."""

    def __init__(self) -> None:
        model = _fhirpath().model
        self.path_types: dict[str, str] = model["path2Type"]
        self.elsewhere: dict[str, str] = model["pathsDefinedElsewhere"]
        self.choice_types: dict[str, list[str]] = model["choiceTypePaths"]
        self.parents: dict[str, str] = model["type2Parent"]
        self.prefixes: set[str] = set()
        for path in (*self.path_types, *self.elsewhere):
            parts = path.split(".")
            for end in range(1, len(parts) + 1):
                self.prefixes.add(".".join(parts[:end]))
        self.resource_types = frozenset(
            t for t in self.parents if "Resource" in self.ancestry(t)) | {"Resource"}
        all_types = set(self.parents) | set(self.parents.values()) | {"Type", "Any"}
        self.value_sets: dict[str, frozenset[str]] = {
            name: frozenset(codes) for name, codes in _VALUE_SETS.items()}
        self.value_sets["resource-types"] = self.resource_types
        self.value_sets["all-types"] = frozenset(all_types)
        self.patterns = {name: re.compile(p) for name, p in _PATTERN_VALUE_SETS.items()}

    def ancestry(self, type_name: str) -> list[str]:
        """Return the type and its R4 ancestors, nearest first."""
        chain = [type_name]
        while chain[-1] in self.parents and len(chain) < 10:
            chain.append(self.parents[chain[-1]])
        return chain


_BUILD_LOCK = threading.RLock()
_R4_DATA: _R4 | None = None
_CLASS_TABLES: dict[type, _Table] = {}
_RESOURCE_TABLES: dict[str, _Table] = {}
_INVARIANTS_BY_CONTEXT: dict[str, list[_Rule]] = {}


def _r4() -> _R4:
    global _R4_DATA
    if _R4_DATA is None:
        with _BUILD_LOCK:
            if _R4_DATA is None:
                for rule in _INVARIANTS:
                    _INVARIANTS_BY_CONTEXT.setdefault(rule.context, []).append(rule)
                _R4_DATA = _R4()
    return _R4_DATA


def _resource_table(resource_type: str) -> _Table | None:
    """Return the element table of a supported resource type, building it on first use."""
    table = _RESOURCE_TABLES.get(resource_type)
    if table is None and resource_type in SUPPORTED_RESOURCE_TYPES:
        with _BUILD_LOCK:
            table = _RESOURCE_TABLES.get(resource_type)
            if table is None:
                from fhir.resources.R4B import get_fhir_model_class

                table = _Builder(_r4()).table(get_fhir_model_class(resource_type), resource_type)
                _RESOURCE_TABLES[resource_type] = table
    return table


def _primitive_extension_table() -> _Table:
    """Return the table for ``_name`` objects (an Element: id and extension)."""
    table = _RESOURCE_TABLES.get("#Element")
    if table is None:
        with _BUILD_LOCK:
            table = _RESOURCE_TABLES.get("#Element")
            if table is None:
                from fhir.resources.R4B import get_fhir_model_class

                table = _Builder(_r4()).table(get_fhir_model_class("Element"), "Element")
                _RESOURCE_TABLES["#Element"] = table
    return table


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """Return the item type of a field annotation and whether it is a list."""
    many = False
    while True:
        origin = typing.get_origin(annotation)
        args = typing.get_args(annotation)
        if origin is typing.Union or type(annotation).__name__ == "UnionType":
            annotation = next(a for a in args if a is not type(None))
        elif origin is list:
            many = True
            annotation = args[0]
        else:
            return annotation, many


def _primitive_name(annotation: Any) -> str | None:
    if annotation is bool:
        return "boolean"
    for meta in getattr(annotation, "__metadata__", ()):
        name = getattr(meta, "__visit_name__", None)
        if name:
            return str(name)
        if type(meta).__name__ == "UuidVersion":
            return "uuid"
    return None


class _Builder:
    """Build element tables for a model class and everything it reaches."""

    def __init__(self, r4: _R4) -> None:
        self.r4 = r4

    def table(self, cls: type, path: str) -> _Table:
        """Return the (cached) table for a model class reached at a definition path."""
        table = _CLASS_TABLES.get(cls)
        if table is not None:
            return table
        is_resource = path in self.r4.resource_types
        table = _Table(path, path, is_resource)
        _CLASS_TABLES[cls] = table
        type_chain = [path] if "." in path else self.r4.ancestry(path)
        in_r4 = path in self.r4.prefixes or is_resource

        fields = getattr(cls, "model_fields", {})
        elements: dict[str, _Element] = {}
        for field in fields.values():
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            if not extra.get("element_property"):
                continue
            name = field.alias or ""
            if in_r4 and f"{path}.{name}" not in self.r4.prefixes and name not in (
                    "id", "extension", "modifierExtension"):
                continue  # an R4B-only element
            item, many = _unwrap(field.annotation)
            element = self._element(name, path, item, type_chain)
            if element is None:
                continue
            targets = extra.get("enum_reference_types")
            if targets and "Resource" not in targets and element.kind == _COMPLEX:
                element.targets = frozenset(targets)
            element.many = many
            choice = extra.get("one_of_many")
            if choice:
                element.choice = str(choice)
                if extra.get("one_of_many_required") and choice not in table.required_choices:
                    table.required_choices = (*table.required_choices, str(choice))
            else:
                element.required = bool(field.is_required() or extra.get("element_required"))
            elements[name] = element
        self._add_r4_only_choices(path, elements)
        table.elements = elements
        table.required = tuple(e for e in elements.values() if e.required)
        choices: dict[str, list[str]] = {}
        for element in elements.values():
            if element.choice:
                choices.setdefault(element.choice, []).append(element.name)
        table.choices = {k: tuple(v) for k, v in choices.items()}
        table.invariants = self._invariants(table, type_chain)
        for element in elements.values():
            # invariants whose context is an element of a datatype (org-2 on Organization.address)
            if element.table is not None and element.table.path != element.path:
                element.invariants = self._invariants(element.table, [element.path])
        return table

    def _element(self, name: str, path: str, item: Any,
                 type_chain: list[str]) -> _Element | None:
        element = _Element(name, f"{path}.{name}")
        primitive = _primitive_name(item)
        if primitive is not None:
            check = _PRIMITIVE_CHECKS.get(primitive)
            if check is None:
                return None
            element.ptype = primitive
            element.check = check
            self._bind_code(element, name, type_chain)
            return element
        if getattr(item, "__name__", "") == "ResourceType":
            element.kind = _RESOURCE
            return element
        get_class = getattr(item, "get_model_klass", None)
        if get_class is None:
            return None
        target = get_class()
        element.kind = _COMPLEX
        element.table = self._target_table(target, f"{path}.{name}")
        for owner in type_chain:
            concept = _CONCEPT_BINDINGS.get(f"{owner}.{name}")
            if concept is not None:
                element.concept = (concept[0], self.r4.value_sets[concept[1]], concept[1])
        return element

    def _target_table(self, target: type, element_path: str) -> _Table:
        if target in _CLASS_TABLES:
            return _CLASS_TABLES[target]
        type_name = target.__name__
        if target.__module__.rsplit(".", 1)[-1] == type_name.lower():
            return self.table(target, type_name)  # a datatype
        return self.table(target, self.r4.elsewhere.get(element_path, element_path))

    def _bind_code(self, element: _Element, name: str, type_chain: list[str]) -> None:
        for owner in type_chain:
            value_set = _CODE_BINDINGS.get(f"{owner}.{name}")
            if value_set is None:
                continue
            element.value_set = value_set
            if value_set in self.r4.patterns:
                element.code_pattern = self.r4.patterns[value_set]
            else:
                element.codes = self.r4.value_sets[value_set]
            return

    def _add_r4_only_choices(self, path: str, elements: dict[str, _Element]) -> None:
        """Add choice variants that R4 allows and the R4B model lacks (e.g. Extension.valueMeta)."""
        from fhir.resources.R4B import get_fhir_model_class

        groups = {e.choice for e in elements.values() if e.choice}
        for group in groups:
            for variant in self.r4.choice_types.get(f"{path}.{group}", ()):
                name = group + variant[0].upper() + variant[1:]
                type_name = self.r4.path_types.get(f"{path}.{name}")
                if name in elements or not type_name or type_name[0].islower():
                    continue
                try:
                    target = get_fhir_model_class(type_name)
                except ValueError:
                    continue
                element = _Element(name, f"{path}.{name}")
                element.kind = _COMPLEX
                element.choice = group
                element.table = self._target_table(target, f"{path}.{name}")
                elements[name] = element

    def _invariants(self, table: _Table, contexts: Iterable[str]) -> tuple[_Invariant, ...]:
        found: list[_Invariant] = []
        for context in contexts:
            for rule in _INVARIANTS_BY_CONTEXT.get(context, ()):
                found.append(_Invariant(rule.key, rule.severity, rule.human, rule.expression,
                                        _compile_guard(rule.guard, table)))
        return tuple(found)


def _plainly_ordered(start: object, end: object) -> bool:
    """Return True when two date/time strings are in order by plain text comparison alone."""
    if not (isinstance(start, str) and isinstance(end, str)) or len(start) != len(end):
        return False
    if len(start) > 10 and not (start[-1] == end[-1] == "Z" or start[-6:] == end[-6:]):
        return False
    return start <= end


def _number(value: object) -> bool:
    return type(value) in (int, float, Decimal)


def _greater(low: object, high: object) -> bool:
    """Return True when two Quantity objects have numeric values with low above high."""
    if not (isinstance(low, dict) and isinstance(high, dict)):
        return False
    a, b = low.get("value"), high.get("value")
    return _number(a) and _number(b) and a > b  # type: ignore[operator]


def _keys(table: _Table, name: str) -> tuple[str, ...]:
    if name.endswith("[x]"):
        base = table.choices.get(name[:-3], ())
        return (*base, *("_" + k for k in base))
    return name, "_" + name


_Test = Callable[[Mapping[str, Any]], bool]


def _compile_guard(guard: tuple[_Guard, ...], table: _Table) -> _Test:
    """Turn a guard spec into a predicate over the JSON object of the context element."""
    tests = [_guard_test(kind, tuple(args), table) for kind, *args in guard]
    if len(tests) == 1:
        return tests[0]
    return lambda obj: all(test(obj) for test in tests)


def _guard_test(kind: str, args: tuple[Any, ...], table: _Table) -> _Test:
    """Return the predicate for one guard condition."""
    groups = [_keys(table, name) for name in args]

    def present(obj: Mapping[str, Any]) -> list[bool]:
        return [not obj.keys().isdisjoint(keys) for keys in groups]

    def text(obj: Mapping[str, Any]) -> str | None:
        value = obj.get(args[0])
        return value if isinstance(value, str) else None

    tests: dict[str, _Test] = {
        "all": lambda obj: all(present(obj)),
        "any": lambda obj: any(present(obj)),
        "none": lambda obj: not any(present(obj)),
        "notall": lambda obj: not all(present(obj)),
        "one": lambda obj: sum(present(obj)) != 1,
        "is": lambda obj: text(obj) in args[1:],
        "isnot": lambda obj: text(obj) not in args[1:],
        "has": lambda obj: args[1] in (text(obj) or ""),
        "starts": lambda obj: (text(obj) or "").startswith(args[1]),
        "unordered": lambda obj: args[0] in obj and args[1] in obj
        and not _plainly_ordered(obj[args[0]], obj[args[1]]),
        "greater": lambda obj: _greater(obj.get(args[0]), obj.get(args[1])),
        "negative": lambda obj: _number(obj.get(args[0])) and obj[args[0]] < 0,
    }
    if kind not in tests:
        raise ValueError(f"unknown guard kind {kind!r}")
    return tests[kind]


# --------------------------------------------------------------------------------------------
# The walk
# --------------------------------------------------------------------------------------------

_RE_NAME = re.compile(r"_?[A-Za-z][A-Za-z0-9_]{0,63}")
_RE_REFERENCE = re.compile(
    r"(?:^|/)([A-Z][A-Za-z]{1,63})(?:/[A-Za-z0-9\-.]{1,64}(?:/_history/[A-Za-z0-9\-.]{1,64})?"
    r"|\?[^/]*)$")


def _name_in_path(key: object) -> str:
    """Return a JSON key fit to appear in an expression (keys are never personal data)."""
    if isinstance(key, str) and _RE_NAME.fullmatch(key):
        return key
    return "?"


# Remembering valid primitive strings per element (False: check every value every time).
_CACHE_GOOD_VALUES = True
_GOOD_VALUE_CHARS = 256
_GOOD_VALUES_PER_ELEMENT = 2048


class _Walker:
    """Walk one resource and collect its issues."""

    __slots__ = ("errors", "issues")

    def __init__(self) -> None:
        self.issues: list[ValidationIssue] = []
        self.errors = 0

    def add(self, severity: str, code: str, expression: str, diagnostics: str) -> None:
        """Record an issue."""
        self.issues.append(ValidationIssue(severity, code, expression, diagnostics))
        if severity == "error" and code != "invariant":
            self.errors += 1  # invariants run only on subtrees without such errors

    def top(self, resource: object, expected_type: str | None) -> None:
        """Validate a top-level resource."""
        root = expected_type if expected_type in SUPPORTED_RESOURCE_TYPES else "Resource"
        if not isinstance(resource, dict):
            self.add("error", "structure", root, "A resource must be a JSON object")
            return
        actual = resource.get("resourceType")
        if isinstance(actual, str) and actual in SUPPORTED_RESOURCE_TYPES:
            root = actual
        if expected_type is not None and actual != expected_type and "resourceType" in resource:
            self.add("error", "invalid", f"{root}.resourceType",
                     f"resourceType must be {_name_in_path(expected_type)}")
        self.resource(resource, root, 0, None, contained=False)

    def resource(self, obj: dict[str, Any], path: str, depth: int, root: Any,
                 contained: bool) -> None:
        """Validate a resource found at path (top level, contained or inside a Bundle)."""
        rtype = obj.get("resourceType")
        if rtype is None:
            self.add("error", "required", f"{path}.resourceType",
                     "Resource.resourceType is required")
            return
        if type(rtype) is not str:
            self.add("error", "structure", f"{path}.resourceType",
                     "Resource.resourceType must be a JSON string")
            return
        table = _resource_table(rtype)
        if table is None:
            if rtype in _r4().resource_types:
                self.add("error", "not-supported", f"{path}.resourceType",
                         "Resource.resourceType names a resource type this server does not "
                         "support")
            else:
                self.add("error", "invalid", f"{path}.resourceType",
                         "Resource.resourceType is not a FHIR R4 resource type")
            return
        self.walk_object(obj, table, path, depth, obj, obj if root is None else root, contained)

    def walk_object(self, obj: dict[str, Any], table: _Table, path: str, depth: int,
                    resource: Any, root: Any, contained: bool = False) -> None:
        """Validate a JSON object against the element table of its type."""
        if depth > _MAX_DEPTH:
            self.add("error", "structure", path,
                     f"Elements are nested more than {_MAX_DEPTH} levels deep")
            return
        errors_before = self.errors
        elements = table.elements
        has_content = False
        seen_choice: dict[str, str] | None = None
        for key, value in obj.items():
            element = elements.get(key)
            if element is None:
                if isinstance(key, str) and key[:1] == "_":
                    element = elements.get(key[1:])
                    if element is not None and element.kind == _PRIMITIVE:
                        has_content = True
                        if element.choice:
                            seen_choice = self._choice(seen_choice, element, path)
                        self.primitive_extension(obj, element, value, path, depth,
                                                 resource, root)
                        continue
                if key == "resourceType" and table.is_resource:
                    continue
                self.add("error", "structure", f"{path}.{_name_in_path(key)}",
                         f"{table.path} has no element with this name")
                continue
            if key != "id":
                has_content = True
            if element.choice:
                seen_choice = self._choice(seen_choice, element, path)
            if element.many:
                if type(value) is not list:
                    self.add("error", "structure", f"{path}.{key}",
                             f"{element.path} must be a JSON array")
                elif not value:
                    self.add("error", "structure", f"{path}.{key}",
                             f"{element.path} must not be an empty array")
                elif element.kind == _PRIMITIVE:
                    self.primitive_list(obj, element, value, path)
                else:
                    for index, item in enumerate(value):
                        self.value(item, element, f"{path}.{key}[{index}]", depth,
                                   resource, root)
            elif type(value) is list:
                self.add("error", "structure", f"{path}.{key}",
                         f"{element.path} must be a single value, not an array")
            else:
                self.value(value, element, f"{path}.{key}", depth, resource, root)
        for element in table.required:
            if element.name not in obj and "_" + element.name not in obj:
                self.add("error", "required", f"{path}.{element.name}",
                         f"{element.path} is required")
        for group in table.required_choices:
            if seen_choice is None or group not in seen_choice:
                self.add("error", "required", f"{path}.{group}[x]",
                         f"{table.path}.{group}[x] is required")
        if not has_content and not table.is_resource:
            self.add("error", "invariant", path, _ELE_1)
        if table.invariants and self.errors == errors_before:
            for invariant in table.invariants:
                if contained and invariant.key == "dom-6":
                    continue
                if invariant.guard(obj) and not invariant.holds(
                        obj, table.fhirpath_type, resource, root):
                    self.add(invariant.severity, "invariant", path, invariant.message)

    def _choice(self, seen: dict[str, str] | None, element: _Element,
                path: str) -> dict[str, str]:
        if seen is None:
            seen = {}
        first = seen.get(element.choice)
        if first is None:
            seen[element.choice] = element.name
        elif first != element.name:
            seen[element.choice] = element.name
            self.add("error", "structure", f"{path}.{element.choice}[x]",
                     f"{element.path.rsplit('.', 1)[0]}.{element.choice}[x] must have only one "
                     "type variant")
        return seen

    def value(self, value: object, element: _Element, path: str, depth: int,
              resource: Any, root: Any) -> None:
        """Validate one (non-array) value of an element."""
        kind = element.kind
        if kind == _PRIMITIVE:
            if value is None:
                self.add("error", "structure", path, f"{element.path} must not be null")
            else:
                self.primitive(value, element, path)
        elif not isinstance(value, dict):
            self.add("error", "structure", path,
                     f"{element.path} must be a JSON object"
                     if value is not None else f"{element.path} must not be null")
        elif kind == _RESOURCE:
            contained = element.name == "contained"
            self.resource(value, path, depth + 1, root if contained else None, contained)
        elif element.table is not None:
            table = element.table
            errors_before = self.errors
            self.walk_object(value, table, path, depth + 1, resource, root)
            if self.errors == errors_before:
                if element.concept is not None:
                    self.concept(value, element, path)
                if element.targets is not None:
                    self.reference_target(value, element, path)
                for invariant in element.invariants:
                    if invariant.guard(value) and not invariant.holds(
                            value, table.fhirpath_type, resource, root):
                        self.add(invariant.severity, "invariant", path, invariant.message)

    def primitive(self, value: object, element: _Element, path: str) -> None:
        """Validate a primitive value: JSON type, format and binding."""
        # Every check below depends on the element and the value alone, so a string once
        # found valid for an element is valid there again (codes, systems, constant texts).
        if type(value) is str and _CACHE_GOOD_VALUES:
            good = element.good
            if value in good:
                return
            issues = len(self.issues)
            self._primitive(value, element, path)
            if (len(self.issues) == issues and len(value) <= _GOOD_VALUE_CHARS
                    and len(good) < _GOOD_VALUES_PER_ELEMENT):
                good.add(value)
            return
        self._primitive(value, element, path)

    def _primitive(self, value: object, element: _Element, path: str) -> None:
        problem = element.check(value)
        if problem is not None:
            self.add("error", problem[0], path, f"{element.path} {problem[1]}")
        elif element.codes is not None:
            if value not in element.codes:
                self.add("error", "code-invalid", path,
                         f"{element.path} must be a code from the required value set "
                         f"{element.value_set}")
        elif element.code_pattern is not None and isinstance(value, str):
            if element.code_pattern.fullmatch(value) is None:
                self.add("error", "code-invalid", path,
                         f"{element.path} must be a code from the required value set "
                         f"{element.value_set}")
        elif element.ptype == "xhtml" and isinstance(value, str):
            for code, rule in _xhtml_problems(value):
                self.add("error", code, path, f"{element.path} {rule}")

    def primitive_list(self, obj: Mapping[str, Any], element: _Element, values: list[Any],
                       path: str) -> None:
        """Validate an array of primitives; nulls need an extension at the same index."""
        extensions = obj.get("_" + element.name)
        for index, item in enumerate(values):
            item_path = f"{path}.{element.name}[{index}]"
            if item is None:
                if not (isinstance(extensions, list) and index < len(extensions)
                        and extensions[index] is not None):
                    self.add("error", "structure", item_path,
                             f"{element.path} must not be null unless it has an extension")
            else:
                self.primitive(item, element, item_path)

    def primitive_extension(self, obj: Mapping[str, Any], element: _Element, value: object,
                            path: str, depth: int, resource: Any, root: Any) -> None:
        """Validate the ``_name`` object(s) holding a primitive's id and extensions."""
        table = _primitive_extension_table()
        if not element.many:
            item_path = f"{path}.{element.name}"
            if isinstance(value, dict):
                self.walk_object(value, table, item_path, depth + 1, resource, root)
            else:
                self.add("error", "structure", item_path,
                         f"{element.path} extensions must be a JSON object")
            return
        if type(value) is not list:
            self.add("error", "structure", f"{path}.{element.name}",
                     f"{element.path} extensions must be a JSON array")
            return
        values = obj.get(element.name)
        if not value or (isinstance(values, list) and len(values) != len(value)):
            self.add("error", "structure", f"{path}.{element.name}",
                     f"{element.path} extensions must be an array as long as the values")
            return
        for index, item in enumerate(value):
            item_path = f"{path}.{element.name}[{index}]"
            if item is None:
                if not isinstance(values, list) or values[index] is None:
                    self.add("error", "structure", item_path,
                             f"{element.path} must have a value or an extension")
            elif isinstance(item, dict):
                self.walk_object(item, table, item_path, depth + 1, resource, root)
            else:
                self.add("error", "structure", item_path,
                         f"{element.path} extensions must be JSON objects or null")

    def reference_target(self, value: Mapping[str, Any], element: _Element, path: str) -> None:
        """Check that a literal reference points to a resource type the element allows."""
        reference = value.get("reference")
        if not isinstance(reference, str):
            return
        match = _RE_REFERENCE.search(reference)
        if match is None or match.group(1) not in _r4().resource_types:
            return  # contained, urn:uuid: or not a RESTful reference: the type is not visible
        if match.group(1) not in element.targets:  # type: ignore[operator]
            self.add("error", "value", f"{path}.reference",
                     f"{element.path} must refer to one of: "
                     + ", ".join(sorted(element.targets or ())))

    def concept(self, value: Mapping[str, Any], element: _Element, path: str) -> None:
        """Check a CodeableConcept or Coding against its required binding."""
        if element.concept is None:
            return
        system, codes, value_set = element.concept
        codings = [value] if element.table is not None and element.table.path == "Coding" \
            else value.get("coding")
        matched = False
        for coding in codings if isinstance(codings, list) else ():
            if isinstance(coding, dict) and coding.get("system") == system:
                if coding.get("code") in codes:
                    matched = True
                else:
                    matched = False
                    break
        if not matched:
            self.add("error", "code-invalid", path,
                     f"{element.path} must have a coding from the required value set "
                     f"{value_set}")


# --------------------------------------------------------------------------------------------
# Narrative XHTML
# --------------------------------------------------------------------------------------------

_RE_DECLARATION = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_RE_ENTITY_REF = re.compile(r"&([A-Za-z_][A-Za-z0-9_.\-]*);")
_RE_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_RE_STRIP_URL = re.compile(r"[\x00-\x20\\]+")
_UNSAFE_CSS = ("expression(", "javascript:", "vbscript:", "url(", "@import", "behavior:",
               "-moz-binding")
_PARSERS = threading.local()
_TXT_1 = ("txt-1: The narrative SHALL contain only the basic html formatting elements and "
          "attributes")
_TXT_2 = "txt-2: The narrative SHALL have some non-whitespace content"
_SAFE_URLS = "(only http(s), relative and # references)"
_UNSAFE_STYLE = "must not reference scripts or external resources in style attributes"


def _xhtml_parser() -> Any:
    parser = getattr(_PARSERS, "parser", None)
    if parser is None:
        from lxml import etree

        parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                                 huge_tree=False, dtd_validation=False, recover=False,
                                 remove_comments=False, remove_pis=False, collect_ids=False,
                                 attribute_defaults=False)
        _PARSERS.parser = parser
    return parser


def _unsafe_url(value: str, schemes: frozenset[str]) -> bool:
    compact = _RE_STRIP_URL.sub("", value)
    match = _RE_SCHEME.match(compact)
    return match is not None and match.group(1).lower() not in schemes


def _xhtml_problems(text: str) -> list[tuple[str, str]]:
    """Return (code, rule) pairs for narrative XHTML outside FHIR's safe subset."""
    if _RE_DECLARATION.search(text):
        return [("security", "must not contain a DOCTYPE or entity declarations")]
    if any(m.group(1) not in _XHTML_PREDEFINED_ENTITIES for m in _RE_ENTITY_REF.finditer(text)):
        return [("security", "must not use entity references other than XML's predefined ones")]
    from lxml import etree

    try:
        root = etree.fromstring(text.encode("utf-8", "surrogatepass"), _xhtml_parser())
    except Exception:  # noqa: BLE001 - lxml raises several kinds for malformed input
        return [("value", "must be well-formed XHTML")]
    if root.getroottree().docinfo.doctype:
        return [("security", "must not contain a DOCTYPE or entity declarations")]
    if any(node.tag is etree.PI
           for node in (*root.itersiblings(preceding=True), *root.itersiblings())):
        return [("security", "must not contain processing instructions")]
    if root.tag != f"{{{_XHTML_NS}}}div":
        return [("value", "must have a div element in the XHTML namespace as its root")]
    found: dict[tuple[str, str], None] = {}
    has_text = bool((root.text or "").strip())
    for node in root.iter():
        if node is not root and (node.tail or "").strip():
            has_text = True
        tag = node.tag
        if not isinstance(tag, str):
            if tag is etree.PI:
                found[("security", "must not contain processing instructions")] = None
            elif tag is etree.Entity:
                found[("security", "must not contain entity references")] = None
            continue
        namespace, _, local = tag[1:].partition("}") if tag.startswith("{") else ("", "", tag)
        if local in _XHTML_UNSAFE_ELEMENTS:
            found[("security", f"must not contain {local} elements (txt-1)")] = None
        elif namespace != _XHTML_NS or local not in _XHTML_ELEMENTS:
            found[("invariant", _TXT_1)] = None
        if node.text and node.text.strip():
            has_text = True
        if local == "img":
            has_text = True
        for name, value in node.attrib.items():
            attr_ns, _, attr = name[1:].partition("}") if name.startswith("{") else ("", "", name)
            if attr.lower().startswith("on"):
                found[("security", "must not contain event handler attributes (txt-1)")] = None
            elif attr_ns == _XML_NS and attr in ("lang", "space"):
                continue
            elif attr_ns or attr not in _XHTML_ATTRIBUTES:
                found[("invariant", _TXT_1)] = None
            elif attr in _XHTML_URL_ATTRIBUTES:
                schemes = _XHTML_SOURCE_SCHEMES if attr == "src" else _XHTML_LINK_SCHEMES
                if _unsafe_url(value, schemes):
                    rule = f"must not use this URL scheme in {attr} attributes {_SAFE_URLS}"
                    found[("security", rule)] = None
            elif attr == "style":
                css = _RE_STRIP_URL.sub("", value).lower()
                if any(token in css for token in _UNSAFE_CSS):
                    found[("security", _UNSAFE_STYLE)] = None
    if not has_text:
        found[("invariant", _TXT_2)] = None
    return list(found)
