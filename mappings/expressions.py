"""The sandboxed expression language of mapping leaves: Jinja2 expressions plus a few helpers."""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from jinja2 import nodes, pass_context
from jinja2.runtime import Context, Undefined
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import _PassArg

from vocab import systems as _systems
from vocab.identifiers import is_valid_nhs_number, is_valid_upn

if TYPE_CHECKING:
    from mappings.engine import Run

RUN = "__run__"
_EXPR = re.compile(r"^\{\{(.*)\}\}$", re.DOTALL)
_POSTCODE = re.compile(r"^([A-Z]{1,2}[0-9][A-Z0-9]?)\s*([0-9][A-Z]{2})$")
_NAME_PARTICLE = re.compile(r"(^|[\s'\-])([a-z])")
_MC = re.compile(r"\b(Ma?c)([a-z])(?=[a-z]{2})")


class CodeNotMapped(Exception):
    """Raised inside an expression when a code is not in a table that has no default."""

    def __init__(self, table: str, value: str) -> None:
        self.table = table
        self.value = value
        super().__init__(f"code {value!r} is not in code table {table!r} (and it has no default)")


def is_expression(value: object) -> bool:
    """Return True when a YAML scalar is a whole `{{ expression }}` leaf."""
    return isinstance(value, str) and _EXPR.match(value.strip()) is not None


def expression_text(value: str) -> str:
    """Return the expression inside `{{ ... }}`."""
    match = _EXPR.match(value.strip())
    assert match is not None
    return match.group(1).strip()


def _none_safe(fn: Callable[[str], Any]) -> Callable[[Any], Any]:
    def wrapper(value: Any) -> Any:
        if value is None or isinstance(value, Undefined):
            return None
        return fn(str(value))

    wrapper.__name__ = fn.__name__
    return wrapper


def name_case(value: str) -> str:
    """Return a name in conventional case when the source shouted or whispered it."""
    text = " ".join(value.split())
    if text != text.upper() and text != text.lower():
        return text  # mixed case was typed on purpose ("McDonald", "de Souza")
    lowered = text.lower()
    cased = _NAME_PARTICLE.sub(lambda m: m.group(1) + m.group(2).upper(), lowered)
    return _MC.sub(lambda m: m.group(1) + m.group(2).upper(), cased)


def postcode(value: str) -> str:
    """Return a UK postcode in its canonical spacing and case (unchanged when it is not one)."""
    compact = "".join(value.split()).upper()
    match = _POSTCODE.match(compact)
    if not match:
        return " ".join(value.split()).upper()
    return f"{match.group(1)} {match.group(2)}"


def nhs_number(value: str) -> str | None:
    """Return the digits of an NHS number written with spaces or dashes."""
    digits = re.sub(r"[\s-]", "", value)
    return digits or None


def _words(value: str) -> list[str]:
    return value.split()


def _is_valid_nhs(value: Any) -> bool:
    if value is None or isinstance(value, Undefined):
        return False
    digits = nhs_number(str(value))
    return digits is not None and is_valid_nhs_number(digits)


def _is_valid_upn(value: Any) -> bool:
    if value is None or isinstance(value, Undefined):
        return False
    return is_valid_upn(str(value).strip().upper())


def _present(value: Any) -> bool:
    return not (value is None or isinstance(value, Undefined) or value == "" or value == []
                or value == {})


def _join(separator: str, *parts: Any) -> str | None:
    """Join the non-empty parts (flattening lists) with `separator`; None when all are empty."""
    flat: list[str] = []
    for part in parts:
        items: Iterable[Any] = part if isinstance(part, (list, tuple)) else [part]
        flat.extend(str(p).strip() for p in items if _present(p) and str(p).strip())
    return separator.join(flat) or None


def _names(*parts: Any) -> list[str]:
    """Return given names as a list: parts flattened, split on spaces, in conventional case."""
    out: list[str] = []
    for part in parts:
        items: Iterable[Any] = part if isinstance(part, (list, tuple)) else [part]
        for item in items:
            if _present(item):
                out.extend(name_case(word) for word in str(item).split())
    return out


