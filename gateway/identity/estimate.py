"""Estimate the Fellegi–Sunter weights and thresholds from records whose true identity is known.

m-probabilities come from the pairs of records of the same child, smoothed towards stated prior
probabilities (a Dirichlet prior of `prior_strength` pseudo-pairs) so that a level the fixtures
never show (a swapped name, say) still gets a sensible weight. u-probabilities come from every
pair of records of different children, with add-half smoothing. Thresholds are set on the
posterior probability of a match (prior odds: matching pairs over all pairs): possible at
`possible_probability`, probable at `probable_probability`, certain at `certain_probability`.
"""
from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.identity.features import Features
from gateway.identity.matching import LEVELS, MatchModel, levels


@dataclass(frozen=True)
class Labelled:
    """One record's features and the child it truly is."""

    features: Features
    child: str


def _log2_odds(probability: float) -> float:
    return math.log2(probability / (1.0 - probability))


def estimate(records: Sequence[Labelled], model: MatchModel,
             estimation: dict[str, Any]) -> dict[str, Any]:
    """Return weights data (the `weights.yaml` shape) estimated from labelled records."""
    same: dict[str, Counter[str]] = {f: Counter() for f in LEVELS}
    other: dict[str, Counter[str]] = {f: Counter() for f in LEVELS}
    n_same = n_other = 0
    for a, b in itertools.combinations(records, 2):
        found = levels(a.features, b.features, model)
        target = same if a.child == b.child else other
        if a.child == b.child:
            n_same += 1
        else:
            n_other += 1
        for name, level in found.items():
            target[name][level] += 1
    strength = float(estimation["prior_strength"])
    priors: dict[str, dict[str, float]] = estimation["prior_m"]
    comparisons: dict[str, Any] = {}
    for name, lvls in LEVELS.items():
        total_same = sum(same[name].values())
        total_other = sum(other[name].values())
        out = {}
        for level in lvls:
            m = (same[name][level] + strength * float(priors[name][level])) / (
                total_same + strength)
            u = (other[name][level] + 0.5) / (total_other + 0.5 * len(lvls))
            out[level] = {"m": round(m, 6), "u": round(u, 8)}
        comparisons[name] = {"levels": out}
    prior = _log2_odds(max(n_same, 1) / max(n_same + n_other, 2))
    thresholds: dict[str, Any] = {
        key: round(_log2_odds(float(estimation[f"{key}_probability"])) - prior, 2)
        for key in ("certain", "probable", "possible")
    }
    thresholds["conflict"] = float(estimation["conflict"])
    thresholds["given_disagree_max"] = str(estimation.get("given_disagree_max", "possible"))
    return {
        "estimated_from": f"{len(records)} labelled records, {n_same} matching pairs, "
                          f"{n_other} non-matching pairs",
        "prior_log2_odds": round(prior, 4),
        "fuzzy_similarity": model.fuzzy_similarity,
        "thresholds": thresholds,
        "comparisons": comparisons,
    }


__all__ = ["Labelled", "estimate"]


HEADER = """\
# Fellegi-Sunter weights for identity matching, as data.
#
# For each comparison level: m = P(level | two records of the same child),
# u = P(level | records of different children); its weight is log2(m / u), and a record pair's
# score is the sum over the fields both records hold. Thresholds are in the same bits:
#   certain   at or above: certain (also any deterministic rule: local id, verified NHS number, UPN)
#   probable  at or above: linked without a person
#   possible  at or above: waits in the review queue
#   conflict  an identifier rule is overruled (to possible) when the rest scores below this
#   given_disagree_max  the best grade a pair whose given names disagree can reach (twins)
#
# `estimation` holds the inputs of `wraparound identity estimate`, which re-estimates every
# other section from records whose identity is known (by default the fixtures: the five sample
# sources' expected FHIR and truth.csv) and rewrites this file. Matching never reads it.
"""


def labelled_fixtures(folder: Any) -> list[Labelled]:
    """Return the source Patients of the fixture samples with the child each truly is."""
    import csv
    import json
    from pathlib import Path

    from gateway.identity.features import extract

    root = Path(folder)
    with (root / "truth.csv").open(encoding="utf-8") as handle:
        truth = {(r["source"], r["record_id"]): r["child_id"] for r in csv.DictReader(handle)}
    out = []
    for path in sorted(root.glob("*/golden/sample.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        for record in data["records"]:
            child = truth.get((data["source"], record["record_id"]))
            for resource in record["resources"]:
                if resource.get("resourceType") == "Patient" and child:
                    out.append(Labelled(extract(resource), child))
    return out


def render(data: dict[str, Any], estimation: dict[str, Any], blocking: dict[str, Any]) -> str:
    """Return the weights file text: header, estimation inputs, then the estimates."""
    import yaml

    body = {"estimation": estimation, "blocking": blocking, **data}
    return HEADER + str(yaml.safe_dump(body, sort_keys=False, width=100))


__all__ += ["HEADER", "labelled_fixtures", "render"]
