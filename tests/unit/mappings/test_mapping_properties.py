"""Property tests: malformed records and inputs are rejected with a located message, never a crash."""
from __future__ import annotations

import io
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mappings import MappedRecord, MappingError, ReaderError, Registry, load_registry
from mappings.readers import read_csv, read_json, read_xml

REGISTRY: Registry = load_registry()
SETTINGS = settings(max_examples=60, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**12, 10**12),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.sampled_from(["", "NULL", "31/02/2015", "13/09/2015", "2015-09-13", "M", "F", "Y", "x",
                     "9990128383", "999 012 8383", "A926223319001", "CIN", "LAC", "NEG", "01"]),
)
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8)


def _columns(source: str) -> list[str]:
    """Return raw field names a source's mapping reads, so random records hit real paths."""
    names: list[str] = []
    for spec in REGISTRY.mapping(source).inputs.fields:
        if spec.columns:
            names += [spec.columns.replace("{n}", "1") + item.path for item in spec.items]
        else:
            names.append(spec.path.split("/")[0])
    return names


def _check(source: str, record: Any) -> None:
    try:
        mapped = REGISTRY.map_record(source, record, "row 42", recorded="2026-09-01T00:00:00Z")
    except MappingError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.location == "row 42"
            assert problem.message
        return
    assert isinstance(mapped, MappedRecord)
    json.dumps(mapped.resources)  # always JSON-ready


@SETTINGS
@given(data=st.data(), source=st.sampled_from(REGISTRY.sources()))
def test_random_records_are_mapped_or_rejected_with_a_location(data: st.DataObject,
                                                               source: str) -> None:
    keys = _columns(source)
    record = data.draw(st.dictionaries(st.sampled_from(keys), json_values, max_size=len(keys)))
    _check(source, record)


@SETTINGS
@given(data=st.data())
def test_a_valid_record_with_one_field_broken_is_rejected_or_mapped(data: st.DataObject) -> None:
    good = {
        "PersonID": "SC123456", "Forename": "Ella", "Surname": "Shaw",
        "DateOfBirth": "13/09/2015", "Gender": "F", "Episode_1_Type": "CIN",
        "Episode_1_Start": "01/01/2026", "Carer_1_ID": "H1-P1", "Carer_1_Surname": "Shaw",
        "Carer_1_Relationship": "Mother", "Carer_1_PR": "Y",
    }
    key = data.draw(st.sampled_from(sorted(good)))
    broken = dict(good)
    broken[key] = data.draw(json_values)
    _check("social-care", broken)


@SETTINGS
@given(st.binary(max_size=300))
def test_random_bytes_never_crash_the_readers(data: bytes) -> None:
    for read in (lambda s: read_csv(s), lambda s: read_json(s),
                 lambda s: read_xml(s, "/r/p")):
        try:
            for location, _ in read(io.BytesIO(data)):
                assert location
        except ReaderError as exc:
            assert exc.location and exc.message
