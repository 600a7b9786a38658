"""Load mapping folders into a Registry and map records with it."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mappings import readers
from mappings.engine import (
    DROP,
    Compiler,
    CompileScope,
    Const,
    Expr,
    Partial,
    ResourceTemplate,
    Run,
)
from mappings.errors import (
    MappingDefinitionError,
    MappingError,
    MappingsError,
    Problem,
    UnknownSource,
)
from mappings.expressions import is_expression, make_environment
from mappings.ids import resource_id, source_uri
from mappings.inputs import InputSpec, check_record, parse_inputs, unconsumed
from mappings.tables import CodeTable, TableUsage, load_table
from vocab import systems

PACKAGE_DIR = Path(__file__).resolve().parent
BUILTIN_SOURCES = PACKAGE_DIR / "sources"
SHARED_PARTIALS = PACKAGE_DIR / "partials"
SHARED_TABLES = PACKAGE_DIR / "tables"
FORMATS = {"csv": "text/csv", "json": "application/json", "ndjson": "application/x-ndjson",
           "xml": "application/xml"}
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C parser when libyaml is there
_TOP_KEYS = frozenset({"source", "record_type", "description", "format", "record_id", "select",
                       "inputs", "ignored", "resources"})
_FORMAT_KEYS = frozenset({"type", "encoding", "delimiter", "record_path", "context",
                          "null_values", "date_format"})


@dataclass(frozen=True)
class SourceFormat:
    """How a source's exports are read."""

    type: str
    encoding: str = "auto"
    delimiter: str = ","
    record_path: str | None = None
    context: MappingABC[str, str] = field(default_factory=dict)

    @property
    def content_type(self) -> str:
        """Return the default content type of the export."""
        return FORMATS[self.type]


@dataclass(frozen=True)
class MappedRecord:
    """The FHIR resources one source record maps to (the last is its Provenance)."""

    resources: list[dict[str, Any]]
    source_record_id: str
    location: str
    source: str = ""
    record_type: str = ""


@dataclass
class Mapping:
    """One compiled mapping file: a source record type to FHIR resources."""

    source: str
    record_type: str
    path: str
    description: str
    format: SourceFormat
    inputs: InputSpec
    record_id: Expr
    select: Expr | None
    resources: list[ResourceTemplate]
    used_inputs: set[str]
    tables_used: set[str]
    constants: set[str]

    def check(self, record: Any, location: str) -> dict[str, Any]:
        """Return the typed input values of `record`, or raise MappingError listing problems."""
        values, problems, _ = check_record(self.inputs, record, location)
        if problems:
            raise MappingError(problems)
        return values

    def unused_inputs(self) -> list[str]:
        """Return declared input fields that no expression reads."""
        unused = []
        for spec in self.inputs.fields:
            for path, node in spec.walk():
                if node.items or node.fields:
                    continue
                parts = path.split(".")
                prefixes = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
                if not prefixes & self.used_inputs and not any(
                    u.startswith(path + ".") for u in self.used_inputs
                ):
                    unused.append(path)
        return unused

    def unmapped_fields(self, record: Any) -> set[str]:
        """Return raw fields present in `record` that the mapping neither reads nor ignores."""
        _, _, consumed = check_record(self.inputs, record, "(check)")
        return unconsumed(record, consumed)


def _provenance(source: str, record_type: str, record_id: str, targets: list[str],
                recorded: str) -> dict[str, Any]:
    return {
        "resourceType": "Provenance",
        "id": resource_id(source, "Provenance", [record_type, record_id]),
        "meta": {"source": source_uri(source)},
        "target": [{"reference": ref} for ref in targets],
        "recorded": recorded,
        "agent": [{
            "type": {"coding": [{"system": systems.PROVENANCE_PARTICIPANT_TYPE,
                                 "code": "author", "display": "Author"}]},
            "who": {"identifier": {"system": systems.SOURCE_SYSTEM, "value": source},
                    "display": source},
        }],
        "entity": [{
            "role": "source",
            "what": {"identifier": {"system": systems.local_id_system(source, record_type),
                                    "value": record_id}},
        }],
    }


