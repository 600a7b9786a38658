"""The storage contract: what the FHIR layer needs from a database, whatever the backend.

    StoreError
    ├── RetryableConflict   a concurrent writer won a race; the unit of work may be re-run
    └── StoreUnavailable    the database cannot be reached or is out of space
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from gateway.fhir.search import Include, SearchQuery

T = TypeVar("T")


class StoreError(Exception):
    """Base of storage errors."""


class RetryableConflict(StoreError):
    """A concurrent write won a race; re-running the unit of work may succeed."""


class StoreUnavailable(StoreError):
    """The database is unreachable, locked beyond the timeout, or full."""


@dataclass(frozen=True)
class Change:
    """One resource write inside a transaction, as seen by commit hooks (the outbox)."""

    res_type: str
    res_id: str
    version_id: int
    resource: dict[str, Any] | None  # None when deleted
    previous_version: int | None  # None when the resource is new


@dataclass(frozen=True)
class StoredResource:
    """One version of a resource as stored: its JSON text is served as it is."""

    res_type: str
    res_id: str
    version_id: int
    last_updated: str  # FHIR instant, UTC
    deleted: bool
    content: str | None
    method: str = ""

    @property
    def etag(self) -> str:
        """Return the weak ETag for this version."""
        return f'W/"{self.version_id}"'


class ReadSession(Protocol):
    """Read operations inside one consistent database session."""

    def get(self, res_type: str, res_id: str) -> StoredResource | None:
        """Return the current version (possibly deleted), or None if never stored."""

    def get_version(self, res_type: str, res_id: str, version_id: int) -> StoredResource | None:
        """Return one historical version, or None."""

    def fetch(self, keys: Sequence[tuple[str, str]]) -> list[StoredResource]:
        """Return the current, not-deleted resources for (type, id) keys, in the order given."""

    def history(self, res_type: str | None, res_id: str | None, *, since: str | None,
                before: str | None, count: int, offset: int,
                types: Sequence[str] | None = None) -> tuple[list[StoredResource], int]:
        """Return history entries newest first, and the total number of entries."""

    def count(self, query: SearchQuery) -> int:
        """Return how many resources match the query."""

    def search_ids(self, query: SearchQuery, limit: int, offset: int = 0) -> list[str]:
        """Return the ids of matches in the query's sort order."""

    def includes(self, res_type: str, ids: Sequence[str], includes: Iterable[Include],
                 revincludes: Iterable[Include], limit: int) -> list[StoredResource]:
        """Return resources referenced by (_include) or referring to (_revinclude) the ids."""


class WriteSession(ReadSession, Protocol):
    """Read and write operations inside one database transaction."""

    changes: list[Change]  # every put/delete so far, minus those undone by a savepoint

    def savepoint(self) -> Any:
        """Return a context manager whose writes are undone when it exits by an exception."""

    def lock(self, key: str) -> None:
        """Serialise writers that use the same key until the transaction ends."""

    def get_for_update(self, res_type: str, res_id: str) -> StoredResource | None:
        """Return the current version and lock it against concurrent writers."""

    def put(self, res_type: str, res_id: str, resource: dict[str, Any], *,
            previous: StoredResource | None, method: str) -> StoredResource:
        """Store a new version (1 when previous is None) and its index rows."""

    def delete(self, previous: StoredResource) -> StoredResource:
        """Store a deleted version and remove the resource's index rows."""

    def get_many_for_update(self, keys: Iterable[tuple[str, str]],
                            ) -> dict[tuple[str, str], StoredResource]:
        """Return the current versions of several resources, locked; unknown keys are absent."""

    def insert_rows(self, table: Any, rows: list[dict[str, Any]]) -> None:
        """Insert rows carrying every column of a table, at once, after the staged writes."""

    def stage(self, res_type: str, res_id: str, resource: dict[str, Any], *,
              previous: StoredResource | None, method: str) -> StoredResource:
        """Store a new version as `put` does; its rows are written with the next `flush`.

        Staged rows are flushed before the session is next read or written through any other
        method, and before the commit hooks run.
        """

    def flush(self) -> None:
        """Write every staged version, one multi-row statement per table."""


class ResourceStore(Protocol):
    """A FHIR resource store."""

    def read(self, fn: Callable[[ReadSession], T]) -> T:
        """Run fn in a read-only session."""

    def write(self, fn: Callable[[WriteSession], T]) -> T:
        """Run fn in one transaction, re-running it on RetryableConflict a few times.

        Before the transaction commits, every registered commit hook is called with the session
        (whose `changes` list what fn wrote), so that what the hooks write (outbox messages)
        commits together with the data or not at all.
        """

    def add_commit_hook(self, hook: Callable[[WriteSession], None]) -> None:
        """Call hook(session) inside every write transaction, after its unit of work."""

    def save_search_set(self, res_type: str, query: str, ids: Sequence[str], total: int) -> str:
        """Keep an ordered result set for paging and return its id."""

    def load_search_set(self, set_id: str) -> tuple[str, str, list[str], int] | None:
        """Return (res_type, query, ids, total) for a kept result set, or None if expired."""

    def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers."""
