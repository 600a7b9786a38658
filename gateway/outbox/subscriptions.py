"""FHIR R4 Subscriptions (rest-hook, `application/fhir+json`): kept, matched, notified via the outbox.

A Subscription is an ordinary resource at `/fhir/Subscription`. When one is written, the commit
hook checks it and keeps a row for it in the `subscriptions` table; a `requested` Subscription
that passes the checks becomes `active` (a second version, as a server that accepted it). Every
later write transaction looks up the active Subscriptions for the types it changed and queues one
notification per match in the same transaction.

Criteria (the documented subset): `Type?param=value&...` with the type's search parameters as
`/fhir/<Type>` supports them (modifiers, prefixes, `_id`, `_lastUpdated`), plus one chained form
for the child a resource is about: `patient.flag=<token>` (also `subject.flag`) matches when that
child — any of the child's records across agencies, through the identity links — has an active
Flag whose code matches the token (`Encounter?class=EMER&patient.flag=CPP`: an emergency
attendance of a child on a child protection plan).

A notification carries the matching version of the resource as its subscriber's agency may see
it (the agency policy decides visibility and redaction at delivery). Endpoints must be http(s)
URLs on an allowed host (WRAPAROUND_SUBSCRIPTION_HOSTS); redirects are not followed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
from sqlalchemy import delete, insert, select, update

from gateway.errors import GatewayError, Issue
from gateway.fhir.registry import Registry
from gateway.fhir.search import SearchQuery, parse_search
from gateway.outbox.store import Message
from gateway.security.policy import owner_of
from gateway.store.base import Change
from gateway.store.schema import subscriptions

PAYLOAD = "application/fhir+json"
CHAIN_PARAMS = ("patient", "subject")
LIVE = ("active", "error")


class SubscriptionRejected(GatewayError):
    """A Subscription the gateway cannot serve (422, with the reasons)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("the Subscription cannot be accepted", status=422, issues=[
            Issue("error", "business-rule", p, ("Subscription",)) for p in problems])


@dataclass(frozen=True)
class Criteria:
    """Parsed criteria: the type, its search query and the child's Flag tokens (chained)."""

    res_type: str
    pairs: tuple[tuple[str, str], ...]
    flag_tokens: tuple[str, ...]


def parse_criteria(registry: Registry, text: str) -> Criteria:
    """Parse `Type?params`; raise ValueError with a reason when the gateway cannot serve it."""
    res_type, _, query = text.strip().partition("?")
    rtype = registry.get(res_type)
    if rtype is None:
        raise ValueError(f"criteria name an unsupported resource type '{res_type}'")
    pairs: list[tuple[str, str]] = []
    flags: list[str] = []
    for name, value in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)):
        base, dot, chained = name.partition(".")
        if dot:
            if base not in CHAIN_PARAMS or chained != "flag":
                raise ValueError(f"chained criterion '{name}' is not supported (only "
                                 "patient.flag and subject.flag)")
            if base not in rtype.params and res_type != "Patient":
                raise ValueError(f"{res_type} has no '{base}' reference to chain through")
            flags.append(value)
            continue
        if name.startswith("_") and name not in ("_id", "_lastUpdated", "_tag", "_security",
                                                 "_profile", "_source"):
            raise ValueError(f"'{name}' is not supported in Subscription criteria")
        pairs.append((name, value))
    # Checks every parameter, modifier and value the way a search would.
    _query(registry, rtype, pairs)
    return Criteria(res_type, tuple(pairs), tuple(flags))


def _check(registry: Registry, resource: dict[str, Any],
           allowed_hosts: tuple[str, ...]) -> tuple[Criteria, dict[str, Any]]:
    problems: list[str] = []
    criteria: Criteria | None = None
    try:
        criteria = parse_criteria(registry, str(resource.get("criteria") or ""))
    except (ValueError, GatewayError) as exc:
        problems.append(f"Subscription.criteria: {getattr(exc, 'message', None) or exc}")
    channel = resource.get("channel") or {}
    if channel.get("type") != "rest-hook":
        problems.append("Subscription.channel.type: only rest-hook is supported")
    payload = channel.get("payload")
    if payload not in (None, PAYLOAD, "application/fhir+json; fhirVersion=4.0"):
        problems.append(f"Subscription.channel.payload: only {PAYLOAD} (or none) is supported")
    endpoint = str(channel.get("endpoint") or "")
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        problems.append("Subscription.channel.endpoint must be an http(s) URL")
    elif parts.hostname.lower() not in allowed_hosts:
        problems.append("Subscription.channel.endpoint names a host the gateway may not call "
                        "(see WRAPAROUND_SUBSCRIPTION_HOSTS)")
    elif parts.username or parts.password:
        problems.append("Subscription.channel.endpoint must not carry credentials; use "
                        "channel.header")
    headers = channel.get("header") or []
    for header in headers:
        name, sep, _ = str(header).partition(":")
        if not sep or not name.strip() or "\n" in str(header) or "\r" in str(header):
            problems.append("Subscription.channel.header entries must be 'Name: value'")
    if problems or criteria is None:
        raise SubscriptionRejected(problems)
    return criteria, {"endpoint": endpoint, "headers": orjson.dumps(headers).decode(),
                      "payload": payload}


