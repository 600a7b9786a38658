"""The linkage quality report: how many children, in how many sources, what waits for review,
and pairwise precision and recall against a known truth (`source,record_id,child_id`).

A record is found through its source's own id (`local_id_system(source)`). Precision is the share
of record pairs placed in one golden Patient that truly are one child; recall the share of true
pairs placed in one golden Patient.
"""
from __future__ import annotations

import csv
import itertools
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.identity import store
from gateway.identity.features import LOCAL_PREFIX


@dataclass
class TruthScore:
    """Linkage against the known truth."""

    records: int = 0  # truth records found stored
    missing: int = 0  # truth records not stored (not ingested)
    children: int = 0
    children_with_one_golden: int = 0
    goldens_mixing_children: int = 0
    true_pairs: int = 0
    linked_pairs: int = 0
    correct_pairs: int = 0

    @property
    def precision(self) -> float:
        """Return the share of linked pairs that are one child (1.0 when nothing is linked)."""
        return self.correct_pairs / self.linked_pairs if self.linked_pairs else 1.0

    @property
    def recall(self) -> float:
        """Return the share of true pairs that are linked (1.0 when there are none)."""
        return self.correct_pairs / self.true_pairs if self.true_pairs else 1.0


@dataclass
class LinkageReport:
    """Counts over every stored source Patient."""

    sources: int = 0
    goldens: int = 0
    by_source_count: dict[int, int] = field(default_factory=dict)
    by_grade: dict[str, int] = field(default_factory=dict)
    by_system: dict[str, int] = field(default_factory=dict)
    review_open: int = 0
    truth: TruthScore | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the report as JSON-ready data."""
        out: dict[str, Any] = {
            "sourcePatients": self.sources, "children": self.goldens,
            "childrenBySourceCount": {str(k): v for k, v in sorted(self.by_source_count.items())},
            "linksByGrade": dict(sorted(self.by_grade.items())),
            "recordsBySource": dict(sorted(self.by_system.items())),
            "reviewOpen": self.review_open,
        }
        if self.truth is not None:
            t = self.truth
            out["truth"] = {
                "records": t.records, "notStored": t.missing, "children": t.children,
                "childrenWithOneGolden": t.children_with_one_golden,
                "goldensMixingChildren": t.goldens_mixing_children,
                "truePairs": t.true_pairs, "linkedPairs": t.linked_pairs,
                "correctPairs": t.correct_pairs, "precision": round(t.precision, 4),
                "recall": round(t.recall, 4),
            }
        return out

    def lines(self) -> list[str]:
        """Return the report as readable lines."""
        out = [f"source Patients: {self.sources}", f"children (golden Patients): {self.goldens}"]
        for n, count in sorted(self.by_source_count.items()):
            out.append(f"  in {n} source{'s' if n != 1 else ''}: {count}")
        out.append("links by grade: " + ", ".join(f"{k} {v}" for k, v in
                                                  sorted(self.by_grade.items())))
        out.append(f"possible matches waiting for review: {self.review_open}")
        if self.truth is not None:
            t = self.truth
            out += [
                f"against the truth: {t.records} records of {t.children} children"
                + (f" ({t.missing} not stored)" if t.missing else ""),
                (f"  children with exactly one golden Patient: {t.children_with_one_golden} "
                f"of {t.children}"),
                f"  golden Patients mixing children: {t.goldens_mixing_children}",
                (f"  pairs: true {t.true_pairs}, linked {t.linked_pairs}, correct "
                f"{t.correct_pairs}"),
                f"  precision {t.precision:.4f}  recall {t.recall:.4f}",
            ]
        return out


def read_truth(path: Path) -> dict[tuple[str, str], str]:
    """Return {(source, record_id): child_id} from a truth CSV."""
    with path.open(encoding="utf-8") as handle:
        return {(row["source"], row["record_id"].strip().upper()): row["child_id"]
                for row in csv.DictReader(handle)}


def _record_keys(link: store.Link) -> list[tuple[str, str]]:
    out = []
    for local in link.features.local_ids:
        system, _, value = local.partition("|")
        source, _, kind = system[len(LOCAL_PREFIX):].partition("/")
        if kind == "record":
            out.append((source, value))
    return out


def score_truth(links: list[store.Link], truth: dict[tuple[str, str], str]) -> TruthScore:
    """Return precision, recall and per-child counts of the links against the truth."""
    placed: dict[tuple[str, str], str] = {}
    for link in links:
        for key in _record_keys(link):
            if key in truth:
                placed[key] = link.golden_id
    result = TruthScore(records=len(placed), missing=len(set(truth) - set(placed)))
    goldens_of_child: dict[str, set[str]] = {}
    children_of_golden: dict[str, set[str]] = {}
    for key, golden in placed.items():
        goldens_of_child.setdefault(truth[key], set()).add(golden)
        children_of_golden.setdefault(golden, set()).add(truth[key])
    result.children = len(goldens_of_child)
    result.children_with_one_golden = sum(1 for g in goldens_of_child.values() if len(g) == 1)
    result.goldens_mixing_children = sum(1 for c in children_of_golden.values() if len(c) > 1)
    for a, b in itertools.combinations(sorted(placed), 2):
        same_child = truth[a] == truth[b]
        same_golden = placed[a] == placed[b]
        result.true_pairs += same_child
        result.linked_pairs += same_golden
        result.correct_pairs += same_child and same_golden
    return result


def build_report(tx: Any, truth: dict[tuple[str, str], str] | None) -> LinkageReport:
    """Return the linkage report over every stored link."""
    links = list(store.all_links(tx))
    systems_of: dict[str, set[str]] = {}
    for link in links:
        systems_of.setdefault(link.golden_id, set()).add(link.source)
    report = LinkageReport(
        sources=len(links), goldens=len(systems_of),
        by_source_count=dict(Counter(len(s) for s in systems_of.values())),
        by_grade=dict(Counter(link.grade for link in links)),
        by_system=dict(Counter(link.source for link in links)),
        review_open=store.count_open_reviews(tx),
    )
    if truth is not None:
        report.truth = score_truth(links, truth)
    return report


__all__ = ["LinkageReport", "TruthScore", "build_report", "read_truth", "score_truth"]
