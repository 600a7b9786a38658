"""Resource ids: the direct uuid5 gives exactly what ``uuid.uuid5`` gives."""
from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mappings.ids import NAMESPACE, _uuid5, resource_id


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_uuid5_matches_uuid_module(name: str) -> None:
    try:
        expected = str(uuid.uuid5(NAMESPACE, name))
    except UnicodeEncodeError:  # lone surrogates: both refuse them the same way
        with pytest.raises(UnicodeEncodeError):
            _uuid5(name)
        return
    assert _uuid5(name) == expected


def test_resource_id_is_stable() -> None:
    # The value an id had before the direct uuid5: ids never change.
    name = "".join(f"{len(p)}:{p}" for p in ["src", "Patient", "a b"])
    assert resource_id("src", "Patient", ["  A   B "]) == str(uuid.uuid5(NAMESPACE, name))