class SubscriptionIndex:
    """Keeps the `subscriptions` table in step with Subscription resources, and matches changes."""

    def __init__(self, registry: Registry, allowed_hosts: tuple[str, ...]) -> None:
        self.registry = registry
        self.allowed_hosts = allowed_hosts

    # -- keeping the table -------------------------------------------------------------------
    def sync_in(self, tx: Any, change: Change, *, strict: bool = True) -> None:
        """Reflect one Subscription write in the table (activating a `requested` one).

        `strict` (a client's write) refuses a Subscription the gateway cannot serve; otherwise
        (the gateway's own status updates) such a Subscription just stops being served.
        """
        t = subscriptions
        resource = change.resource
        status = (resource or {}).get("status")
        if resource is None or status == "off":
            tx.conn.execute(delete(t).where(t.c.id == change.res_id))
            return
        try:
            criteria, channel = _check(self.registry, resource, self.allowed_hosts)
        except SubscriptionRejected:
            if strict:
                raise
            tx.conn.execute(delete(t).where(t.c.id == change.res_id))
            return
        if status == "requested":
            status = "active"
            stored = tx.get_for_update("Subscription", change.res_id)
            if stored is not None and stored.version_id == change.version_id:
                active = dict(resource, status="active")
                active.pop("meta", None)
                active["meta"] = {k: v for k, v in (resource.get("meta") or {}).items()
                                  if k not in ("versionId", "lastUpdated")}
                tx.put("Subscription", change.res_id, active, previous=stored, method="PUT")
        row = {"res_type": criteria.res_type, "criteria": str(resource["criteria"]),
               "agency": owner_of(resource) or "gateway", "status": status, **channel}
        found = tx.conn.execute(select(t.c.id, t.c.status).where(t.c.id == change.res_id)).first()
        if found is None:
            tx.conn.execute(insert(t).values(id=change.res_id, failures=0, **row))
        else:
            if status == "active" and found.status == "error":
                row["failures"] = 0
            tx.conn.execute(update(t).where(t.c.id == change.res_id).values(**row))

    # -- matching ----------------------------------------------------------------------------
    def notifications_in(self, tx: Any, changes: list[Change], *, agency: str | None,
                         request_id: str | None) -> list[Message]:
        """Return the notifications the changes trigger (one per Subscription and resource)."""
        types = {c.res_type for c in changes if c.resource is not None}
        if not types:
            return []
        t = subscriptions
        subs = tx.conn.execute(select(t.c.id, t.c.res_type, t.c.criteria).where(
            t.c.res_type.in_(sorted(types)), t.c.status.in_(LIVE))).all()
        if not subs:
            return []
        messages: list[Message] = []
        for sub in subs:
            try:
                criteria = parse_criteria(self.registry, sub.criteria)
            except (ValueError, GatewayError):
                continue  # checked when written; a registry change may retire a parameter
            for change in changes:
                if change.res_type != sub.res_type or change.resource is None:
                    continue
                if not self._matches(tx, criteria, change):
                    continue
                child = _child_of(change.res_type, change.res_id, change.resource)
                destination = f"subscription:{sub.id}"
                messages.append(Message(
                    destination=destination, operation="notify",
                    key=f"{destination}|{child}",
                    payload={"subscription": sub.id, "type": change.res_type,
                             "id": change.res_id, "version": change.version_id},
                    agency=agency, request_id=request_id))
        return messages

    def _matches(self, tx: Any, criteria: Criteria, change: Change) -> bool:
        rtype = self.registry.get(criteria.res_type)
        if rtype is None:
            return False
        query = _query(self.registry, rtype, [*criteria.pairs, ("_id", change.res_id)])
        if not tx.search_ids(query, limit=1):
            return False
        if criteria.flag_tokens:
            child = _child_of(change.res_type, change.res_id, change.resource or {})
            if not child.startswith("Patient/"):
                return False
            return self._child_has_flag(tx, child.split("/", 1)[1], criteria.flag_tokens)
        return True

    def _child_has_flag(self, tx: Any, patient_id: str, tokens: tuple[str, ...]) -> bool:
        from gateway.identity import store as identity

        golden = identity.golden_of(tx, [patient_id]).get(patient_id)
        ids = [patient_id]
        if golden is not None:
            ids = sorted({patient_id, *identity.member_ids(tx, [golden]).get(golden, [])})
        flag_type = self.registry.get("Flag")
        if flag_type is None:
            return False
        for token in tokens:
            query = _query(self.registry, flag_type, [
                ("patient", ",".join(f"Patient/{i}" for i in ids)), ("status", "active"),
                ("code", token)])
            if tx.search_ids(query, limit=1):
                return True
        return False


def _query(registry: Registry, rtype: Any, pairs: list[tuple[str, str]]) -> SearchQuery:
    return parse_search(registry, rtype, pairs, default_count=1, max_count=1)


def _child_of(res_type: str, res_id: str, resource: dict[str, Any]) -> str:
    """Return the reference of the child a resource is about (itself for a Patient)."""
    if res_type == "Patient":
        return f"Patient/{res_id}"
    for field_name in ("subject", "patient", "beneficiary"):
        ref = (resource.get(field_name) or {}).get("reference") \
            if isinstance(resource.get(field_name), dict) else None
        if isinstance(ref, str) and ref.startswith("Patient/"):
            return ref
    return f"{res_type}/{res_id}"


__all__ = ["Criteria", "SubscriptionIndex", "SubscriptionRejected", "parse_criteria"]
