"""The built-in weights are the estimate from the fixtures, and separate them cleanly."""
from __future__ import annotations

import itertools
from pathlib import Path

from click.testing import CliRunner

from gateway.cli.identity import identity
from gateway.identity.blocking import blocking_keys
from gateway.identity.estimate import labelled_fixtures
from gateway.identity.matching import GRADE_RANK, MatchModel, compare

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "sources"


def test_weights_file_is_the_fixture_estimate() -> None:
    result = CliRunner().invoke(identity, ["estimate", "--check"])
    assert result.exit_code == 0, result.output
    assert "up to date" in result.output


def test_blocking_finds_every_true_pair_and_the_weights_separate_them() -> None:
    model = MatchModel.load()
    records = labelled_fixtures(FIXTURES)
    assert len(records) == 418
    keys = [set(blocking_keys(r.features)) for r in records]
    wrong_links = missed = unblocked = blocked = 0
    for (a, ka), (b, kb) in itertools.combinations(zip(records, keys), 2):
        if not ka & kb:
            unblocked += a.child == b.child
            continue
        blocked += 1
        rank = compare(a.features, b.features, model).rank
        if a.child == b.child:
            missed += rank < GRADE_RANK["probable"]
        else:
            wrong_links += rank >= GRADE_RANK["probable"]
    assert (unblocked, wrong_links, missed) == (0, 0, 0)
    assert blocked < 1000  # of 87,153 possible pairs
