"""Engines for SQLite (embedded default) and PostgreSQL, configured for durability."""
from __future__ import annotations

import logging
import os
import weakref
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool, QueuePool

log = logging.getLogger(__name__)

# Pooled connections must never be shared by a forked child with its parent (a SQLite file
# handle or a PostgreSQL socket used from two processes corrupts both): a child forgets the
# connections it inherited and opens its own. The inherited pools are kept referenced for the
# child's lifetime, so that no finaliser ever closes a connection (a SQLite close can
# checkpoint the parent's WAL) under the parent.
_POOLED: weakref.WeakSet[Engine] = weakref.WeakSet()
_INHERITED: list[Any] = []


def _forget_inherited_connections() -> None:
    for engine in list(_POOLED):
        _INHERITED.append(engine.pool)
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_inherited_connections)

SQLITE_BUSY_TIMEOUT_MS = 30_000


class StorageConfigError(RuntimeError):
    """Raised when the database cannot be used safely (e.g. SQLite without synchronous=FULL)."""


def is_sqlite(engine: Engine) -> bool:
    """Return True for the SQLite dialect."""
    return engine.dialect.name == "sqlite"


def make_engine(url: str, *, pool_size: int = 10, **kwargs: Any) -> Engine:
    """Create an engine for the URL: SQLite with WAL and synchronous=FULL, or PostgreSQL via psycopg.

    pool_size 0 opens a connection per unit of work (no idle connections kept).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = _sqlite_engine(url, parsed.database, pool_size=pool_size, **kwargs)
        if pool_size > 0:
            _POOLED.add(engine)
        return engine
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        if pool_size <= 0:
            kwargs.setdefault("poolclass", NullPool)
        else:
            kwargs.setdefault("pool_pre_ping", True)
            kwargs.setdefault("pool_size", pool_size)
            kwargs.setdefault("max_overflow", pool_size * 2)
        engine = create_engine(parsed, **kwargs)
        if pool_size > 0:
            _POOLED.add(engine)
        return engine
    raise StorageConfigError("only sqlite and postgresql databases are supported")


def _sqlite_engine(url: str, database: str | None, *, pool_size: int, **kwargs: Any) -> Engine:
    if not database or database == ":memory:":
        raise StorageConfigError("SQLite needs a file database (WAL does not apply to :memory:)")
    Path(database).parent.mkdir(parents=True, exist_ok=True)
    # Pooled: opening a connection costs its pragmas, and closing the last one open checkpoints
    # the WAL (fsyncs included), which a connection per unit of work paid on every request a
    # quiet server answered. pool_size 0: a connection per unit of work.
    if pool_size > 0:
        kwargs.setdefault("poolclass", QueuePool)
        kwargs.setdefault("pool_size", pool_size)
        kwargs.setdefault("max_overflow", pool_size * 2)
    else:
        kwargs.setdefault("poolclass", NullPool)
    engine = create_engine(url, connect_args={"check_same_thread": False}, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = FULL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.execute("PRAGMA synchronous")
        (sync,) = cur.fetchone()
        cur.close()
        if sync != 2:
            raise StorageConfigError("SQLite must run with synchronous=FULL")

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers take the write lock up front, so two writers never deadlock upgrading
        # a read lock; readers take none.
        if conn.get_execution_options().get("wraparound_write"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")

    return engine
