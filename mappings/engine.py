"""Compile mapping YAML into templates and evaluate them against one checked record.

A template mirrors the FHIR it produces. Scalars are constants unless they are a whole
`{{ expression }}`, whose value (any type) becomes the element. Directives are keys starting
with `$`:

- `$if: "{{ cond }}"` keeps the object only when the condition is true;
- `$each: "{{ list }}"` with `$as: name` repeats the object once per item;
- `$include: partial` with `$with: {param: ...}` splices in a shared partial
  (other keys of the object are merged over the partial's result);
- `$key: [...]` (resources only) lists the source identifiers the resource id is derived from.

Elements that evaluate to nothing (null, "", [], {}) are dropped.
"""
from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from jinja2 import TemplateSyntaxError
from jinja2.runtime import Undefined
from jinja2.sandbox import SandboxedEnvironment

from mappings.errors import MappingDefinitionError, Problem
from mappings.expressions import (
    BUILTIN_NAMES,
    FUNCTIONS,
    RECORD_NAMES,
    RUN,
    CodeNotMapped,
    analyse,
    direct_evaluator,
    expression_text,
    is_expression,
)
from mappings.ids import resource_id
from mappings.tables import CodeTable, TableUsage


class _Drop:
    def __repr__(self) -> str:
        return "DROP"


DROP: Any = _Drop()
_DIRECTIVES = frozenset({"$if", "$each", "$as", "$include", "$with"})


@dataclass
class Run:
    """The state of mapping one record: source, tables, where problems go."""

    source: str
    tables: MappingABC[str, CodeTable]
    location: str
    usage: TableUsage | None = None
    problems: list[Problem] = field(default_factory=list)
    # Where the outermost partial being evaluated was included, and the inputs passed to it,
    # so a problem inside a shared partial is reported at the mapping's own place and field.
    sites: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)

    def problem(self, fields: tuple[str, ...], where: str, message: str) -> None:
        """Record a located problem."""
        if self.sites:
            site, site_fields = self.sites[0]
            fields = fields or site_fields
            where = site
        self.problems.append(Problem(self.location, ", ".join(fields) or None, message, where))

    def resource_id(self, resource_type: str, key: tuple[Any, ...] | list[Any]) -> str:
        """Return the deterministic id of a resource of this source."""
        if not key or any(k is None or isinstance(k, Undefined) or k == "" for k in key):
            raise ValueError(f"a {resource_type} key part is empty")
        return resource_id(self.source, resource_type, key)

    def reference(self, resource_type: str, key: tuple[Any, ...] | list[Any]) -> str:
        """Return `Type/id` for a resource of this source."""
        return f"{resource_type}/{self.resource_id(resource_type, key)}"

    def code(self, table_name: str, value: Any) -> dict[str, str]:
        """Return a copy of the coding for a local code."""
        table = self.tables.get(table_name)
        if table is None:
            raise ValueError(f"no code table {table_name!r}")
        key, coding = table.find(value)
        if self.usage is not None:
            if key is None:
                self.usage.miss(table.name, " ".join(str(value).split()))
            else:
                self.usage.hit(table.name, key)
        if coding is None:
            raise CodeNotMapped(table.name, str(value))
        return dict(coding)


class Node(Protocol):
    """A compiled piece of template."""

    def eval(self, run: Run, scope: dict[str, Any]) -> Any:
        """Return the value, or DROP."""


def clean(value: Any) -> Any:
    """Return an expression result as JSON-ready data with empty elements removed (or DROP)."""
    kind = type(value)
    if kind is str:  # the common cases first, as the checks below would treat them
        text = value.strip()
        return text if text else DROP
    if kind is dict:
        out = {}
        for k, v in value.items():
            c = clean(v)
            if c is not DROP:
                out[str(k)] = c
        return out or DROP
    if value is None or isinstance(value, (Undefined, _Drop)):
        return DROP
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip()
        return text if text else DROP
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("a number is not finite")
        return int(value) if value.is_integer() and abs(value) < 2**53 else value
    if isinstance(value, int):
        return value
    if isinstance(value, MappingABC):
        out = {}
        for k, v in value.items():
            c = clean(v)
            if c is not DROP:
                out[str(k)] = c
        return out or DROP
    if isinstance(value, (list, tuple)):
        items = [c for c in (clean(v) for v in value) if c is not DROP]
        return items or DROP
    raise ValueError(f"an expression produced a {type(value).__name__}, not JSON data")


