"""The one authorisation layer: SMART scopes first, then agency policy, then security labels.

A resource the caller may not see is indistinguishable from one that does not exist: reads answer
404, searches and counts leave it out (the filter runs in SQL), includes drop it. A shielded
child (security label R) is shown to other agencies only as minimal demographics without
location, unless the caller breaks the glass with a reason its agency is allowed to give.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import orjson
import yaml

from gateway.errors import Forbidden, ResourceNotFound
from gateway.fhir.search import AccessFilter
from gateway.security.context import Caller
from gateway.security.scopes import allows
from vocab import systems

RESTRICTED_CODES = ("R", "V")
REDACTED = {"system": systems.OBSERVATION_VALUE, "code": "REDACTED",
            "display": "redacted: shielded child, minimal demographics only"}
PATIENT_MINIMAL = ("resourceType", "id", "meta", "identifier", "active", "name", "gender",
                   "birthDate", "deceasedBoolean", "deceasedDateTime")
LOCATION_PARAMS = {"address", "address-postalcode", "address-city", "address-state",
                   "address-country", "telecom", "phone", "email", "general-practitioner",
                   "organization"}
NEVER_WRITABLE = {"AuditEvent"}
ACTIONS = {"read": "r", "vread": "r", "history": "r", "search": "s", "create": "c",
           "update": "u", "delete": "d"}


@dataclass(frozen=True)
class AgencyPolicy:
    """What one agency may read and write."""

    name: str
    description: str
    read: dict[str, tuple[tuple[Any, ...], ...]]
    write: frozenset[str]
    break_glass: bool = False
    sources: frozenset[str] = field(default_factory=frozenset)
    national: frozenset[str] = field(default_factory=frozenset)
    operate: frozenset[str] = field(default_factory=frozenset)

    def read_rules(self, res_type: str) -> tuple[tuple[Any, ...], ...] | None:
        """Return the rules admitting resources of a type, or None when none are readable."""
        return self.read.get(res_type) or self.read.get("*") if res_type != "AuditEvent" \
            else self.read.get("AuditEvent")


def _rule(raw: Any) -> tuple[tuple[Any, ...], ...]:
    if isinstance(raw, list):
        return tuple(r for item in raw for r in _rule(item))
    if raw in ("all", "own"):
        return ((raw,),)
    if isinstance(raw, dict) and set(raw) == {"codes"}:
        pairs = tuple(tuple(code.split("|", 1)) for code in raw["codes"])
        return (("codes", pairs),)
    raise ValueError(f"unknown policy rule {raw!r}")


def owner_of(resource: dict[str, Any]) -> str | None:
    """Return the owning agency recorded in meta.tag, if any."""
    for tag in (resource.get("meta") or {}).get("tag") or ():
        if isinstance(tag, dict) and tag.get("system") == systems.AGENCY:
            code = tag.get("code")
            return code if isinstance(code, str) else None
    return None


def is_restricted(resource: dict[str, Any]) -> bool:
    """Return True when the resource carries a restricted confidentiality label."""
    return any(isinstance(label, dict) and label.get("system") == systems.CONFIDENTIALITY
               and label.get("code") in RESTRICTED_CODES
               for label in (resource.get("meta") or {}).get("security") or ())


def _codes(resource: dict[str, Any]) -> set[tuple[str | None, str | None]]:
    found: set[tuple[str | None, str | None]] = set()
    for key in ("category", "code", "type"):
        value = resource.get(key)
        for concept in value if isinstance(value, list) else [value]:
            if isinstance(concept, dict):
                for coding in concept.get("coding") or ():
                    if isinstance(coding, dict):
                        found.add((coding.get("system"), coding.get("code")))
    return found


class Policy:
    """Agency policy loaded from data, with the decisions every route goes through."""

    def __init__(self, agencies: dict[str, AgencyPolicy]) -> None:
        self.agencies = agencies

    @classmethod
    def load(cls, text: str | None = None) -> Policy:
        """Load the policy (the built-in one by default)."""
        if text is None:
            text = resources.files("gateway.security").joinpath("policy.yaml").read_text("utf-8")
        data = yaml.safe_load(text)
        agencies = {}
        for name, spec in data["agencies"].items():
            agencies[name] = AgencyPolicy(
                name=name, description=spec.get("description", ""),
                read={t: _rule(r) for t, r in (spec.get("read") or {}).items()},
                write=frozenset(spec.get("write") or ()) - NEVER_WRITABLE,
                break_glass=bool(spec.get("break_glass", False)),
                sources=frozenset(spec.get("sources") or ()),
                national=frozenset(spec.get("national") or ()),
                operate=frozenset(spec.get("operate") or ()),
            )
        return cls(agencies)

    def agency(self, name: str) -> AgencyPolicy:
        """Return an agency's policy; an unknown agency may do nothing."""
        return self.agencies.get(name) or AgencyPolicy(name, "", {}, frozenset())

    def default_scopes(self, agency: str, known_types: list[str]) -> list[str]:
        """Return the widest scopes the agency's policy can use, one per type."""
        pol = self.agency(agency)
        out = []
        for rtype in known_types:
            letters = ""
            if rtype in pol.write:
                letters += "cu"
            if pol.read_rules(rtype):
                letters = ("c" if "c" in letters else "") + "r" + ("u" if "u" in letters else "") + "s"
            if letters:
                out.append(f"system/{rtype}.{letters}")
        return out

    # -- scopes -----------------------------------------------------------------------------
    def require_scope(self, caller: Caller, res_type: str, interaction: str) -> None:
        """Raise 403 unless the caller's scopes permit the interaction on the type."""
        if caller.system:
            return
        if not allows(caller.scopes, res_type, ACTIONS[interaction]):
            raise Forbidden(f"the token's scopes do not permit {interaction} on {res_type}")

    # -- national services ------------------------------------------------------------------
    def may_operate(self, caller: Caller, what: str) -> bool:
        """Return True when the caller may operate a part of the gateway (outbox, metrics)."""
        return caller.system or what in self.agency(caller.agency).operate

    def may_call_national(self, caller: Caller, service: str) -> bool:
        """Return True when the caller's agency may call a national service (pds, cpis, ...)."""
        return caller.system or service in self.agency(caller.agency).national

    # -- reads ------------------------------------------------------------------------------
    def access_filter(self, caller: Caller, res_type: str) -> AccessFilter | None:
        """Return the SQL filter for what the caller may see of a type (None: everything).

        Raises ResourceNotFound-free: an agency that may see nothing of a type gets a filter
        that admits nothing, so searches are empty rather than refused.
        """
        if caller.system:
            return None
        rules = self.agency(caller.agency).read_rules(res_type) or ()
        hide = res_type != "Patient" and not self._glass(caller)
        if rules == (("all",),) and not hide:
            return None
        return AccessFilter(rules, caller.agency, hide_restricted=hide)

    def hides_shielded_location(self, caller: Caller, params: set[str]) -> bool:
        """Return True when a Patient search must not match shielded children (location params)."""
        return not caller.system and not self._glass(caller) and bool(params & LOCATION_PARAMS)

    def _glass(self, caller: Caller) -> bool:
        return bool(caller.break_glass_reason) and self.agency(caller.agency).break_glass

    def may_read(self, caller: Caller, res_type: str, resource: dict[str, Any]) -> bool:
        """Return True when the caller may see this resource at all (possibly redacted)."""
        if caller.system:
            return True
        rules = self.agency(caller.agency).read_rules(res_type)
        if not rules:
            return False
        owner = owner_of(resource)
        if res_type != "Patient" and is_restricted(resource) and owner != caller.agency \
                and not self._glass(caller):
            return False
        for rule in rules:
            if rule[0] == "all" or (rule[0] == "own" and owner == caller.agency):
                return True
            if rule[0] == "codes" and _codes(resource) & {tuple(p) for p in rule[1]}:
                return True
        return False

    def view(self, caller: Caller, res_type: str, content: str) -> str | None:
        """Return what the caller may see of stored JSON: as is, redacted, or None (hidden)."""
        if caller.system:
            return content
        if systems.CONFIDENTIALITY not in content and self.agency(caller.agency).read_rules(
                res_type) == (("all",),):
            return content  # no label to honour and the agency reads every one: no parse
        resource = orjson.loads(content)
        if not self.may_read(caller, res_type, resource):
            return None
        if res_type == "Patient" and is_restricted(resource) \
                and owner_of(resource) != caller.agency and not self._glass(caller):
            return orjson.dumps(redact_patient(resource)).decode("utf-8")
        return content

    def broke_glass(self, caller: Caller, res_type: str, content: str) -> bool:
        """Return True when this resource is visible in full only because the glass was broken."""
        if caller.system or not self._glass(caller) or systems.CONFIDENTIALITY not in content:
            return False
        resource = orjson.loads(content)
        return is_restricted(resource) and owner_of(resource) != caller.agency

    # -- writes -----------------------------------------------------------------------------
    def prepare_write(self, caller: Caller, res_type: str, resource: dict[str, Any],
                      previous: dict[str, Any] | None, interaction: str) -> dict[str, Any]:
        """Check the caller may write and return the resource with ownership and labels kept.

        The owning agency is set on create and never changes; security labels already on the
        resource are kept whatever the client sends.
        """
        if res_type in NEVER_WRITABLE and not caller.system:
            raise Forbidden(f"{res_type} cannot be written through the API")
        self.require_scope(caller, res_type, interaction)
        owner = caller.agency
        if previous is not None:
            prev_owner = owner_of(previous)
            if not caller.system and prev_owner not in (None, caller.agency):
                if not self.may_read(caller, res_type, previous):
                    raise ResourceNotFound(f"{res_type}/{previous.get('id')} is not known")
                raise Forbidden(f"{res_type}/{previous.get('id')} belongs to another agency")
            owner = prev_owner or caller.agency
        if not caller.system and res_type not in self.agency(caller.agency).write:
            raise Forbidden(f"the {caller.agency} agency may not write {res_type}")
        out = copy.copy(resource)
        meta = dict(out.get("meta") or {})
        tags = [t for t in meta.get("tag") or () if not (
            isinstance(t, dict) and t.get("system") == systems.AGENCY)]
        tags.append({"system": systems.AGENCY, "code": owner})
        meta["tag"] = tags
        labels = list(meta.get("security") or ())
        for label in (previous or {}).get("meta", {}).get("security") or ():
            if label not in labels:
                labels.append(label)
        if labels:
            meta["security"] = labels
        out["meta"] = meta
        return out

    def may_delete(self, caller: Caller, res_type: str, previous: dict[str, Any] | None) -> None:
        """Raise unless the caller may delete the resource."""
        if res_type in NEVER_WRITABLE and not caller.system:
            raise Forbidden(f"{res_type} cannot be deleted through the API")
        self.require_scope(caller, res_type, "delete")
        if caller.system or previous is None:
            return
        if owner_of(previous) not in (None, caller.agency):
            if not self.may_read(caller, res_type, previous):
                raise ResourceNotFound(f"{res_type}/{previous.get('id')} is not known")
            raise Forbidden(f"{res_type}/{previous.get('id')} belongs to another agency")
        if res_type not in self.agency(caller.agency).write:
            raise Forbidden(f"the {caller.agency} agency may not delete {res_type}")


def redact_patient(resource: dict[str, Any]) -> dict[str, Any]:
    """Return minimal demographics of a shielded child: no address, contacts or carers."""
    out = {k: resource[k] for k in PATIENT_MINIMAL if k in resource}
    meta = dict(out.get("meta") or {})
    labels = list(meta.get("security") or ())
    labels.append(REDACTED)
    meta["security"] = labels
    out["meta"] = meta
    return out


def default_scopes(agency: str) -> list[str]:
    """Return every scope the built-in policy lets the agency use (for development tokens)."""
    from gateway.fhir.registry import load_registry

    return Policy.load().default_scopes(agency, load_registry().names())
