"""What each destination's messages are queued from, and how a worker delivers them.

Destinations:

- `cpis` — the local authority's CP-IS upload. A change to a child protection, looked-after or
  unborn-child plan (a CarePlan, or a Flag that does not point at one) owned by an agency allowed
  `cpis-upload` queues that plan as one upload record (its start/end dates; a deletion or
  `entered-in-error` sends the delete date). The ordering key is the local authority: CP-IS
  refuses a file whose sequence number is not above the last one, so one LA's files go one at a
  time, in order.
- `subscription:<id>` — a FHIR rest-hook notification (gateway.outbox.subscriptions).
- `contactpoint:involvement` and `ecaf:caf` — the child index involvements and CAFs implied by
  stored episodes and completed CAF forms (gateway.national.push); ordered per child.

A deliverer raises the connector error tree (connectors.errors): `retryable` errors are retried
with backoff and count against the destination's circuit breaker; the others are dead letters.
Every message's id is sent as the WS-Addressing MessageID (SOAP) or the `X-Message-ID` header
(HTTP) on every attempt, so a receiver can de-duplicate.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlsplit

import orjson
import requests
from sqlalchemy import select

from connectors.cpis import FILE_CODES, UploadRecord
from connectors.errors import InvalidRequest, Rejected, Timeout, Unavailable
from gateway.config import Settings
from gateway.national.clients import NationalClients
from gateway.national.cpis import (
    FileSequence,
    _day,
    _nhs_of,
    _plan_type,
    expected_delivery,
    local_authority,
)
from gateway.outbox.store import Claimed, Message
from gateway.security.context import Caller
from gateway.security.policy import Policy, owner_of
from gateway.store.base import Change
from gateway.store.schema import subscriptions
from gateway.store.sql import SqlResourceStore
from vocab import systems

CPIS = "cpis"
TRANSIENT_HTTP = {408, 425, 429, 500, 502, 503, 504}


# -- producing: CP-IS uploads ------------------------------------------------------------------
def cpis_uploads_in(tx: Any, changes: list[Change], *, settings: Settings, policy: Policy,
                    agency: str | None, request_id: str | None) -> list[Message]:
    """Return one CP-IS upload message per changed plan the local authority must send."""
    uploaders = {name for name, a in policy.agencies.items() if "cpis-upload" in a.national}
    latest: dict[tuple[str, str], Change] = {}
    for change in changes:
        if change.res_type in ("CarePlan", "Flag"):
            latest[(change.res_type, change.res_id)] = change
    messages = []
    for change in latest.values():
        resource, deleted = change.resource, False
        if resource is None:  # deleted: send the plan's delete date
            if change.previous_version is None:
                continue
            before = tx.get_version(change.res_type, change.res_id, change.previous_version)
            if before is None or before.content is None:
                continue
            resource, deleted = orjson.loads(before.content), True
        record = _upload_record(tx, change, resource, deleted, uploaders)
        if record is not None:
            messages.append(Message(
                destination=CPIS, operation="upload", key=f"{CPIS}:{settings.la_ods_code}",
                payload=record, agency=agency, request_id=request_id))
    return messages


def _upload_record(tx: Any, change: Change, resource: dict[str, Any], deleted: bool,
                   uploaders: set[str]) -> dict[str, Any] | None:
    if owner_of(resource) not in uploaders:
        return None
    plan_type = _plan_type(resource)
    if plan_type is None:
        return None
    if change.res_type == "Flag" and any(
            str((ext.get("valueReference") or {}).get("reference", "")).startswith("CarePlan/")
            for ext in resource.get("extension") or ()
            if ext.get("url") == systems.FLAG_DETAIL_EXTENSION):
        return None  # the CarePlan it points at is the record sent
    period = resource.get("period") or {}
    start = _day(period.get("start"))
    subject = str((resource.get("subject") or {}).get("reference") or "")
    if start is None or not subject.startswith("Patient/"):
        return None
    patient = tx.get("Patient", subject.split("/", 1)[1])
    if patient is None or patient.content is None:
        return None
    number = _nhs_of(orjson.loads(patient.content).get("identifier") or ())
    if number is None:
        return None  # CP-IS matches on the NHS number; the upload report lists such children
    end = _day(period.get("end"))
    due = expected_delivery(resource) if plan_type == "UCPP" else None
    deleted = deleted or resource.get("status") == "entered-in-error"
    return {"resource": f"{change.res_type}/{change.res_id}", "version": change.version_id,
            "nhsNumber": number[0], "verified": number[1], "planType": plan_type,
            "start": start.isoformat(), "end": end.isoformat() if end else None,
            "deleted": deleted, "expectedDelivery": due.isoformat() if due else None}


# -- delivering --------------------------------------------------------------------------------
@dataclass
class DeliveryContext:
    """What deliverers need: settings, the store, the policy and the national clients."""

    settings: Settings
    store: SqlResourceStore
    policy: Policy
    clients: NationalClients
    sequence: FileSequence = field(default_factory=FileSequence)
    http: requests.Session = field(default_factory=requests.Session)
    today: Callable[[], date] = field(default=lambda: datetime.now(UTC).date())


Deliverer = Callable[[Claimed, DeliveryContext], str]


def deliver_cpis_upload(message: Claimed, ctx: DeliveryContext) -> str:
    """Upload one plan record to CP-IS; raise unless the file and the record were accepted."""
    p = message.payload
    record = UploadRecord(
        local_id=str(p["resource"])[:200], nhs_number=str(p["nhsNumber"]),
        nhs_number_verified=bool(p["verified"]), plan_type=str(p["planType"]),
        start_date=date.fromisoformat(p["start"]),
        end_date=date.fromisoformat(p["end"]) if p.get("end") else None,
        delete_date=ctx.today() if p.get("deleted") else None,
        expected_delivery_date=date.fromisoformat(p["expectedDelivery"])
        if p.get("expectedDelivery") else None)
    ack = ctx.clients.cpis.upload(
        [record], file_sequence_number=ctx.sequence.next(),
        local_authority=local_authority(ctx.settings), message_id=message.id,
        correlation_id=message.request_id or message.id)
    if ack.file_code == "CPF05":
        raise Unavailable("CP-IS asked for the file again later (CPF05)", service=CPIS,
                          operation="upload")
    refused = [r.code for r in ack.records if not r.accepted]
    if ack.file_code != "CPF02" or refused:
        codes = ", ".join([ack.file_code, *refused])
        raise Rejected(f"CP-IS refused the upload: {codes} "
                       f"({FILE_CODES.get(ack.file_code, 'unknown code')})",
                       service_code=refused[0] if refused else ack.file_code, service=CPIS,
                       operation="upload")
    return f"accepted ({ack.file_code}, file {ack.file_sequence_number})"


def deliver_notification(message: Claimed, ctx: DeliveryContext) -> str:
    """Send a rest-hook notification: PUT [endpoint]/[type]/[id] with the resource, or POST."""
    p = message.payload
    t = subscriptions
    sub = ctx.store.read(lambda tx: tx.conn.execute(
        select(t).where(t.c.id == p["subscription"])).first())
    if sub is None:
        return "not sent: the Subscription was removed or switched off"
    if urlsplit(sub.endpoint).hostname not in ctx.settings.subscription_allowed_hosts:
        raise InvalidRequest("the subscriber endpoint's host is no longer allowed",
                             service="subscription", operation="notify")
    headers = {"X-Message-ID": message.id, "User-Agent": "wraparound-subscriptions"}
    for header in orjson.loads(sub.headers):
        name, _, value = str(header).partition(":")
        headers[name.strip()] = value.strip()
    timeout = (min(3.05, ctx.settings.subscription_timeout), ctx.settings.subscription_timeout)
    if sub.payload:
        stored = ctx.store.read(lambda tx: tx.get_version(p["type"], p["id"], int(p["version"])))
        if stored is None or stored.content is None:
            return "not sent: the resource version is no longer stored"
        caller = Caller(client_id=f"subscription:{sub.id}", agency=sub.agency, scopes=())
        content = ctx.policy.view(caller, p["type"], stored.content)
        if content is None:
            return "not sent: the subscriber's agency may not see this resource"
        headers["Content-Type"] = "application/fhir+json"
        method, url = "PUT", f"{sub.endpoint.rstrip('/')}/{p['type']}/{p['id']}"
        body: bytes | None = content.encode("utf-8")
    else:
        method, url, body = "POST", sub.endpoint, None
    try:
        # The body is never read (stream, then close): a subscriber cannot hold a worker by
        # trickling an answer; the status line is all that counts.
        response = ctx.http.request(method, url, data=body, headers=headers, timeout=timeout,
                                    allow_redirects=False, stream=True)
    except requests.Timeout as exc:
        raise Timeout("the subscriber did not answer in time", service="subscription",
                      operation="notify") from exc
    except requests.RequestException as exc:
        raise Unavailable(f"the subscriber could not be reached ({type(exc).__name__})",
                          service="subscription", operation="notify") from exc
    with contextlib.suppress(Exception):
        response.close()
    if 200 <= response.status_code < 300:
        return f"HTTP {response.status_code}"
    if response.status_code in TRANSIENT_HTTP:
        raise Unavailable(f"the subscriber answered HTTP {response.status_code}",
                          service="subscription", operation="notify")
    raise Rejected(f"the subscriber refused the notification (HTTP {response.status_code})",
                   service_code=str(response.status_code), service="subscription",
                   operation="notify")


def deliverer_for(destination: str,
                  extra: dict[str, Deliverer] | None = None) -> Deliverer | None:
    """Return the deliverer for a destination (by its name before any ':')."""
    from gateway.national.push import deliver_contactpoint, deliver_ecaf  # imports the outbox

    name = destination.split(":", 1)[0]
    table: dict[str, Deliverer] = {CPIS: deliver_cpis_upload,
                                   "subscription": deliver_notification,
                                   "contactpoint": deliver_contactpoint, "ecaf": deliver_ecaf,
                                   **(extra or {})}
    return table.get(name)


__all__ = [
    "CPIS",
    "Deliverer",
    "DeliveryContext",
    "cpis_uploads_in",
    "deliver_cpis_upload",
    "deliver_notification",
    "deliverer_for",
]
