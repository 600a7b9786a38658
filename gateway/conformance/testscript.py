"""Run one FHIR R4 TestScript against a FHIR server over HTTP and report every action.

Supported (everything else is reported as skipped, with the reason, never passed):

- fixtures: contained (``#id``; the local id is dropped before sending) or files relative to the
  script (``.json``, ``.yaml``; any other extension is sent as raw bytes), ``autocreate``
  (PUT when the fixture has an id, else POST) and ``autodelete``;
- variables: ``defaultValue``, ``headerField``, ``expression`` (FHIRPath), ``path`` (FHIRPath or
  ``$``-JSONPath) against a fixture or response (``sourceId``; default the last response), used
  as ``${name}`` in urls, params, headers, assertion values and expressions, and fixture strings;
  the runner adds ``RUN_ID`` (a random token per script run), ``TODAY``, ``BASE_URL`` and
  ``ORIGIN`` (scheme, host and port of the base, for servers with several FHIR bases); values
  given to the target (``--var NAME=VALUE``) replace variables of the same name;
- operations: read, vread, create, update, updateCreate, delete, deleteCondSingle,
  deleteCondMultiple, search (GET, or POST ``_search`` with ``method: post``), history,
  transaction, batch, capabilities, validate and the other named operations (``$code``), with
  ``url``, ``params``, ``method``, ``accept``, ``contentType``, ``requestHeader`` (If-Match,
  If-None-Exist, ...), ``encodeRequestUrl``, ``requestId``, ``responseId``, ``sourceId`` and
  ``targetId`` (a fixture the server created, or a response);
- assertions: ``response``, ``responseCode``, ``contentType``, ``headerField``, ``resource``,
  ``minimumId``, ``expression`` / ``path`` with every operator, ``compareToSourceId`` with
  ``compareToSourceExpression`` / ``compareToSourcePath``, ``validateProfileId`` (the gateway's
  strict validator; core profiles only), ``navigationLinks``, ``requestMethod``, ``requestURL``,
  ``direction: request`` and ``warningOnly``.

Not supported: XML (``accept: xml``), XPath, PATCH, remote fixtures, several origins or
destinations, ``modifierExtension`` and elements from later FHIR versions (``stopTestOnFail`` ...).
"""
from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import requests
import yaml

from gateway.conformance.errors import SuiteInvalid, load_yaml, parse_position
from gateway.conformance.expressions import (
    OPERATORS,
    ExpressionError,
    UnresolvedVariable,
    as_text,
    compare,
    evaluate_fhirpath,
    evaluate_path,
    shorten,
    substitute,
    substitute_json,
)
from gateway.conformance.results import (
    ActionKind,
    ActionResult,
    Outcome,
    ScriptResult,
    TestResult,
)

__all__ = [
    "FHIR_JSON",
    "FhirTarget",
    "TestScriptRunner",
    "load_testscript",
]

FHIR_JSON = "application/fhir+json"
Validator = Callable[[Any], Sequence[Any]]

RESPONSE_CODES = {
    "okay": "200", "created": "201", "noContent": "204", "notModified": "304", "bad": "400",
    "forbidden": "403", "notFound": "404", "methodNotAllowed": "405", "conflict": "409",
    "gone": "410", "preconditionFailed": "412", "unprocessable": "422",
}
FORMATS = {"json": FHIR_JSON, "xml": "application/fhir+xml", "ttl": "application/fhir+turtle"}
# testscript-operation-codes (R4) that are FHIR operations, called as $code.
NAMED_OPERATIONS = frozenset({
    "apply", "closure", "find-matches", "conforms", "data-requirements", "document", "evaluate",
    "evaluate-measure", "everything", "expand", "find", "graphql", "implements", "lastn",
    "lookup", "match", "meta", "meta-add", "meta-delete", "populate", "populatehtml",
    "populatelink", "process-message", "questionnaire", "release", "reserve", "resume", "set",
    "stats", "subset", "subsumes", "transform", "translate", "validate-code",
})
REST_OPERATIONS = frozenset({
    "read", "vread", "update", "updateCreate", "delete", "deleteCondSingle", "deleteCondMultiple",
    "history", "create", "search", "batch", "transaction", "capabilities", "validate",
})
_META = frozenset({"id", "extension", "fhir_comments"})
_SCRIPT_KEYS = frozenset({
    "resourceType", "id", "meta", "implicitRules", "language", "text", "contained", "extension",
    "url", "identifier", "version", "name", "title", "status", "experimental", "date",
    "publisher", "contact", "description", "useContext", "jurisdiction", "purpose", "copyright",
    "origin", "destination", "metadata", "fixture", "profile", "variable", "setup", "test",
    "teardown", "fhir_comments",
})
_FIXTURE_KEYS = _META | {"autocreate", "autodelete", "resource"}
_VARIABLE_KEYS = _META | {"name", "defaultValue", "description", "expression", "headerField",
                          "hint", "path", "sourceId"}
_OPERATION_KEYS = _META | {
    "type", "resource", "label", "description", "accept", "contentType", "destination",
    "encodeRequestUrl", "method", "origin", "params", "requestHeader", "requestId", "responseId",
    "sourceId", "targetId", "url",
}
_ASSERT_KEYS = _META | {
    "label", "description", "direction", "compareToSourceId", "compareToSourceExpression",
    "compareToSourcePath", "contentType", "expression", "headerField", "minimumId",
    "navigationLinks", "operator", "path", "requestMethod", "requestURL", "resource",
    "response", "responseCode", "sourceId", "validateProfileId", "value", "warningOnly",
}
_TEST_KEYS = _META | {"name", "description", "action"}
_CORE_PROFILE = re.compile(r"^http://hl7\.org/fhir/StructureDefinition/([A-Za-z]+)$")
_LOCATION = re.compile(r"(?:^|/)([A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/([^/?#]+))?/?$")


