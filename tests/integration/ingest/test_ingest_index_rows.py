"""The index rows an ingest stores are exactly those extract_index gives for each resource."""
from __future__ import annotations

import io
from collections import Counter
from typing import Any

import orjson
import sqlalchemy as sa
from flask import Flask

from gateway.fhir.indexing import extract_index
from gateway.security.context import Caller, acting_as
from gateway.store.schema import (
    idx_date,
    idx_number,
    idx_reference,
    idx_string,
    idx_token,
    idx_uri,
    resources,
)
from tests.integration.ingest.ingest_support import AGENCIES, sample


def _expected(registry: Any, res_type: str, res_id: str,
              resource: dict[str, Any]) -> Counter[tuple[Any, ...]]:
    rtype = registry.get(res_type)
    out: Counter[tuple[Any, ...]] = Counter()
    if rtype is None:
        return out
    rows = extract_index(rtype, resource)
    for p, s, c in rows.tokens:
        out[("idx_token", res_type, res_id, p, s, c[:512])] += 1
    for p, n, v in rows.strings:
        out[("idx_string", res_type, res_id, p, n, v)] += 1
    for p, lo, hi in rows.dates:
        out[("idx_date", res_type, res_id, p, lo, hi)] += 1
    for p, t, i in rows.references:
        out[("idx_reference", res_type, res_id, p, t, i[:64])] += 1
    for p, v in rows.numbers:
        out[("idx_number", res_type, res_id, p, float(v))] += 1
    for p, v in rows.uris:
        out[("idx_uri", res_type, res_id, p, v)] += 1
    return out


def test_ingested_index_rows_are_those_of_the_stored_resources(app: Flask) -> None:
    services = app.extensions["wraparound"]
    for source, agency in AGENCIES.items():
        data, ctype = sample(source)
        with acting_as(Caller.internal(agency)):
            report = services.ingest.run(source, io.BytesIO(data), ctype)
        assert not report.rejected
    services.audit.flush()
    registry = services.store.registry
    expected: Counter[tuple[Any, ...]] = Counter()
    found: Counter[tuple[Any, ...]] = Counter()
    with services.store.engine.connect() as conn:
        for t, i, content in conn.execute(sa.select(resources.c.res_type, resources.c.res_id,
                                                    resources.c.content)):
            if content is not None:
                expected += _expected(registry, t, i, orjson.loads(content))
        for table in (idx_token, idx_string, idx_date, idx_reference, idx_number, idx_uri):
            for row in conn.execute(sa.select(*table.columns)):
                values = tuple(float(v) if table is idx_number and k == "value" else v
                               for k, v in row._mapping.items())
                found[(table.name, *values)] += 1
    assert expected and found == expected
