"""Deterministic rules, then Fellegi–Sunter scoring, between the features of two Patients.

Each field comparison lands on one level (exact, nickname, transposed, sector, ...). A level's
weight is log2(m/u): m is how often two records of the same child land on it, u how often two
records of different children do. Weights, thresholds and the fuzzy-name cut-off are data
(`weights.yaml`, estimated on the fixtures by `wraparound identity estimate`); names also use the
nickname table (`nicknames.yaml`).

Grades, from the FHIR match-grade code system:

    certain        a deterministic rule held (shared local id, verified NHS number, valid UPN)
                   or the score reached the certain threshold
    probable       the score reached the probable threshold: linked without a person
    possible       the score reached the possible threshold: waits in the review queue
    certainly-not  a person decided the two are different children
"""
from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import jellyfish
import yaml

from gateway.identity.features import Features, postcode_district, postcode_sector

FIELDS = ("nhs_number", "upn", "given", "family", "birth_date", "gender", "address")
IDENTIFIER_FIELDS = ("nhs_number", "upn")
LEVELS: dict[str, tuple[str, ...]] = {
    "nhs_number": ("agree", "disagree"),
    "upn": ("agree", "disagree"),
    "given": ("exact", "nickname", "fuzzy", "swapped", "middle", "disagree"),
    "family": ("exact", "hyphen", "fuzzy", "swapped", "disagree"),
    "birth_date": ("exact", "transposed", "one-part", "disagree"),
    "gender": ("agree", "disagree"),
    "address": ("line-and-postcode", "postcode", "line", "sector", "district", "disagree"),
}
GRADES = ("certain", "probable", "possible", "certainly-not")
GRADE_RANK = {"certain": 3, "probable": 2, "possible": 1, "none": 0, "certainly-not": -1}


@dataclass(frozen=True)
class Thresholds:
    """Score cut-offs (in bits) between the grades."""

    certain: float
    probable: float
    possible: float
    conflict: float  # an identifier rule is overruled when the demographics score below this


