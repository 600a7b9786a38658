"""The migrations build exactly the schema the code declares, on both databases."""
from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from gateway.store import current_revision, head_revision, make_engine
from gateway.store.engine import StorageConfigError
from gateway.store.schema import metadata


def test_migrations_match_metadata(db_url: str) -> None:
    engine = make_engine(db_url)
    assert current_revision(engine) == head_revision()
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    engine.dispose()
    assert diff == []


def test_sqlite_runs_durable(tmp_path: object) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/d.sqlite")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2
    engine.dispose()


def test_memory_sqlite_refused() -> None:
    with pytest.raises(StorageConfigError):
        make_engine("sqlite:///:memory:")


def test_audit_references_and_history_move_and_back(db_url: str) -> None:
    import sqlalchemy as sa
    from alembic import command

    from gateway.store.migrate import _config
    from gateway.store.schema import (
        idx_audit_reference,
        idx_reference,
        resource_history,
        resources,
    )

    engine = make_engine(db_url, pool_size=0)
    rows = [{"res_type": "AuditEvent", "res_id": "a1", "param": "entity",
             "target_type": "Patient", "target_id": "p1"},
            {"res_type": "Flag", "res_id": "f1", "param": "patient",
             "target_type": "Patient", "target_id": "p1"}]

    def run(step: str, revision: str) -> None:
        cfg = _config()
        with engine.connect().execution_options(wraparound_write=True) as conn:
            cfg.attributes["connection"] = conn
            getattr(command, step)(cfg, revision)
            conn.commit()

    def refs(table: sa.Table) -> list[tuple[str, str]]:
        with engine.connect() as conn:
            return sorted((r.res_type, r.res_id) for r in conn.execute(sa.select(table)))

    try:
        run("downgrade", "0004")
        versions = [{"res_type": t, "res_id": i, "version_id": 1,
                     "last_updated": "2026-01-01T00:00:00.000000", "deleted": False,
                     "content": "{}"} for t, i in (("AuditEvent", "a1"), ("Flag", "f1"))]
        with engine.begin() as conn:
            conn.execute(sa.insert(idx_reference), rows)
            conn.execute(sa.insert(resources), versions)
            conn.execute(sa.insert(resource_history), [dict(v, method="POST") for v in versions])
        run("upgrade", "head")
        assert refs(idx_reference) == [("Flag", "f1")]
        assert refs(idx_audit_reference) == [("AuditEvent", "a1")]
        assert refs(resource_history) == [("Flag", "f1")]
        run("downgrade", "0004")
        assert refs(idx_reference) == [("AuditEvent", "a1"), ("Flag", "f1")]
        assert refs(resource_history) == [("AuditEvent", "a1"), ("Flag", "f1")]
    finally:
        run("upgrade", "head")
        with engine.begin() as conn:
            for table in (idx_reference, resources, resource_history):
                conn.execute(sa.delete(table))
        engine.dispose()
    assert current_revision(engine) == head_revision()
