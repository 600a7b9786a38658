"""Local -> national: the child index and CAF store updates implied by what the gateway stores.

What a stored change implies (`updates_for`):

- an active EpisodeOfCare with an allocated worker (`careManager`) — a child in need, child
  protection or looked-after episode, or a youth justice order — records the worker (and the
  team, the episode's managing organisation) as an involvement of the child in the index:
  service `social-care` or `youth-offending`. A PractitionerRole names no child, so the
  allocation is read from the episode that points at the worker;
- an active school-enrolment EpisodeOfCare records the school (its URN) as an involvement;
- an episode that was active and is now finished (or cancelled) ends that involvement (the
  index's open involvement with the same service, organisation and practitioner; found by
  reading the child's record with the feed's reason). `wraparound national push` sends what
  the store holds now, so it records involvements but cannot see an episode end;
- a completed QuestionnaireResponse of the CAF form (`Questionnaire/caf`) registers the CAF in
  the assessment store, saves the assessment and completes it (completing needs consent: the
  person named as the response's `source` gave it; without one the CAF is saved as a draft).

The child is found in the index by NHS number, then UPN; a child the index does not hold is a
permanent failure (NotFound). Both ways of sending use the same functions:

- the outbox (`national_updates_in`, a Router producer run in the write transaction that stored
  the change, on when `Settings.outbox_national_push` is), delivered by `deliver_contactpoint`
  and `deliver_ecaf` with the message's stable id as the WS-Addressing MessageID;
- `wraparound national push`, which sends directly what the store holds now.

Sending twice changes nothing: the index answers an involvement already open with that one, and
the CAF store is checked first (an open CAF is continued, a completed one left alone).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

import orjson

from connectors.contactpoint import (
    ContactPointClient,
    IndexAccessor,
    InvolvementRequest,
    SearchQuery,
)
from connectors.ecaf import CAF_DOMAINS, DomainAssessment, EcafClient, ElementAssessment
from connectors.errors import NotFound
from gateway.config import Settings
from gateway.outbox.store import Message
from gateway.store.base import Change
from vocab import systems

if TYPE_CHECKING:
    from gateway.outbox.delivery import DeliveryContext
    from gateway.outbox.store import Claimed

CONTACTPOINT = "contactpoint"
ECAF = "ecaf"
INVOLVEMENT_DESTINATION = f"{CONTACTPOINT}:involvement"
CAF_DESTINATION = f"{ECAF}:caf"
CAF_QUESTIONNAIRE = f"{systems.BASE}/Questionnaire/caf"
PUSH_ROLE = "la-data-feed"
# Episode type -> the index service it is an involvement of (and whether a worker is needed).
EPISODE_SERVICES: dict[str, tuple[str, bool]] = {
    "CIN": ("social-care", True),
    "CP": ("social-care", True),
    "LAC": ("social-care", True),
    "youth-justice": ("youth-offending", True),
    "school-enrolment": ("school", False),
}
PUSH_TYPES = ("EpisodeOfCare", "QuestionnaireResponse")
ENDED = ("finished", "cancelled")


@dataclass(frozen=True)
class Update:
    """One national update: where it goes, what it asks, per-child order, and its content."""

    destination: str
    operation: str
    key: str
    payload: dict[str, Any]

    @property
    def stable_id(self) -> str:
        """Return a message id derived from the resource version the update comes from."""
        name = f"{self.destination}/{self.payload['resource']}/{self.payload['version']}"
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{systems.BASE}/push/{name}")).upper()


# -- what a change implies ------------------------------------------------------------------------
def _load(tx: Any, reference: Any, rtype: str) -> dict[str, Any] | None:
    ref = str((reference or {}).get("reference") or "") if isinstance(reference, dict) else ""
    if not ref.startswith(f"{rtype}/") or ref.count("/") != 1:
        return None
    stored = tx.get(rtype, ref.split("/", 1)[1])
    if stored is None or stored.content is None:
        return None
    loaded: dict[str, Any] = orjson.loads(stored.content)
    return loaded


def _identifier(resource: dict[str, Any], system: str) -> str | None:
    for identifier in resource.get("identifier") or ():
        if identifier.get("system") == system and str(identifier.get("value") or "").strip():
            return str(identifier["value"]).strip()
    return None


def _child(tx: Any, reference: Any) -> dict[str, str] | None:
    patient = _load(tx, reference, "Patient")
    if patient is None:
        return None
    child = {
        k: v
        for k, v in (
            ("nhsNumber", _identifier(patient, systems.NHS_NUMBER)),
            ("upn", _identifier(patient, systems.UPN)),
            ("indexId", _identifier(patient, systems.CHILD_INDEX_ID)),
        )
        if v
    }
    return child or None


def _code(concepts: Any, system: str) -> str | None:
    for concept in concepts or ():
        for coding in concept.get("coding") or ():
            if coding.get("system") == system and coding.get("code"):
                return str(coding["code"])
    return None


def _involvement(
    tx: Any, episode: dict[str, Any], *, status: str = "active"
) -> dict[str, Any] | None:
    if episode.get("status") != status:
        return None
    kind = _code(episode.get("type"), systems.EPISODE_OF_CARE_TYPE)
    if kind not in EPISODE_SERVICES:
        return None
    service, needs_worker = EPISODE_SERVICES[kind]
    org = _load(tx, episode.get("managingOrganization"), "Organization") or {}
    worker = _load(tx, episode.get("careManager"), "Practitioner")
    if needs_worker and worker is None:
        return None  # no allocated worker: nothing for the index
    names = (worker or {}).get("name") or [{}]
    practitioner = (
        names[0].get("text")
        or " ".join([*names[0].get("given", []), names[0].get("family", "")]).strip()
        or None
    )
    organisation = str(org.get("name") or "").strip() or None
    if practitioner is None and organisation is None:
        return None
    code = _identifier(org, systems.SCHOOL_URN) or _identifier(org, systems.ODS_ORGANIZATION_CODE)
    phone = next(
        (
            t.get("value")
            for t in org.get("telecom") or ()
            if t.get("system") == "phone" and t.get("value")
        ),
        None,
    )
    start = str((episode.get("period") or {}).get("start") or "")[:10] or None
    return {
        k: v
        for k, v in (
            ("service", service),
            ("organisationCode", code),
            ("organisationName", organisation),
            ("practitionerName", practitioner),
            ("phone", phone),
            ("startDate", start),
        )
        if v
    }


def domains_of(response: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the CAF domains answered in a QuestionnaireResponse (linkId domain.element.field)."""
    found: dict[str, dict[str, dict[str, str]]] = {}

    def walk(items: Any) -> None:
        for item in items or ():
            parts = str(item.get("linkId", "")).split(".")
            if (
                len(parts) == 3
                and parts[2] in ("strengths", "needs")
                and parts[1] in CAF_DOMAINS.get(parts[0], ())
            ):
                text = "\n".join(
                    str(a["valueString"])
                    for a in item.get("answer") or ()
                    if isinstance(a.get("valueString"), str)
                ).strip()
                if text:
                    found.setdefault(parts[0], {}).setdefault(parts[1], {})[parts[2]] = text[:4000]
            walk(item.get("item"))

    walk(response.get("item"))
    return [
        {"code": d, "elements": [{"code": e, **v} for e, v in elements.items()]}
        for d, elements in found.items()
    ]


