"""Deterministic resource ids derived from a source system and its own identifiers."""
from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Iterable

# Fixed namespace: changing it changes every id ever issued, so it never changes.
NAMESPACE = uuid.UUID("6f1d3c2e-8a41-5b7e-9d0c-2b4f6a8e1c93")
_NAMESPACE_BYTES = NAMESPACE.bytes
_sha1 = hashlib.sha1


def _uuid5(name: str) -> str:
    """Return ``str(uuid.uuid5(NAMESPACE, name))`` without building UUID objects."""
    digest = bytearray(_sha1(_NAMESPACE_BYTES + name.encode("utf-8")).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _part(value: object) -> str:
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, str):
        # Ids follow the identifier, not how one export spelled it.
        return " ".join(value.split()).casefold()
    if value is None:
        return ""
    return str(value)


def resource_id(source: str, resource_type: str, key: Iterable[object]) -> str:
    """Return the id for the resource of `resource_type` that `source` identifies by `key`.

    The id is a name-based UUID (version 5) over the source, the resource type and the key
    parts, so the same record always maps to the same ids and different sources never collide.
    """
    parts = [source, resource_type, *(_part(p) for p in key)]
    # Length-prefix each part so ("a|b", "c") and ("a", "b|c") differ.
    name = "".join(f"{len(p)}:{p}" for p in parts)
    return _uuid5(name)


def source_uri(source: str) -> str:
    """Return the `meta.source` URI for resources produced from `source`."""
    return f"urn:wraparound:source:{source}"
