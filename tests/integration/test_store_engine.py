"""Engines: pooled connections, and a forked child never uses its parent's."""
from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.pool import NullPool, QueuePool

from gateway.store import make_engine


def _connects(engine: sa.Engine) -> list[int]:
    opened: list[int] = []
    sa.event.listen(engine, "connect", lambda *_: opened.append(os.getpid()))
    return opened


def test_sqlite_connections_are_pooled_and_reused(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/p.sqlite")
    assert isinstance(engine.pool, QueuePool)
    opened = _connects(engine)
    for _ in range(5):
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2
    assert len(opened) == 1  # one connection, its pragmas set once
    engine.dispose()


def test_pool_size_zero_opens_a_connection_per_unit_of_work(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/n.sqlite", pool_size=0)
    assert isinstance(engine.pool, NullPool)
    opened = _connects(engine)
    for _ in range(3):
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    assert len(opened) == 3
    engine.dispose()


def test_a_forked_child_opens_its_own_connections(db_url: str) -> None:
    engine = make_engine(db_url)
    opened = _connects(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS fork_probe (n INTEGER)")
        conn.exec_driver_sql("DELETE FROM fork_probe")
    assert opened == [os.getpid()]  # the parent's connection is now idle in the pool
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: must connect afresh, and its work must reach the database
        code = 1
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql("INSERT INTO fork_probe (n) VALUES (1)")
            code = 0 if opened[-1] == os.getpid() else 2
        finally:
            os.write(write, bytes([code]))
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    child_code = os.read(read, 1)
    os.close(read)
    assert status == 0 and child_code == b"\x00"
    # The parent's pooled connection still works and sees the child's row.
    with engine.begin() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM fork_probe").scalar() == 1
        conn.exec_driver_sql("DROP TABLE fork_probe")
    assert opened == [os.getpid()]  # and it is the same connection as before
    engine.dispose()
