"""Compose a golden Patient from the source Patients linked to it.

The golden Patient holds every enterprise identifier of the child (its own index id, NHS numbers,
UPNs and each source's own id), the name, sex and date of birth most sources agree on (ties go to
the most trustworthy source: one with a verified NHS number, then one with a UPN), the address of
the most recently updated source, and a `seealso` link to each source Patient. When any source
marks the child restricted, the golden Patient carries the label too and holds no address,
telecom or contacts at all.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.identity.features import GOLDEN_SOURCE, Features, is_golden, norm_name
from vocab import systems

VERIFIED_EXTENSION = {
    "url": systems.UKCORE_NHS_NUMBER_VERIFICATION_EXTENSION,
    "valueCodeableConcept": {"coding": [{
        "system": systems.UKCORE_NHS_NUMBER_VERIFICATION_STATUS, "code": "01",
        "display": "Number present and verified"}]},
}
KEPT_NAME_USES = ("usual", "old", "nickname", "maiden")


@dataclass(frozen=True)
class Member:
    """One source Patient of a golden Patient, as stored."""

    id: str
    resource: dict[str, Any]
    features: Features
    last_updated: str


def _trust(member: Member) -> tuple[int, int, str]:
    f = member.features
    return (2 if f.nhs_verified else 0) + (1 if f.upn else 0), len(f.nhs), member.id


def _vote(values: Sequence[Any], ordered: Sequence[Member], pick: Any) -> Any:
    counts = Counter(v for v in values if v)
    if not counts:
        return None
    best = max(counts.values())
    tied = {v for v, n in counts.items() if n == best}
    for member in ordered:  # most trusted first
        value = pick(member)
        if value in tied:
            return value
    return min(tied)


def _official(name: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in name.items() if k in ("family", "given", "prefix", "suffix", "text")}
    out = {"use": "official", **out}
    return out


def _name_key(name: dict[str, Any]) -> tuple[str, str]:
    given = " ".join(norm_name(g) for g in name.get("given") or ())
    return norm_name(name.get("family")), given


def compose(golden_id: str, members: Sequence[Member]) -> dict[str, Any]:
    """Return the golden Patient for its source Patients (at least one)."""
    ordered = sorted(members, key=_trust, reverse=True)
    identifiers: list[dict[str, Any]] = [{"use": "official", "system": systems.GOLDEN_ID,
                                          "value": golden_id}]
    verified = {n for m in members for n in m.features.nhs_verified}
    nhs = sorted({n for m in members for n in m.features.nhs},
                 key=lambda n: (n not in verified, n))
    for number in nhs:
        ident: dict[str, Any] = {"system": systems.NHS_NUMBER, "value": number}
        if number in verified:
            ident["extension"] = [VERIFIED_EXTENSION]
        identifiers.append(ident)
    identifiers += [{"system": systems.UPN, "value": u}
                    for u in sorted({u for m in members for u in m.features.upn})]
    local: dict[tuple[str, str], None] = {}
    for m in members:
        for ident in m.resource.get("identifier") or ():
            system = ident.get("system") if isinstance(ident, dict) else None
            if isinstance(system, str) and system.startswith(f"{systems.BASE}/Id/local/") \
                    and isinstance(ident.get("value"), str):
                local[(system, ident["value"])] = None
    identifiers += [{"system": s, "value": v} for s, v in sorted(local)]

    def official_key(m: Member) -> tuple[str, str] | None:
        names = [n for n in m.resource.get("name") or () if isinstance(n, dict)]
        chosen = next((n for n in names if n.get("use") == "official"), names[0] if names else None)
        return _name_key(chosen) if chosen else None

    keys = [official_key(m) for m in ordered]
    best_key = _vote(keys, ordered, official_key)
    names: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for m in ordered:
        for name in m.resource.get("name") or ():
            if not isinstance(name, dict) or not (name.get("family") or name.get("given")):
                continue
            key = _name_key(name)
            if key == best_key and not names:
                names.append(_official(name))
                seen.add(key)
    for m in ordered:
        for name in m.resource.get("name") or ():
            if not isinstance(name, dict) or not (name.get("family") or name.get("given")):
                continue
            key = _name_key(name)
            if key in seen:
                continue
            seen.add(key)
            alt = {k: v for k, v in name.items() if k in ("family", "given", "text")}
            if name.get("use") in KEPT_NAME_USES:
                alt = {"use": name["use"], **alt}
            names.append(alt)
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "id": golden_id,
        "meta": {"source": GOLDEN_SOURCE},
        "identifier": identifiers,
        "active": True,
    }
    if names:
        patient["name"] = names
    gender = _vote([m.features.gender for m in ordered], ordered, lambda m: m.features.gender)
    if gender:
        patient["gender"] = gender
    birth = _vote([m.features.birth_date for m in ordered], ordered,
                  lambda m: m.features.birth_date)
    if birth:
        patient["birthDate"] = birth
    for m in ordered:
        if "deceasedDateTime" in m.resource or m.resource.get("deceasedBoolean") is True:
            element = "deceasedDateTime" if "deceasedDateTime" in m.resource \
                else "deceasedBoolean"
            patient[element] = m.resource[element]
            break
    restricted = [label for m in members
                  for label in (m.resource.get("meta") or {}).get("security") or ()
                  if isinstance(label, dict) and label.get("system") == systems.CONFIDENTIALITY]
    if restricted:
        labels: list[dict[str, Any]] = []
        for label in restricted:
            if label not in labels:
                labels.append(label)
        patient["meta"]["security"] = labels
    if not any(m.features.restricted for m in members):
        recent = sorted(members, key=lambda m: (m.last_updated, m.id), reverse=True)
        address = next((m.resource["address"] for m in recent if m.resource.get("address")), None)
        if address:
            patient["address"] = address
    gp = next((m.resource["generalPractitioner"] for m in ordered
               if m.resource.get("generalPractitioner")), None)
    if gp:
        patient["generalPractitioner"] = gp
    patient["link"] = [{"other": {"reference": f"Patient/{m.id}"}, "type": "seealso"}
                       for m in sorted(members, key=lambda m: m.id)]
    return patient


def retired(golden_id: str, successor: str | None, previous: dict[str, Any] | None) -> dict[str, Any]:
    """Return a golden Patient that no longer stands for a child (merged away or emptied)."""
    patient: dict[str, Any] = {
        "resourceType": "Patient", "id": golden_id, "meta": {"source": GOLDEN_SOURCE},
        "identifier": [{"use": "old", "system": systems.GOLDEN_ID, "value": golden_id}],
        "active": False,
    }
    labels = ((previous or {}).get("meta") or {}).get("security")
    if labels:
        patient["meta"]["security"] = labels
    if successor:
        patient["link"] = [{"other": {"reference": f"Patient/{successor}"},
                            "type": "replaced-by"}]
    return patient


__all__ = ["Member", "compose", "is_golden", "retired"]