@dataclass
class Const:
    """A constant leaf."""

    value: Any

    def eval(self, run: Run, scope: dict[str, Any]) -> Any:
        return self.value


@dataclass
class Expr:
    """An expression leaf."""

    text: str
    fn: Any
    where: str
    fields: tuple[str, ...]
    direct: Any = None  # the same evaluation without a template, for simple expressions

    def raw(self, run: Run, scope: dict[str, Any]) -> Any:
        """Return the expression's value, or DROP after recording a located problem."""
        try:
            if self.direct is not None:
                return self.direct(scope, self.fn)
            return self.fn(scope)
        except CodeNotMapped as exc:
            message = str(exc)
        except Exception as exc:  # noqa: BLE001 - the sandbox may raise anything
            # (one bad record must never crash the engine)
            # The exception text may quote the record's values: name only its type.
            message = f"expression {self.text!r} failed ({type(exc).__name__})"
        run.problem(self.fields, self.where, message)
        return DROP

    def eval(self, run: Run, scope: dict[str, Any]) -> Any:
        value = self.raw(run, scope)
        if value is DROP:
            return DROP
        try:
            return clean(value)
        except ValueError as exc:
            run.problem(self.fields, self.where, str(exc))
            return DROP


def _truthy(value: Any) -> bool:
    if value is DROP or value is None or isinstance(value, Undefined):
        return False
    return bool(value)


@dataclass
class Partial:
    """A shared piece of template with named parameters."""

    name: str
    path: str
    params: tuple[str, ...]
    body: Any = None  # compiled Node; set after compiling so partials may include partials
    tables: set[str] = field(default_factory=set)
    constants: set[str] = field(default_factory=set)


@dataclass
class ListNode:
    """A list whose items may repeat or splice."""

    items: list[Any]

    def eval(self, run: Run, scope: dict[str, Any]) -> Any:
        out: list[Any] = []
        for item in self.items:
            if isinstance(item, DictNode):
                out.extend(item.expand(run, scope))
                continue
            value = item.eval(run, scope)
            if value is DROP:
                continue
            if isinstance(value, list) and isinstance(item, Expr):
                out.extend(value)
            else:
                out.append(value)
        return out or DROP


@dataclass
class DictNode:
    """An object, possibly conditional, repeated or built from a partial."""

    fields: dict[str, Any]
    where: str
    cond: Expr | None = None
    each: Expr | None = None
    alias: str | None = None
    include: Partial | None = None
    args: dict[str, Any] = field(default_factory=dict)
    arg_fields: tuple[str, ...] = ()

    def iterations(self, run: Run, scope: dict[str, Any]) -> list[dict[str, Any]]:
        """Return one scope per repetition (one when there is no `$each`)."""
        if self.each is None:
            return [scope]
        items = self.each.raw(run, scope)
        if items is DROP or items is None or isinstance(items, Undefined):
            return []
        if isinstance(items, (str, MappingABC)) or not hasattr(items, "__iter__"):
            items = [items]
        assert self.alias is not None
        return [
            {**scope, self.alias: item, f"{self.alias}_index": index}
            for index, item in enumerate(items)
        ]

    def build(self, run: Run, scope: dict[str, Any]) -> Any:
        """Return this object for one scope (no repetition), or DROP."""
        if self.cond is not None and not _truthy(self.cond.raw(run, scope)):
            return DROP
        out: dict[str, Any] = {}
        if self.include is not None:
            params = {name: DROP for name in self.include.params}
            for name, node in self.args.items():
                params[name] = node.eval(run, scope)
            inner = {name: (None if value is DROP else value) for name, value in params.items()}
            inner[RUN] = run
            run.sites.append((self.where, self.arg_fields))
            try:
                base = self.include.body.eval(run, inner)
            finally:
                run.sites.pop()
            if base is DROP:
                return DROP
            if not isinstance(base, dict):
                if self.fields:
                    raise TypeError("only an object partial can take extra keys")
                return base
            out.update(base)
        for key, node in self.fields.items():
            value = node.eval(run, scope)
            if value is not DROP:
                out[key] = value
        return out or DROP

    def expand(self, run: Run, scope: dict[str, Any]) -> list[Any]:
        """Return every repetition's value, dropping empty ones and splicing list partials."""
        out: list[Any] = []
        for inner in self.iterations(run, scope):
            value = self.build(run, inner)
            if value is DROP:
                continue
            if isinstance(value, list):
                out.extend(value)
            else:
                out.append(value)
        return out

    def eval(self, run: Run, scope: dict[str, Any]) -> Any:
        if self.each is not None:
            return self.expand(run, scope) or DROP
        return self.build(run, scope)


