"""The hardened XML module, and the rule that every lxml parse in connectors goes through it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from connectors.errors import InvalidResponse, MalformedXml, UnsafeXml
from connectors.mockserver.faults import HOSTILE_VARIANTS, hostile_document
from connectors.soap import xml

ROOT = Path(__file__).resolve().parents[3]
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"

# Direct parsing (or XSLT/XInclude) anywhere but connectors/soap/xml.py is forbidden.
FORBIDDEN = re.compile(
    r"etree\.(fromstring|fromstringlist|parse|XML|XMLID|HTML|iterparse|XSLT|XInclude)\s*\("
    r"|\.xinclude\s*\("
    r"|from\s+lxml\.etree\s+import\s+[^\n]*\b(fromstring|parse|XML|iterparse|XSLT)\b"
    r"|\bimport\s+xml\.(etree|dom|sax)|from\s+xml\.(etree|dom|sax)\b"
    r"|\bdefusedxml\b"
)


def _checked_files() -> list[Path]:
    files = sorted((ROOT / "connectors").rglob("*.py"))
    files.append(ROOT / "gateway" / "cli" / "mocks.py")
    return [f for f in files if f.exists() and f != ROOT / "connectors" / "soap" / "xml.py"]


def test_no_direct_xml_parsing_outside_the_hardened_module() -> None:
    offenders = []
    for path in _checked_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if FORBIDDEN.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


def test_the_grep_catches_what_it_should() -> None:
    for line in (
        "root = etree.fromstring(data)",
        "tree = etree.parse(path)",
        "etree.XSLT(doc)",
        "tree.xinclude()",
        "from lxml.etree import fromstring",
        "import xml.etree.ElementTree as ET",
        "for ev, el in etree.iterparse(f):",
    ):
        assert FORBIDDEN.search(line), line


@pytest.mark.parametrize("variant", HOSTILE_VARIANTS)
def test_every_hostile_variant_is_rejected(variant: str) -> None:
    with pytest.raises(InvalidResponse) as info:
        xml.parse(hostile_document(variant))
    assert isinstance(info.value, UnsafeXml | MalformedXml)


@pytest.mark.parametrize("variant", ["xxe_file", "internal_entity", "external_dtd"])
def test_declarations_are_found_even_when_the_byte_scan_cannot_see_them(variant: str) -> None:
    text = hostile_document(variant).decode()
    utf16 = text.replace('<?xml version="1.0"?>', '<?xml version="1.0" encoding="UTF-16"?>')
    with pytest.raises(UnsafeXml):
        xml.parse(utf16.encode("utf-16"))


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", MalformedXml),
        (b"<a><b></a>", MalformedXml),
        (b"not xml at all", MalformedXml),
        (b"<a>&undefined;</a>", MalformedXml),
    ],
)
def test_malformed_documents(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        xml.parse(data)


def test_text_input_is_refused() -> None:
    with pytest.raises(MalformedXml):
        xml.parse("<a/>")  # type: ignore[arg-type]


def test_limits_are_configurable() -> None:
    doc = b"<a>" + b"<b>" * 10 + b"</b>" * 10 + b"</a>"
    assert xml.parse(doc, max_depth=11) is not None
    with pytest.raises(UnsafeXml):
        xml.parse(doc, max_depth=10)
    with pytest.raises(UnsafeXml):
        xml.parse(doc, max_bytes=len(doc) - 1)


def test_comments_and_processing_instructions_are_dropped() -> None:
    root = xml.parse(
        b'<?xml-stylesheet href="http://127.0.0.1:9/x"?><a><!-- c --><b>1</b><?pi x?></a>'
    )
    assert xml.to_bytes(root, declaration=False) == b"<a><b>1</b></a>"


def test_canonical_form_ignores_prefixes_of_unused_namespaces() -> None:
    one = xml.parse(f'<s:E xmlns:s="{SOAP}" xmlns:u="urn:unused"><s:B/></s:E>'.encode())
    two = xml.parse(f'<s:E xmlns:s="{SOAP}"><s:B></s:B></s:E>'.encode())
    assert xml.canonical(one) == xml.canonical(two)


def test_schemas_load_once_and_report_without_values() -> None:
    path = str(ROOT / "connectors" / "pds" / "wsdl" / "smsp-payloads.xsd")
    schema = xml.load_schema(path)
    assert xml.load_schema(path) is schema
    bad = xml.parse(
        b'<verifyNHSNumberRequest-v1-0 xmlns="urn:hl7-org:v3" classCode="CACT" moodCode="EVN">'
        b'<id root="SECRET-9990128383"/></verifyNHSNumberRequest-v1-0>'
    )
    lines = xml.schema_errors(schema, bad)
    assert lines and all("9990128383" not in line for line in lines)


@pytest.mark.parametrize(
    "document",
    [
        b"<a>" * 64 + b"</a>" * 64,
        b"<a>" * 65 + b"</a>" * 65,
        b"<a>" * 70 + b"</a>" * 70,
        b"<a><x:include xmlns:x='http://www.w3.org/2001/XInclude'/></a>",
        b"<a><b><x:y xmlns:x='http://www.w3.org/2003/XInclude'/></b></a>",
        b"<a>" * 66 + b"<x:i xmlns:x='http://www.w3.org/2001/XInclude'/>" + b"</a>" * 66,
        b"<a>&amp;<b>&#65;</b></a>",
        b"<a><b>text</b><c/></a>",
    ],
)
def test_screened_check_reports_what_the_full_walk_reports(document: bytes) -> None:
    from lxml import etree

    from connectors.soap.xml import _check, _walk, parser

    root = etree.fromstring(document, parser())

    def outcome(check: Any) -> str | None:
        try:
            check(root, 64)
        except UnsafeXml as exc:
            return str(exc)
        return None

    assert outcome(_check) == outcome(_walk)