@dataclass(frozen=True)
class MatchModel:
    """Weights, thresholds and name tables: everything that decides a comparison."""

    m: dict[str, dict[str, float]]
    u: dict[str, dict[str, float]]
    thresholds: Thresholds
    prior_log2_odds: float
    fuzzy_similarity: float
    nicknames: dict[str, frozenset[str]]
    max_bucket: int = 500
    given_disagree_max: str = "possible"  # twins: same household and birthday, other names
    source: str = ""
    weights: dict[str, dict[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        table = {f: {lvl: math.log2(self.m[f][lvl] / self.u[f][lvl]) for lvl in self.m[f]}
                 for f in self.m}
        object.__setattr__(self, "weights", table)

    @classmethod
    def load(cls, weights_text: str | None = None, nicknames_text: str | None = None) -> MatchModel:
        """Load the model (the built-in weights and nickname table by default)."""
        pkg = resources.files("gateway.identity")
        data = yaml.safe_load(weights_text or pkg.joinpath("weights.yaml").read_text("utf-8"))
        names = yaml.safe_load(nicknames_text or pkg.joinpath("nicknames.yaml").read_text("utf-8"))
        return cls.from_data(data, names)

    @classmethod
    def from_data(cls, data: dict[str, Any], names: dict[str, list[str]]) -> MatchModel:
        """Build the model from parsed weights and nickname data."""
        m: dict[str, dict[str, float]] = {}
        u: dict[str, dict[str, float]] = {}
        for name, spec in data["comparisons"].items():
            if name not in LEVELS:
                raise ValueError(f"unknown comparison {name!r}")
            levels = spec["levels"]
            if set(levels) != set(LEVELS[name]):
                raise ValueError(f"comparison {name!r} needs the levels {LEVELS[name]}")
            m[name] = {lvl: float(v["m"]) for lvl, v in levels.items()}
            u[name] = {lvl: float(v["u"]) for lvl, v in levels.items()}
            for lvl in levels:
                if not (0 < m[name][lvl] <= 1 and 0 < u[name][lvl] <= 1):
                    raise ValueError(f"m and u of {name}.{lvl} must be probabilities above 0")
        t = data["thresholds"]
        thresholds = Thresholds(float(t["certain"]), float(t["probable"]), float(t["possible"]),
                                float(t["conflict"]))
        if not thresholds.certain >= thresholds.probable >= thresholds.possible:
            raise ValueError("thresholds must satisfy certain >= probable >= possible")
        return cls(m=m, u=u, thresholds=thresholds,
                   prior_log2_odds=float(data.get("prior_log2_odds", 0.0)),
                   fuzzy_similarity=float(data.get("fuzzy_similarity", 0.9)),
                   nicknames=nickname_index(names),
                   max_bucket=int((data.get("blocking") or {}).get("max_bucket", 500)),
                   given_disagree_max=str(t.get("given_disagree_max", "possible")),
                   source=str(data.get("estimated_from", "")))

    def grade(self, weight: float) -> str:
        """Return the grade a probabilistic score earns ("none" below possible)."""
        if weight >= self.thresholds.certain:
            return "certain"
        if weight >= self.thresholds.probable:
            return "probable"
        if weight >= self.thresholds.possible:
            return "possible"
        return "none"

    def probability(self, weight: float) -> float:
        """Return the posterior probability that two records are the same child."""
        odds = weight + self.prior_log2_odds
        if odds > 60:
            return 1.0
        return float(1.0 / (1.0 + 2.0 ** (-odds)))


def nickname_index(table: dict[str, list[str]]) -> dict[str, frozenset[str]]:
    """Return, for every name in the table, the set of formal names it stands for."""
    index: dict[str, set[str]] = {}
    for formal, variants in table.items():
        index.setdefault(formal, set()).add(formal)
        for variant in variants:
            index.setdefault(variant, set()).add(formal)
    return {name: frozenset(formals) for name, formals in index.items()}


@dataclass(frozen=True)
class Comparison:
    """How two records compare: the level of each field, the score, the grade and the rule."""

    levels: dict[str, str]
    weight: float
    grade: str
    rule: str
    probability: float

    @property
    def rank(self) -> int:
        """Return the grade's rank (certain 3 ... certainly-not -1)."""
        return GRADE_RANK[self.grade]


# -- field comparisons ------------------------------------------------------------------------
@functools.lru_cache(maxsize=65536)
def _phonetic(name: str) -> tuple[str, str]:
    flat = name.replace("-", "").replace(" ", "")
    return jellyfish.metaphone(flat), jellyfish.nysiis(flat)


@functools.lru_cache(maxsize=65536)
def _similar(a: str, b: str, cutoff: float) -> bool:
    if jellyfish.jaro_winkler_similarity(a, b) >= cutoff:
        return True
    if min(len(a), len(b)) < 3:
        return False
    pa, pb = _phonetic(a), _phonetic(b)
    return pa[0] == pb[0] or pa[1] == pb[1]


def _nickname(a: str, b: str, nicknames: dict[str, frozenset[str]]) -> bool:
    fa = nicknames.get(a, frozenset()) | {a}
    fb = nicknames.get(b, frozenset()) | {b}
    return bool(fa & fb)


def compare_given(a: Features, b: Features, model: MatchModel) -> str | None:
    """Compare first given names: exact, nickname, fuzzy, middle (a middle name used) or not."""
    if not a.given or not b.given:
        return None
    pairs = [(x, y) for x in a.given for y in b.given]
    if any(x == y for x, y in pairs):
        return "exact"
    if any(_nickname(x, y, model.nicknames) for x, y in pairs):
        return "nickname"
    if any(_similar(x, y, model.fuzzy_similarity) for x, y in pairs):
        return "fuzzy"
    if set(a.given) & set(b.middle) or set(b.given) & set(a.middle):
        return "middle"
    return "disagree"


def _family_parts(name: str) -> set[str]:
    return {p for p in name.replace(" ", "-").split("-") if len(p) > 1}


def compare_family(a: Features, b: Features, model: MatchModel) -> str | None:
    """Compare family names (every variant): exact, hyphen (one part of a double name), fuzzy."""
    if not a.family or not b.family:
        return None
    pairs = [(x, y) for x in a.family for y in b.family]
    if any(x == y or x.replace(" ", "") == y.replace(" ", "") for x, y in pairs):
        return "exact"
    if any(_family_parts(x) & _family_parts(y) for x, y in pairs):
        return "hyphen"
    if any(_similar(x, y, model.fuzzy_similarity) for x, y in pairs):
        return "fuzzy"
    return "disagree"


def _swapped(a: Features, b: Features, model: MatchModel) -> bool:
    def close(xs: Iterable[str], ys: Iterable[str]) -> bool:
        return any(x == y or _similar(x, y, model.fuzzy_similarity) for x in xs for y in ys)

    return close(a.given, b.family) and close(a.family, b.given)


def compare_birth_date(a: Features, b: Features) -> str | None:
    """Compare dates of birth: exact, day and month transposed, one part different, or not."""
    if not a.birth_date or not b.birth_date:
        return None
    if a.birth_date == b.birth_date:
        return "exact"
    ya, ma, da = a.birth_date.split("-")
    yb, mb, db = b.birth_date.split("-")
    if ya == yb and ma == db and da == mb:
        return "transposed"
    if sum((ya == yb, ma == mb, da == db)) == 2:
        return "one-part"
    return "disagree"


def compare_address(a: Features, b: Features) -> str | None:
    """Compare where the children live, postcode and address lines as one field.

    One field, not two: siblings share both, and counting them separately would count the same
    household twice.
    """
    line = bool(set(a.lines) & set(b.lines))
    if not a.postcodes or not b.postcodes:
        if a.lines and b.lines:
            return "line" if line else None
        return None
    if set(a.postcodes) & set(b.postcodes):
        return "line-and-postcode" if line else "postcode"
    if line:
        return "line"
    if {postcode_sector(p) for p in a.postcodes} & {postcode_sector(p) for p in b.postcodes}:
        return "sector"
    if {postcode_district(p) for p in a.postcodes} & \
            {postcode_district(p) for p in b.postcodes}:
        return "district"
    return "disagree"


def _agree(xs: tuple[str, ...], ys: tuple[str, ...]) -> str | None:
    if not xs or not ys:
        return None
    return "agree" if set(xs) & set(ys) else "disagree"


def levels(a: Features, b: Features, model: MatchModel) -> dict[str, str]:
    """Return the level of every field both records hold."""
    out: dict[str, str | None] = {
        "nhs_number": _agree(a.nhs, b.nhs),
        "upn": _agree(a.upn, b.upn),
        "given": compare_given(a, b, model),
        "family": compare_family(a, b, model),
        "birth_date": compare_birth_date(a, b),
        "gender": (None if not a.gender or not b.gender
                   else "agree" if a.gender == b.gender else "disagree"),
        "address": compare_address(a, b),
    }
    if out["given"] in ("disagree", "middle") and out["family"] == "disagree" \
            and _swapped(a, b, model):
        out["given"] = out["family"] = "swapped"
    return {k: v for k, v in out.items() if v is not None}


def deterministic_rule(a: Features, b: Features) -> str | None:
    """Return the deterministic rule two records satisfy, if any."""
    if set(a.local_ids) & set(b.local_ids):
        return "local-id"
    shared = set(a.nhs) & set(b.nhs)
    if shared & (set(a.nhs_verified) | set(b.nhs_verified)):
        return "nhs-number"
    if set(a.upn) & set(b.upn):
        return "upn"
    return None


def compare(a: Features, b: Features, model: MatchModel) -> Comparison:
    """Compare two records: deterministic rules first, then the Fellegi–Sunter score."""
    found = levels(a, b, model)
    weights = model.weights
    weight = sum(weights[f][lvl] for f, lvl in found.items())
    demographic = sum(weights[f][lvl] for f, lvl in found.items() if f not in IDENTIFIER_FIELDS)
    rule = deterministic_rule(a, b)
    if rule is not None:
        if demographic < model.thresholds.conflict and rule != "local-id":
            # The identifier agrees but the person does not: a mistyped or borrowed number.
            return Comparison(found, weight, "possible", f"{rule}-conflict",
                              model.probability(weight))
        return Comparison(found, max(weight, model.thresholds.certain), "certain", rule, 1.0)
    grade = model.grade(weight)
    if found.get("given") == "disagree" and GRADE_RANK[grade] > GRADE_RANK[
            model.given_disagree_max]:
        return Comparison(found, weight, model.given_disagree_max, "given-names-disagree",
                          model.probability(weight))
    return Comparison(found, weight, grade, "fellegi-sunter", model.probability(weight))


__all__ = ["FIELDS", "GRADES", "GRADE_RANK", "LEVELS", "Comparison", "MatchModel", "Thresholds",
           "compare", "deterministic_rule", "levels", "nickname_index"]
