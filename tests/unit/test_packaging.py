"""The wheel the Dockerfile installs carries every data file the code loads at run time."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA_SUFFIXES = (".yaml", ".wsdl", ".xsd", ".mako", ".txt")


@pytest.mark.slow
def test_wheel_contains_package_data(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                    "-q", "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("wraparound-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        str(path.relative_to(ROOT))
        for package in ("gateway", "connectors", "mappings", "vocab")
        for path in (ROOT / package).rglob("*")
        if (path.suffix in DATA_SUFFIXES or (path.suffix == ".json" and "suites" in path.parts))
        and "__pycache__" not in path.parts
    }
    assert expected, "no data files found: the test is looking in the wrong place"
    assert sorted(expected - names) == []
    migrations = {n for n in names if n.startswith("gateway/store/migrations/versions/")}
    assert "gateway/store/migrations/versions/0001_initial.py" in migrations