def updates_for(
    tx: Any, res_type: str, res_id: str, version: int, resource: dict[str, Any]
) -> list[Update]:
    """Return the national updates one stored resource version implies."""
    origin = {"resource": f"{res_type}/{res_id}", "version": version}
    if res_type == "EpisodeOfCare":
        child = _child(tx, resource.get("patient"))
        involvement = _involvement(tx, resource)
        if child is None or involvement is None:
            return []
        return [
            Update(
                INVOLVEMENT_DESTINATION,
                "recordInvolvement",
                f"{CONTACTPOINT}:{resource['patient']['reference']}",
                {**origin, "child": child, "involvement": involvement},
            )
        ]
    if res_type == "QuestionnaireResponse":
        if (
            resource.get("status") != "completed"
            or str(resource.get("questionnaire") or "").split("|")[0] != CAF_QUESTIONNAIRE
        ):
            return []
        child = _child(tx, resource.get("subject"))
        domains = domains_of(resource)
        if child is None or not domains:
            return []
        consent = str((resource.get("source") or {}).get("display") or "").strip() or None
        payload = {**origin, "child": child, "domains": domains, "consentGivenBy": consent}
        return [
            Update(
                CAF_DESTINATION, "submitCaf", f"{ECAF}:{resource['subject']['reference']}", payload
            )
        ]
    return []