@dataclass
class ResourceTemplate:
    """One resource (or one per repetition) produced by a mapping."""

    resource_type: str
    key: list[Expr | Const]
    body: DictNode
    where: str

    def produce(self, run: Run, scope: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """Return (id, resource) for every repetition that passes its condition."""
        out: list[tuple[str, dict[str, Any]]] = []
        for inner in self.body.iterations(run, scope):
            if self.body.cond is not None and not _truthy(self.body.cond.raw(run, inner)):
                continue
            parts = []
            for node in self.key:
                value = node.raw(run, inner) if isinstance(node, Expr) else node.value
                parts.append(None if value is DROP else value)
            if any(p is None or isinstance(p, Undefined) or p == "" for p in parts):
                run.problem((), self.where, "a part of the resource key is empty")
                continue
            rid = resource_id(run.source, self.resource_type, parts)
            plain = DictNode(self.body.fields, self.body.where, include=self.body.include,
                             args=self.body.args, arg_fields=self.body.arg_fields)
            body = plain.build(run, inner)
            resource: dict[str, Any] = {"resourceType": self.resource_type, "id": rid}
            if isinstance(body, dict):
                resource.update({k: v for k, v in body.items() if k not in resource})
            out.append((rid, resource))
        return out


@dataclass
class CompileScope:
    """Names an expression may read while compiling one place in a template."""

    names: frozenset[str]
    aliases: dict[str, set[str]]
    inputs: frozenset[str]


class Compiler:
    """Turn YAML templates into nodes, checking every name and table they use."""

    def __init__(self, env: SandboxedEnvironment, path: str,
                 partials: MappingABC[str, Partial]) -> None:
        self.env = env
        self.path = path
        self.partials = partials
        self.used: set[str] = set()
        self.tables: set[str] = set()
        self.constants: set[str] = set()
        self.included: set[str] = set()

    def expression(self, text: str, where: str, scope: CompileScope,
                   check_names: bool = True) -> Expr:
        """Compile one `{{ expression }}` leaf (`check_names=False` for raw-record reads)."""
        inner = expression_text(text)
        if "{{" in inner or "}}" in inner:
            raise MappingDefinitionError(self.path, "one expression per leaf", where)
        try:
            fn = self.env.compile_expression(inner, undefined_to_none=True)
            names, paths, tables, constants = analyse(self.env, inner)
            self.tables |= tables
            self.constants |= constants
        except TemplateSyntaxError as exc:
            raise MappingDefinitionError(self.path, f"bad expression: {exc.message}",
                                         where) from exc
        allowed = scope.names | set(FUNCTIONS) | RECORD_NAMES | BUILTIN_NAMES | set(
            self.env.globals
        )
        unknown = sorted(n for n in names if n not in allowed and n != RUN)
        if unknown and check_names:
            raise MappingDefinitionError(
                self.path, f"expression reads undeclared name(s) {unknown}", where
            )
        fields: set[str] = set()
        for dotted in paths:
            head, _, rest = dotted.partition(".")
            if head.endswith("_index") and head[: -len("_index")] in scope.aliases:
                continue
            if head in scope.aliases:
                for base in scope.aliases[head]:
                    fields.add(f"{base}.{rest}" if rest else base)
            elif head in scope.inputs:
                fields.add(dotted)
        self.used |= fields
        return Expr(text=inner, fn=fn, where=where, fields=tuple(sorted(fields)),
                    direct=direct_evaluator(self.env, inner))

    def node(self, raw: Any, where: str, scope: CompileScope) -> Any:
        """Compile any template value."""
        if isinstance(raw, MappingABC):
            return self.mapping(raw, where, scope)
        if isinstance(raw, list):
            return ListNode([self.node(v, f"{where}[{i}]", scope) for i, v in enumerate(raw)])
        if is_expression(raw):
            return self.expression(raw, where, scope)
        if isinstance(raw, str):
            if "{{" in raw or "{%" in raw:
                raise MappingDefinitionError(
                    self.path, "text templating is not allowed: a leaf is a constant or one "
                    "whole {{ expression }}", where)
            self.constants.add(raw)
            return Const(raw)
        if raw is None or isinstance(raw, (bool, int, float)):
            return Const(raw)
        raise MappingDefinitionError(self.path, f"unsupported YAML value {type(raw).__name__}",
                                     where)

    def mapping(self, raw: MappingABC[str, Any], where: str, scope: CompileScope,
                allow: frozenset[str] = frozenset()) -> DictNode:
        """Compile an object with its directives."""
        keys = {str(k) for k in raw}
        unknown = {k for k in keys if k.startswith("$")} - _DIRECTIVES - allow
        if unknown:
            raise MappingDefinitionError(self.path, f"unknown directives {sorted(unknown)}", where)
        each = None
        alias = None
        inner_scope = scope
        if "$each" in raw:
            if not is_expression(raw["$each"]):
                raise MappingDefinitionError(self.path, "`$each` takes an expression", where)
            alias = str(raw.get("$as") or "item")
            each = self.expression(raw["$each"], f"{where}.$each", scope)
            aliases = dict(scope.aliases)
            aliases[alias] = set(each.fields) or {alias}
            inner_scope = CompileScope(scope.names | {alias, f"{alias}_index"}, aliases,
                                       scope.inputs)
        elif "$as" in raw:
            raise MappingDefinitionError(self.path, "`$as` needs `$each`", where)
        cond = None
        if "$if" in raw:
            if not is_expression(raw["$if"]):
                raise MappingDefinitionError(self.path, "`$if` takes an expression", where)
            cond = self.expression(raw["$if"], f"{where}.$if", inner_scope)
        include = None
        args: dict[str, Any] = {}
        if "$include" in raw:
            name = str(raw["$include"])
            include = self.partials.get(name)
            if include is None:
                raise MappingDefinitionError(self.path, f"no partial named {name!r}", where)
            self.included.add(name)
            self.tables |= include.tables
            self.constants |= include.constants
            with_ = raw.get("$with") or {}
            if not isinstance(with_, MappingABC):
                raise MappingDefinitionError(self.path, "`$with` must be a mapping", where)
            extra = set(map(str, with_)) - set(include.params)
            if extra:
                raise MappingDefinitionError(
                    self.path, f"partial {name!r} has no parameter(s) {sorted(extra)}", where
                )
            args = {str(k): self.node(v, f"{where}.$with.{k}", inner_scope)
                    for k, v in with_.items()}
        elif "$with" in raw:
            raise MappingDefinitionError(self.path, "`$with` needs `$include`", where)
        fields = {
            str(k): self.node(v, f"{where}.{k}", inner_scope)
            for k, v in raw.items()
            if not str(k).startswith("$")
        }
        return DictNode(fields=fields, where=where, cond=cond, each=each, alias=alias,
                        include=include, args=args,
                        arg_fields=tuple(sorted(_fields_of(list(args.values())))))


def _fields_of(node: Any) -> set[str]:
    """Return the input fields read by the expressions in a compiled node."""
    if isinstance(node, Expr):
        return set(node.fields)
    if isinstance(node, list):
        return set().union(*(_fields_of(n) for n in node)) if node else set()
    if isinstance(node, ListNode):
        return _fields_of(node.items)
    if isinstance(node, DictNode):
        return _fields_of(list(node.fields.values()) + list(node.args.values()))
    return set()