def _instant(value: dt.datetime | str | None) -> str:
    if value is None:
        value = dt.datetime.now(dt.UTC)
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        raise ValueError("recorded must carry a time zone")
    return value.replace(microsecond=0).isoformat().replace("+00:00", "Z")


class Registry:
    """Every loaded source: its mappings, code tables and partials."""

    def __init__(self, mappings: dict[str, dict[str, Mapping]],
                 tables: dict[str, dict[str, CodeTable]], folders: dict[str, Path]) -> None:
        self._mappings = mappings
        self._tables = tables
        self._folders = folders

    def sources(self) -> list[str]:
        """Return the source names, sorted."""
        return sorted(self._mappings)

    def record_types(self, source: str) -> list[str]:
        """Return the record types a source maps, sorted."""
        return sorted(self._source(source))

    def folder(self, source: str) -> Path:
        """Return the folder a source was loaded from."""
        self._source(source)
        return self._folders[source]

    def tables(self, source: str) -> dict[str, CodeTable]:
        """Return the code tables visible to a source (its own over the shared ones)."""
        self._source(source)
        return dict(self._tables[source])

    def mapping(self, source: str, record_type: str | None = None) -> Mapping:
        """Return one mapping; `record_type` may be omitted when the source has one."""
        by_type = self._source(source)
        if record_type is None:
            if len(by_type) != 1:
                raise UnknownSource(f"source {source!r} has several record types; name one")
            return next(iter(by_type.values()))
        if record_type not in by_type:
            raise UnknownSource(f"source {source!r} has no record type {record_type!r}")
        return by_type[record_type]

    def format(self, source: str) -> SourceFormat:
        """Return how a source's exports are read."""
        return next(iter(self._source(source).values())).format

    def _source(self, source: str) -> dict[str, Mapping]:
        try:
            return self._mappings[source]
        except KeyError:
            raise UnknownSource(f"no mapping for source {source!r}") from None

    def read_records(self, source: str, stream: readers.Stream,
                     content_type: str | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield (location, raw record) from an export of `source`."""
        fmt = self.format(source)
        return readers.read_records(
            stream,
            content_type or fmt.content_type,
            encoding=fmt.encoding,
            delimiter=fmt.delimiter,
            record_path=fmt.record_path,
            context=fmt.context,
        )

    def _select(self, source: str, record: Any, location: str,
                record_type: str | None) -> Mapping:
        by_type = self._source(source)
        if record_type is not None or len(by_type) == 1:
            return self.mapping(source, record_type)
        for mapping in by_type.values():
            if mapping.select is None or not isinstance(record, MappingABC):
                continue
            run = Run(source, self._tables[source], location)
            scope = {**record, "__run__": run, "source": source}
            if mapping.select.raw(run, scope) not in (DROP, None, False, ""):
                return mapping
        raise MappingError.single(location, None, "no record type of this source matches")

    def map_record(
        self,
        source: str,
        record: Any,
        location: str,
        *,
        record_type: str | None = None,
        recorded: dt.datetime | str | None = None,
        usage: TableUsage | None = None,
    ) -> MappedRecord:
        """Map one raw record to FHIR resources plus a Provenance, or raise MappingError.

        `recorded` becomes Provenance.recorded (now, when omitted); `usage` collects code-table
        hits and misses for `mappings check`.
        """
        mapping = self._select(source, record, location, record_type)
        values = mapping.check(record, location)
        run = Run(source, self._tables[source], location, usage)
        scope: dict[str, Any] = dict(values)
        scope.update({"__run__": run, "source": source, "record_type": mapping.record_type})
        record_id = mapping.record_id.eval(run, scope)
        if record_id is DROP or isinstance(record_id, (dict, list)):
            run.problems.append(Problem(location, ", ".join(mapping.record_id.fields) or None,
                                        "the record id is empty", "record_id"))
        produced: list[dict[str, Any]] = []
        seen: dict[tuple[str, str], dict[str, Any]] = {}
        for template in mapping.resources:
            for rid, resource in template.produce(run, scope):
                earlier = seen.get((template.resource_type, rid))
                if earlier is not None:
                    # The same thing named twice (two visits to one hospital) is one resource.
                    if earlier != resource:
                        run.problems.append(Problem(
                            location, None, "two different resources share one key",
                            template.where))
                    continue
                seen[(template.resource_type, rid)] = dict(resource)
                meta = dict(resource.pop("meta", None) or {})
                meta["source"] = source_uri(source)
                head = {"resourceType": resource.pop("resourceType"), "id": resource.pop("id"),
                        "meta": meta}
                produced.append({**head, **resource})
        if run.problems:
            raise MappingError(run.problems)
        if not produced:
            raise MappingError.single(location, None, "the record produced no resources")
        targets = [f"{r['resourceType']}/{r['id']}" for r in produced]
        try:
            instant = _instant(recorded)
        except ValueError as exc:
            raise MappingError.single(location, None, str(exc)) from None
        produced.append(_provenance(source, mapping.record_type, str(record_id), targets,
                                    instant))
        return MappedRecord(resources=produced, source_record_id=str(record_id),
                            location=location, source=source, record_type=mapping.record_type)

    def map_stream(
        self,
        source: str,
        stream: readers.Stream,
        content_type: str | None = None,
        *,
        recorded: dt.datetime | str | None = None,
        usage: TableUsage | None = None,
    ) -> Iterator[MappedRecord | MappingError]:
        """Yield a MappedRecord or a MappingError for each record (a ReaderError ends it)."""
        for location, record in self.read_records(source, stream, content_type):
            try:
                yield self.map_record(source, record, location, recorded=recorded, usage=usage)
            except MappingError as exc:
                yield exc


def _load_yaml(path: Path) -> Any:
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_SAFE_LOADER)
    except yaml.YAMLError as exc:
        raise MappingDefinitionError(str(path), f"not valid YAML: {exc}") from exc
    except OSError as exc:
        raise MappingDefinitionError(str(path), f"cannot be read: {exc.strerror}") from exc


def _load_partials(folders: Iterable[Path], env: Any,
                   inherited: MappingABC[str, Partial]) -> dict[str, Partial]:
    raw_partials: dict[str, tuple[Path, Any]] = {}
    for folder in folders:
        for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
            raw = _load_yaml(path)
            if not isinstance(raw, MappingABC) or "body" not in raw:
                raise MappingDefinitionError(str(path), "a partial has `params` and `body`")
            unknown = set(raw) - {"partial", "description", "params", "body"}
            if unknown:
                raise MappingDefinitionError(str(path), f"unknown keys {sorted(unknown)}")
            name = str(raw.get("partial") or path.stem)
            raw_partials[name] = (path, raw)
    partials: dict[str, Partial] = dict(inherited)
    for name, (path, raw) in raw_partials.items():
        params = raw.get("params") or []
        if not isinstance(params, list):
            raise MappingDefinitionError(str(path), "`params` is a list of names")
        partials[name] = Partial(name=name, path=str(path), params=tuple(map(str, params)))
    compiling: set[str] = set()

    def compile_partial(name: str) -> None:
        partial = partials[name]
        if partial.body is not None:
            return
        if name in compiling:
            raise MappingDefinitionError(partial.path, "partials include each other in a loop")
        compiling.add(name)
        _, raw = raw_partials[name]
        for other in _includes(raw["body"]):
            if other in raw_partials:
                compile_partial(other)
        compiler = Compiler(env, partial.path, partials)
        scope = CompileScope(frozenset(partial.params), {}, frozenset())
        partial.body = compiler.node(raw["body"], name, scope)
        partial.tables = compiler.tables
        partial.constants = compiler.constants
        compiling.discard(name)

    for name in raw_partials:
        compile_partial(name)
    return partials


def _includes(raw: Any) -> Iterator[str]:
    if isinstance(raw, MappingABC):
        if "$include" in raw:
            yield str(raw["$include"])
        for value in raw.values():
            yield from _includes(value)
    elif isinstance(raw, list):
        for value in raw:
            yield from _includes(value)


def _load_tables(folder: Path) -> dict[str, CodeTable]:
    tables: dict[str, CodeTable] = {}
    if folder.is_dir():
        for path in sorted(folder.glob("*.yaml")):
            table = load_table(path)
            if table.name in tables:
                raise MappingDefinitionError(str(path), f"table {table.name!r} defined twice")
            tables[table.name] = table
    return tables


def _format(raw: Any, path: str) -> tuple[SourceFormat, list[str], str]:
    if isinstance(raw, str):
        raw = {"type": raw}
    if not isinstance(raw, MappingABC) or raw.get("type") not in FORMATS:
        raise MappingDefinitionError(path, f"`format.type` is one of {sorted(FORMATS)}", "format")
    unknown = set(raw) - _FORMAT_KEYS
    if unknown:
        raise MappingDefinitionError(path, f"unknown format keys {sorted(unknown)}", "format")
    if raw["type"] == "xml" and not raw.get("record_path"):
        raise MappingDefinitionError(path, "an XML format needs `record_path`", "format")
    context = raw.get("context") or {}
    if not isinstance(context, MappingABC):
        raise MappingDefinitionError(path, "`format.context` is a mapping", "format")
    fmt = SourceFormat(
        type=str(raw["type"]),
        encoding=str(raw.get("encoding", "auto")),
        delimiter=str(raw.get("delimiter", ",")),
        record_path=str(raw["record_path"]) if raw.get("record_path") else None,
        context={str(k): str(v) for k, v in context.items()},
    )
    return fmt, list(raw.get("null_values") or []), str(raw.get("date_format") or "uk")


def load_mapping(path: Path, env: Any, partials: MappingABC[str, Partial],
                 tables: MappingABC[str, CodeTable]) -> Mapping:
    """Compile one mapping file."""
    raw = _load_yaml(path)
    where = str(path)
    if not isinstance(raw, MappingABC):
        raise MappingDefinitionError(where, "a mapping file is a YAML mapping")
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise MappingDefinitionError(where, f"unknown keys {sorted(unknown)}")
    for key in ("source", "record_type", "format", "record_id", "inputs", "resources"):
        if key not in raw:
            raise MappingDefinitionError(where, f"`{key}` is required")
    fmt, nulls, date_format = _format(raw["format"], where)
    inputs = parse_inputs(raw["inputs"], path=where, ignored=raw.get("ignored"),
                          null_values=nulls, date_format=date_format)
    names = frozenset(inputs.names())
    scope = CompileScope(names, {}, names)
    compiler = Compiler(env, where, partials)
    record_id = compiler.node(raw["record_id"], "record_id", scope)
    if not isinstance(record_id, Expr):
        raise MappingDefinitionError(where, "`record_id` is an expression", "record_id")
    select = None
    if raw.get("select") is not None:
        if not is_expression(raw["select"]):
            raise MappingDefinitionError(where, "`select` is an expression", "select")
        # `select` reads the raw record (before input checks), so any field name may appear.
        select = compiler.expression(raw["select"], "select", scope, check_names=False)
    if not isinstance(raw["resources"], list) or not raw["resources"]:
        raise MappingDefinitionError(where, "`resources` is a non-empty list", "resources")
    templates = []
    for index, item in enumerate(raw["resources"]):
        templates.append(_resource(compiler, item, f"resources[{index}]", scope))
    missing_tables = compiler.tables - set(tables)
    if missing_tables:
        raise MappingDefinitionError(where, f"no code table(s) {sorted(missing_tables)}")
    for name, spec_table in inputs.tables().items():
        if spec_table not in tables:
            raise MappingDefinitionError(where, f"input {name} names no known table "
                                                f"{spec_table!r}")
    return Mapping(
        source=str(raw["source"]),
        record_type=str(raw["record_type"]),
        path=where,
        description=str(raw.get("description", "")).strip(),
        format=fmt,
        inputs=inputs,
        record_id=record_id,
        select=select,
        resources=templates,
        used_inputs=compiler.used,
        tables_used=compiler.tables | set(inputs.tables().values()),
        constants=compiler.constants,
    )


def _resource(compiler: Compiler, raw: Any, where: str, scope: CompileScope) -> ResourceTemplate:
    if not isinstance(raw, MappingABC):
        raise MappingDefinitionError(compiler.path, "a resource is a mapping", where)
    resource_type = raw.get("resourceType")
    if not isinstance(resource_type, str) or not resource_type.isalpha():
        raise MappingDefinitionError(compiler.path, "`resourceType` must be a constant name",
                                     where)
    if "id" in raw:
        raise MappingDefinitionError(compiler.path, "ids are derived from `$key`, not set", where)
    if "$key" not in raw:
        raise MappingDefinitionError(compiler.path, "a resource needs `$key`", where)
    body = {k: v for k, v in raw.items() if k not in ("$key", "resourceType")}
    node = compiler.mapping(body, f"{resource_type}", scope)
    inner = scope
    if node.alias is not None:
        aliases = dict(scope.aliases)
        aliases[node.alias] = set(node.each.fields) if node.each else set()
        inner = CompileScope(scope.names | {node.alias, f"{node.alias}_index"}, aliases,
                             scope.inputs)
    raw_key = raw["$key"] if isinstance(raw["$key"], list) else [raw["$key"]]
    key = [compiler.node(k, f"{where}.$key[{i}]", inner) for i, k in enumerate(raw_key)]
    if not key or not all(isinstance(k, (Expr, Const)) for k in key):
        raise MappingDefinitionError(compiler.path, "`$key` is a list of scalars", where)
    return ResourceTemplate(resource_type=resource_type, key=key, body=node,
                            where=resource_type)


def _source_folders(path: Path) -> list[Path]:
    if not path.is_dir():
        raise MappingDefinitionError(str(path), "not a folder")
    if _is_source_folder(path):
        return [path]
    return [p for p in sorted(path.iterdir()) if p.is_dir() and _is_source_folder(p)]


def _is_source_folder(path: Path) -> bool:
    return any(
        isinstance(raw := _peek(p), MappingABC) and "resources" in raw
        for p in path.glob("*.yaml")
    )


def _peek(path: Path) -> Any:
    try:
        return _load_yaml(path)
    except MappingsError:
        return {"resources": None}  # reported properly when the folder is loaded


def load_registry(paths: Iterable[str | Path] | None = None) -> Registry:
    """Load every source folder under `paths` (default: the built-in sources).

    Each path is a source folder (mapping `*.yaml`, optional `tables/` and `partials/`) or a
    folder of source folders. Shared partials and code tables ship with this package; a
    source's own tables and partials take precedence over shared ones of the same name.
    """
    env = make_environment()
    shared_partials = _load_partials([SHARED_PARTIALS], env, {})
    shared_tables = _load_tables(SHARED_TABLES)
    mappings: dict[str, dict[str, Mapping]] = {}
    tables: dict[str, dict[str, CodeTable]] = {}
    folders: dict[str, Path] = {}
    for base in (paths if paths is not None else [BUILTIN_SOURCES]):
        for folder in _source_folders(Path(base)):
            own_tables = {**shared_tables, **_load_tables(folder / "tables")}
            partials = _load_partials([folder / "partials"], env, shared_partials)
            loaded: dict[str, Mapping] = {}
            for path in sorted(folder.glob("*.yaml")):
                mapping = load_mapping(path, env, partials, own_tables)
                if mapping.source in folders and folders[mapping.source] != folder:
                    raise MappingDefinitionError(
                        str(path), f"source {mapping.source!r} is already defined in "
                        f"{folders[mapping.source]}")
                if mapping.record_type in loaded:
                    raise MappingDefinitionError(str(path), "record type defined twice")
                loaded[mapping.record_type] = mapping
                folders[mapping.source] = folder
                tables[mapping.source] = own_tables
            for mapping in loaded.values():
                mappings.setdefault(mapping.source, {})[mapping.record_type] = mapping
    for source, by_type in mappings.items():
        if len(by_type) > 1:
            formats = {(m.format.type, m.format.record_path, m.format.encoding)
                       for m in by_type.values()}
            if len(formats) > 1:
                raise MappingDefinitionError(str(folders[source]),
                                             "record types of one source share one format")
            if any(m.select is None for m in by_type.values()):
                raise MappingDefinitionError(str(folders[source]),
                                             "with several record types, each needs `select`")
    return Registry(mappings, tables, folders)
