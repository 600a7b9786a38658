"""Readers stream: peak memory stays small and flat however large the input is."""
from __future__ import annotations

import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mappings import load_registry
from mappings.readers import read_csv, read_json, read_ndjson, read_xml

TARGET = 3 * 1024 * 1024  # bytes per generated file
LIMIT = 1024 * 1024  # peak bytes allowed while reading it


def _write(path: Path, head: bytes, item: Callable[[int], bytes], sep: bytes, tail: bytes) -> int:
    count = 0
    with path.open("wb") as out:
        out.write(head)
        size = len(head)
        while size < TARGET:
            chunk = (sep if count else b"") + item(count)
            out.write(chunk)
            size += len(chunk)
            count += 1
        out.write(tail)
    return count


def _csv(i: int) -> bytes:
    return f"SC{i:06d},Zoë,O'Brien,13/09/2015,F,WBRI,9990128383,NR31 2UF,notes {i}".encode(
        "cp1252")


def _json(i: int) -> bytes:
    return (b'{"yot_id": "YJ-%06d", "person": {"first_name": "Zo\\u00eb", "last_name": "Shaw",'
            b' "dob": "2009-03-04"}, "orders": [{"order_id": "O1", "type": "YRO"}]}' % i)


def _xml(i: int) -> bytes:
    return (b"<Pupil><UPN>A%012d</UPN><Surname>Shaw</Surname><Forename>Ella</Forename>"
            b"<Address><PostCode>NR31 2UF</PostCode></Address></Pupil>\n" % i)


CASES: dict[str, tuple[bytes, Callable[[int], bytes], bytes, bytes, Callable[[Any],
                                                                                Iterator[Any]]]] = {
    "csv": (b"id,given,family,dob,sex,eth,nhs,postcode,note\r\n", _csv, b"\r\n", b"\r\n",
            lambda s: read_csv(s)),
    "json-array": (b"[", _json, b",\n", b"]", lambda s: read_json(s)),
    "ndjson": (b"", _json, b"\n", b"\n", lambda s: read_ndjson(s)),
    "xml": (b'<?xml version="1.0"?><CTfile><CTFpupilData>', _xml, b"",
            b"</CTFpupilData></CTfile>", lambda s: read_xml(s, "/CTfile/CTFpupilData/Pupil")),
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_reading_a_large_file_keeps_memory_flat(tmp_path: Path, kind: str) -> None:
    head, item, sep, tail, reader = CASES[kind]
    path = tmp_path / f"big.{kind}"
    count = _write(path, head, item, sep, tail)
    assert path.stat().st_size >= TARGET
    seen = 0
    tracemalloc.start()
    try:
        with path.open("rb") as stream:
            for _ in reader(stream):
                seen += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == count
    assert peak < LIMIT, f"peak {peak} bytes while reading {path.stat().st_size} bytes"


def test_mapping_a_stream_keeps_memory_flat(tmp_path: Path) -> None:
    registry = load_registry()
    sample = Path(__file__).resolve().parents[3] / "fixtures/sources/youth-justice/sample.json"
    records = sample.read_text(encoding="utf-8").strip()[1:-1]
    path = tmp_path / "big.json"
    with path.open("w", encoding="utf-8") as out:
        out.write("[")
        for n in range(3):
            out.write(("," if n else "") + records)
        out.write("]")
    tracemalloc.start()
    try:
        with path.open("rb") as stream:
            mapped = sum(1 for _ in registry.map_stream("youth-justice", stream,
                                                        recorded="2026-09-01T00:00:00Z"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert mapped == 3 * 56
    assert peak < LIMIT
