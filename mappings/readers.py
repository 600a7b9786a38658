"""Streaming readers for the formats local systems export: CSV, JSON (array or NDJSON) and XML.

Every reader takes a binary stream (text streams are accepted for CSV and JSON), yields
`(location, record)` pairs one at a time and keeps memory flat however large the input is.
Locations are what a person fixing the export looks for: `row 12` (the file's line, header
is row 1), `record 3` / `line 3` for JSON, `/CTfile/CTFpupilData/Pupil[3]` for XML.
"""
from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Iterator, Mapping
from typing import IO, Any

from lxml import etree

from mappings.errors import HostileInputError, ReaderError

CHUNK = 64 * 1024
MAX_LINE = 4 * 1024 * 1024  # one CSV line or NDJSON line
MAX_RECORD = 16 * 1024 * 1024  # one JSON record
_PROLOG_PEEK = 64 * 1024
_UTF8_BOM = codecs.BOM_UTF8

Record = dict[str, Any]
Stream = IO[bytes] | IO[str] | bytes | str

CONTENT_TYPES = {
    "text/csv": "csv",
    "application/csv": "csv",
    "application/json": "json",
    "text/json": "json",
    "application/x-ndjson": "ndjson",
    "application/ndjson": "ndjson",
    "application/jsonl": "ndjson",
    "application/json-seq": "ndjson",
    "application/xml": "xml",
    "text/xml": "xml",
}


def reader_kind(content_type: str) -> tuple[str, dict[str, str]]:
    """Return (reader name, media type parameters) for a Content-Type header value."""
    media, *params = content_type.split(";")
    kind = CONTENT_TYPES.get(media.strip().lower())
    if kind is None:
        raise ReaderError("(content type)", f"unsupported content type {media.strip()!r}")
    parsed = {}
    for param in params:
        key, _, value = param.partition("=")
        parsed[key.strip().lower()] = value.strip().strip('"')
    return kind, parsed


def read_records(
    stream: Stream,
    content_type: str,
    *,
    encoding: str = "auto",
    delimiter: str = ",",
    record_path: str | None = None,
    context: Mapping[str, str] | None = None,
) -> Iterator[tuple[str, Record]]:
    """Yield (location, record) from `stream` using the reader the content type selects."""
    kind, params = reader_kind(content_type)
    if kind == "csv":
        return read_csv(stream, encoding=params.get("charset", encoding), delimiter=delimiter)
    if kind == "json":
        return read_json(stream)
    if kind == "ndjson":
        return read_ndjson(stream)
    if not record_path:
        raise ReaderError("(configuration)", "an XML source needs a record path")
    return read_xml(stream, record_path, context=context)


def _as_stream(stream: Stream) -> IO[bytes] | IO[str]:
    if isinstance(stream, bytes):
        return io.BytesIO(stream)
    if isinstance(stream, str):
        return io.StringIO(stream)
    return stream


def _lines(stream: IO[bytes] | IO[str]) -> Iterator[bytes | str]:
    """Yield lines (with their endings) reading fixed-size chunks, refusing giant lines."""
    pending: list[Any] = []
    size = 0
    while True:
        chunk = stream.read(CHUNK)
        if not chunk:
            break
        start = 0
        newline = b"\n" if isinstance(chunk, bytes) else "\n"
        while True:
            end = chunk.find(newline, start)  # type: ignore[arg-type]
            if end < 0:
                piece = chunk[start:]
                pending.append(piece)
                size += len(piece)
                if size > MAX_LINE:
                    raise ReaderError("(input)", "a line is longer than the limit")
                break
            pending.append(chunk[start:end + 1])
            yield pending[0][:0].join(pending)
            pending, size = [], 0
            start = end + 1
    if pending and any(pending):
        yield pending[0][:0].join(pending)


