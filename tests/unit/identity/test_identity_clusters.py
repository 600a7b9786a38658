"""Joining records: never across a person's keep-apart; precision and recall as pairs."""
from __future__ import annotations

from gateway.identity.features import Features
from gateway.identity.report import score_truth
from gateway.identity.service import _Clusters
from gateway.identity.store import Link
from vocab import systems


def test_clusters_refuse_what_a_person_kept_apart() -> None:
    clusters = _Clusters(["a", "b", "c", "d"], {"a": {"d"}, "d": {"a"}})
    assert clusters.union("a", "b") and clusters.union("c", "d")
    assert not clusters.union("b", "c")  # would put a and d together
    assert clusters.groups() == [["a", "b"], ["c", "d"]]


def _link(source: str, record: str, golden: str) -> Link:
    f = Features(local_ids=(f"{systems.local_id_system(source)}|{record}",))
    return Link(record, source, golden, "certain", 0.0, "x", "algorithm", f, "")


def test_precision_and_recall_are_pairwise() -> None:
    truth = {("s", "1"): "A", ("s", "2"): "A", ("t", "3"): "A", ("t", "4"): "B",
             ("t", "5"): "C"}
    links = [_link("s", "1", "g1"), _link("s", "2", "g1"), _link("t", "3", "g2"),
             _link("t", "4", "g2")]
    score = score_truth(links, truth)
    assert (score.true_pairs, score.linked_pairs, score.correct_pairs) == (3, 2, 1)
    assert score.precision == 0.5 and score.recall == 1 / 3
    assert score.missing == 1 and score.children == 2
    assert score.children_with_one_golden == 1 and score.goldens_mixing_children == 1
