"""The FHIR REST service: create, read, update, delete, history, search, transaction and batch.

Views call this; it validates, enforces versioning and conditional semantics, and runs every
write in one store transaction.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import orjson

from gateway.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    GatewayError,
    InvalidResource,
    Issue,
    MethodNotAllowed,
    MultipleMatches,
    PreconditionFailed,
    ResourceGone,
    ResourceNotFound,
    ServiceUnavailable,
    UnknownResourceType,
)
from gateway.fhir.registry import Registry, ResourceType
from gateway.fhir.search import Criterion, SearchQuery, parse_search
from gateway.security.audit import AuditTrail, build_event, current_audit
from gateway.security.context import Caller, current_caller
from gateway.security.policy import Policy
from gateway.security.scopes import allows
from gateway.store.base import ResourceStore, RetryableConflict, StoredResource, StoreUnavailable
from vocab import systems

ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.")
VOLATILE_META = ("versionId", "lastUpdated")

Validator = Callable[[object, "str | None"], list[Any]]


@dataclass(frozen=True)
class WriteResult:
    """The outcome of one write: the stored version and the HTTP status it earns."""

    stored: StoredResource
    status: int  # 200 updated/matched, 201 created
    changed: bool = True  # False when an update matched the stored content (no new version)

    @property
    def created(self) -> bool:
        """Return True when the write created the resource."""
        return self.status == 201


@dataclass
class SearchResult:
    """A page of search results, ready to render as a searchset Bundle."""

    query: SearchQuery
    matches: list[StoredResource]
    included: list[StoredResource]
    total: int
    offset: int
    count: int
    search_set: str | None
    self_params: list[tuple[str, str]] = field(default_factory=list)


def valid_id(value: object) -> bool:
    """Return True when value is a FHIR id (1-64 of A-Z a-z 0-9 - .)."""
    return isinstance(value, str) and 0 < len(value) <= 64 and set(value) <= ID_CHARS


def new_id() -> str:
    """Return a new server-assigned id."""
    return str(uuid.uuid4())


def parse_etag(value: str | None) -> int | None:
    """Return the version number in an If-Match header (W/"3", "3" or 3), or None."""
    if value is None:
        return None
    raw = value.strip()
    raw = raw.removeprefix("W/")
    raw = raw.strip('"')
    if not raw.isdigit():
        raise BadRequest("If-Match must carry a version ETag such as W/\"1\"")
    return int(raw)


def _content_equal(stored: StoredResource, resource: dict[str, Any]) -> bool:
    if stored.content is None:
        return False
    old = orjson.loads(stored.content)
    for doc in (old, resource):
        meta = doc.get("meta")
        if isinstance(meta, dict):
            meta = {k: v for k, v in meta.items() if k not in VOLATILE_META}
            if meta:
                doc["meta"] = meta
            else:
                doc.pop("meta", None)
    return bool(old == resource)


def rewrite_references(node: Any, mapping: dict[str, str]) -> Any:
    """Return node with every `reference` (and matching string in a narrative) rewritten."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "reference" and isinstance(value, str) and value in mapping:
                out[key] = mapping[value]
            else:
                out[key] = rewrite_references(value, mapping)
        return out
    if isinstance(node, list):
        return [rewrite_references(v, mapping) for v in node]
    return node