def _first(*values: Any) -> Any:
    for value in values:
        if _present(value):
            return value
    return None


def _percent(part: Any, whole: Any, digits: int = 1) -> float | None:
    if not _present(part) or not _present(whole) or not whole:
        return None
    return round(100.0 * float(part) / float(whole), digits)


def _isodate(value: Any) -> str | None:
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return None if not _present(value) else str(value)


def _run(context: Context) -> Run:
    run: Run = context[RUN]
    return run


@pass_context
def _ref(context: Context, resource_type: str, *key: Any) -> str:
    return _run(context).reference(resource_type, key)


@pass_context
def _rid(context: Context, resource_type: str, *key: Any) -> str:
    return _run(context).resource_id(resource_type, key)


@pass_context
def _code(context: Context, table: str, value: Any) -> dict[str, str] | None:
    if not _present(value):
        return None
    return _run(context).code(table, value)


@pass_context
def _lookup(context: Context, table: str, value: Any) -> str | None:
    coding = _code(context, table, value)
    return None if coding is None else coding.get("code")


@pass_context
def _display(context: Context, table: str, value: Any) -> str | None:
    coding = _code(context, table, value)
    return None if coding is None else coding.get("display")


@pass_context
def _local_system(context: Context, kind: str = "record") -> str:
    return _systems.local_id_system(_run(context).source, kind)


SYSTEMS: dict[str, str] = {
    name: value for name, value in vars(_systems).items()
    if name.isupper() and isinstance(value, str)
}

FUNCTIONS: dict[str, Any] = {
    "systems": SYSTEMS,
    "local_system": _local_system,
    "ref": _ref,
    "rid": _rid,
    "code": _code,
    "lookup": _lookup,
    "display": _display,
    "join": _join,
    "first": _first,
    "names": _names,
    "percent": _percent,
    "is_valid_nhs": _is_valid_nhs,
    "is_valid_upn": _is_valid_upn,
    "present": _present,
}
TABLE_FUNCTIONS = frozenset({"code", "lookup", "display"})
RECORD_NAMES = frozenset({"source", "record_type"})
BUILTIN_NAMES = frozenset({"range", "dict", "true", "false", "none", "True", "False", "None"})


def make_environment() -> SandboxedEnvironment:
    """Return the sandboxed environment every mapping expression is compiled in."""
    env = SandboxedEnvironment(autoescape=False)
    env.filters.update({
        "name_case": _none_safe(name_case),
        "postcode": _none_safe(postcode),
        "nhs_number": _none_safe(nhs_number),
        "words": _none_safe(_words),
        "upper": _none_safe(str.upper),
        "lower": _none_safe(str.lower),
        "title": _none_safe(str.title),
        "trim": _none_safe(str.strip),
        "isodate": _isodate,
    })
    for name in ("lipsum", "cycler", "joiner", "namespace"):  # lipsum is random; others unneeded
        env.globals.pop(name, None)
    env.globals.update(FUNCTIONS)
    return env


def analyse(env: SandboxedEnvironment, expression: str) -> tuple[set[str], set[str], set[str],
                                                                  set[str]]:
    """Return (names read, dotted paths read, tables named, string literals) of an expression."""
    tree = env.parse("{{ (" + expression + ") }}")
    names: set[str] = set()
    paths: set[str] = set()

    def chain(node: nodes.Node) -> str | None:
        if isinstance(node, nodes.Name):
            return node.name
        if isinstance(node, nodes.Getattr):
            base = chain(node.node)
            return None if base is None else f"{base}.{node.attr}"
        if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and isinstance(
            node.arg.value, str
        ):
            base = chain(node.node)
            return None if base is None else f"{base}.{node.arg.value}"
        return None

    def visit(node: nodes.Node) -> None:
        dotted = chain(node)
        if dotted is not None:
            paths.add(dotted)
            names.add(dotted.split(".", 1)[0])
            return
        for child in node.iter_child_nodes():
            visit(child)

    visit(tree)
    tables = {
        str(call.args[0].value)
        for call in tree.find_all(nodes.Call)
        if isinstance(call.node, nodes.Name) and call.node.name in TABLE_FUNCTIONS
        and call.args and isinstance(call.args[0], nodes.Const)
    }
    literals = {str(n.value) for n in tree.find_all(nodes.Const) if isinstance(n.value, str)}
    return names, paths, tables, literals


