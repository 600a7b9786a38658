"""Readers: CSV encodings and rows, JSON arrays and NDJSON, XML path selection and hostile XML."""
from __future__ import annotations

import io
from typing import Any

import pytest

from mappings import HostileInputError, ReaderError, read_records, readers
from mappings.readers import read_csv, read_json, read_ndjson, read_xml


def rows(data: bytes, **options: Any) -> list[tuple[str, dict[str, Any]]]:
    return list(read_csv(io.BytesIO(data), **options))


# -- CSV -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("data", "encoding"), [
    ("id,name\n1,Zoë\n".encode(), "auto"),
    (b"\xef\xbb\xbf" + "id,name\n1,Zoë\n".encode(), "auto"),
    ("id,name\r\n1,Zoë\r\n".encode("cp1252"), "auto"),
    ("id,name\r\n1,Zoë\r\n".encode("cp1252"), "cp1252"),
    (b"\xef\xbb\xbf" + "id,name\n1,Zoë\n".encode(), "utf-8"),
])
def test_csv_encodings(data: bytes, encoding: str) -> None:
    assert rows(data, encoding=encoding) == [("row 2", {"id": "1", "name": "Zoë"})]


def test_csv_decides_encoding_line_by_line() -> None:
    data = "id,name\n1,Zoë\n".encode() + "2,Chloë\n".encode("cp1252")
    assert [r["name"] for _, r in rows(data)] == ["Zoë", "Chloë"]


def test_declared_utf8_refuses_cp1252_with_the_row() -> None:
    data = "id,name\n1,Ann\n2,Chloë\n".encode("cp1252")
    with pytest.raises(ReaderError) as caught:
        rows(data, encoding="utf-8")
    assert caught.value.location == "row 3"


def test_csv_row_numbers_are_file_lines() -> None:
    data = b'id,note\n1,"two\nlines"\n\n2,plain\n'
    assert [loc for loc, _ in rows(data)] == ["row 2", "row 5"]


def test_csv_short_and_long_rows() -> None:
    out = rows(b"a,b,c\n1\n1,2,3,4\n")
    assert out[0][1] == {"a": "1", "b": "", "c": ""}
    assert out[1][1]["__extra__"] == ["4"]


@pytest.mark.parametrize(("data", "message"), [
    (b"id,id\n1,2\n", "repeats a column"),
    (b"id,\n1,2\n", "blank column name"),
    (b'id,name\n1,"unclosed\n', "malformed CSV"),
    (b"\xff\xfei\x00d\x00\n\x00", "UTF-16"),
])
def test_bad_csv_is_located(data: bytes, message: str) -> None:
    with pytest.raises(ReaderError, match=message):
        rows(data)


def test_csv_from_text_stream_and_semicolons() -> None:
    out = list(read_csv(io.StringIO("id;name\n1;Ann\n"), delimiter=";"))
    assert out == [("row 2", {"id": "1", "name": "Ann"})]


def test_giant_line_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readers, "MAX_LINE", 1000)
    with pytest.raises(ReaderError, match="longer than the limit"):
        rows(b"id\n" + b"x" * 5000)


# -- JSON ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("data", [
    b'[{"a": 1}, {"a": 2}]',
    b'  [\n {"a": 1} ,\n\n {"a": 2}\n]\n',
    b'\xef\xbb\xbf[{"a": 1},{"a": 2}]',
    b'{"a": 1}\n{"a": 2}\n',
    b'{"a": 1} {"a": 2}',
])
def test_json_array_or_sequence(data: bytes) -> None:
    assert [r for _, r in read_json(io.BytesIO(data))] == [{"a": 1}, {"a": 2}]


def test_json_across_chunk_boundaries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readers, "CHUNK", 7)
    data = ('[{"name": "Zoë Ünal", "n": 123456789}, {"e": "Zo\\u00eb \\ud83d\\ude00"},'
            ' {"n": 12345}, 987654]').encode()
    values = [r for _, r in read_json(io.BytesIO(data))]
    assert values == [{"name": "Zoë Ünal", "n": 123456789}, {"e": "Zoë \U0001f600"},
                      {"n": 12345}, 987654]


def test_json_locations() -> None:
    assert [loc for loc, _ in read_json(io.BytesIO(b'[{}, {}]'))] == ["record 1", "record 2"]
    assert [loc for loc, _ in read_ndjson(io.BytesIO(b'{}\n\n{}\n'))] == ["line 1", "line 3"]