class FhirService:
    """The FHIR interactions over a resource store, each through the policy layer and audited."""

    def __init__(self, store: ResourceStore, registry: Registry, validator: Validator, *,
                 policy: Policy | None = None, audit: AuditTrail | None = None,
                 default_count: int = 20, max_count: int = 500, max_includes: int = 1000,
                 max_cached_ids: int = 10_000) -> None:
        self.store = store
        self.registry = registry
        self.validator = validator
        self.policy = policy or Policy.load()
        self.audit = audit
        self.default_count = default_count
        self.max_count = max_count
        self.max_includes = max_includes
        self.max_cached_ids = max_cached_ids

    # -- helpers ------------------------------------------------------------------------------
    def resource_type(self, name: str) -> ResourceType:
        """Return the registration for a type or raise 404 not-supported."""
        rtype = self.registry.get(name)
        if rtype is None:
            raise UnknownResourceType(f"resource type '{name}' is not supported here")
        return rtype

    def validate(self, resource: object, expected_type: str | None) -> list[Issue]:
        """Return the validation issues for a resource as gateway issues."""
        out: list[Issue] = []
        for issue in self.validator(resource, expected_type):
            expr = (issue.expression,) if getattr(issue, "expression", "") else ()
            out.append(Issue(issue.severity, issue.code, issue.diagnostics, expr))
        return out

    def require_write_scope(self, res_type: str) -> None:
        """Raise 403 unless the caller may create or update the type (for $validate)."""
        caller = current_caller()
        if not caller.system and not (allows(caller.scopes, res_type, "c")
                                      or allows(caller.scopes, res_type, "u")):
            raise Forbidden(f"the token's scopes do not permit writing {res_type}")

    def check_valid(self, resource: object, expected_type: str,
                    location: str | None = None) -> dict[str, Any]:
        """Validate strictly and return the resource, or raise InvalidResource (400/422)."""
        if not isinstance(resource, dict):
            raise BadRequest("the body must be a JSON object holding a FHIR resource")
        rt = resource.get("resourceType")
        if rt != expected_type:
            raise BadRequest(
                f"resourceType must be '{expected_type}'" if isinstance(rt, str) and rt
                else "the body has no resourceType"
            )
        issues = self.validate(resource, expected_type)
        errors = [i for i in issues if i.severity in ("error", "fatal")]
        if errors:
            if location:
                errors = [Issue(i.severity, i.code, f"{location}: {i.diagnostics}", i.expression)
                          for i in errors]
            structural = any(i.code in ("structure", "invalid") for i in errors)
            raise InvalidResource("the resource is not valid", issues=errors,
                                  status=400 if structural else 422)
        return resource

    def _store_write(self, fn: Callable[[Any], Any]) -> Any:
        ctx = current_audit()

        def _audited(tx: Any) -> Any:
            mark = len(ctx.entities) if ctx else 0
            result = fn(tx)
            if ctx is not None and self.audit is not None:
                event = build_event(_caller_or_none(), ctx, "success",
                                    request_id=ctx.request_id)
                self.audit.write_in(tx, event)
                ctx.written_in_transaction = True
                del ctx.entities[mark:]
            return result

        try:
            return self.store.write(_audited)
        except RetryableConflict as exc:
            raise Conflict("the resource was changed by another request; retry") from exc
        except StoreUnavailable as exc:
            raise ServiceUnavailable("the database is unavailable; retry later") from exc

    def _store_read(self, fn: Callable[[Any], Any]) -> Any:
        try:
            return self.store.read(fn)
        except StoreUnavailable as exc:
            raise ServiceUnavailable("the database is unavailable; retry later") from exc

    def parse_query(self, res_type: str, pairs: Iterable[tuple[str, str]], *,
                    lenient: bool = False) -> SearchQuery:
        """Parse search parameters for a type."""
        rtype = self.resource_type(res_type)
        return parse_search(self.registry, rtype, pairs, default_count=self.default_count,
                            max_count=self.max_count, lenient=lenient)

    def _visible(self, stored: StoredResource | None) -> StoredResource | None:
        """Return the stored resource as the caller may see it, or None when hidden."""
        if stored is None or stored.content is None:
            return stored
        caller = current_caller()
        content = self.policy.view(caller, stored.res_type, stored.content)
        if content is None:
            return None
        ctx = current_audit()
        if ctx is not None:
            ctx.touch(f"{stored.res_type}/{stored.res_id}")
            if self.policy.broke_glass(caller, stored.res_type, stored.content):
                ctx.break_glass = True
        if content is stored.content:
            return stored
        return replace(stored, content=content)

    def _tagged(self, tx: Any, res_type: str, body: dict[str, Any],
                previous: StoredResource | None, interaction: str) -> dict[str, Any]:
        prev_json = orjson.loads(previous.content) if previous and previous.content else None
        if previous is not None and previous.deleted:
            prev_json = self._last_content(tx, previous)
        return self.policy.prepare_write(current_caller(), res_type, body, prev_json, interaction)

    @staticmethod
    def _last_content(tx: Any, stored: StoredResource) -> dict[str, Any] | None:
        for version in range(stored.version_id - 1, 0, -1):
            old = tx.get_version(stored.res_type, stored.res_id, version)
            if old is not None and old.content:
                return orjson.loads(old.content)  # type: ignore[no-any-return]
        return None

    # -- read ---------------------------------------------------------------------------------
    def read(self, res_type: str, res_id: str) -> StoredResource:
        """Return the current version or raise 404/410."""
        self.resource_type(res_type)
        self.policy.require_scope(current_caller(), res_type, "read")
        stored = self._store_read(lambda s: s.get(res_type, res_id)) if valid_id(res_id) else None
        if stored is None:
            raise ResourceNotFound(f"{res_type}/{res_id} is not known")
        if stored.deleted:
            last = self._store_read(lambda s: self._last_content(s, stored))
            if last is None or not self.policy.may_read(current_caller(), res_type, last):
                raise ResourceNotFound(f"{res_type}/{res_id} is not known")
            raise ResourceGone(f"{res_type}/{res_id} has been deleted",
                               headers={"ETag": stored.etag})
        visible = self._visible(stored)
        if visible is None:
            raise ResourceNotFound(f"{res_type}/{res_id} is not known")
        return visible

    def vread(self, res_type: str, res_id: str, version: str) -> StoredResource:
        """Return one version or raise 404/410."""
        self.resource_type(res_type)
        self.policy.require_scope(current_caller(), res_type, "vread")
        current = self.read_any(res_type, res_id)
        stored = None
        if version.isdigit():
            stored = self._store_read(lambda s: s.get_version(res_type, res_id, int(version)))
        if stored is None:
            raise ResourceNotFound(f"version {version} of {res_type}/{res_id} is not known")
        if stored.deleted:
            raise ResourceGone(f"version {version} of {res_type}/{res_id} is a deletion")
        visible = self._visible(stored)
        if visible is None:
            raise ResourceNotFound(f"{res_type}/{res_id} is not known")
        del current
        return visible

    # -- writes -------------------------------------------------------------------------------
    def create(self, res_type: str, resource: object, *, if_none_exist: str | None = None,
               validated: bool = False) -> WriteResult:
        """Create with a server-assigned id; with If-None-Exist, return the one match instead."""
        self.resource_type(res_type)
        self.policy.require_scope(current_caller(), res_type, "create")
        body = resource if validated else self.check_valid(resource, res_type)
        assert isinstance(body, dict)
        query = None
        if if_none_exist is not None:
            query = self.parse_query(res_type, _query_pairs(if_none_exist))
            if not query.criteria:
                raise BadRequest("If-None-Exist needs at least one search parameter")
        return self._store_write(lambda tx: self._create_in(tx, res_type, body, query))  # type: ignore[no-any-return]

    def _create_in(self, tx: Any, res_type: str, body: dict[str, Any],
                   query: SearchQuery | None, res_id: str | None = None) -> WriteResult:
        if query is not None:
            tx.lock(f"conditional:{res_type}")
            ids = tx.search_ids(query, limit=2)
            if len(ids) > 1:
                raise MultipleMatches("If-None-Exist matched more than one resource")
            if ids:
                match = self._visible(tx.get(res_type, ids[0]))
                if match is None:
                    raise PreconditionFailed("If-None-Exist could not be resolved")
                return WriteResult(match, 200, changed=False)
        tagged = self._tagged(tx, res_type, body, None, "create")
        stored = tx.put(res_type, res_id or new_id(), tagged, previous=None, method="POST")
        self._touch(stored)
        return WriteResult(stored, 201)

    @staticmethod
    def _touch(stored: StoredResource) -> None:
        ctx = current_audit()
        if ctx is not None:
            ctx.touch(f"{stored.res_type}/{stored.res_id}")

    def update(self, res_type: str, res_id: str, resource: object, *,
               if_match: str | None = None) -> WriteResult:
        """Update (or create with the client's id); If-Match enforces the version."""
        self.resource_type(res_type)
        self.policy.require_scope(current_caller(), res_type, "update")
        body = self.check_valid(resource, res_type)
        if not valid_id(res_id):
            raise BadRequest("the id in the URL is not a valid FHIR id")
        if body.get("id") != res_id:
            raise BadRequest("the resource id must be present and match the id in the URL")
        expected = parse_etag(if_match)
        return self._store_write(lambda tx: self._update_in(tx, res_type, res_id, body, expected))  # type: ignore[no-any-return]

    def _update_in(self, tx: Any, res_type: str, res_id: str, body: dict[str, Any],
                   expected: int | None) -> WriteResult:
        prev = tx.get_for_update(res_type, res_id)
        interaction = "create" if prev is None else "update"
        tagged = self._tagged(tx, res_type, body, prev, interaction)
        if expected is not None:
            if prev is None or prev.deleted:
                raise PreconditionFailed(f"If-Match given but {res_type}/{res_id} does not exist")
            if prev.version_id != expected:
                raise PreconditionFailed(
                    f"version conflict: the current version is {prev.version_id}, not {expected}",
                    headers={"ETag": prev.etag})
        if prev is not None and not prev.deleted and _content_equal(prev, dict(tagged)):
            return WriteResult(prev, 200, changed=False)
        stored = tx.put(res_type, res_id, tagged, previous=prev, method="PUT")
        self._touch(stored)
        return WriteResult(stored, 201 if prev is None or prev.deleted else 200)

    def _stage_update_in(self, tx: Any, current: dict[tuple[str, str], StoredResource],
                         res_type: str, res_id: str, body: dict[str, Any]) -> WriteResult:
        """`_update_in` for many writes in one transaction (ingest), staged to be stored at once.

        `current` maps (type, id) to the current version, as `tx.get_many_for_update` returned
        it for every key the batch writes (locked); it is kept up to date with each write.
        """
        key = (res_type, res_id)
        prev = current.get(key)
        interaction = "create" if prev is None else "update"
        tagged = self._tagged(tx, res_type, body, prev, interaction)
        if prev is not None and not prev.deleted and _content_equal(prev, dict(tagged)):
            return WriteResult(prev, 200, changed=False)
        stored = tx.stage(res_type, res_id, tagged, previous=prev, method="PUT")
        current[key] = stored
        self._touch(stored)
        return WriteResult(stored, 201 if prev is None or prev.deleted else 200)

    def conditional_update(self, res_type: str, criteria: Sequence[tuple[str, str]],
                           resource: object, *, if_match: str | None = None) -> WriteResult:
        """Update the one resource matching the criteria, or create when none match."""
        self.resource_type(res_type)
        self.policy.require_scope(current_caller(), res_type, "update")
        body = self.check_valid(resource, res_type)
        query = self.parse_query(res_type, criteria)
        if not query.criteria:
            raise BadRequest("a conditional update needs at least one search parameter")
        expected = parse_etag(if_match)

        def _run(tx: Any) -> WriteResult:
            tx.lock(f"conditional:{res_type}")
            ids = tx.search_ids(query, limit=2)
            if len(ids) > 1:
                raise MultipleMatches("the conditional update matched more than one resource")
            body_id = body.get("id")
            if ids:
                if body_id is not None and body_id != ids[0]:
                    raise BadRequest("the resource id differs from the matched resource's id")
                return self._update_in(tx, res_type, ids[0], dict(body, id=ids[0]), expected)
            if body_id is not None:
                if not valid_id(body_id):
                    raise BadRequest("the resource id is not a valid FHIR id")
                return self._update_in(tx, res_type, body_id, body, expected)
            tagged = self._tagged(tx, res_type, body, None, "create")
            stored = tx.put(res_type, new_id(), tagged, previous=None, method="PUT")
            self._touch(stored)
            return WriteResult(stored, 201)

        return self._store_write(_run)  # type: ignore[no-any-return]

    def delete(self, res_type: str, res_id: str, *, if_match: str | None = None) -> StoredResource | None:
        """Delete (soft: the history is kept); returns the deletion version or None if already gone."""
        self.resource_type(res_type)
        self.policy.require_scope(current_caller(), res_type, "delete")
        if not valid_id(res_id):
            raise ResourceNotFound(f"{res_type}/{res_id} is not known")
        expected = parse_etag(if_match)
        return self._store_write(lambda tx: self._delete_in(tx, res_type, res_id, expected))  # type: ignore[no-any-return]

    def _delete_in(self, tx: Any, res_type: str, res_id: str,
                   expected: int | None) -> StoredResource | None:
        prev = tx.get_for_update(res_type, res_id)
        if prev is None:
            raise ResourceNotFound(f"{res_type}/{res_id} is not known")
        prev_json = (orjson.loads(prev.content) if prev.content
                     else self._last_content(tx, prev))
        self.policy.may_delete(current_caller(), res_type, prev_json)
        if expected is not None and prev.version_id != expected:
            raise PreconditionFailed(f"version conflict: the current version is {prev.version_id}")
        if prev.deleted:
            return None
        self._touch(prev)
        return tx.delete(prev)  # type: ignore[no-any-return]

    # -- history ------------------------------------------------------------------------------
    def history(self, res_type: str | None, res_id: str | None, params: Sequence[tuple[str, str]],
                ) -> tuple[list[StoredResource], int | None, int, int, str]:
        """Return (entries, total, offset, count, before) for instance, type or system history.

        Entries the caller may not see are left out; the total is then omitted, so it reveals
        nothing about them.
        """
        from gateway.store.sql import from_instant, utc_now

        caller = current_caller()
        if res_type:
            self.resource_type(res_type)
            self.policy.require_scope(caller, res_type, "history")
        elif not caller.system and not allows(caller.scopes, "*", "r"):
            raise Forbidden("system history needs read access to every type (system/*.r)")
        if res_id is not None:
            current = self.read_any(res_type or "", res_id)
            content = current.content or self._store_read(
                lambda s: orjson.dumps(self._last_content(s, current)).decode())
            if self.policy.view(caller, res_type or "", content) is None:
                raise ResourceNotFound(f"{res_type}/{res_id} is not known")
        opts = dict(params)
        try:
            count = min(int(opts.get("_count", self.default_count)), self.max_count)
            offset = int(opts.get("_offset", 0))
            since = from_instant(opts["_since"]) if "_since" in opts else None
            before = from_instant(opts["_before"]) if "_before" in opts else utc_now()
        except ValueError as exc:
            raise BadRequest("_count/_offset must be integers and _since/_before instants") from exc
        if count < 0 or offset < 0:
            raise BadRequest("_count and _offset must not be negative")
        types = None
        if res_type is None and not caller.system:
            agency = self.policy.agency(caller.agency)
            types = [t for t in self.registry.names() if agency.read_rules(t)]
        entries, total = self._store_read(lambda s: s.history(
            res_type, res_id, since=since, before=before, count=count, offset=offset,
            types=types))
        shown: list[StoredResource] = []
        for entry in entries:
            if entry.content is None:
                if res_id is not None or caller.system or self.policy.access_filter(
                        caller, entry.res_type) is None:
                    shown.append(entry)
                continue
            visible = self._visible(entry)
            if visible is not None:
                shown.append(visible)
        return shown, (total if len(shown) == len(entries) else None), offset, count, before

    def read_any(self, res_type: str, res_id: str) -> StoredResource:
        """Return the current version, deleted or not, or raise 404."""
        stored = self._store_read(lambda s: s.get(res_type, res_id)) if valid_id(res_id) else None
        if stored is None:
            raise ResourceNotFound(f"{res_type}/{res_id} is not known")
        return stored  # type: ignore[no-any-return]

    # -- search -------------------------------------------------------------------------------
    def _secure_query(self, query: SearchQuery) -> None:
        caller = current_caller()
        query.access = self.policy.access_filter(caller, query.res_type)
        if query.res_type == "Patient" and self.policy.hides_shielded_location(
                caller, {c.name for c in query.criteria}):
            query.criteria.append(Criterion("_security", "token", "not", (
                (systems.CONFIDENTIALITY, "R", True), (systems.CONFIDENTIALITY, "V", True))))
        ctx = current_audit()
        if ctx is not None:
            ctx.res_type = query.res_type

    def _visible_all(self, items: list[StoredResource]) -> list[StoredResource]:
        return [v for v in (self._visible(s) for s in items) if v is not None]

    def search(self, res_type: str, pairs: Sequence[tuple[str, str]], *,
               lenient: bool = False) -> SearchResult:
        """Run a search; pages beyond the first come from a kept result set (`_getpages`)."""
        self.resource_type(res_type)
        caller = current_caller()
        self.policy.require_scope(caller, res_type, "search")
        ctx = current_audit()
        if ctx is not None:
            ctx.query = urlencode(list(pairs))
        opts = dict(pairs)
        if "_getpages" in opts:
            return self._page_from_set(res_type, opts)
        query = self.parse_query(res_type, pairs, lenient=lenient)
        self._secure_query(query)
        self_params = [(k, v) for k, v in pairs if k not in ("_getpages",)]

        def _run(s: Any) -> tuple[list[str], int, list[StoredResource], list[StoredResource]]:
            if query.summary_count:
                return [], s.count(query), [], []
            ids = s.search_ids(query, limit=query.count + 1, offset=query.offset)
            more = len(ids) > query.count
            ids = ids[: query.count]
            total = s.count(query) if (more or query.offset) else len(ids)
            matches = s.fetch([(res_type, i) for i in ids])
            included = s.includes(res_type, ids, query.includes, query.revincludes,
                                  self.max_includes)
            all_ids = (s.search_ids(query, limit=self.max_cached_ids)
                       if more and query.offset == 0 else [])
            return all_ids, total, matches, included

        all_ids, total, matches, included = self._store_read(_run)
        matches = self._visible_all(matches)
        included = self._visible_all(included)
        search_set = None
        if all_ids:
            kept = urlencode([("_caller", caller.agency), *self_params])
            search_set = self.store.save_search_set(res_type, kept, all_ids, total)
        return SearchResult(query, matches, included, total, query.offset, query.count,
                            search_set, self_params)

    def _page_from_set(self, res_type: str, opts: dict[str, str]) -> SearchResult:
        kept = self.store.load_search_set(opts["_getpages"])
        if kept is None or kept[0] != res_type:
            raise ResourceGone("the search result set has expired; run the search again")
        _, query_text, ids, total = kept
        pairs = parse_qsl(query_text)
        if not pairs or pairs[0] != ("_caller", current_caller().agency):
            raise ResourceGone("the search result set has expired; run the search again")
        pairs = pairs[1:]
        query = self.parse_query(res_type, pairs)
        try:
            query.offset = max(int(opts.get("_offset", 0)), 0)
            query.count = min(max(int(opts.get("_count", query.count)), 0), self.max_count)
        except ValueError as exc:
            raise BadRequest("_offset and _count must be integers") from exc
        page_ids = ids[query.offset : query.offset + query.count]

        def _run(s: Any) -> tuple[list[StoredResource], list[StoredResource]]:
            matches = s.fetch([(res_type, i) for i in page_ids])
            included = s.includes(res_type, page_ids, query.includes, query.revincludes,
                                  self.max_includes)
            return matches, included

        matches, included = self._store_read(_run)
        return SearchResult(query, self._visible_all(matches), self._visible_all(included),
                            total, query.offset, query.count, opts["_getpages"], pairs)


def _caller_or_none() -> Caller | None:
    try:
        return current_caller()
    except GatewayError:
        return None


def _query_pairs(text: str) -> list[tuple[str, str]]:
    raw = text.split("?", 1)[1] if "?" in text else text
    return parse_qsl(raw, keep_blank_values=True)


def split_request_url(url: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Split a Bundle entry request URL ("Patient/1", "Patient?x=y") into path parts and query."""
    parts = urlsplit(url)
    path = [p for p in parts.path.split("/") if p]
    return path, parse_qsl(parts.query, keep_blank_values=True)


__all__ = [
    "FhirService", "GatewayError", "MethodNotAllowed", "SearchResult", "WriteResult",
    "new_id", "parse_etag", "rewrite_references", "split_request_url", "valid_id",
]