def _ending(tx: Any, change: Change) -> Update | None:
    """Return the end of an involvement when an active episode has finished (or was cancelled)."""
    resource = change.resource or {}
    if change.res_type != "EpisodeOfCare" or change.previous_version is None:
        return None
    if resource.get("status") not in ENDED:
        return None
    before = tx.get_version(change.res_type, change.res_id, change.previous_version)
    if before is None or before.content is None:
        return None
    if orjson.loads(before.content).get("status") != "active":
        return None
    child = _child(tx, resource.get("patient"))
    involvement = _involvement(tx, resource, status=str(resource["status"]))
    if child is None or involvement is None:
        return None
    end = str((resource.get("period") or {}).get("end") or "")[:10] or None
    payload = {
        "resource": f"{change.res_type}/{change.res_id}",
        "version": change.version_id,
        "child": child,
        "involvement": involvement,
        "end": True,
        **({"endDate": end} if end else {}),
    }
    key = f"{CONTACTPOINT}:{resource['patient']['reference']}"
    return Update(INVOLVEMENT_DESTINATION, "endInvolvement", key, payload)


def national_updates_in(
    tx: Any, changes: list[Change], *, agency: str | None = None, request_id: str | None = None
) -> list[Message]:
    """Return the outbox messages for the national updates a transaction's changes imply."""
    latest: dict[tuple[str, str], Change] = {}
    for change in changes:
        if change.res_type in PUSH_TYPES:
            latest[(change.res_type, change.res_id)] = change
    messages: list[Message] = []
    for change in latest.values():
        if change.resource is None:
            continue
        if change.previous_version is not None and _same_as_before(tx, change):
            continue
        ending = _ending(tx, change)
        updates = (
            [ending]
            if ending is not None
            else updates_for(tx, change.res_type, change.res_id, change.version_id, change.resource)
        )
        for update in updates:
            messages.append(
                Message(
                    destination=update.destination,
                    operation=update.operation,
                    key=update.key,
                    payload=update.payload,
                    agency=agency,
                    request_id=request_id,
                )
            )
    return messages


def _same_as_before(tx: Any, change: Change) -> bool:
    before = tx.get_version(change.res_type, change.res_id, change.previous_version)
    if before is None or before.content is None or change.resource is None:
        return False
    previous = orjson.loads(before.content)
    strip = ("meta",)
    return {k: v for k, v in previous.items() if k not in strip} == {
        k: v for k, v in change.resource.items() if k not in strip
    }


def producer(settings: Settings) -> Any:
    """Return the Router producer queueing national updates (nothing when switched off)."""
    from gateway.security.audit import current_audit
    from gateway.security.context import _current as _current_caller

    def produce(tx: Any, changes: list[Change]) -> list[Message]:
        if not settings.outbox_national_push:
            return []
        caller = _current_caller.get()
        audit = current_audit()
        return national_updates_in(
            tx,
            changes,
            agency=caller.agency if caller is not None else None,
            request_id=audit.request_id if audit is not None else None,
        )

    return produce


# -- sending ----------------------------------------------------------------------------------
def push_accessor(settings: Settings) -> IndexAccessor:
    """Return who the gateway is to the national services when it sends the LA's updates."""
    return IndexAccessor(
        user_id="wraparound-push",
        name="Wraparound data feed",
        role=PUSH_ROLE,
        organisation=settings.la_name[:200],
    )


def find_index_id(
    index: ContactPointClient,
    child: dict[str, str],
    accessor: IndexAccessor,
    correlation_id: str | None,
) -> str:
    """Return the child's index id (by index id, NHS number, then UPN) or raise NotFound."""
    if child.get("indexId"):
        return child["indexId"]
    queries = []
    if child.get("nhsNumber"):
        queries.append(SearchQuery(nhs_number=child["nhsNumber"], max_results=2))
    if child.get("upn"):
        queries.append(SearchQuery(upn=child["upn"], max_results=2))
    for query in queries:
        found = index.search(query, accessor=accessor, correlation_id=correlation_id)
        if found.total == 1:
            return found.children[0].index_id
    raise NotFound(
        "the child index holds no child with this NHS number or UPN",
        service=CONTACTPOINT,
        operation="searchChildren",
    )


