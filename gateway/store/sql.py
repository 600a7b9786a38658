"""SqlResourceStore: the resource store on SQLite or PostgreSQL through SQLAlchemy Core."""
from __future__ import annotations

import contextlib
import hashlib
import logging
import operator
import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import orjson
from sqlalchemy import (
    Boolean,
    ColumnElement,
    Engine,
    Float,
    Integer,
    Select,
    and_,
    bindparam,
    delete,
    false,
    func,
    insert,
    literal,
    not_,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from gateway.fhir.indexing import extract_index, normalise_string
from gateway.fhir.registry import Registry
from gateway.fhir.search import AccessFilter, Criterion, Include, SearchQuery
from gateway.store.base import Change, RetryableConflict, StoredResource, StoreUnavailable
from gateway.store.schema import (
    APPEND_ONLY,
    DERIVED_REFERENCES,
    INDEX_TABLES,
    idx_date,
    idx_number,
    idx_string,
    idx_token,
    idx_uri,
    index_tables,
    reference_table,
    resource_history,
    resources,
    search_sets,
    stored_references,
)
from vocab import systems

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_WRITE_ATTEMPTS = 6
COPY_MIN_ROWS = 16  # fewer rows are inserted with an executemany
_MIN_TS = "0001-01-01T00:00:00.000000"


def utc_now() -> str:
    """Return the current time in the stored timestamp format."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def to_instant(stored: str) -> str:
    """Return a stored timestamp as a FHIR instant."""
    return stored[:23] + "Z"


def from_instant(value: str) -> str:
    """Return the stored-format UTC form of a FHIR instant or dateTime lower bound."""
    from gateway.fhir.indexing import date_range

    rng = date_range(value)
    if rng is None:
        raise ValueError("not a FHIR instant")
    return rng[0]


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _row_to_stored(row: Any, method: str = "") -> StoredResource:
    return StoredResource(
        res_type=row.res_type,
        res_id=row.res_id,
        version_id=row.version_id,
        last_updated=to_instant(row.last_updated),
        deleted=bool(row.deleted),
        content=row.content,
        method=method or getattr(row, "method", "") or "",
    )


def stamp(resource: dict[str, Any], res_id: str, version_id: int, last_updated: str) -> str:
    """Return the resource's stored JSON with id and meta.versionId/lastUpdated set by the server."""
    meta = dict(resource.get("meta") or {})
    meta["versionId"] = str(version_id)
    meta["lastUpdated"] = to_instant(last_updated)
    out: dict[str, Any] = {"resourceType": resource["resourceType"], "id": res_id, "meta": meta}
    for key, value in resource.items():
        if key not in out:
            out[key] = value
    return orjson.dumps(out).decode("utf-8")


class _SqlReadSession:
    """Read operations on one connection."""

    def __init__(self, conn: Connection, registry: Registry) -> None:
        self.conn = conn
        self.registry = registry
        self.sqlite = conn.dialect.name == "sqlite"

    # -- single resources -------------------------------------------------------------------
    def get(self, res_type: str, res_id: str) -> StoredResource | None:
        row = self.conn.execute(
            select(resources).where(resources.c.res_type == res_type, resources.c.res_id == res_id)
        ).first()
        return _row_to_stored(row) if row else None

    def get_version(self, res_type: str, res_id: str, version_id: int) -> StoredResource | None:
        if res_type in APPEND_ONLY:
            current = self.get(res_type, res_id)
            if current is None or current.version_id != version_id:
                return None
            return replace(current, method="POST")
        row = self.conn.execute(
            select(resource_history).where(
                resource_history.c.res_type == res_type,
                resource_history.c.res_id == res_id,
                resource_history.c.version_id == version_id,
            )
        ).first()
        return _row_to_stored(row) if row else None

    def fetch(self, keys: Sequence[tuple[str, str]]) -> list[StoredResource]:
        """Return the current, not-deleted resources for (type, id) keys, in the order given."""
        found: dict[tuple[str, str], StoredResource] = {}
        by_type: dict[str, list[str]] = {}
        for rtype, rid in keys:
            by_type.setdefault(rtype, []).append(rid)
        for rtype, ids in by_type.items():
            for chunk_start in range(0, len(ids), 500):
                chunk = ids[chunk_start : chunk_start + 500]
                rows = self.conn.execute(
                    select(resources).where(
                        resources.c.res_type == rtype,
                        resources.c.res_id.in_(chunk),
                        resources.c.deleted == false(),
                    )
                )
                for row in rows:
                    found[(row.res_type, row.res_id)] = _row_to_stored(row)
        return [found[k] for k in keys if k in found]

    def history(self, res_type: str | None, res_id: str | None, *, since: str | None,
                before: str | None, count: int, offset: int,
                types: Sequence[str] | None = None) -> tuple[list[StoredResource], int]:
        """Return a page of versions, newest first, and how many there are in all.

        Append-only types keep no history rows: their versions are their current rows. When
        both kinds are asked for, each side gives its first offset + count rows in order (each
        from its own index) and the page is cut from the two.
        """
        wanted = [res_type] if res_type else (list(types) if types is not None else None)
        append_only = sorted(APPEND_ONLY if wanted is None else APPEND_ONLY & set(wanted))
        versioned = None if wanted is None else [t for t in wanted if t not in APPEND_ONLY]
        parts: list[Select[Any]] = []
        total = 0
        for table, kinds, excluded in ((resource_history, versioned, APPEND_ONLY),
                                       (resources, append_only, None)):
            if kinds is not None and not kinds:
                continue
            c = table.c
            conds: list[ColumnElement[bool]] = []
            if kinds is not None:
                conds.append(c.res_type.in_(kinds) if len(kinds) > 1 else c.res_type == kinds[0])
            elif excluded:
                conds.append(c.res_type.not_in(sorted(excluded)))
            if res_id:
                conds.append(c.res_id == res_id)
            if since:
                conds.append(c.last_updated >= since)
            if before:
                conds.append(c.last_updated <= before)
            total += self.conn.execute(select(func.count()).select_from(table).where(*conds)
                                       ).scalar_one()
            method = c.method if table is resource_history else literal("POST").label("method")
            parts.append(select(c.res_type, c.res_id, c.version_id, c.last_updated, method,
                                c.deleted, c.content).where(*conds)
                         .order_by(c.last_updated.desc(), c.res_type, c.res_id,
                                   c.version_id.desc())
                         .limit(count + offset))
        if not parts:
            return [], 0
        if len(parts) == 1:
            rows = list(self.conn.execute(parts[0].offset(offset).limit(count)))
        else:
            both = [row for part in parts for row in self.conn.execute(part)]
            both.sort(key=lambda r: (r.res_type, r.res_id, -r.version_id))
            both.sort(key=lambda r: r.last_updated, reverse=True)
            rows = both[offset:offset + count]
        return [_row_to_stored(r) for r in rows], int(total)

    # -- search -----------------------------------------------------------------------------
    def _matching(self, query: SearchQuery) -> Select[Any]:
        stmt = select(resources.c.res_id).where(
            resources.c.res_type == query.res_type, resources.c.deleted == false()
        )
        for crit in query.criteria:
            stmt = stmt.where(self._condition(query.res_type, crit))
        if query.access is not None:
            stmt = stmt.where(self._access(query.res_type, query.access))
        return stmt

    def _access(self, res_type: str, access: AccessFilter) -> ColumnElement[bool]:
        tok = idx_token.c
        res = resources.c
        owned = res.res_id.in_(select(tok.res_id).where(
            tok.res_type == res_type, tok.param == "_tag", tok.system == systems.AGENCY,
            tok.code == access.owner))
        admitted: list[ColumnElement[bool]] = []
        for rule in access.rules:
            if rule[0] == "all":
                admitted = [true()]
                break
            if rule[0] == "own":
                admitted.append(owned)
            elif rule[0] == "codes":
                admitted.append(res.res_id.in_(select(tok.res_id).where(
                    tok.res_type == res_type, tok.param.in_(("category", "code", "type")),
                    or_(*[and_(tok.system == s, tok.code == c) for s, c in rule[1]]))))
        cond = or_(*admitted) if admitted else false()
        if access.hide_restricted:
            restricted = res.res_id.in_(select(tok.res_id).where(
                tok.res_type == res_type, tok.param == "_security",
                tok.system == systems.CONFIDENTIALITY, tok.code.in_(("R", "V"))))
            cond = and_(cond, or_(not_(restricted), owned))
        return cond

    def count(self, query: SearchQuery) -> int:
        """Return how many resources match."""
        sub = self._matching(query).subquery()
        return int(self.conn.execute(select(func.count()).select_from(sub)).scalar_one())

    def search_ids(self, query: SearchQuery, limit: int, offset: int = 0) -> list[str]:
        """Return matching ids in the query's sort order."""
        stmt = self._matching(query)
        for order in self._order_by(query):
            stmt = stmt.order_by(order)
        stmt = stmt.limit(limit).offset(offset)
        return [row.res_id for row in self.conn.execute(stmt)]

    def includes(self, res_type: str, ids: Sequence[str], includes: Iterable[Include],
                 revincludes: Iterable[Include], limit: int) -> list[StoredResource]:
        """Return resources referenced by (_include) or referring to (_revinclude) the page."""
        if not ids:
            return []
        keys: list[tuple[str, str]] = []
        seen: set[tuple[str, str]] = {(res_type, i) for i in ids}
        for inc in includes:
            r = reference_table(inc.source_type).c
            param, target = _stored_param(inc.source_type, inc.param)
            stmt = select(r.target_type, r.target_id).where(
                r.res_type == inc.source_type, r.param == param, r.res_id.in_(list(ids)),
                r.target_type.is_not(None),
            )
            for wanted in (inc.target_type, target):
                if wanted:
                    stmt = stmt.where(r.target_type == wanted)
            for row in self.conn.execute(stmt.limit(limit + 1)):
                key = (row.target_type, row.target_id)
                if key not in seen:
                    seen.add(key)
                    keys.append(key)
        for inc in revincludes:
            r = reference_table(inc.source_type).c
            param, target = _stored_param(inc.source_type, inc.param)
            if target is not None and target != res_type:
                continue
            stmt = select(r.res_type, r.res_id).where(
                r.res_type == inc.source_type, r.param == param,
                r.target_type == res_type, r.target_id.in_(list(ids)),
            )
            for row in self.conn.execute(stmt.limit(limit + 1)):
                key = (row.res_type, row.res_id)
                if key not in seen:
                    seen.add(key)
                    keys.append(key)
        return self.fetch(keys[:limit])

    def _order_by(self, query: SearchQuery) -> list[Any]:
        res = resources.c
        orders: list[Any] = []
        for name, kind, desc in query.sort:
            if name == "_id":
                col: Any = res.res_id
            elif name == "_lastUpdated":
                col = res.last_updated
            else:
                table, column = {
                    "string": (idx_string, "value_norm"), "date": (idx_date, "low"),
                    "token": (idx_token, "code"), "number": (idx_number, "value"),
                    "uri": (idx_uri, "value"),
                }[kind]
                agg = func.max if desc else func.min
                col = (
                    select(agg(table.c[column]))
                    .where(table.c.res_type == query.res_type, table.c.param == name,
                           table.c.res_id == res.res_id)
                    .scalar_subquery()
                )
            orders.append(col.desc().nulls_last() if desc else col.asc().nulls_last())
        # The primary key order: with an id IN (...) filter the planner walks the key directly.
        orders.append(res.res_id.asc())
        return orders

    def _ids_where(self, table: Any, res_type: str, name: str,
                   conds: list[ColumnElement[bool]]) -> Select[Any]:
        return select(table.c.res_id).where(
            table.c.res_type == res_type, table.c.param == name, or_(*conds) if conds else true()
        )

    def _condition(self, res_type: str, crit: Criterion) -> ColumnElement[bool]:
        res = resources.c
        if crit.kind == "id":
            return res.res_id.in_(list(crit.values))
        if crit.kind == "lastUpdated":
            return and_(*[self._date_cond(res.last_updated, res.last_updated, v) for v in crit.values])
        table = {
            "string": idx_string, "token": idx_token, "date": idx_date,
            "reference": reference_table(res_type), "number": idx_number, "uri": idx_uri,
        }[crit.kind]
        name, target = (_stored_param(res_type, crit.name) if crit.kind == "reference"
                        else (crit.name, None))
        if crit.modifier == "missing":
            present = select(table.c.res_id).where(
                table.c.res_type == res_type, table.c.param == name)
            if target is not None:
                present = present.where(table.c.target_type == target)
            return res.res_id.not_in(present) if crit.values[0] else res.res_id.in_(present)
        conds = [self._value_cond(table, crit, v) for v in crit.values]
        sub = self._ids_where(table, res_type, name, conds)
        if target is not None:
            sub = sub.where(table.c.target_type == target)
        if crit.kind == "token" and crit.modifier == "not":
            return res.res_id.not_in(sub)
        return res.res_id.in_(sub)

    def _value_cond(self, table: Any, crit: Criterion, value: Any) -> ColumnElement[bool]:
        c = table.c
        if crit.kind == "string":
            if crit.modifier == "exact":
                return c.value == value[:512]
            norm = normalise_string(value)
            if crit.modifier == "contains":
                return c.value_norm.like(f"%{_escape_like(norm)}%", escape="\\")
            if not norm:
                return true()
            # A prefix as a range, so the (binary-collated) index serves it on both databases.
            upper = norm[:-1] + chr(ord(norm[-1]) + 1)
            return and_(c.value_norm >= norm, c.value_norm < upper)
        if crit.kind == "token":
            system, code, system_given = value
            parts: list[ColumnElement[bool]] = []
            if code is not None:
                parts.append(c.code == code)
            if system_given:
                parts.append(c.system.is_(None) if system is None else c.system == system)
            return and_(*parts) if parts else true()
        if crit.kind == "date":
            return self._date_cond(c.low, c.high, value)
        if crit.kind == "reference":
            rtype, rid = value
            cond = c.target_id == rid
            return and_(cond, c.target_type == rtype) if rtype else cond
        if crit.kind == "number":
            prefix, number = value
            ops = {"eq": c.value == number, "ne": c.value != number, "lt": c.value < number,
                   "gt": c.value > number, "le": c.value <= number, "ge": c.value >= number}
            return ops[prefix]
        if crit.modifier == "below":
            return c.value.like(_escape_like(value) + "%", escape="\\")
        return c.value == value

    @staticmethod
    def _date_cond(low: Any, high: Any, value: tuple[str, str, str]) -> ColumnElement[bool]:
        prefix, plow, phigh = value
        if prefix == "eq":
            return and_(low >= plow, high <= phigh)
        if prefix == "ne":
            return not_(and_(low >= plow, high <= phigh))
        if prefix == "gt":
            return high > phigh
        if prefix == "lt":
            return low < plow
        if prefix == "ge":
            return high >= plow
        if prefix == "le":
            return low <= phigh
        if prefix == "sa":
            return low > phigh
        if prefix == "eb":
            return high < plow
        return and_(low <= phigh, high >= plow)  # ap: overlaps


@dataclass
class _Staged:
    """A resource written in this transaction but not yet flushed: its latest version."""

    base: StoredResource | None  # the version stored before the transaction staged any
    row: dict[str, Any]
    resource: dict[str, Any]


class _SqlWriteSession(_SqlReadSession):
    """Read and write operations inside one transaction."""

    def __init__(self, conn: Connection, registry: Registry) -> None:
        self._staged: dict[tuple[str, str], _Staged] = {}
        self._staged_history: list[dict[str, Any]] = []
        super().__init__(conn, registry)
        self.changes: list[Change] = []

    @property
    def conn(self) -> Connection:
        """The transaction's connection; staged writes are flushed before anyone uses it."""
        if self._staged:
            self.flush()
        return self._conn

    @conn.setter
    def conn(self, value: Connection) -> None:
        self._conn = value

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[Any]:
        """Open a savepoint: leaving it by an exception undoes its writes (and their changes)."""
        mark = len(self.changes)
        try:
            with self.conn.begin_nested() as nested:
                yield nested
        except BaseException:
            del self.changes[mark:]
            raise

    def lock(self, key: str) -> None:
        if self.sqlite:
            return  # BEGIN IMMEDIATE already serialises every writer
        digest = hashlib.sha256(key.encode("utf-8")).digest()
        number = int.from_bytes(digest[:8], "big", signed=True)
        self.conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": number})

    def get_for_update(self, res_type: str, res_id: str) -> StoredResource | None:
        stmt = select(resources).where(
            resources.c.res_type == res_type, resources.c.res_id == res_id)
        if not self.sqlite:
            stmt = stmt.with_for_update()
        row = self.conn.execute(stmt).first()
        return _row_to_stored(row) if row else None

    def get_many_for_update(self, keys: Iterable[tuple[str, str]],
                            ) -> dict[tuple[str, str], StoredResource]:
        """Return the current versions (possibly deleted) of several resources, locked.

        One query per resource type (and per 500 ids); keys never stored are absent.
        """
        by_type: dict[str, list[str]] = {}
        for rtype, rid in dict.fromkeys(keys):
            by_type.setdefault(rtype, []).append(rid)
        found: dict[tuple[str, str], StoredResource] = {}
        for rtype in sorted(by_type):
            ids = sorted(by_type[rtype])
            for start in range(0, len(ids), 500):
                stmt = select(resources).where(resources.c.res_type == rtype,
                                               resources.c.res_id.in_(ids[start:start + 500]))
                if not self.sqlite:  # rows are locked in key order, as writers meet them
                    stmt = stmt.order_by(resources.c.res_id).with_for_update()
                for row in self.conn.execute(stmt):
                    found[(row.res_type, row.res_id)] = _row_to_stored(row)
        return found

    @staticmethod
    def _only_created(res_type: str, previous: StoredResource | None) -> None:
        """Refuse to change a resource of an append-only type (the API never asks to)."""
        if previous is not None and res_type in APPEND_ONLY:
            raise ValueError(f"{res_type} resources are append-only")

    @staticmethod
    def _next_version(previous: StoredResource | None) -> tuple[int, str]:
        version = 1 if previous is None else previous.version_id + 1
        now = utc_now()
        if previous is not None:
            prev_ts = previous.last_updated[:-1] + "000"
            if now <= prev_ts:  # keep lastUpdated strictly increasing per resource
                now = (datetime.strptime(prev_ts, "%Y-%m-%dT%H:%M:%S.%f")
                       + timedelta(milliseconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%f")
        return version, now

    def stage(self, res_type: str, res_id: str, resource: dict[str, Any], *,
              previous: StoredResource | None, method: str) -> StoredResource:
        """Store a new version as `put` does, its rows written by the next `flush`.

        Staged writes are flushed together (one multi-row statement per table) before the
        session's connection is next used, so reads in the transaction and commit hooks see
        them. `previous` is the current version: as read for update, or as returned by the
        last `stage` of the same resource.
        """
        self._only_created(res_type, previous)
        key = (res_type, res_id)
        entry = self._staged.get(key)
        if entry is not None and (previous is None
                                  or previous.version_id != entry.row["version_id"]):
            raise RetryableConflict("a staged resource was written from a stale version")
        version, now = self._next_version(previous)
        content = stamp(resource, res_id, version, now)
        row = {"res_type": res_type, "res_id": res_id, "version_id": version,
               "last_updated": now, "deleted": False, "content": content}
        if entry is None:
            self._staged[key] = _Staged(previous, row, resource)
        else:
            entry.row, entry.resource = row, resource
        self._staged_history.append(dict(row, method=method))
        self.changes.append(Change(res_type, res_id, version, resource,
                                   None if previous is None or previous.deleted
                                   else previous.version_id))
        return StoredResource(res_type, res_id, version, to_instant(now), False, content, method)

    def flush(self) -> None:
        """Write the staged versions: rows, history and search index, per table at once."""
        if not self._staged:
            return
        staged, history = self._staged, self._staged_history
        self._staged, self._staged_history = {}, []
        new_rows = [e.row for e in staged.values() if e.base is None]
        replaced = [e for e in staged.values() if e.base is not None]
        try:
            if new_rows:
                self._bulk_insert(resources, new_rows)
            if replaced:
                self._replace_rows(replaced)
            history = [h for h in history if h["res_type"] not in APPEND_ONLY]
            if history:
                self._bulk_insert(resource_history, history)
        except IntegrityError as exc:
            raise RetryableConflict("a concurrent write created the same resource") from exc
        self._drop_index_many([k for k, e in staged.items() if e.base is not None])
        # Index rows as tuples in their tables' column order (res_type, res_id, then the row),
        # the rows _index_rows would give, without a dict per row.
        tuples: dict[Any, list[tuple[Any, ...]]] = {}
        for (res_type, res_id), entry in staged.items():
            self._index_tuples(res_type, res_id, entry.resource, tuples)
        for table, values in tuples.items():
            if values:
                self._insert_tuples(table, [c.name for c in table.columns], values)

    def insert_rows(self, table: Any, rows: list[dict[str, Any]]) -> None:
        """Insert rows carrying every column of a table at once (COPY on PostgreSQL)."""
        self.flush()
        if rows:
            self._bulk_insert(table, rows)

    def _bulk_insert(self, table: Any, rows: list[dict[str, Any]]) -> None:
        """Insert many rows: an executemany on SQLite, COPY on PostgreSQL (one round trip).

        Rows carry every column. On SQLite the driver's executemany is called directly with
        the rows as tuples (what SQLAlchemy would send, without its per-row processing).
        """
        columns = [c.name for c in table.columns]
        if self.sqlite or len(rows) >= COPY_MIN_ROWS:
            values = operator.itemgetter(*columns)  # a tuple: every table has 2+ columns
            self._insert_tuples(table, columns, [values(row) for row in rows])
            return
        self._conn.execute(insert(table), rows)

    def _insert_tuples(self, table: Any, columns: list[str],
                       rows: list[tuple[Any, ...]]) -> None:
        """Insert rows given as tuples in `columns` order, as _bulk_insert does."""
        if self.sqlite:
            statement = (f'INSERT INTO "{table.name}" ('
                         + ", ".join(f'"{c}"' for c in columns) + ") VALUES ("
                         + ", ".join("?" for _ in columns) + ")")
            dbapi_conn: Any = self._conn.connection.dbapi_connection
            cursor = dbapi_conn.cursor()
            try:
                cursor.executemany(statement, rows)
            except self._conn.dialect.loaded_dbapi.Error as exc:
                raise DBAPIError.instance(statement, None, exc,
                                          self._conn.dialect.loaded_dbapi.Error) from exc
            finally:
                cursor.close()
            return
        if len(rows) < COPY_MIN_ROWS:
            self._conn.execute(insert(table), [dict(zip(columns, row)) for row in rows])
            return
        statement = (f'COPY "{table.name}" (' + ", ".join(f'"{c}"' for c in columns)
                     + ") FROM STDIN")
        dbapi: Any = self._conn.connection.dbapi_connection
        try:
            with dbapi.cursor() as cursor, cursor.copy(statement) as copy:
                for row in rows:
                    copy.write_row(row)
        except self._conn.dialect.loaded_dbapi.Error as exc:
            # as SQLAlchemy reports driver errors: IntegrityError, OperationalError, ...
            raise DBAPIError.instance(statement, None, exc,
                                      self._conn.dialect.loaded_dbapi.Error) from exc

    def _replace_rows(self, replaced: list[_Staged]) -> None:
        r = resources.c
        stmt = (update(resources)
                .where(r.res_type == bindparam("b_type"), r.res_id == bindparam("b_id"),
                       r.version_id == bindparam("b_version"))
                .values(version_id=bindparam("n_version"), last_updated=bindparam("n_updated"),
                        deleted=False, content=bindparam("n_content")))
        params = [{"b_type": e.row["res_type"], "b_id": e.row["res_id"],
                   "b_version": e.base.version_id, "n_version": e.row["version_id"],
                   "n_updated": e.row["last_updated"], "n_content": e.row["content"]}
                  for e in replaced if e.base is not None]
        if self._conn.dialect.supports_sane_multi_rowcount:
            if self._conn.execute(stmt, params).rowcount != len(params):
                raise RetryableConflict("a resource changed concurrently")
            return
        for one in params:
            if self._conn.execute(stmt, one).rowcount != 1:
                raise RetryableConflict("a resource changed concurrently")

    def _drop_index_many(self, keys: Sequence[tuple[str, str]]) -> None:
        by_type: dict[str, list[str]] = {}
        for rtype, rid in keys:
            by_type.setdefault(rtype, []).append(rid)
        for rtype, ids in by_type.items():
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                for table in index_tables(rtype):
                    self._conn.execute(delete(table).where(table.c.res_type == rtype,
                                                           table.c.res_id.in_(chunk)))

    def put(self, res_type: str, res_id: str, resource: dict[str, Any], *,
            previous: StoredResource | None, method: str) -> StoredResource:
        self._only_created(res_type, previous)
        version, now = self._next_version(previous)
        content = stamp(resource, res_id, version, now)
        row = {"res_type": res_type, "res_id": res_id, "version_id": version,
               "last_updated": now, "deleted": False, "content": content}
        try:
            if previous is None:
                self.conn.execute(insert(resources).values(**row))
            else:
                result = self.conn.execute(
                    update(resources)
                    .where(resources.c.res_type == res_type, resources.c.res_id == res_id,
                           resources.c.version_id == previous.version_id)
                    .values(version_id=version, last_updated=now, deleted=False, content=content)
                )
                if result.rowcount != 1:
                    raise RetryableConflict("the resource changed concurrently")
                self._drop_index(res_type, res_id)
            if res_type not in APPEND_ONLY:
                self.conn.execute(insert(resource_history).values(method=method, **row))
        except IntegrityError as exc:
            raise RetryableConflict("a concurrent write created the same resource") from exc
        self._write_index(res_type, res_id, resource)
        self.changes.append(Change(res_type, res_id, version, resource,
                                   None if previous is None or previous.deleted
                                   else previous.version_id))
        return StoredResource(res_type, res_id, version, to_instant(now), False, content, method)

    def delete(self, previous: StoredResource) -> StoredResource:
        self._only_created(previous.res_type, previous)
        version = previous.version_id + 1
        now = utc_now()
        result = self.conn.execute(
            update(resources)
            .where(resources.c.res_type == previous.res_type,
                   resources.c.res_id == previous.res_id,
                   resources.c.version_id == previous.version_id)
            .values(version_id=version, last_updated=now, deleted=True, content=None)
        )
        if result.rowcount != 1:
            raise RetryableConflict("the resource changed concurrently")
        self.conn.execute(insert(resource_history).values(
            res_type=previous.res_type, res_id=previous.res_id, version_id=version,
            last_updated=now, deleted=True, content=None, method="DELETE"))
        self._drop_index(previous.res_type, previous.res_id)
        self.changes.append(Change(previous.res_type, previous.res_id, version, None,
                                   previous.version_id))
        return StoredResource(previous.res_type, previous.res_id, version, to_instant(now),
                              True, None, "DELETE")

    def _drop_index(self, res_type: str, res_id: str) -> None:
        for table in index_tables(res_type):
            self.conn.execute(delete(table).where(table.c.res_type == res_type,
                                                  table.c.res_id == res_id))

    def _index_rows(self, res_type: str, res_id: str, resource: dict[str, Any],
                    into: dict[Any, list[dict[str, Any]]]) -> None:
        rtype = self.registry.get(res_type)
        if rtype is None:
            return
        rows = extract_index(rtype, resource)
        owner = {"res_type": res_type, "res_id": res_id}
        into.setdefault(idx_token, []).extend(
            dict(owner, param=p, system=s, code=c[:512]) for p, s, c in rows.tokens)
        into.setdefault(idx_string, []).extend(
            dict(owner, param=p, value_norm=n, value=v) for p, n, v in rows.strings)
        into.setdefault(idx_date, []).extend(
            dict(owner, param=p, low=lo, high=hi) for p, lo, hi in rows.dates)
        into.setdefault(reference_table(res_type), []).extend(
            dict(owner, param=p, target_type=t, target_id=i[:64])
            for p, t, i in stored_references(res_type, rows.references))
        into.setdefault(idx_number, []).extend(
            dict(owner, param=p, value=v) for p, v in rows.numbers)
        into.setdefault(idx_uri, []).extend(dict(owner, param=p, value=v) for p, v in rows.uris)

    def _index_tuples(self, res_type: str, res_id: str, resource: dict[str, Any],
                      into: dict[Any, list[tuple[Any, ...]]]) -> None:
        """Add the resource's index rows as _index_rows does, as tuples in column order."""
        rtype = self.registry.get(res_type)
        if rtype is None:
            return
        rows = extract_index(rtype, resource)
        if not into:
            for table in INDEX_TABLES:
                into[table] = []
        into[idx_token].extend((res_type, res_id, p, s, c[:512]) for p, s, c in rows.tokens)
        into[idx_string].extend((res_type, res_id, p, n, v) for p, n, v in rows.strings)
        into[idx_date].extend((res_type, res_id, p, lo, hi) for p, lo, hi in rows.dates)
        into.setdefault(reference_table(res_type), []).extend(
            (res_type, res_id, p, t, i[:64])
            for p, t, i in stored_references(res_type, rows.references))
        into[idx_number].extend((res_type, res_id, p, v) for p, v in rows.numbers)
        into[idx_uri].extend((res_type, res_id, p, v) for p, v in rows.uris)

    def _insert_batches(self, batches: dict[Any, list[dict[str, Any]]]) -> None:
        for table, values in batches.items():
            if values:
                self.conn.execute(insert(table), values)

    def _write_index(self, res_type: str, res_id: str, resource: dict[str, Any]) -> None:
        batches: dict[Any, list[dict[str, Any]]] = {}
        self._index_rows(res_type, res_id, resource, batches)
        self._insert_batches(batches)

    def insert_many(self, items: Sequence[tuple[str, str, dict[str, Any]]],
                    method: str = "POST") -> None:
        """Store new resources (version 1) in bulk: one multi-row insert per table.

        For append-only records such as AuditEvents, whose ids are new by construction.
        """
        if not items:
            return
        now = utc_now()
        rows: list[dict[str, Any]] = []
        batches: dict[Any, list[dict[str, Any]]] = {}
        for res_type, res_id, resource in items:
            rows.append({"res_type": res_type, "res_id": res_id, "version_id": 1,
                         "last_updated": now, "deleted": False,
                         "content": stamp(resource, res_id, 1, now)})
            self._index_rows(res_type, res_id, resource, batches)
            self.changes.append(Change(res_type, res_id, 1, resource, None))
        self.conn.execute(insert(resources), rows)
        history = [dict(r, method=method) for r in rows if r["res_type"] not in APPEND_ONLY]
        if history:
            self.conn.execute(insert(resource_history), history)
        self._insert_batches(batches)

    def append_records(self, res_type: str, now: str,
                       records: Sequence[tuple[str, str, Sequence[Sequence[Any]]]],
                       method: str = "POST") -> None:
        """Store new append-only resources (version 1) built by the caller: the audit writer's path.

        Each record is (id, stored JSON already stamped with id, versionId 1 and `now`, its
        index rows in IndexRows' field order: tokens, strings, dates, references (the stored
        ones: see `stored_references`), numbers, uris). Ids must be new. One multi-row INSERT
        per table for the lot. Append-only records are not changes for the commit hooks (the
        outbox never acts on them).
        """
        if not records:
            return
        t = res_type
        parts: list[tuple[Any, tuple[str, ...], list[tuple[Any, ...]]]] = [
            (resources, ("version_id", "last_updated", "deleted", "content"),
             [(t, rid, 1, now, False, content) for rid, content, _ in records]),
            (resource_history, ("version_id", "last_updated", "method", "deleted", "content"),
             [] if t in APPEND_ONLY else
             [(t, rid, 1, now, method, False, content) for rid, content, _ in records]),
            (idx_token, ("param", "system", "code"),
             [(t, rid, p, s, c[:512]) for rid, _, rows in records for p, s, c in rows[0]]),
            (idx_string, ("param", "value_norm", "value"),
             [(t, rid, p, n, v) for rid, _, rows in records for p, n, v in rows[1]]),
            (idx_date, ("param", "low", "high"),
             [(t, rid, p, lo, hi) for rid, _, rows in records for p, lo, hi in rows[2]]),
            (reference_table(t), ("param", "target_type", "target_id"),
             [(t, rid, p, tt, i[:64]) for rid, _, rows in records for p, tt, i in rows[3]]),
            (idx_number, ("param", "value"),
             [(t, rid, p, v) for rid, _, rows in records for p, v in rows[4]]),
            (idx_uri, ("param", "value"),
             [(t, rid, p, v) for rid, _, rows in records for p, v in rows[5]]),
        ]
        self._insert_rows([(table, ("res_type", "res_id", *columns), values)
                           for table, columns, values in parts if values])

    def _insert_rows(self, parts: Sequence[tuple[Any, Sequence[str], Sequence[tuple[Any, ...]]]]
                     ) -> None:
        """INSERT rows into several tables. PostgreSQL: one statement, each table's rows given
        as one array per column and unnested (data-modifying WITH clauses: one round trip, and
        statements short and fixed enough to be planned once). SQLite: the driver's executemany
        per table (one prepared statement stepped per row, no flattened parameter list)."""
        if not self.sqlite:
            inserts: list[str] = []
            params: list[list[Any]] = []
            for table, columns, rows in parts:
                arrays = ", ".join(f"%b::{_pg_array_type(table.c[name].type)}"
                                   for name in columns)
                inserts.append(f"INSERT INTO {table.name} ({', '.join(columns)}) "
                               f"SELECT * FROM unnest({arrays})")
                params.extend(list(values) for values in zip(*rows, strict=True))
            if inserts:
                ctes = ", ".join(f"w{n} AS ({sql})" for n, sql in enumerate(inserts[:-1]))
                self.conn.exec_driver_sql((f"WITH {ctes} " if ctes else "") + inserts[-1],
                                          tuple(params))
            return
        for table, columns, rows in parts:
            self._insert_tuples(table, list(columns), list(rows))


def _stored_param(res_type: str, param: str) -> tuple[str, str | None]:
    """Return the parameter whose reference rows answer `param`, and the target type they must
    have (None: any), as DERIVED_REFERENCES declares."""
    derived = DERIVED_REFERENCES.get(res_type, {}).get(param)
    return derived if derived is not None else (param, None)


def _pg_array_type(column_type: Any) -> str:
    if isinstance(column_type, Boolean):
        return "boolean[]"
    if isinstance(column_type, Integer):
        return "integer[]"
    if isinstance(column_type, Float):
        return "double precision[]"
    return "text[]"


def _is_transient(exc: DBAPIError) -> bool:
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate in ("40001", "40P01", "55P03"):
        return True
    message = str(orig).lower()
    return "database is locked" in message or "database table is locked" in message


class SqlResourceStore:
    """The resource store on an SQLAlchemy engine (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine, registry: Registry, *, search_cache_seconds: int = 3600,
                 max_cached_ids: int = 10_000) -> None:
        self.engine = engine
        self.registry = registry
        self.search_cache_seconds = search_cache_seconds
        self.max_cached_ids = max_cached_ids
        self.commit_hooks: list[Callable[[_SqlWriteSession], None]] = []

    def add_commit_hook(self, hook: Callable[[_SqlWriteSession], None]) -> None:
        """Call hook(session) inside every write transaction, after its unit of work."""
        self.commit_hooks.append(hook)

    @property
    def dialect(self) -> str:
        """Return the database dialect name."""
        return self.engine.dialect.name

    def read(self, fn: Callable[[_SqlReadSession], T]) -> T:
        """Run fn in a read-only session."""
        try:
            with self.engine.connect() as conn, conn.begin():
                return fn(_SqlReadSession(conn, self.registry))
        except OperationalError as exc:
            raise StoreUnavailable("the database is unavailable") from exc

    def write(self, fn: Callable[[_SqlWriteSession], T]) -> T:
        """Run fn in one transaction, re-running it when a concurrent writer won a race."""
        delay = 0.005
        for attempt in range(1, MAX_WRITE_ATTEMPTS + 1):
            try:
                with self.engine.connect().execution_options(wraparound_write=True) as conn, \
                        conn.begin():
                    session = _SqlWriteSession(conn, self.registry)
                    result = fn(session)
                    session.flush()
                    for hook in self.commit_hooks:
                        hook(session)
                    session.flush()
                    return result
            except RetryableConflict:
                if attempt == MAX_WRITE_ATTEMPTS:
                    raise
            except IntegrityError as exc:
                if attempt == MAX_WRITE_ATTEMPTS:
                    raise RetryableConflict("concurrent writes kept conflicting") from exc
            except DBAPIError as exc:
                if not _is_transient(exc):
                    if isinstance(exc, OperationalError):
                        raise StoreUnavailable("the database is unavailable") from exc
                    raise
                if attempt == MAX_WRITE_ATTEMPTS:
                    raise StoreUnavailable("the database stayed busy") from exc
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    def save_search_set(self, res_type: str, query: str, ids: Sequence[str], total: int) -> str:
        """Keep an ordered result set for paging and return its id; expired sets are purged."""
        set_id = str(uuid.uuid4())
        now = datetime.now(UTC)
        created = now.strftime("%Y-%m-%dT%H:%M:%S.%f")
        expires = (now + timedelta(seconds=self.search_cache_seconds)).strftime(
            "%Y-%m-%dT%H:%M:%S.%f")

        def _save(tx: _SqlWriteSession) -> None:
            tx.conn.execute(delete(search_sets).where(search_sets.c.expires < created))
            tx.conn.execute(insert(search_sets).values(
                id=set_id, res_type=res_type, created=created, expires=expires, total=total,
                query=query, ids=orjson.dumps(list(ids)).decode()))

        self.write(_save)
        return set_id

    def load_search_set(self, set_id: str) -> tuple[str, str, list[str], int] | None:
        """Return (res_type, query, ids, total) for a kept result set, or None if expired."""
        def _load(tx: _SqlReadSession) -> Any:
            return tx.conn.execute(select(search_sets).where(
                search_sets.c.id == set_id, search_sets.c.expires >= utc_now())).first()

        row = self.read(_load)
        if row is None:
            return None
        return row.res_type, row.query, orjson.loads(row.ids), int(row.total)

    def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers."""
        try:
            with self.engine.connect() as conn:
                conn.execute(select(literal(1)))
        except DBAPIError as exc:
            raise StoreUnavailable("the database is unavailable") from exc

    def dispose(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()


__all__ = ["SqlResourceStore", "from_instant", "stamp", "to_instant", "utc_now"]