def _decoder(encoding: str) -> Any:
    encoding = encoding.lower().replace("_", "-")
    aliases = {"utf8": "utf-8", "utf-8-sig": "utf-8", "windows-1252": "cp1252",
               "latin-1": "cp1252", "iso-8859-1": "cp1252"}
    encoding = aliases.get(encoding, encoding)
    if encoding not in {"auto", "utf-8", "cp1252"}:
        raise ReaderError("(configuration)", f"unsupported CSV encoding {encoding!r}")

    def decode(raw: bytes | str, row: int) -> str:
        if isinstance(raw, str):
            return raw
        if row == 1 and raw.startswith(_UTF8_BOM):
            raw = raw[len(_UTF8_BOM):]
        if row == 1 and raw[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
            raise ReaderError("row 1", "UTF-16 text is not supported: export UTF-8 or "
                                       "Windows-1252 CSV")
        if encoding in ("auto", "utf-8"):
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                if encoding == "utf-8":
                    raise ReaderError(f"row {row}", "not valid UTF-8 text") from None
        try:
            # Exports are often UTF-8 with a few Windows-1252 lines pasted in: decide per line.
            return raw.decode("cp1252")
        except UnicodeDecodeError:
            raise ReaderError(f"row {row}", "not valid UTF-8 or Windows-1252 text") from None

    return decode


def read_csv(stream: Stream, *, encoding: str = "auto", delimiter: str = ",") -> Iterator[
    tuple[str, Record]
]:
    """Yield (`row N`, {column: text}) for each data row of a CSV file with a header row."""
    source = _as_stream(stream)
    decode = _decoder(encoding)
    state = {"line": 0}

    def text_lines() -> Iterator[str]:
        for raw in _lines(source):
            state["line"] += 1
            yield decode(raw, state["line"])

    reader = csv.reader(text_lines(), delimiter=delimiter, strict=True)
    try:
        header = next(reader, None)
        if header is None:
            return
        names = [h.strip().lstrip("\ufeff") for h in header]
        if any(not n for n in names):
            raise ReaderError("row 1", "the header has a blank column name")
        if len(set(names)) != len(names):
            raise ReaderError("row 1", "the header repeats a column name")
        while True:
            start = state["line"] + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise ReaderError(f"row {start}", f"malformed CSV: {exc}") from None
            if not row or all(not v.strip() for v in row):
                continue
            record: Record = dict(zip(names, row))
            for name in names[len(row):]:
                record[name] = ""
            if len(row) > len(names):
                record["__extra__"] = row[len(names):]
            yield f"row {start}", record
    except csv.Error as exc:
        raise ReaderError(f"row {state['line']}", f"malformed CSV: {exc}") from None


class _TextChunks:
    """Read decoded text from a binary or text stream, chunk by chunk."""

    def __init__(self, stream: IO[bytes] | IO[str]) -> None:
        self.stream = stream
        self.decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self.eof = False
        self.first = True

    def read(self) -> str:
        chunk = self.stream.read(CHUNK)
        if not chunk:
            self.eof = True
            if isinstance(chunk, bytes):
                try:
                    return self.decoder.decode(b"", final=True)
                except UnicodeDecodeError:
                    raise ReaderError("(input)", "not valid UTF-8 text") from None
            return ""
        if isinstance(chunk, str):
            first, self.first = self.first, False
            return chunk.lstrip("\ufeff") if first else chunk
        try:
            return self.decoder.decode(chunk)
        except UnicodeDecodeError:
            raise ReaderError("(input)", "not valid UTF-8 text") from None


_WS = " \t\r\n"


def read_json(stream: Stream) -> Iterator[tuple[str, Record]]:
    """Yield (`record N`, object) from a JSON array, or from a sequence of JSON values (NDJSON)."""
    chunks = _TextChunks(_as_stream(stream))
    decoder = json.JSONDecoder()
    buf = ""
    pos = 0

    def fill() -> bool:
        nonlocal buf, pos
        if chunks.eof:
            return False
        text = chunks.read()
        buf = buf[pos:] + text
        pos = 0
        if len(buf) > MAX_RECORD:
            raise ReaderError(f"record {count + 1}", "a record is larger than the limit")
        return True

    def skip_ws() -> bool:
        nonlocal pos
        while True:
            while pos < len(buf) and buf[pos] in _WS:
                pos += 1
            if pos < len(buf):
                return True
            if not fill():
                return False

    def value(location: str) -> Any:
        nonlocal pos
        while True:
            try:
                result, end = decoder.raw_decode(buf, pos)
            except json.JSONDecodeError as exc:
                # Near the end of the buffer the value may go on in the next chunk (a cut
                # escape such as a surrogate pair is at most 12 characters).
                incomplete = exc.pos >= len(buf) - 12 or exc.msg.startswith("Unterminated")
                if incomplete and fill():
                    continue
                raise ReaderError(location, f"malformed JSON: {exc.msg}") from None
            if end == len(buf) and not isinstance(result, (dict, list, str)) and fill():
                continue  # a number or literal may go on in the next chunk
            pos = end
            return result

    count = 0
    if not skip_ws():
        return
    if buf[pos] == "[":
        pos += 1
        if not skip_ws():
            raise ReaderError("record 1", "malformed JSON: the array is not closed")
        if buf[pos] == "]":
            pos += 1
        else:
            while True:
                count += 1
                yield f"record {count}", value(f"record {count}")
                if not skip_ws():
                    raise ReaderError(f"record {count}", "malformed JSON: the array is not closed")
                if buf[pos] == ",":
                    pos += 1
                    if not skip_ws():
                        raise ReaderError(f"record {count + 1}", "malformed JSON: missing value")
                    continue
                if buf[pos] == "]":
                    pos += 1
                    break
                raise ReaderError(f"record {count}", "malformed JSON: expected ',' or ']'")
        if skip_ws():
            raise ReaderError(f"record {count}", "malformed JSON: data after the array")
        return
    while skip_ws():
        count += 1
        yield f"record {count}", value(f"record {count}")


def read_ndjson(stream: Stream) -> Iterator[tuple[str, Record]]:
    """Yield (`line N`, object) for each non-blank line of newline-delimited JSON."""
    for number, raw in enumerate(_lines(_as_stream(stream)), start=1):
        if isinstance(raw, bytes):
            if number == 1 and raw.startswith(_UTF8_BOM):
                raw = raw[len(_UTF8_BOM):]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise ReaderError(f"line {number}", "not valid UTF-8 text") from None
        else:
            text = raw
        if not text.strip():
            continue
        try:
            yield f"line {number}", json.loads(text)
        except json.JSONDecodeError as exc:
            raise ReaderError(f"line {number}", f"malformed JSON: {exc.msg}") from None


class _Guarded(io.RawIOBase):
    """A binary stream whose prolog was checked for DOCTYPE before the parser sees it."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.head = b""
        while len(self.head) < _PROLOG_PEEK:
            chunk = stream.read(CHUNK)
            if not chunk:
                break
            if isinstance(chunk, str):
                raise ReaderError("(input)", "XML must be read as bytes")
            self.head += chunk
            if _root_started(self.head):
                break
        _check_prolog(self.head)

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if self.head:
            if size is None or size < 0:
                data, self.head = self.head + self.stream.read(), b""
                return data
            data, self.head = self.head[:size], self.head[size:]
            return data
        return self.stream.read(-1 if size is None else size)


def _prolog_text(head: bytes) -> str:
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or head[:2] in (
        b"<\x00", b"\x00<"
    ):
        return head.decode("utf-16", errors="ignore")
    return head.decode("latin-1")


def _root_started(head: bytes) -> bool:
    text = _prolog_text(head)
    index = 0
    while True:
        index = text.find("<", index)
        if index < 0 or index + 1 >= len(text):
            return False
        if text[index + 1] not in "?!":
            return True
        index += 1


def _check_prolog(head: bytes) -> None:
    text = _prolog_text(head).upper()
    for marker in ("<!DOCTYPE", "<!ENTITY", "<!ELEMENT", "<!ATTLIST", "<XI:INCLUDE"):
        if marker in text:
            raise HostileInputError("(prolog)", "DOCTYPE, DTD and entity declarations are refused")


def _local(tag: Any) -> str:
    text = str(tag)
    return text.rsplit("}", 1)[-1] if text.startswith("{") else text


def element_value(element: Any) -> Any:
    """Return an element as data: text for a leaf, else {child: value, "@attr": ..., "#text"}."""
    children = [c for c in element if isinstance(c.tag, str)]
    text = (element.text or "").strip()
    if not children and not element.attrib:
        return text or None
    out: dict[str, Any] = {f"@{_local(k)}": v for k, v in element.attrib.items()}
    for child in children:
        key = _local(child.tag)
        value = element_value(child)
        if key in out:
            if not isinstance(out[key], list):
                out[key] = [out[key]]
            out[key].append(value)
        else:
            out[key] = value
    if text:
        out["#text"] = text
    return out


def _path(text: str) -> tuple[str, ...]:
    parts = tuple(p for p in text.strip().split("/") if p)
    if not parts:
        raise ReaderError("(configuration)", "an XML record path is empty")
    return parts


def read_xml(
    stream: Stream, record_path: str, *, context: Mapping[str, str] | None = None
) -> Iterator[tuple[str, Record]]:
    """Yield (`/path[N]`, record) for each element at `record_path` (e.g. `/CTfile/Pupils/Pupil`).

    `context` names values elsewhere in the document (e.g. the file header) that are copied into
    every record that follows them. The parser refuses DTDs and entities and never fetches
    anything; elements are cleared as soon as they are read.
    """
    if isinstance(stream, str):
        raise ReaderError("(input)", "XML must be read as bytes")
    guarded = _Guarded(_as_stream(stream))  # type: ignore[arg-type]  # text refused inside
    wanted = _path(record_path)
    contexts = {_path(v): k for k, v in (context or {}).items()}
    captured: dict[str, Any] = {}
    depth_wanted = len(wanted)
    stack: list[str] = []
    count = 0
    events = etree.iterparse(
        guarded,
        events=("start", "end"),
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        recover=False,
    )
    shown = "/" + "/".join(wanted)
    checked = False
    etree.clear_error_log()
    try:
        for event, element in events:
            if not checked:
                checked = True
                if element.getroottree().docinfo.doctype:
                    raise HostileInputError("(prolog)", "a DOCTYPE is refused")
            if event == "start":
                stack.append(_local(element.tag))
                continue
            path = tuple(stack)
            stack.pop()
            if not isinstance(element.tag, str):
                raise HostileInputError(shown, "entity references are refused")
            if path == wanted:
                count += 1
                record = element_value(element)
                if not isinstance(record, dict):
                    record = {"#text": record} if record is not None else {}
                for key, val in captured.items():
                    record.setdefault(key, val)
                yield f"{shown}[{count}]", record
            elif len(path) > depth_wanted and path[:depth_wanted] == wanted:
                continue  # inside a record: kept until the record ends
            else:
                if path in contexts:
                    captured[contexts[path]] = element_value(element)
                if wanted[: len(path)] == path:
                    continue  # an ancestor of records: its children are cleared as they end
            element.clear(keep_tail=False)
            parent = element.getparent()
            if parent is not None:
                while element.getprevious() is not None:
                    del parent[0]
    except etree.XMLSyntaxError as exc:
        # libxml2 goes on after the first error and reports later, consequential ones last: an
        # entity reference anywhere in the log is the cause, otherwise the first error is.
        log = list(getattr(exc, "error_log", None) or ())
        entity = next((e for e in log if "ENTITY" in e.type_name or "entity" in e.message.lower()),
                      None)
        if entity is not None or "entity" in str(exc.msg).lower():
            line = entity.line if entity is not None else exc.lineno
            raise HostileInputError(f"line {line}", "entity references are refused") from None
        first = log[0] if log else None
        line = first.line if first is not None else exc.lineno
        message = first.message if first is not None else str(exc.msg)
        raise ReaderError(f"line {line}", f"malformed XML: {message.strip()}") from None