def send_involvement(
    index: ContactPointClient,
    payload: dict[str, Any],
    *,
    settings: Settings,
    message_id: str,
    correlation_id: str | None = None,
) -> str:
    """Record (or, for an ended episode, end) the payload's involvement in the child index;
    return what happened."""
    accessor = push_accessor(settings)
    index_id = find_index_id(index, payload["child"], accessor, correlation_id)
    inv = payload["involvement"]
    if payload.get("end"):
        record = index.get_record(
            index_id,
            accessor=accessor,
            reason="local authority data feed: a local involvement has ended",
            correlation_id=correlation_id,
        )
        open_one = next(
            (
                i
                for i in record.involvements
                if i.end_date is None
                and i.service == inv["service"]
                and i.organisation_name == inv.get("organisationName")
                and i.practitioner_name == inv.get("practitionerName")
            ),
            None,
        )
        if open_one is None:
            return f"no open {inv['service']} involvement to end for {index_id}"
        end = payload.get("endDate")
        done = index.end_involvement(
            index_id,
            open_one.involvement_id,
            accessor=accessor,
            end_date=date.fromisoformat(end) if end else None,
            message_id=message_id,
            correlation_id=correlation_id,
        )
        return f"involvement {done.involvement_id} ({done.service}) ended for {index_id}"
    start = inv.get("startDate")
    done = index.record_involvement(
        index_id,
        InvolvementRequest(
            service=inv["service"],
            organisation_code=inv.get("organisationCode"),
            organisation_name=inv.get("organisationName"),
            practitioner_name=inv.get("practitionerName"),
            phone=inv.get("phone"),
            start_date=date.fromisoformat(start) if start else None,
        ),
        accessor=accessor,
        message_id=message_id,
        correlation_id=correlation_id,
    )
    return f"involvement {done.involvement_id} ({done.service}) recorded for {index_id}"


def send_caf(
    index: ContactPointClient,
    store: EcafClient,
    payload: dict[str, Any],
    *,
    settings: Settings,
    message_id: str,
    correlation_id: str | None = None,
) -> str:
    """Register, save and complete the payload's CAF (continuing an open one); return what
    happened."""
    accessor = push_accessor(settings)
    index_id = find_index_id(index, payload["child"], accessor, correlation_id)
    domains = [
        DomainAssessment(
            d["code"],
            tuple(
                ElementAssessment(e["code"], e.get("strengths"), e.get("needs"))
                for e in d["elements"]
            ),
        )
        for d in payload["domains"]
    ]
    consent = payload.get("consentGivenBy")
    check = store.check(index_id, accessor=accessor, correlation_id=correlation_id)
    if check.caf_id and check.status not in ("draft", "closed"):
        return f"CAF {check.caf_id} is already {check.status}; nothing sent"
    if check.caf_id and check.status == "draft":
        caf = store.get(check.caf_id, accessor=accessor, correlation_id=correlation_id)
        if consent and not caf.consent.given:
            caf = store.record_consent(
                caf.caf_id, consent, accessor=accessor, correlation_id=correlation_id
            )
    else:
        caf = store.register(
            index_id,
            accessor=accessor,
            consent_given_by=consent,
            message_id=message_id,
            correlation_id=correlation_id,
        )
    caf = store.save_assessment(
        caf.caf_id, domains, accessor=accessor, correlation_id=correlation_id
    )
    if not caf.consent.given:
        return f"CAF {caf.caf_id} saved as a draft (no consent recorded, so not completed)"
    caf = store.complete(caf.caf_id, accessor=accessor, correlation_id=correlation_id)
    return f"CAF {caf.caf_id} {caf.status} for {index_id}"


def deliver_contactpoint(message: Claimed, ctx: DeliveryContext) -> str:
    """Deliver a child index update (the message id is the WS-Addressing MessageID)."""
    return send_involvement(
        ctx.clients.contactpoint,
        message.payload,
        settings=ctx.settings,
        message_id=message.id,
        correlation_id=message.request_id or message.id,
    )


def deliver_ecaf(message: Claimed, ctx: DeliveryContext) -> str:
    """Deliver a CAF store update (the message id is the WS-Addressing MessageID)."""
    return send_caf(
        ctx.clients.contactpoint,
        ctx.clients.ecaf,
        message.payload,
        settings=ctx.settings,
        message_id=message.id,
        correlation_id=message.request_id or message.id,
    )


def stored_updates(tx: Any, types: tuple[str, ...] = PUSH_TYPES) -> list[Update]:
    """Return the national updates implied by every current resource of the given types."""
    from sqlalchemy import select

    from gateway.store.schema import resources as t

    updates: list[Update] = []
    rows = tx.conn.execute(
        select(t.c.res_type, t.c.res_id, t.c.version_id, t.c.content)
        .where(t.c.res_type.in_(types), t.c.deleted.is_(False))
        .order_by(t.c.res_type, t.c.res_id)
    )
    for row in rows:
        if row.content:
            updates += updates_for(
                tx, row.res_type, row.res_id, row.version_id, orjson.loads(row.content)
            )
    return updates


__all__ = [
    "CAF_DESTINATION",
    "EPISODE_SERVICES",
    "INVOLVEMENT_DESTINATION",
    "Update",
    "deliver_contactpoint",
    "deliver_ecaf",
    "domains_of",
    "find_index_id",
    "national_updates_in",
    "producer",
    "push_accessor",
    "send_caf",
    "send_involvement",
    "stored_updates",
    "updates_for",
]
