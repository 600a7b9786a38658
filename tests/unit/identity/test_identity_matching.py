"""Deterministic rules, then Fellegi–Sunter scoring, with the built-in weights."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest
import yaml

from gateway.identity.features import Features
from gateway.identity.matching import LEVELS, MatchModel, compare, levels

MODEL = MatchModel.load()
BASE = Features(source="a", given=("thomas",), middle=("peter",), family=("bailey",),
                birth_date="2015-08-04", gender="male", postcodes=("NR18 9HL",),
                lines=("12 mill lane",))


@pytest.mark.parametrize(("change", "field", "level"), [
    ({"given": ("tom",)}, "given", "nickname"),
    ({"given": ("tomas",)}, "given", "fuzzy"),
    ({"given": ("peter",), "middle": ()}, "given", "middle"),
    ({"given": ("harry",), "middle": ()}, "given", "disagree"),
    ({"family": ("bailey-smith",)}, "family", "hyphen"),
    ({"family": ("baily",)}, "family", "fuzzy"),
    ({"family": ("ward", "bailey")}, "family", "exact"),
    ({"birth_date": "2015-04-08"}, "birth_date", "transposed"),
    ({"birth_date": "2015-08-05"}, "birth_date", "one-part"),
    ({"birth_date": "2011-01-30"}, "birth_date", "disagree"),
    ({"postcodes": ("NR18 9HL",), "lines": ("1 other road",)}, "address", "postcode"),
    ({"postcodes": ("NR18 9ZZ",), "lines": ()}, "address", "sector"),
    ({"postcodes": ("NR18 1AA",), "lines": ()}, "address", "district"),
    ({"postcodes": ("NR1 1AA",), "lines": ("12 mill lane",)}, "address", "line"),
    ({"postcodes": ("IP1 1AA",), "lines": ()}, "address", "disagree"),
])
def test_levels(change: dict[str, object], field: str, level: str) -> None:
    assert levels(BASE, replace(BASE, **change), MODEL)[field] == level


def test_swapped_names() -> None:
    swapped = replace(BASE, given=("bailey",), middle=(), family=("thomas",))
    found = levels(BASE, swapped, MODEL)
    assert found["given"] == found["family"] == "swapped"


def test_missing_fields_weigh_nothing() -> None:
    bare = Features(given=("thomas",))
    assert set(levels(BASE, bare, MODEL)) == {"given"}


@pytest.mark.parametrize(("other", "grade", "rule"), [
    (replace(BASE, source="b"), "certain", "fellegi-sunter"),
    (replace(BASE, postcodes=("IP1 1AA",), lines=()), "probable", "fellegi-sunter"),
    (replace(BASE, family=("jones",), postcodes=("NR18 7ZL",), lines=()), "possible",
     "fellegi-sunter"),
    (replace(BASE, given=("oscar",), middle=()), "possible", "given-names-disagree"),
    (replace(BASE, given=("oscar",), middle=(), birth_date="2013-01-30"), "none",
     "fellegi-sunter"),
])
def test_grades(other: Features, grade: str, rule: str) -> None:
    found = compare(BASE, other, MODEL)
    assert (found.grade, found.rule) == (grade, rule)


def test_identifier_rules_come_first_and_can_be_overruled() -> None:
    verified = replace(BASE, nhs=("9990128383",), nhs_verified=("9990128383",))
    stranger = Features(given=("amy",), family=("jones",), birth_date="2001-02-03",
                        gender="female", nhs=("9990128383",))
    far = replace(stranger, given=("thomas",), family=("bailey",), gender="male")
    assert compare(verified, far, MODEL).rule == "nhs-number"
    assert compare(verified, far, MODEL).grade == "certain"
    conflict = compare(verified, stranger, MODEL)
    assert (conflict.grade, conflict.rule) == ("possible", "nhs-number-conflict")
    upn = compare(replace(BASE, upn=("X926223319001",)),
                  replace(BASE, upn=("X926223319001",), birth_date="2015-08-05"), MODEL)
    assert upn.rule == "upn" and upn.probability == 1.0
    local = compare(replace(BASE, local_ids=("s|1",)), Features(local_ids=("s|1",)), MODEL)
    assert local.rule == "local-id"
    unverified = compare(replace(BASE, nhs=("9990128383",)), Features(nhs=("9990128383",)), MODEL)
    assert unverified.rule == "fellegi-sunter"


def test_weights_are_log_odds_of_the_data() -> None:
    for name, lvls in LEVELS.items():
        for level in lvls:
            expected = math.log2(MODEL.m[name][level] / MODEL.u[name][level])
            assert MODEL.weights[name][level] == pytest.approx(expected)
    assert MODEL.weights["birth_date"]["exact"] > 0 > MODEL.weights["birth_date"]["disagree"]
    assert MODEL.probability(MODEL.thresholds.probable) == pytest.approx(0.99, abs=0.001)
    assert MODEL.probability(200) == 1.0


@pytest.mark.parametrize("broken", [
    {"comparisons": {"shoe_size": {"levels": {}}}},
    {"comparisons": {"gender": {"levels": {"agree": {"m": 0.5, "u": 0.5}}}}},
    {"comparisons": {"gender": {"levels": {"agree": {"m": 0, "u": 0.5},
                                           "disagree": {"m": 1, "u": 0.5}}}}},
    {"thresholds": {"certain": 1, "probable": 5, "possible": 0, "conflict": 0}},
])
def test_bad_weights_are_refused(broken: dict[str, object]) -> None:
    from importlib import resources

    data = yaml.safe_load(resources.files("gateway.identity").joinpath("weights.yaml")
                          .read_text("utf-8"))
    data.update(broken)
    with pytest.raises(ValueError):
        MatchModel.from_data(data, {})
