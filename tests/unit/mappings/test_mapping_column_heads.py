"""Input checks: numbered column groups and control characters, as the plain scans give them."""
from __future__ import annotations

import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mappings.inputs import _column_heads


def _scan(columns: str, record: dict[Any, Any]) -> list[tuple[str, dict[Any, Any]]]:
    prefix, _, suffix = columns.partition("{n}")
    numbers = set()
    for key in record:
        if not isinstance(key, str) or not key.startswith(prefix):
            continue
        rest = key[len(prefix):]
        match = re.match(r"(\d+)", rest)
        if match and rest[len(match.group(1)):].startswith(suffix):
            numbers.add(int(match.group(1)))
    out = []
    for n in sorted(numbers):
        head = f"{prefix}{n}{suffix}"
        out.append((head, {k[len(head):]: v for k, v in record.items()
                           if isinstance(k, str) and k.startswith(head)}))
    return out


KEYS = st.one_of(
    st.sampled_from(["Contact1_Name", "Contact2_Name", "Contact10_Name", "Contact1_Phone",
                     "Contact1", "Contact", "Contact_1", "Contact٣_Name", "Other", "Contact01_Name"]),
    st.builds(lambda n, s: f"Contact{n}{s}", st.integers(0, 12), st.sampled_from(["_", "", "x"])),
    st.integers(), st.booleans())


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["Contact{n}_", "Contact{n}", "C{n}x", "{n}"]),
       st.lists(st.dictionaries(KEYS, st.text(max_size=3), max_size=8), min_size=1, max_size=5))
def test_groups_match_a_full_scan(columns: str, records: list[dict[Any, Any]]) -> None:
    for record in records + records[::-1]:
        got = [(head, {k[len(head):]: record[k] for k in keys})
               for head, keys in _column_heads(columns, record)]
        assert [(h, list(f.items())) for h, f in got] == \
               [(h, list(f.items())) for h, f in _scan(columns, record)]


def test_control_characters_are_those_below_32_but_tab_lf_cr() -> None:
    from mappings.inputs import _CONTROL

    for code in range(0x3000):
        ch = chr(code)
        assert (_CONTROL.search(f"a{ch}b") is not None) == (code < 32 and ch not in "\t\n\r")