@pytest.mark.parametrize(("data", "location"), [
    (b'[{"a": 1}, {"a": }]', "record 2"),
    (b'[{"a": 1} {"a": 2}]', "record 1"),
    (b'[{"a": 1},]', "record 2"),
    (b'[{"a": 1}', "record 1"),
    (b'[{"a": 1}] trailing', "record 1"),
    (b'{"a": 1}\n{"a": ', "record 2"),
])
def test_malformed_json_is_located(data: bytes, location: str) -> None:
    with pytest.raises(ReaderError) as caught:
        list(read_json(io.BytesIO(data)))
    assert caught.value.location == location


def test_malformed_ndjson_line_is_located() -> None:
    with pytest.raises(ReaderError) as caught:
        list(read_ndjson(io.BytesIO(b'{"a": 1}\n{"a": 2\n')))
    assert caught.value.location == "line 2"


def test_empty_inputs_yield_nothing() -> None:
    assert list(read_json(io.BytesIO(b""))) == []
    assert list(read_json(io.BytesIO(b"[]"))) == []
    assert rows(b"") == []


# -- XML -----------------------------------------------------------------------------------------

XML = b"""<?xml version="1.0" encoding="UTF-8"?>
<!-- an export -->
<CTfile xmlns="urn:example">
  <Header><SourceSchool><URN>100001</URN></SourceSchool></Header>
  <Pupils>
    <Pupil id="1"><UPN>A1</UPN><Names><Name>Ann</Name><Name>Marie</Name></Names><Empty/></Pupil>
    <Other><UPN>ignored</UPN></Other>
    <Pupil id="2"><UPN>B2</UPN><Note lang="en">hi</Note></Pupil>
  </Pupils>
</CTfile>
"""


def test_xml_records_selected_by_path_with_context() -> None:
    out = list(read_xml(io.BytesIO(XML), "/CTfile/Pupils/Pupil",
                        context={"urn": "CTfile/Header/SourceSchool/URN"}))
    assert out == [
        ("/CTfile/Pupils/Pupil[1]", {"@id": "1", "UPN": "A1", "Names": {"Name": ["Ann", "Marie"]},
                                     "Empty": None, "urn": "100001"}),
        ("/CTfile/Pupils/Pupil[2]", {"@id": "2", "UPN": "B2",
                                     "Note": {"@lang": "en", "#text": "hi"}, "urn": "100001"}),
    ]


def test_xml_path_that_matches_nothing_yields_nothing() -> None:
    assert list(read_xml(io.BytesIO(XML), "/CTfile/Pupil")) == []


HOSTILE = {
    "doctype": b'<?xml version="1.0"?><!DOCTYPE r><r><p>1</p></r>',
    "xxe": b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
           b'<r><p>&x;</p></r>',
    "billion-laughs": b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                      b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
                      b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
                      b'<r><p>&lol3;</p></r>',
    "lowercase-doctype-late": b'<?xml version="1.0"?>\n<!-- c -->\n<!doctype r><r><p/></r>',
    "utf16-doctype": '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE r><r><p/></r>'.encode(
        "utf-16"),
    "parameter-entity": b'<!DOCTYPE r [<!ENTITY % p SYSTEM "http://example.invalid/x">%p;]>'
                        b'<r><p/></r>',
    "undeclared-entity": b'<r><p>&x;</p></r>',
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_xml_is_refused(name: str) -> None:
    with pytest.raises(HostileInputError):
        list(read_xml(io.BytesIO(HOSTILE[name]), "/r/p"))


@pytest.mark.parametrize("data", [b"<r><p>1</p>", b"<r><p>1</q></r>", b"not xml"])
def test_malformed_xml_is_located(data: bytes) -> None:
    with pytest.raises(ReaderError, match="malformed XML") as caught:
        list(read_xml(io.BytesIO(data), "/r/p"))
    assert caught.value.location.startswith("line ")


# -- dispatch ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("content_type", "data", "options"), [
    ("text/csv; charset=windows-1252", "id\r\nZoë\r\n".encode("cp1252"), {}),
    ("application/json", b'[{"id": "Zo\\u00eb"}]', {}),
    ("application/x-ndjson", '{"id": "Zoë"}\n'.encode(), {}),
    ("application/xml", "<r><p><id>Zoë</id></p></r>".encode(), {"record_path": "/r/p"}),
])
def test_content_type_selects_the_reader(content_type: str, data: bytes,
                                         options: dict[str, Any]) -> None:
    assert [r for _, r in read_records(io.BytesIO(data), content_type, **options)] == [
        {"id": "Zoë"}]


def test_unsupported_content_type() -> None:
    with pytest.raises(ReaderError, match="unsupported content type"):
        read_records(io.BytesIO(b""), "application/pdf")
