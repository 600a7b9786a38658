"""`wraparound mappings list` and `check`."""
from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner

from gateway.cli.mappings import mappings

SOURCES = Path(__file__).resolve().parents[3] / "fixtures" / "sources"


def test_list_names_every_source() -> None:
    result = CliRunner().invoke(mappings, ["list"])
    assert result.exit_code == 0, result.output
    for source in ("social-care", "school", "youth-justice", "child-health", "youth-support"):
        assert source in result.output


def test_check_passes_on_the_shipped_samples() -> None:
    result = CliRunner().invoke(mappings, ["check", "--source", "youth-support",
                                           "--source", "school"])
    assert result.exit_code == 0, result.output
    assert "youth-support: 58/58 records mapped" in result.output


def test_check_reports_errors_unmapped_fields_and_missing_codes(tmp_path: Path) -> None:
    samples = tmp_path / "samples"
    (samples / "youth-support").mkdir(parents=True)
    original = (SOURCES / "youth-support" / "sample.csv").read_text(encoding="utf-8")
    header, first, second, *_ = original.splitlines()
    bad_code = first.split(",")
    bad_code[8] = "999"  # an activity code the table lacks
    bad_date = second.split(",")
    bad_date[3] = "31/02/2009"  # DOB
    lines = [header + ",Notes", ",".join(bad_code) + ",called twice", ",".join(bad_date) + ","]
    (samples / "youth-support" / "sample.csv").write_text("\n".join(lines) + "\n",
                                                          encoding="utf-8")
    result = CliRunner().invoke(mappings, ["check", "--source", "youth-support",
                                           "--samples", str(samples)])
    assert result.exit_code == 1
    assert "row 3, field DOB: not a valid date" in result.output
    assert "row 2, field ActivityCode" in result.output
    assert "code '999' is not in code table 'neet-activity'" in result.output
    assert "unmapped input field 'Notes' (1 records)" in result.output
    assert "code '999' seen 1 times is not in table 'neet-activity'" in result.output


def test_check_finds_a_sample_beside_an_extra_mapping(tmp_path: Path) -> None:
    folder = tmp_path / "extra" / "youth-support-copy"
    shutil.copytree(Path(__file__).resolve().parents[3] / "mappings" / "sources" /
                    "youth-support", folder)
    mapping = folder / "young-person.yaml"
    mapping.write_text(mapping.read_text(encoding="utf-8").replace(
        "source: youth-support", "source: youth-support-copy"), encoding="utf-8")
    shutil.copy(SOURCES / "youth-support" / "sample.csv", folder / "sample.csv")
    result = CliRunner().invoke(mappings, ["check", "--mappings-dir", str(tmp_path / "extra"),
                                           "--source", "youth-support-copy"])
    assert result.exit_code == 0, result.output
    assert "youth-support-copy: 58/58 records mapped from 1 sample(s)" in result.output