# -- direct evaluation of simple expressions -------------------------------------------------------
# Most leaves are a bare name (`{{ PersonID }}`), an attribute path (`{{ carer.ID }}`) or a call
# of one of the functions above. Rendering each through a Jinja template costs a new context (a
# copy of every global) per leaf, so such expressions are turned once into plain closures that do
# exactly what Jinja's compiled code does: names resolve in the record's scope, then the
# globals, else to the environment's Undefined; attribute and item reads go through the
# sandboxed environment's own `getattr`/`getitem` (its safety checks included); only the
# functions and filters this module registers are called directly. Anything else (arithmetic,
# filters with arguments, other callables) is left to the sandboxed template.
SIMPLE_FILTERS = frozenset({"name_case", "postcode", "nhs_number", "words", "upper", "lower",
                            "title", "trim", "isodate"})
SIMPLE_TESTS = frozenset({"none", "defined", "undefined"})
_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "lt": lambda a, b: a < b,
    "gt": lambda a, b: a > b, "lteq": lambda a, b: a <= b, "gteq": lambda a, b: a >= b,
    "in": lambda a, b: a in b, "notin": lambda a, b: a not in b,
}
Scope = dict[str, Any]


class _NotSimple(Exception):
    """The expression uses something only the template evaluates."""


class _CallContext:
    """What a `pass_context` function reads of Jinja's context: `context[name]`."""

    __slots__ = ("globals", "scope")

    def __init__(self, scope: Scope, globals_: dict[str, Any]) -> None:
        self.scope = scope
        self.globals = globals_

    def __getitem__(self, key: str) -> Any:
        if key in self.scope:
            return self.scope[key]
        if key in self.globals:
            return self.globals[key]
        raise KeyError(key)


def direct_evaluator(env: SandboxedEnvironment,
                     expression: str) -> Callable[[Scope], Any] | None:
    """Return a closure evaluating a simple expression as its template would, or None.

    The closure returns None where the template (compiled with `undefined_to_none`) does, and
    raises what the template raises.
    """
    node = env.parse("{{ (" + expression + ") }}").body[0].nodes[0]  # type: ignore[attr-defined]
    called: set[str] = set()
    try:
        evaluate = _Direct(env, called).build(node)
    except _NotSimple:
        return None
    shadowable = frozenset(called)
    undefined_type = Undefined

    def run(scope: Scope, fallback: Callable[[Scope], Any]) -> Any:
        if shadowable and not shadowable.isdisjoint(scope):
            return fallback(scope)  # a record field hides a function: let the template decide
        value = evaluate(scope)
        return None if isinstance(value, undefined_type) else value

    return run  # type: ignore[return-value]


