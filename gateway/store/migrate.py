"""Apply the Alembic migrations shipped in the package."""
from __future__ import annotations

import functools
from importlib import resources

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("gateway.store") / "migrations"))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database schema up to the given revision (the latest by default)."""
    cfg = _config()
    with engine.connect().execution_options(wraparound_write=True) as conn:
        if conn.dialect.name == "postgresql":
            # Several gunicorn workers or hosts may start at once: one migrates, the rest wait.
            conn.execute(text("SELECT pg_advisory_xact_lock(727274)"))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        conn.commit()


def current_revision(engine: Engine) -> str | None:
    """Return the schema revision the database is at, or None when it has none."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


@functools.lru_cache(maxsize=1)
def head_revision() -> str | None:
    """Return the latest revision shipped."""
    return ScriptDirectory.from_config(_config()).get_current_head()


def refresh_statistics(engine: Engine) -> None:
    """Refresh the query planner's statistics (after bulk loads and at server start)."""
    with engine.connect().execution_options(wraparound_write=True) as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA analysis_limit = 1000")
            conn.exec_driver_sql("ANALYZE")
        else:
            conn.execute(text("ANALYZE"))
        conn.commit()
