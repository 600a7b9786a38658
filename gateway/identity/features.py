"""The demographic features identity matching compares, drawn from a FHIR Patient.

Everything is normalised once here (case, accents, spacing, punctuation, postcode format,
identifier check characters), so comparisons and blocking keys work on clean values. Features are
stored beside each source Patient's link as JSON, so matching never re-reads the Patient.
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import Any

import orjson

from vocab import systems
from vocab.identifiers import is_valid_nhs_number, is_valid_upn

SOURCE_PREFIX = "urn:wraparound:source:"
GOLDEN_SOURCE = "urn:wraparound:identity"
LOCAL_PREFIX = f"{systems.BASE}/Id/local/"
VERIFIED = "01"
_POSTCODE = re.compile(r"^([A-Z]{1,2}[0-9][A-Z0-9]?)([0-9][A-Z]{2})$")
_NOT_NAME = re.compile(r"[^a-z\- ]+")


def norm_name(value: object) -> str:
    """Return a name folded for comparison: lower case, no accents, apostrophes or stray marks."""
    if not isinstance(value, str):
        return ""
    return _norm_name(value)


# Names and address lines recur (a Patient is folded when matched, when its golden Patient is
# recomposed, and its relatives share names): the folding of recent strings is kept.
@lru_cache(maxsize=8192)
def _norm_name(value: str) -> str:
    text = unicodedata.normalize("NFKD", value)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).casefold()
    text = re.sub(r"['’`.]", "", text)
    text = _NOT_NAME.sub(" ", text)
    text = re.sub(r"\s*-\s*", "-", text)
    return " ".join(text.split()).strip("-")


def _norm_line(value: object) -> str:
    if not isinstance(value, str):
        return ""
    return _norm_line_text(value)


@lru_cache(maxsize=8192)
def _norm_line_text(value: str) -> str:
    text = unicodedata.normalize("NFKD", value)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).casefold()
    return " ".join(re.sub(r"[^a-z0-9 ]+", " ", text).split())


def norm_postcode(value: object) -> str | None:
    """Return a UK postcode as `OUTWARD INWARD` in capitals, or None when it is not one."""
    if not isinstance(value, str):
        return None
    compact = "".join(value.split()).upper()
    m = _POSTCODE.match(compact)
    return f"{m.group(1)} {m.group(2)}" if m else None


def postcode_sector(code: str) -> str:
    """Return the postcode sector (`NR31 2`)."""
    return code[:-2]


def postcode_district(code: str) -> str:
    """Return the postcode district, the outward code (`NR31`)."""
    return code.split(" ")[0]


@dataclass(frozen=True)
class Features:
    """What matching knows about one Patient."""

    source: str = ""
    given: tuple[str, ...] = ()  # first given names, from every name the record holds
    middle: tuple[str, ...] = ()  # further given names
    family: tuple[str, ...] = ()  # family names: official, usual, old, maiden
    birth_date: str | None = None
    gender: str | None = None
    postcodes: tuple[str, ...] = ()
    lines: tuple[str, ...] = ()  # address lines (house and street), folded like names
    nhs: tuple[str, ...] = ()  # NHS numbers that pass the Modulus 11 check
    nhs_verified: tuple[str, ...] = ()  # of those, the ones marked verified (UK Core code 01)
    upn: tuple[str, ...] = ()  # UPNs whose check letter is right
    local_ids: tuple[str, ...] = ()  # "system|value" of each local system's own id
    restricted: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_json(self) -> str:
        """Return the features as compact JSON (stored beside the link)."""
        # the fields hold strings, tuples of strings and a flag: no deep copy is needed
        data = {name: v for name in _FIELDS if (v := getattr(self, name)) not in (
            (), None, False, "", {})}
        return orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode("utf-8")

    @classmethod
    def from_json(cls, text: str) -> Features:
        """Return features stored by `to_json`."""
        data: dict[str, Any] = orjson.loads(text)

        def items(key: str) -> tuple[str, ...]:
            return tuple(data.get(key) or ())

        return cls(source=str(data.get("source", "")), given=items("given"),
                   middle=items("middle"), family=items("family"),
                   birth_date=data.get("birth_date"), gender=data.get("gender"),
                   postcodes=items("postcodes"), lines=items("lines"), nhs=items("nhs"),
                   nhs_verified=items("nhs_verified"), upn=items("upn"),
                   local_ids=items("local_ids"), restricted=bool(data.get("restricted")))

    def digest(self) -> str:
        """Return a short hash of the features: unchanged features need no new matching."""
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()[:32]


_FIELDS = tuple(f.name for f in fields(Features) if f.name != "extra")


def source_of(patient: dict[str, Any]) -> str:
    """Return the source system a Patient came from (meta.source), else its owning agency."""
    meta = patient.get("meta") or {}
    origin = meta.get("source")
    if isinstance(origin, str) and origin.startswith(SOURCE_PREFIX):
        return origin[len(SOURCE_PREFIX):]
    for tag in meta.get("tag") or ():
        if isinstance(tag, dict) and tag.get("system") == systems.AGENCY:
            return f"agency:{tag.get('code')}"
    return "unknown"


def is_golden(patient: dict[str, Any]) -> bool:
    """Return True for a golden Patient kept by the identity service."""
    if (patient.get("meta") or {}).get("source") == GOLDEN_SOURCE:
        return True
    return any(isinstance(i, dict) and i.get("system") == systems.GOLDEN_ID
               for i in patient.get("identifier") or ())


def _verified(identifier: dict[str, Any]) -> bool:
    for ext in identifier.get("extension") or ():
        if isinstance(ext, dict) and ext.get("url") == \
                systems.UKCORE_NHS_NUMBER_VERIFICATION_EXTENSION:
            for coding in (ext.get("valueCodeableConcept") or {}).get("coding") or ():
                if isinstance(coding, dict) and coding.get("code") == VERIFIED:
                    return True
    return False


def _add(out: list[str], value: str) -> None:
    if value and value not in out:
        out.append(value)


def _names(patient: dict[str, Any]) -> tuple[list[str], list[str], list[str]]:
    given: list[str] = []
    middle: list[str] = []
    family: list[str] = []
    for name in patient.get("name") or ():
        if not isinstance(name, dict):
            continue
        words: list[str] = []
        for part in name.get("given") or ():
            words.extend(norm_name(part).split())
        fam = norm_name(name.get("family"))
        if not words and not fam and isinstance(name.get("text"), str):
            tokens = norm_name(name["text"]).split()
            if len(tokens) > 1:
                words, fam = tokens[:-1], tokens[-1]
        if words:
            _add(given, words[0])
            for word in words[1:]:
                _add(middle, word)
        if fam:
            _add(family, fam)
    return given, middle, family


def extract(patient: dict[str, Any]) -> Features:
    """Return the matching features of a Patient."""
    given, middle, family = _names(patient)
    nhs: list[str] = []
    verified: list[str] = []
    upn: list[str] = []
    local: list[str] = []
    for ident in patient.get("identifier") or ():
        if not isinstance(ident, dict) or not isinstance(ident.get("value"), str):
            continue
        system = ident.get("system") or ""
        value = "".join(ident["value"].split())
        if system == systems.NHS_NUMBER and is_valid_nhs_number(value):
            _add(nhs, value)
            if _verified(ident):
                _add(verified, value)
        elif system == systems.UPN and is_valid_upn(value.upper()):
            _add(upn, value.upper())
        elif system.startswith(LOCAL_PREFIX):
            _add(local, f"{system}|{ident['value'].strip().upper()}")
    postcodes: list[str] = []
    lines: list[str] = []
    for address in patient.get("address") or ():
        if isinstance(address, dict):
            code = norm_postcode(address.get("postalCode"))
            if code:
                _add(postcodes, code)
            for line in address.get("line") or ():
                folded = _norm_line(line)
                if len(folded) > 3:
                    _add(lines, folded)
    birth = patient.get("birthDate")
    gender = patient.get("gender")
    security = (patient.get("meta") or {}).get("security") or ()
    return Features(
        source=source_of(patient),
        given=tuple(given), middle=tuple(m for m in middle if m not in given),
        family=tuple(family),
        birth_date=birth if isinstance(birth, str) and len(birth) == 10 else None,
        gender=gender if gender in ("male", "female", "other") else None,
        postcodes=tuple(postcodes), lines=tuple(lines), nhs=tuple(nhs), nhs_verified=tuple(verified),
        upn=tuple(upn), local_ids=tuple(local),
        restricted=any(isinstance(s, dict) and s.get("system") == systems.CONFIDENTIALITY
                       and s.get("code") in ("R", "V") for s in security),
    )


__all__ = ["Features", "extract", "is_golden", "norm_name", "norm_postcode", "postcode_district",
           "postcode_sector", "source_of"]