class _Direct:
    """Build closures for the simple node types."""

    def __init__(self, env: SandboxedEnvironment, called: set[str]) -> None:
        self.env = env
        self.called = called

    def build(self, node: nodes.Node) -> Callable[[Scope], Any]:
        method = getattr(self, f"_{type(node).__name__.lower()}", None)
        if method is None:
            raise _NotSimple(type(node).__name__)
        built: Callable[[Scope], Any] = method(node)
        return built

    def _name(self, node: nodes.Name) -> Callable[[Scope], Any]:
        if node.ctx != "load":
            raise _NotSimple("store")
        key, globals_, undefined = node.name, self.env.globals, self.env.undefined

        def name(scope: Scope) -> Any:
            if key in scope:
                return scope[key]
            if key in globals_:
                return globals_[key]
            return undefined(name=key)

        return name

    def _const(self, node: nodes.Const) -> Callable[[Scope], Any]:
        value = node.value
        return lambda scope: value

    def _getattr(self, node: nodes.Getattr) -> Callable[[Scope], Any]:
        inner, attr, getattr_ = self.build(node.node), node.attr, self.env.getattr
        return lambda scope: getattr_(inner(scope), attr)

    def _getitem(self, node: nodes.Getitem) -> Callable[[Scope], Any]:
        if not isinstance(node.arg, nodes.Const):
            raise _NotSimple("computed item")
        inner, key, getitem = self.build(node.node), node.arg.value, self.env.getitem
        return lambda scope: getitem(inner(scope), key)

    def _list(self, node: nodes.List) -> Callable[[Scope], Any]:
        items = [self.build(item) for item in node.items]
        return lambda scope: [item(scope) for item in items]

    def _not(self, node: nodes.Not) -> Callable[[Scope], Any]:
        inner = self.build(node.node)
        return lambda scope: not inner(scope)

    def _and(self, node: nodes.And) -> Callable[[Scope], Any]:
        left, right = self.build(node.left), self.build(node.right)
        return lambda scope: left(scope) and right(scope)

    def _or(self, node: nodes.Or) -> Callable[[Scope], Any]:
        left, right = self.build(node.left), self.build(node.right)
        return lambda scope: left(scope) or right(scope)

    def _condexpr(self, node: nodes.CondExpr) -> Callable[[Scope], Any]:
        if node.expr2 is None:
            raise _NotSimple("if without else")
        test, yes, no = self.build(node.test), self.build(node.expr1), self.build(node.expr2)
        return lambda scope: yes(scope) if test(scope) else no(scope)

    def _compare(self, node: nodes.Compare) -> Callable[[Scope], Any]:
        if len(node.ops) != 1 or node.ops[0].op not in _COMPARE:
            raise _NotSimple("comparison chain")
        left, right = self.build(node.expr), self.build(node.ops[0].expr)
        op = _COMPARE[node.ops[0].op]
        return lambda scope: op(left(scope), right(scope))

    def _plain_args(self, node: nodes.Filter | nodes.Test | nodes.Call) -> None:
        if node.kwargs or node.dyn_args is not None or node.dyn_kwargs is not None:
            raise _NotSimple("keyword or star arguments")

    def _filter(self, node: nodes.Filter) -> Callable[[Scope], Any]:
        self._plain_args(node)
        if node.name not in SIMPLE_FILTERS or node.args or node.node is None:
            raise _NotSimple("filter")
        fn, inner = self.env.filters[node.name], self.build(node.node)
        if getattr(fn, "jinja_pass_arg", None) is not None:
            raise _NotSimple("filter takes a context")
        return lambda scope: fn(inner(scope))

    def _test(self, node: nodes.Test) -> Callable[[Scope], Any]:
        self._plain_args(node)
        if node.name not in SIMPLE_TESTS or node.args:
            raise _NotSimple("test")
        fn: Any = self.env.tests[node.name]
        inner = self.build(node.node)
        if getattr(fn, "jinja_pass_arg", None) is not None:
            raise _NotSimple("test takes a context")
        return lambda scope: fn(inner(scope))

    def _call(self, node: nodes.Call) -> Callable[[Scope], Any]:
        self._plain_args(node)
        if not isinstance(node.node, nodes.Name) or node.node.name not in FUNCTIONS:
            raise _NotSimple("call")
        name = node.node.name
        fn = self.env.globals.get(name)
        if fn is not FUNCTIONS[name] or not callable(fn):
            raise _NotSimple("not a mapping function")
        self.called.add(name)
        args = [self.build(arg) for arg in node.args]
        globals_, undefined = self.env.globals, self.env.undefined
        pass_arg = getattr(fn, "jinja_pass_arg", None)
        if pass_arg is not None and pass_arg is not _PassArg.context:
            raise _NotSimple("the function takes an environment")
        with_context = pass_arg is _PassArg.context

        def call(scope: Scope) -> Any:
            values = [arg(scope) for arg in args]
            try:
                if with_context:
                    return fn(_CallContext(scope, globals_), *values)
                return fn(*values)
            except StopIteration:  # as jinja2.runtime.Context.call answers it
                return undefined("value was undefined because a callable raised a "
                                 "StopIteration exception")

        return call
