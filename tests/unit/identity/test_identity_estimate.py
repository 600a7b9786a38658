"""The built-in weights are the estimate from the fixtures, and separate them cleanly."""
from __future__ import annotations

import itertools
from pathlib import Path

from click.testing import CliRunner

from gateway.cli.identity import identity
from gateway.identity.estimate import labelled_fixtures
from gateway.identity.matching import GRADE_RANK, MatchModel, compare

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "sources"


def test_weights_file_is_the_fixture_estimate() -> None:
    result = CliRunner().invoke(identity, ["estimate", "--check"])
    assert result.exit_code == 0, result.output
    assert "up to date" in result.output


def test_weights_separate_the_fixture_pairs() -> None:
    model = MatchModel.load()
    records = labelled_fixtures(FIXTURES)
    assert len(records) == 418
    wrong_links = missed = 0
    for a, b in itertools.combinations(records, 2):
        rank = compare(a.features, b.features, model).rank
        if a.child == b.child:
            missed += rank < GRADE_RANK["probable"]
        else:
            wrong_links += rank >= GRADE_RANK["probable"]
    assert (wrong_links, missed) == (0, 0)
