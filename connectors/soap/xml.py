"""The one hardened XML module: every lxml parse in `connectors` goes through here.

Rules (see security-reliability notes, section 2): no DTD (internal or external), no entities, no
network access, no `huge_tree`, a byte-size limit before parsing, a depth limit after parsing,
comments and processing instructions dropped, XInclude elements refused (and `xinclude()` never
called), XSLT never used. Schemas are loaded from package files only and cached per process.
A test greps the package for direct `etree.fromstring/parse/XML/iterparse/XSLT` use elsewhere.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path

from lxml import etree

from connectors.errors import ConfigurationError, MalformedXml, UnsafeXml

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DEPTH",
    "canonical",
    "load_schema",
    "parse",
    "parse_file",
    "parser",
    "schema_errors",
    "to_bytes",
]

DEFAULT_MAX_BYTES = 5_000_000
DEFAULT_MAX_DEPTH = 64
_XINCLUDE_NAMESPACES = (
    "http://www.w3.org/2001/XInclude",
    "http://www.w3.org/2003/XInclude",
)
_FORBIDDEN_MARKUP = (b"<!DOCTYPE", b"<!ENTITY", b"<!doctype", b"<!entity")

_local = threading.local()


def parser() -> etree.XMLParser:
    """Return this thread's hardened parser (lxml parsers must not be shared between threads)."""
    p: etree.XMLParser | None = getattr(_local, "parser", None)
    if p is None:
        p = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            attribute_defaults=False,
            huge_tree=False,
            remove_comments=True,
            remove_pis=True,
            strip_cdata=True,
            # Never pass collect_ids=False: with libxml2 2.14 it makes the parser open a
            # document's external DTD (a file read), even with load_dtd=False.
        )
        _local.parser = p
    return p


def parse(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
    base_url: str | None = None,
) -> etree._Element:
    """Parse untrusted bytes into an element, refusing anything outside the rules above."""
    if not isinstance(data, bytes):
        raise MalformedXml("XML must be given as bytes")
    if len(data) > max_bytes:
        raise UnsafeXml(f"document larger than {max_bytes} bytes")
    if any(marker in data for marker in _FORBIDDEN_MARKUP):
        raise UnsafeXml("document type declarations are not accepted")
    try:
        root = etree.fromstring(data, parser(), base_url=base_url)
    except etree.XMLSyntaxError as exc:
        message = str(exc)
        if "amplification" in message or "Excessive depth" in message or "huge" in message:
            raise UnsafeXml("document exceeds parser limits") from exc
        raise MalformedXml("document is not well-formed XML") from exc
    if root is None:
        raise MalformedXml("document is empty")
    _check(root, max_depth)
    return root


_XINCLUDE_ANY = tuple(f"{{{ns}}}*" for ns in _XINCLUDE_NAMESPACES)


def _too_deep(max_depth: int) -> etree.XPath:
    """Return this thread's compiled test for an element nested deeper than max_depth."""
    cache: dict[int, etree.XPath] | None = getattr(_local, "too_deep", None)
    if cache is None:
        cache = _local.too_deep = {}
    found = cache.get(max_depth)
    if found is None:
        found = cache[max_depth] = etree.XPath("boolean(" + "/*" * (max_depth + 1) + ")")
    return found


def _check(root: etree._Element, max_depth: int) -> None:
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise UnsafeXml("document type declarations are not accepted")
    # The common case, a clean document, is screened in C (lxml's filtered iteration and one
    # compiled XPath); a document with anything to report is walked node by node, so the error
    # is the first in document order, as it always was.
    if (
        next(root.iter(etree.Entity), None) is None
        and next(root.iter(*_XINCLUDE_ANY), None) is None
        and not _too_deep(max_depth)(root)
    ):
        return
    _walk(root, max_depth)


def _walk(root: etree._Element, max_depth: int) -> None:
    depth = 0
    for event, element in etree.iterwalk(root, events=("start", "end")):
        if event == "start":
            depth += 1
            if depth > max_depth:
                raise UnsafeXml(f"document nested deeper than {max_depth} levels")
            tag = element.tag
            if not isinstance(tag, str):
                if isinstance(element, etree._Entity):
                    raise UnsafeXml("entity references are not accepted")
                continue
            if tag.startswith("{") and tag[1:].split("}", 1)[0] in _XINCLUDE_NAMESPACES:
                raise UnsafeXml("XInclude is not accepted")
        else:
            depth -= 1


def parse_file(path: Path | str, *, max_bytes: int = 20_000_000) -> etree._Element:
    """Parse a trusted package file (WSDL, XSD, fixture) with the same hardened rules."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read XML file {Path(path).name}") from exc
    return parse(data, max_bytes=max_bytes, max_depth=256, base_url=Path(path).resolve().as_uri())


@functools.lru_cache(maxsize=32)
def load_schema(path: str) -> etree.XMLSchema:
    """Load an XSD (and its relative includes) from a package file, once per process."""
    resolved = Path(path).resolve()
    root = parse_file(resolved)
    try:
        return etree.XMLSchema(root.getroottree())
    except etree.XMLSchemaParseError as exc:
        raise ConfigurationError(f"schema {resolved.name} does not compile") from exc


def schema_errors(schema: etree.XMLSchema, element: etree._Element) -> list[str]:
    """Validate element against schema; return content-free error lines (no values, no PII)."""
    if schema.validate(element):
        return []
    lines = []
    for error in schema.error_log:
        lines.append(f"{error.path or '/'}: {error.type_name}")
    return lines[:10]


def canonical(element: etree._Element, *, exclusive: bool = True) -> bytes:
    """Return the (exclusive, comment-free) canonical form of an element."""
    return bytes(etree.tostring(element, method="c14n", exclusive=exclusive, with_comments=False))


def to_bytes(element: etree._Element, *, declaration: bool = True) -> bytes:
    """Serialise an element as UTF-8 bytes."""
    return bytes(etree.tostring(element, encoding="utf-8", xml_declaration=declaration))