class _Skip(Exception):
    """An action the runner cannot perform faithfully: reported as skipped with the reason."""


class _Broken(Exception):
    """An action that could not be carried out (bad script data, unreachable server)."""


def load_testscript(path: Path) -> dict[str, Any]:
    """Read a TestScript from a JSON or YAML file; raise SuiteInvalid when it is not one."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SuiteInvalid(f"cannot read {path}: {exc.strerror}") from exc
    data = _parse_document(text, path)
    if not isinstance(data, dict) or data.get("resourceType") != "TestScript":
        raise SuiteInvalid(f"{path} is not a TestScript")
    return data


def _parse_document(text: str, path: Path) -> Any:
    try:
        if path.suffix == ".json":
            return json.loads(text)
        return load_yaml(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise SuiteInvalid(f"{path} is not valid {path.suffix.lstrip('.').upper()} "
                           f"({parse_position(exc)})") from exc


@dataclass
class FhirTarget:
    """The FHIR server under test: base URL, HTTP session and the headers sent every time."""

    base_url: str
    session: requests.Session = field(default_factory=requests.Session)
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = 30.0
    # Values that replace the scripts' variables of the same name (``--var NAME=VALUE``).
    variables: dict[str, str] = field(default_factory=dict)

    def url(self, relative: str) -> str:
        """Return an absolute URL for a path relative to the base (or an absolute URL as is)."""
        if relative.startswith(("http://", "https://")):
            return relative
        return self.base_url.rstrip("/") + "/" + relative.lstrip("/")


@dataclass
class Exchange:
    """One request and its response."""

    method: str
    url: str
    request_headers: dict[str, str]
    request_body: Any
    status: int
    headers: Mapping[str, str]
    body: Any
    raw: bytes


@dataclass
class _Fixture:
    id: str
    content: Any
    raw: bytes | None
    autocreate: bool
    autodelete: bool
    # The resource as the server holds it, once created (variables and assertions read this).
    server: Any = None


@dataclass
class _Created:
    res_type: str
    res_id: str
    version: str | None


class TestScriptRunner:
    """Run one TestScript (already loaded) against a target and return its ScriptResult."""

    __test__ = False  # named after FHIR, not a pytest test class

    def __init__(self, script: dict[str, Any], *, target: FhirTarget, suite: str = "",
                 key: str = "", base_dir: Path | None = None,
                 validator: Validator | None = None,
                 on_test: Callable[[TestResult], None] | None = None,
                 run_id: str | None = None) -> None:
        self.script = script
        self.target = target
        self.suite = suite
        self.key = key or str(script.get("id") or script.get("name") or "testscript")
        self.base_dir = base_dir or Path.cwd()
        self.validator = validator
        self.on_test = on_test
        self.fixtures: dict[str, _Fixture] = {}
        self.profiles: dict[str, str] = {}
        self.variables: dict[str, dict[str, Any]] = {}
        self.responses: dict[str, Exchange] = {}
        self.requests: dict[str, Exchange] = {}
        self.created: dict[str, _Created] = {}
        self.created_order: list[str] = []
        self.last: Exchange | None = None
        parts = urlsplit(target.base_url)
        self.builtins = {
            "RUN_ID": run_id or secrets.token_hex(5),
            "TODAY": datetime.now(UTC).date().isoformat(),
            "BASE_URL": target.base_url.rstrip("/"),
            "ORIGIN": f"{parts.scheme}://{parts.netloc}",
        }
        self._resolving: set[str] = set()

    # --- the run -----------------------------------------------------------------------------
    def run(self) -> ScriptResult:
        """Run setup, every test and teardown; never raises for problems found on the way."""
        script = self.script
        result = ScriptResult(
            suite=self.suite, key=self.key, name=str(script.get("name") or self.key),
            title=str(script.get("title") or script.get("name") or self.key),
            reference=str(script.get("url") or f"TestScript/{script.get('id', self.key)}"),
            target=self.target.base_url)
        tests = [t for t in script.get("test", []) if isinstance(t, dict)]
        reason = self._unsupported_script()
        if reason is None:
            try:
                self._load_definitions()
            except _Skip as exc:
                reason = str(exc)
            except _Broken as exc:
                result.setup.append(ActionResult("operation", "error", "load fixtures", str(exc)))
                result.tests = [self._skipped_test(t, "setup could not load the fixtures")
                                for t in tests]
                for skipped in result.tests:
                    self._notify(skipped)
                return result
        if reason is not None:
            result.tests = [self._skipped_test(t, reason) for t in tests]
            for skipped in result.tests:
                self._notify(skipped)
            return result
        result.setup = self._setup()
        failed = next((a for a in result.setup if a.result in ("fail", "error", "skip")), None)
        for index, test in enumerate(tests):
            if failed is not None:
                done = self._skipped_test(test, f"setup did not complete ({failed.label})")
            else:
                done = self._test(test, index)
            result.tests.append(done)
            self._notify(done)
        result.teardown = self._teardown()
        return result

    def _notify(self, test: TestResult) -> None:
        if self.on_test is not None:
            self.on_test(test)

    def _skipped_test(self, test: dict[str, Any], reason: str) -> TestResult:
        return TestResult(name=str(test.get("name") or "test"),
                          description=str(test.get("description") or ""),
                          actions=[ActionResult("operation", "skip", "test", reason)])

    def _unsupported_script(self) -> str | None:
        script = self.script
        unknown = sorted(set(script) - _SCRIPT_KEYS)
        if unknown:
            return f"the script uses {', '.join(unknown)}, which this runner does not support"
        if _has_modifier_extension(script):
            return "the script carries a modifierExtension, which this runner cannot understand"
        if len(script.get("origin", [])) > 1 or len(script.get("destination", [])) > 1:
            return "tests across several origins or destinations are not supported"
        for fixture in script.get("fixture", []):
            unknown = sorted(set(fixture) - _FIXTURE_KEYS)
            if unknown:
                return f"fixture uses {', '.join(unknown)}, which this runner does not support"
        for variable in script.get("variable", []):
            unknown = sorted(set(variable) - _VARIABLE_KEYS)
            if unknown:
                return f"variable uses {', '.join(unknown)}, which this runner does not support"
        return None

    def _load_definitions(self) -> None:
        contained = {str(r.get("id")): r for r in self.script.get("contained", [])
                     if isinstance(r, dict)}
        for fixture in self.script.get("fixture", []):
            fid = str(fixture.get("id") or "")
            if not fid:
                raise _Broken("a fixture has no id")
            reference = str((fixture.get("resource") or {}).get("reference") or "")
            content: Any = None
            raw: bytes | None = None
            if reference.startswith("#"):
                if reference[1:] not in contained:
                    raise _Broken(f"fixture {fid}: no contained resource {reference}")
                content = {k: v for k, v in contained[reference[1:]].items() if k != "id"}
            elif reference.startswith(("http://", "https://")):
                raise _Skip(f"fixture {fid} is remote ({reference}); only local fixtures are "
                            "supported")
            elif reference:
                content, raw = self._fixture_file(fid, reference)
            else:
                raise _Broken(f"fixture {fid} references no resource")
            self.fixtures[fid] = _Fixture(fid, content, raw, bool(fixture.get("autocreate")),
                                          bool(fixture.get("autodelete")))
        for profile in self.script.get("profile", []):
            if isinstance(profile, dict) and profile.get("id"):
                self.profiles[str(profile["id"])] = str(profile.get("reference") or "")
        for variable in self.script.get("variable", []):
            if isinstance(variable, dict) and variable.get("name"):
                self.variables[str(variable["name"])] = variable

    def _fixture_file(self, fid: str, reference: str) -> tuple[Any, bytes | None]:
        path = (self.base_dir / reference).resolve()
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise _Broken(f"fixture {fid}: cannot read {reference}") from exc
        if path.suffix in (".json", ".yaml", ".yml"):
            try:
                return _parse_document(data.decode("utf-8"), path), None
            except (SuiteInvalid, UnicodeDecodeError) as exc:
                raise _Broken(f"fixture {fid}: {reference} does not parse") from exc
        return None, data

    # --- phases ------------------------------------------------------------------------------
    def _setup(self) -> list[ActionResult]:
        results: list[ActionResult] = []
        for fixture in self.fixtures.values():
            if fixture.autocreate:
                results.append(self._autocreate(fixture))
                if results[-1].result != "pass":
                    return results
        actions = (self.script.get("setup") or {}).get("action", [])
        results.extend(self._actions(actions, allow_assert=True))
        return results

    def _test(self, test: dict[str, Any], index: int) -> TestResult:
        name = str(test.get("name") or f"test {index + 1}")
        outcome = TestResult(name=name, description=str(test.get("description") or ""))
        unknown = sorted(set(test) - _TEST_KEYS)
        if unknown:
            outcome.actions.append(ActionResult(
                "operation", "skip", "test",
                f"the test uses {', '.join(unknown)}, which this runner does not support"))
            return outcome
        outcome.actions = self._actions(test.get("action", []), allow_assert=True)
        if not outcome.actions:
            outcome.actions.append(ActionResult("assert", "skip", "test", "the test has no actions"))
        return outcome

    def _teardown(self) -> list[ActionResult]:
        actions = (self.script.get("teardown") or {}).get("action", [])
        results = self._actions(actions, allow_assert=False, stop_on_problem=False)
        for fid in reversed(self.created_order):
            fixture = self.fixtures.get(fid)
            if fixture is not None and fixture.autodelete and fid in self.created:
                results.append(self._autodelete(fid))
        return results

    def _actions(self, actions: list[Any], *, allow_assert: bool,
                 stop_on_problem: bool = True) -> list[ActionResult]:
        results: list[ActionResult] = []
        halted: str | None = None
        for action in actions:
            if not isinstance(action, dict):
                continue
            if halted is not None:
                kind: ActionKind = "assert" if "assert" in action else "operation"
                label = _label(action.get(kind) or {}, kind)
                results.append(ActionResult(kind, "skip", label,
                                            f"not run: an earlier operation {halted}"))
                continue
            if "operation" in action:
                outcome = self.operation(action["operation"])
                results.append(outcome)
                if stop_on_problem and outcome.result in ("skip", "error"):
                    halted = "was skipped" if outcome.result == "skip" else "could not complete"
            elif "assert" in action and allow_assert:
                results.append(self.assertion(action["assert"]))
            else:
                results.append(ActionResult("operation", "skip", "action",
                                            "an action with neither an operation nor an "
                                            "assertion this phase allows"))
        return results

    # --- variables ---------------------------------------------------------------------------
    def lookup(self, name: str) -> str | None:
        """Return the value of a variable (evaluated now), or None when it has none."""
        if name in self.target.variables:
            return self.target.variables[name]
        variable = self.variables.get(name)
        if variable is None:
            return self.builtins.get(name)
        if name in self._resolving:
            raise ExpressionError(f"variable {name} refers to itself")
        self._resolving.add(name)
        try:
            value = self._variable_value(variable)
        finally:
            self._resolving.discard(name)
        if value in (None, ""):
            default = variable.get("defaultValue")
            return None if default is None else substitute(str(default), self.lookup)
        return value

    def _variable_value(self, variable: dict[str, Any]) -> str | None:
        source_id = variable.get("sourceId")
        if variable.get("headerField"):
            exchange = self.responses.get(str(source_id)) if source_id else self.last
            if exchange is None:
                return None
            return exchange.headers.get(str(variable["headerField"]))
        expression = variable.get("expression")
        path = variable.get("path")
        if not expression and not path:
            return None
        document = self._document(str(source_id) if source_id else None)
        if document is None:
            return None
        if expression:
            values = evaluate_fhirpath(document, substitute(str(expression), self.lookup),
                                       self._fhirpath_context(document))
        else:
            values = evaluate_path(document, substitute(str(path), self.lookup))
        return as_text(values[0]) if values else None

    def _document(self, source_id: str | None) -> Any:
        if source_id is None:
            return self.last.body if self.last is not None else None
        if source_id in self.responses:
            return self.responses[source_id].body
        if source_id in self.requests:
            return self.requests[source_id].request_body
        fixture = self.fixtures.get(source_id)
        if fixture is None:
            raise _Broken(f"no fixture or response called {source_id}")
        if fixture.server is not None:
            return fixture.server
        return substitute_json(fixture.content, self.lookup)

    def _fhirpath_context(self, document: Any) -> dict[str, Any]:
        return {"resource": document, "rootResource": document}

    # --- operations --------------------------------------------------------------------------
    def operation(self, op: dict[str, Any]) -> ActionResult:
        """Perform one operation and return its result."""
        label = _label(op, "operation")
        try:
            method, url, body, headers, shown = self._request(op)
            exchange = self._send(method, url, body, headers)
        except _Skip as exc:
            return ActionResult("operation", "skip", label, str(exc))
        except UnresolvedVariable as exc:
            return ActionResult("operation", "error", label,
                                f"variable ${{{exc.name}}} has no value")
        except (_Broken, ExpressionError) as exc:
            return ActionResult("operation", "error", label, str(exc))
        self.last = exchange
        if op.get("responseId"):
            self.responses[str(op["responseId"])] = exchange
        if op.get("requestId"):
            self.requests[str(op["requestId"])] = exchange
        self._remember_created(op, exchange)
        message = f"HTTP {exchange.status}" if shown == label else \
            f"{shown}: HTTP {exchange.status}"
        return ActionResult("operation", "pass", label, message)

    def _request(self, op: dict[str, Any]) -> tuple[str, str, bytes | None, dict[str, str], str]:
        unknown = sorted(set(op) - _OPERATION_KEYS)
        if unknown:
            raise _Skip(f"the operation uses {', '.join(unknown)}, which this runner does not "
                        "support")
        if _has_modifier_extension(op):
            raise _Skip("the operation carries a modifierExtension")
        if op.get("origin") not in (None, 1) or op.get("destination") not in (None, 1):
            raise _Skip("operations between several origins or destinations are not supported")
        code = str((op.get("type") or {}).get("code") or "")
        accept = _media_type(str(op.get("accept") or "json"))
        if accept != FHIR_JSON and accept not in ("application/json", "none"):
            raise _Skip(f"accept {op.get('accept')} is not supported; this runner speaks JSON")
        source = self._source_fixture(op)
        res_type = str(op.get("resource") or "") or _resource_type(source)
        params = substitute(str(op.get("params") or ""), self.lookup)
        raw_params = str(op.get("params") or "")
        body: bytes | None = None
        if source is not None:
            body = self._body(source)
        if op.get("url"):
            url = substitute(str(op["url"]), self.lookup)
            shown = f"{code or 'request'} {op['url']}"
            method = str(op.get("method") or _default_method(code, body)).upper()
        else:
            if not code:
                raise _Broken("the operation has neither a type nor a url")
            method, url, body = self._rest(code, op, res_type, params, body, source)
            shown = f"{code} {res_type}{self._target_label(op)}{raw_params}".rstrip()
            if op.get("method"):
                method = str(op["method"]).upper()
        if method == "PATCH":
            raise _Skip("PATCH is not supported by this runner")
        if op.get("encodeRequestUrl", True):
            url = _encode_url(url)
        headers = {"Accept": accept} if accept != "none" else {}
        content_type = op.get("contentType")
        if body is not None and content_type != "none":
            headers["Content-Type"] = _media_type(str(content_type or "json"))
        for header in op.get("requestHeader", []) or []:
            name = str(header.get("field") or "")
            if name:
                headers[name] = substitute(str(header.get("value") or ""), self.lookup)
        return method, self.target.url(url), body, headers, shown

    def _target_label(self, op: dict[str, Any]) -> str:
        return f"/[{op['targetId']}]" if op.get("targetId") else ""

    def _source_fixture(self, op: dict[str, Any]) -> _Fixture | Exchange | None:
        source_id = op.get("sourceId")
        if not source_id:
            return None
        sid = str(source_id)
        if sid in self.fixtures:
            return self.fixtures[sid]
        if sid in self.responses:
            return self.responses[sid]
        raise _Broken(f"sourceId {sid} names no fixture or response")

    def _body(self, source: _Fixture | Exchange) -> bytes:
        if isinstance(source, Exchange):
            return json.dumps(source.body).encode("utf-8")
        if source.raw is not None:
            return source.raw
        return json.dumps(substitute_json(source.content, self.lookup)).encode("utf-8")

    def _target(self, op: dict[str, Any]) -> _Created | None:
        target_id = op.get("targetId")
        if not target_id:
            return None
        tid = str(target_id)
        if tid in self.created:
            return self.created[tid]
        if tid in self.responses:
            found = _identity(self.responses[tid])
            if found is None:
                raise _Broken(f"response {tid} names no resource id")
            return found
        if tid in self.fixtures:
            content = self.fixtures[tid].content
            if isinstance(content, dict) and content.get("id"):
                meta = content.get("meta") or {}
                return _Created(str(content.get("resourceType")), str(content["id"]),
                                meta.get("versionId"))
            raise _Broken(f"fixture {tid} has not been created on the server")
        raise _Broken(f"targetId {tid} names no fixture or response")

    def _rest(self, code: str, op: dict[str, Any], res_type: str, params: str,
              body: bytes | None, source: _Fixture | Exchange | None,
              ) -> tuple[str, str, bytes | None]:
        target = self._target(op)
        if target is not None and not res_type:
            res_type = target.res_type
        instance = f"{res_type}/{target.res_id}" if target is not None else res_type
        if code == "capabilities":
            return "GET", "metadata" + params, None
        if code in ("transaction", "batch"):
            if body is None:
                raise _Broken(f"{code} needs a sourceId with the Bundle")
            return "POST", params, body
        if not res_type:
            if code == "search":
                return "GET", params, None
            if code == "history":
                return "GET", "_history" + params, None
            raise _Broken(f"{code} needs a resource type")
        if code == "read":
            return "GET", instance if target is not None else res_type + params, None
        if code == "vread":
            if target is None:
                return "GET", res_type + params, None
            if not target.version:
                raise _Broken(f"the target of vread has no known version ({op.get('targetId')})")
            return "GET", f"{instance}/_history/{target.version}", None
        if code == "create":
            if body is None:
                raise _Broken("create needs a sourceId")
            return "POST", res_type + params, body
        if code in ("update", "updateCreate"):
            if body is None:
                raise _Broken(f"{code} needs a sourceId")
            if target is None and params:
                return "PUT", res_type + params, body
            res_id = target.res_id if target is not None else _fixture_id(source)
            if not res_id:
                raise _Broken(f"{code} needs a targetId or a fixture with an id")
            return "PUT", f"{res_type}/{res_id}", _with_id(body, res_id)
        if code in ("delete", "deleteCondSingle", "deleteCondMultiple"):
            if target is not None:
                return "DELETE", instance, None
            if not params:
                raise _Broken(f"{code} needs a targetId or params")
            return "DELETE", res_type + params, None
        if code == "search":
            if str(op.get("method") or "").lower() == "post":
                query = params.removeprefix("?")
                return "POST", f"{res_type}/_search", query.encode("utf-8")
            return "GET", res_type + params, None
        if code == "history":
            return "GET", f"{instance}/_history{params}", None
        if code == "validate" or code in NAMED_OPERATIONS:
            name = "validate" if code == "validate" else code
            method = "POST" if body is not None else "GET"
            return method, f"{instance}/${name}{params}", body
        raise _Skip(f"operation type {code!r} is not supported")

    def _send(self, method: str, url: str, body: bytes | None,
              headers: dict[str, str]) -> Exchange:
        sent = {**self.target.headers, **headers}
        if method == "POST" and url.endswith("/_search"):
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            response = self.target.session.request(
                method, url, data=body, headers=sent, timeout=self.target.timeout,
                allow_redirects=False)
        except requests.RequestException as exc:
            raise _Broken(f"no answer from the server ({type(exc).__name__})") from exc
        raw = response.content
        parsed: Any = None
        if raw and raw.lstrip()[:1] in (b"{", b"["):
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
        request_body: Any = None
        if body is not None:
            try:
                request_body = json.loads(body)
            except ValueError:
                request_body = None
        return Exchange(method, url, sent, request_body, response.status_code,
                        response.headers, parsed, raw)

    def _remember_created(self, op: dict[str, Any], exchange: Exchange) -> None:
        code = str((op.get("type") or {}).get("code") or "")
        source_id = op.get("sourceId")
        if code not in ("create", "update", "updateCreate") or not source_id:
            return
        if not 200 <= exchange.status < 300 or str(source_id) not in self.fixtures:
            return
        found = _identity(exchange)
        if found is None:
            return
        sid = str(source_id)
        server = exchange.body if isinstance(exchange.body, dict) and exchange.body.get(
            "id") == found.res_id else None
        if server is None:
            content = self.fixtures[sid].content
            if isinstance(content, dict):
                server = dict(substitute_json(content, self.lookup), id=found.res_id)
        target = str(op.get("targetId") or "")
        if code == "update" and target in self.created and target in self.fixtures:
            # An update of a created fixture: the target now has a newer version.
            self.created[target] = found
            self.fixtures[target].server = server
        if sid not in self.created:
            self.created_order.append(sid)
        self.created[sid] = found
        self.fixtures[sid].server = server

    def _autocreate(self, fixture: _Fixture) -> ActionResult:
        content = fixture.content
        label = f"autocreate {fixture.id}"
        if not isinstance(content, dict) or not content.get("resourceType"):
            return ActionResult("operation", "error", label, "the fixture is not a resource")
        code = "updateCreate" if content.get("id") else "create"
        op = {"type": {"code": code}, "sourceId": fixture.id, "label": label,
              "requestHeader": [{"field": "Prefer", "value": "return=representation"}]}
        outcome = self.operation(op)
        if outcome.result != "pass" or self.last is None:
            return outcome
        if not 200 <= self.last.status < 300 or fixture.id not in self.created:
            return ActionResult("operation", "fail", label,
                                f"the server did not create the fixture (HTTP {self.last.status})")
        return ActionResult("operation", "pass", label, f"{code} {content['resourceType']}: "
                                                        f"HTTP {self.last.status}")

    def _autodelete(self, fid: str) -> ActionResult:
        created = self.created[fid]
        label = f"autodelete {fid}"
        try:
            exchange = self._send("DELETE", self.target.url(f"{created.res_type}/{created.res_id}"),
                                  None, {"Accept": FHIR_JSON})
        except _Broken as exc:
            return ActionResult("operation", "error", label, str(exc))
        if exchange.status in (200, 202, 204, 404, 410):
            return ActionResult("operation", "pass", label,
                                f"delete {created.res_type}: HTTP {exchange.status}")
        return ActionResult("operation", "fail", label,
                            f"delete {created.res_type} answered HTTP {exchange.status}")

    # --- assertions --------------------------------------------------------------------------
    def assertion(self, spec: dict[str, Any]) -> ActionResult:
        """Evaluate one assertion and return its result."""
        label = _label(spec, "assert")
        try:
            checks = self._checks(spec)
        except _Skip as exc:
            return ActionResult("assert", "skip", label, str(exc))
        except UnresolvedVariable as exc:
            return ActionResult("assert", "error", label, f"variable ${{{exc.name}}} has no value")
        except (_Broken, ExpressionError) as exc:
            return ActionResult("assert", "error", label, str(exc))
        if not checks:
            return ActionResult("assert", "skip", label,
                                "the assertion checks nothing this runner understands")
        failures = [message for ok, message in checks if not ok]
        if failures:
            outcome: Outcome = "warning" if spec.get("warningOnly") else "fail"
            return ActionResult("assert", outcome, label, "; ".join(failures))
        return ActionResult("assert", "pass", label, "; ".join(m for _, m in checks))

    def _checks(self, spec: dict[str, Any]) -> list[tuple[bool, str]]:
        unknown = sorted(set(spec) - _ASSERT_KEYS)
        if unknown:
            raise _Skip(f"the assertion uses {', '.join(unknown)}, which this runner does not "
                        "support")
        if _has_modifier_extension(spec):
            raise _Skip("the assertion carries a modifierExtension")
        operator = spec.get("operator")
        if operator is not None and operator not in OPERATORS:
            raise _Skip(f"operator {operator!r} is not a TestScript operator")
        for key in ("path", "compareToSourcePath"):
            if str(spec.get(key) or "").startswith("/"):
                raise _Skip(f"{key} is XPath, which needs the XML format this runner does not "
                            "use")
        request_side = spec.get("direction") == "request"
        exchange = self._exchange(spec)
        raw_value = spec.get("value")
        value = substitute(str(raw_value), self.lookup) if raw_value is not None else None
        shown = str(raw_value) if raw_value is not None else None
        checks: list[tuple[bool, str]] = []

        def need() -> Exchange:
            if exchange is None:
                raise _Broken("there is no response to check (no operation ran before)")
            return exchange

        if spec.get("response") is not None:
            name = str(spec["response"])
            if name not in RESPONSE_CODES:
                raise _Skip(f"response {name!r} is not a TestScript response code")
            checks.append(_status_check(need(), operator or "equals", RESPONSE_CODES[name],
                                        f"{RESPONSE_CODES[name]} ({name})"))
        if spec.get("responseCode") is not None:
            codes = str(spec["responseCode"])
            op = operator or ("in" if "," in codes else "equals")
            checks.append(_status_check(need(), op, codes, codes))
        if spec.get("contentType") is not None:
            got = need().request_headers.get("Content-Type", "") if request_side else \
                need().headers.get("Content-Type", "")
            want = _media_type(str(spec["contentType"]))
            checks.append(compare(operator or "equals", [_media_type(got)] if got else [], want,
                                  "the content type"))
        if spec.get("headerField") is not None:
            name = str(spec["headerField"])
            headers = need().request_headers if request_side else need().headers
            found = _header(headers, name)
            op = operator or ("equals" if value is not None else "notEmpty")
            checks.append(compare(op, [found] if found is not None else [], value,
                                  f"header {name}", shown))
        if spec.get("resource") is not None:
            body = self._assert_document(spec, exchange, request_side)
            kind = body.get("resourceType") if isinstance(body, dict) else None
            checks.append(compare(operator or "equals", [kind] if kind else [],
                                  str(spec["resource"]), "the resource type"))
        if spec.get("minimumId") is not None:
            checks.append(self._minimum(str(spec["minimumId"]),
                                        self._assert_document(spec, exchange, request_side)))
        if spec.get("compareToSourceId") is not None:
            checks.append(self._compare_to_source(spec, exchange, request_side, operator))
        else:
            for key, evaluate in (("expression", None), ("path", evaluate_path)):
                if spec.get(key) is None:
                    continue
                text = str(spec[key])
                document = self._assert_document(spec, exchange, request_side)
                expr = substitute(text, self.lookup)
                values = (evaluate(document, expr) if evaluate is not None else
                          evaluate_fhirpath(document, expr, self._fhirpath_context(document)))
                op = operator or ("equals" if value is not None else "eval")
                checks.append(_eval_compare(op, values, value, text, shown))
        if spec.get("validateProfileId") is not None:
            checks.append(self._validate(str(spec["validateProfileId"]),
                                         self._assert_document(spec, exchange, request_side)))
        if spec.get("navigationLinks") is not None:
            if not spec["navigationLinks"]:
                raise _Skip("navigationLinks false asks for no check")
            checks.append(_navigation(self._assert_document(spec, exchange, request_side)))
        if spec.get("requestMethod") is not None:
            method = need().method.lower()
            checks.append(compare(operator or "equals", [method],
                                  str(spec["requestMethod"]).lower(), "the request method"))
        if spec.get("requestURL") is not None:
            url = substitute(str(spec["requestURL"]), self.lookup)
            checks.append(compare(operator or "equals", [need().url], self.target.url(url),
                                  "the request URL", str(spec["requestURL"])))
        return checks

    def _exchange(self, spec: dict[str, Any]) -> Exchange | None:
        source_id = spec.get("sourceId")
        if source_id:
            sid = str(source_id)
            if sid in self.responses:
                return self.responses[sid]
            if sid in self.requests:
                return self.requests[sid]
            if sid in self.fixtures:
                return self.last
            raise _Broken(f"sourceId {sid} names no fixture or response")
        return self.last

    def _assert_document(self, spec: dict[str, Any], exchange: Exchange | None,
                         request_side: bool) -> Any:
        source_id = spec.get("sourceId")
        if source_id and str(source_id) in self.fixtures:
            return self._document(str(source_id))
        if exchange is None:
            raise _Broken("there is no response to check (no operation ran before)")
        document = exchange.request_body if request_side else exchange.body
        if document is None:
            side = "request" if request_side else "response"
            raise _Broken(f"the {side} has no JSON body to check")
        return document

    def _minimum(self, fixture_id: str, document: Any) -> tuple[bool, str]:
        if fixture_id not in self.fixtures:
            raise _Broken(f"minimumId {fixture_id} names no fixture")
        minimum = substitute_json(self.fixtures[fixture_id].content, self.lookup)
        if not isinstance(minimum, dict):
            raise _Broken(f"minimumId {fixture_id} is not a resource")
        root = str(minimum.get("resourceType") or "Resource")
        missing = _missing(minimum, document, root, top=True)
        if missing:
            return False, (f"the resource lacks what fixture {fixture_id} holds: "
                           + ", ".join(missing[:8]))
        return True, f"the resource holds everything fixture {fixture_id} holds"

    def _compare_to_source(self, spec: dict[str, Any], exchange: Exchange | None,
                           request_side: bool, operator: str | None) -> tuple[bool, str]:
        source_id = str(spec["compareToSourceId"])
        other = self._document(source_id)
        source_expr = spec.get("compareToSourceExpression")
        source_path = spec.get("compareToSourcePath")
        if (source_expr is None) == (source_path is None):
            raise _Broken("compareToSourceId needs one compareToSourceExpression or "
                          "compareToSourcePath")
        if source_expr is not None:
            expected = evaluate_fhirpath(other, substitute(str(source_expr), self.lookup),
                                         self._fhirpath_context(other))
            source_text = str(source_expr)
        else:
            expected = evaluate_path(other, substitute(str(source_path), self.lookup))
            source_text = str(source_path)
        document = self._assert_document(spec, exchange, request_side)
        if spec.get("expression") is not None:
            text = str(spec["expression"])
            actual = evaluate_fhirpath(document, substitute(text, self.lookup),
                                       self._fhirpath_context(document))
        elif spec.get("path") is not None:
            text = str(spec["path"])
            actual = evaluate_path(document, substitute(text, self.lookup))
        elif source_expr is not None:
            text = source_text
            actual = evaluate_fhirpath(document, substitute(text, self.lookup),
                                       self._fhirpath_context(document))
        else:
            text = source_text
            actual = evaluate_path(document, substitute(text, self.lookup))
        op = operator or "equals"
        what = f"{text} compared with {source_text} of {source_id}"
        left = [as_text(v) for v in actual]
        right = [as_text(v) for v in expected]
        if op in ("equals", "notEquals"):
            same = left == right
            ok = same if op == "equals" else not same
            if ok:
                return True, f"{what}: {'equal' if same else 'different'}"
            got = ", ".join(shorten(v, 60) for v in left) or "nothing"
            want = ", ".join(shorten(v, 60) for v in right) or "nothing"
            relation = "equal" if op == "equals" else "differ"
            return False, f"{what}: should {relation}, got {got!r} against {want!r}"
        return compare(op, actual, ",".join(right), what, source_text)

    def _validate(self, profile_id: str, document: Any) -> tuple[bool, str]:
        if profile_id not in self.profiles:
            raise _Broken(f"validateProfileId {profile_id} names no profile of the script")
        url = self.profiles[profile_id]
        match = _CORE_PROFILE.match(url)
        if match is None:
            raise _Skip(f"profile {url} is not a core FHIR R4 profile; only core profiles are "
                        "validated")
        kind = document.get("resourceType") if isinstance(document, dict) else None
        if kind != match.group(1):
            return False, f"profile {match.group(1)}: the resource is a {kind or 'non-resource'}"
        validate = self.validator or _default_validator()
        issues = list(validate(document))
        if any(getattr(i, "code", "") == "not-supported" for i in issues):
            raise _Skip(f"the strict validator does not cover {kind}")
        errors = [i for i in issues if getattr(i, "severity", "") in ("error", "fatal")]
        if errors:
            shown = "; ".join(f"{getattr(i, 'expression', '')}: {getattr(i, 'diagnostics', '')}"
                              for i in errors[:5])
            return False, f"{len(errors)} error(s) against {url}: {shown}"
        return True, f"valid against {url}"


# --- helpers -------------------------------------------------------------------------------
def _default_validator() -> Validator:
    from gateway.fhir.validation import validate_resource

    return validate_resource


def _label(spec: dict[str, Any], kind: str) -> str:
    label = spec.get("label") or spec.get("description")
    if label:
        return str(label)
    if kind == "operation":
        code = (spec.get("type") or {}).get("code") or "request"
        return f"{code} {spec.get('resource') or ''}".strip()
    for key in ("response", "responseCode", "contentType", "headerField", "resource",
                "minimumId", "expression", "path", "validateProfileId", "compareToSourceId"):
        if spec.get(key) is not None:
            return f"{key} {spec[key]}"
    return "assert"


def _has_modifier_extension(value: Any) -> bool:
    if isinstance(value, dict):
        if value.get("modifierExtension"):
            return True
        return any(_has_modifier_extension(v) for k, v in value.items() if k != "contained")
    if isinstance(value, list):
        return any(_has_modifier_extension(v) for v in value)
    return False


def _media_type(value: str) -> str:
    value = value.strip()
    return FORMATS.get(value, value.split(";")[0].strip().lower())


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


def _status_check(exchange: Exchange, operator: str, codes: str, shown: str) -> tuple[bool, str]:
    return compare(operator, [str(exchange.status)], codes, "the response code", shown)


def _eval_compare(op: str, values: list[Any], value: str | None, text: str,
                  shown: str | None) -> tuple[bool, str]:
    if op == "eval":
        ok = bool(values) and all(v is not False for v in values)
        if ok:
            return True, f"{text} holds"
        got = "nothing" if not values else ", ".join(shorten(as_text(v), 60) for v in values[:5])
        return False, f"{text} should hold, got {got}"
    return compare(op, values, value, text, shown)


def _resource_type(source: _Fixture | Exchange | None) -> str:
    content = source.content if isinstance(source, _Fixture) else (
        source.body if isinstance(source, Exchange) else None)
    if isinstance(content, dict):
        return str(content.get("resourceType") or "")
    return ""


def _fixture_id(source: _Fixture | Exchange | None) -> str:
    content = source.content if isinstance(source, _Fixture) else (
        source.body if isinstance(source, Exchange) else None)
    return str(content.get("id") or "") if isinstance(content, dict) else ""


def _with_id(body: bytes, res_id: str) -> bytes:
    try:
        data = json.loads(body)
    except ValueError:
        return body
    if isinstance(data, dict):
        data["id"] = res_id
        return json.dumps(data).encode("utf-8")
    return body


def _default_method(code: str, body: bytes | None) -> str:
    if code in ("create", "transaction", "batch", "validate"):
        return "POST"
    if code in ("update", "updateCreate"):
        return "PUT"
    if code.startswith("delete"):
        return "DELETE"
    return "POST" if body is not None else "GET"


def _identity(exchange: Exchange) -> _Created | None:
    body = exchange.body
    if isinstance(body, dict) and body.get("id") and body.get("resourceType") not in (
            None, "OperationOutcome", "Bundle"):
        meta = body.get("meta") or {}
        version = meta.get("versionId")
        return _Created(str(body["resourceType"]), str(body["id"]),
                        str(version) if version is not None else None)
    location = _header(exchange.headers, "Content-Location") or _header(exchange.headers,
                                                                        "Location")
    if location:
        match = _LOCATION.search(urlsplit(location).path)
        if match:
            return _Created(match.group(1), match.group(2), match.group(3))
    return None


def _encode_url(url: str) -> str:
    """Percent-encode the query values of a URL (the path and parameter names are kept)."""
    if "?" not in url:
        return url
    path, query = url.split("?", 1)
    pairs = []
    for part in query.split("&"):
        if not part:
            continue
        name, equals, value = part.partition("=")
        pairs.append(f"{name}={quote(value, safe=':/,$*@')}" if equals else name)
    return f"{path}?{'&'.join(pairs)}"


def _missing(expected: Any, actual: Any, path: str, *, top: bool = False) -> list[str]:
    """Return the element paths of expected that actual lacks or holds differently."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [path]
        found: list[str] = []
        for key, value in expected.items():
            if top and key in ("id", "meta", "text"):
                continue
            if key not in actual:
                found.append(f"{path}.{key}")
            else:
                found.extend(_missing(value, actual[key], f"{path}.{key}"))
        return found
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return [path]
        found = []
        for index, item in enumerate(expected):
            if not any(not _missing(item, candidate, path) for candidate in actual):
                found.append(f"{path}[{index}]")
        return found
    return [] if as_text(expected) == as_text(actual) else [path]


def _navigation(document: Any) -> tuple[bool, str]:
    if not isinstance(document, dict) or document.get("resourceType") != "Bundle":
        return False, "navigation links need a Bundle"
    links = [link for link in document.get("link", []) if isinstance(link, dict)]
    relations = [str(link.get("relation")) for link in links]
    problems = []
    if "self" not in relations:
        problems.append("no self link")
    if len(set(relations)) != len(relations):
        problems.append("a link relation appears twice")
    for link in links:
        url = str(link.get("url") or "")
        if not urlsplit(url).scheme or not urlsplit(url).netloc:
            problems.append(f"the {link.get('relation')} link is not an absolute URL")
    matches = [e for e in document.get("entry", [])
               if isinstance(e, dict) and (e.get("search") or {}).get("mode", "match") == "match"]
    total = document.get("total")
    if isinstance(total, int) and total > len(matches) and not (
            {"next", "previous", "prev"} & set(relations)):
        problems.append(f"{total} matches but only {len(matches)} here and no next link")
    if problems:
        return False, "navigation links: " + "; ".join(problems)
    return True, "navigation links are complete"

