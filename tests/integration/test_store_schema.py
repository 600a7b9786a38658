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
