"""SOAP contract suites: check that an endpoint honours one of our national WSDLs, from data.

A contract suite is one YAML file (``kind: soap-contract``) naming the service's packaged WSDL and
schemas, its documented fault codes, how good requests are secured, request templates and a list
of checks. Each check becomes one test in the same result shapes as TestScripts. Check kinds:

- ``wsdl: true`` -- GET ``?wsdl`` answers a well-formed, safe WSDL with the contract's target
  namespace, every operation and SOAPAction of the packaged WSDL, absolute endpoint addresses,
  schemas that are served too, and which a SOAP toolkit (zeep) can build a client from;
- ``operation: <name>`` with ``body`` (text, or ``{template, with}``) or ``raw`` -- POST a request;
  ``expect`` says what a conforming answer is: by default HTTP 200, the WSDL's output element,
  valid against the schemas (elements of other namespaces nested inside are validated against
  their own schema) and, when the service uses WS-Addressing, ``wsa:RelatesTo`` equal to the
  request's ``wsa:MessageID``; ``expect.fault`` asks instead for a SOAP Fault with that faultcode,
  HTTP 500, the documented detail element (schema-valid) and a documented ``code``;
  ``expect.xpath`` adds XPath checks on the reply payload;
- ``hostile: [variant, ...]`` -- one test per hostile XML document of the connectors' catalogue,
  each of which must be refused (HTTP 4xx/5xx, never echoing entity content, and a Client fault
  with a documented code when the answer is XML).

``envelope`` changes how a request is wrapped, to check that WS-Addressing and WS-Security are
honoured: ``message_id: omit``, ``action: omit|<other action>``, ``security: omit|expired|future``;
``soap_action`` and ``content_type`` override the HTTP headers.
"""
from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import yaml
from lxml import etree

from connectors.errors import ConnectorError
from connectors.soap import xml
from connectors.soap.wsa import SOAP11_NS, WSA_NS
from connectors.soap.wsse import add_security_header
from gateway.conformance.errors import SuiteInvalid, load_yaml
from gateway.conformance.expressions import UnresolvedVariable, shorten, substitute
from gateway.conformance.results import ActionResult, ScriptResult, TestResult

__all__ = ["Contract", "SoapContractRunner", "SoapTarget", "WsdlContract", "load_contract",
           "read_wsdl"]

WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
WSDL_SOAP_NS = "http://schemas.xmlsoap.org/wsdl/soap/"
XSD_NS = "http://www.w3.org/2001/XMLSchema"
XML_TYPES = ("text/xml", "application/soap+xml")
# Strings that only appear in a reply when a hostile document's entities were expanded.
ECHO_MARKERS = ("root:x:", "TOP-SECRET", "injected", "hahahaha", "xxxxxxxxxxxxxxxxxxxx")
_CONTRACT_KEYS = {"kind", "name", "title", "description", "service", "namespaces", "security",
                  "faults", "variables", "templates", "checks"}
_CHECK_KEYS = {"name", "description", "wsdl", "operation", "soap_action", "content_type",
               "body", "raw", "envelope", "hostile", "expect"}
_EXPECT_KEYS = {"status", "fault", "code", "action", "xpath"}
_ENVELOPE_KEYS = {"message_id", "action", "security"}
_XPATH_KEYS = {"path", "equals", "in", "exists"}


@dataclass
class SoapTarget:
    """Where the national services are: their base URL (a suite adds its service path)."""

    base_url: str
    session: requests.Session = field(default_factory=requests.Session)
    timeout: float = 15.0
    variables: dict[str, str] = field(default_factory=dict)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)


@dataclass(frozen=True)
class WsdlContract:
    """What a WSDL promises: its namespace, SOAPActions and message elements per operation."""

    target_namespace: str
    actions: dict[str, str]
    outputs: dict[str, str]
    faults: dict[str, tuple[str, ...]]


@dataclass(frozen=True)
class Contract:
    """A loaded SOAP contract suite."""

    path: Path
    name: str
    title: str
    service_path: str
    wsdl: WsdlContract
    schemas: dict[str, etree.XMLSchema]
    namespaces: dict[str, str]
    addressing: bool
    username: str | None
    password: str | None
    ttl_seconds: int
    fault_detail: str
    fault_code: str
    documented: dict[str, str]
    variables: dict[str, str]
    templates: dict[str, str]
    checks: list[dict[str, Any]]


def _qname(node: etree._Element, value: str | None) -> str:
    if not value:
        return ""
    prefix, _, local = value.rpartition(":")
    namespace = node.nsmap.get(prefix or None, "")
    return f"{{{namespace}}}{local}" if namespace else local


def read_wsdl(root: etree._Element) -> WsdlContract:
    """Read the operations, SOAPActions and message elements a WSDL 1.1 document declares."""
    w = f"{{{WSDL_NS}}}"
    messages: dict[str, str] = {}
    for message in root.iterfind(f"{w}message"):
        part = message.find(f"{w}part")
        if part is not None:
            messages[str(message.get("name"))] = _qname(part, part.get("element"))
    outputs: dict[str, str] = {}
    faults: dict[str, tuple[str, ...]] = {}
    for operation in root.iterfind(f"{w}portType/{w}operation"):
        name = str(operation.get("name"))
        output = operation.find(f"{w}output")
        if output is not None:
            ref = _qname(output, output.get("message"))
            outputs[name] = messages.get(ref.rpartition("}")[2], "")
        faults[name] = tuple(messages.get(_qname(f, f.get("message")).rpartition("}")[2], "")
                             for f in operation.iterfind(f"{w}fault"))
    actions: dict[str, str] = {}
    for operation in root.iterfind(f"{w}binding/{w}operation"):
        soap_op = operation.find(f"{{{WSDL_SOAP_NS}}}operation")
        actions[str(operation.get("name"))] = str(
            soap_op.get("soapAction") or "") if soap_op is not None else ""
    return WsdlContract(str(root.get("targetNamespace") or ""), actions, outputs, faults)


def _resource_path(spec: str, base: Path) -> Path:
    """Resolve ``package.module:relative/path`` (a packaged file) or a path beside the suite."""
    if ":" in spec and not spec.startswith(("/", ".")):
        package, relative = spec.split(":", 1)
        try:
            return Path(str(resources.files(package).joinpath(relative)))
        except ModuleNotFoundError as exc:
            raise SuiteInvalid(f"package {package} is not installed") from exc
    return (base / spec).resolve()


def load_contract(path: Path) -> Contract:
    """Load and check a SOAP contract suite file; raise SuiteInvalid with what is wrong."""
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SuiteInvalid(f"cannot read the contract suite {path}") from exc
    if not isinstance(data, dict) or data.get("kind") != "soap-contract":
        raise SuiteInvalid(f"{path} is not a SOAP contract suite (kind: soap-contract)")
    unknown = sorted(set(data) - _CONTRACT_KEYS)
    if unknown:
        raise SuiteInvalid(f"{path}: unknown top-level keys {', '.join(unknown)}")
    service = data.get("service") or {}
    faults = data.get("faults") or {}
    security = data.get("security") or {}
    if not service.get("path") or not service.get("wsdl"):
        raise SuiteInvalid(f"{path}: service needs a path and a wsdl")
    if not isinstance(data.get("checks"), list) or not data["checks"]:
        raise SuiteInvalid(f"{path}: the suite has no checks")
    try:
        wsdl_root = xml.parse_file(_resource_path(str(service["wsdl"]), path.parent))
        schemas: dict[str, etree.XMLSchema] = {}
        for spec in service.get("schemas", []):
            schema_path = _resource_path(str(spec), path.parent)
            namespace = str(xml.parse_file(schema_path).get("targetNamespace") or "")
            schemas[namespace] = xml.load_schema(str(schema_path))
    except ConnectorError as exc:
        raise SuiteInvalid(f"{path}: {exc}") from exc
    return Contract(
        path=path, name=str(data.get("name") or path.stem),
        title=str(data.get("title") or data.get("name") or path.stem),
        service_path=str(service["path"]), wsdl=read_wsdl(wsdl_root), schemas=schemas,
        namespaces={str(k): str(v) for k, v in (data.get("namespaces") or {}).items()},
        addressing=bool(service.get("addressing", True)),
        username=security.get("username"), password=security.get("password"),
        ttl_seconds=int(security.get("timestamp_ttl", 300)),
        fault_detail=str(faults.get("detail") or ""), fault_code=str(faults.get("code") or ""),
        documented={str(k): str(v) for k, v in (faults.get("documented") or {}).items()},
        variables={str(k): str(v) for k, v in (data.get("variables") or {}).items()},
        templates={str(k): str(v) for k, v in (data.get("templates") or {}).items()},
        checks=[c for c in data["checks"] if isinstance(c, dict)],
    )


@dataclass
class _Reply:
    status: int
    content_type: str
    raw: bytes
    envelope: etree._Element | None
    problem: str


class _Skip(Exception):
    """A check the runner cannot perform: reported as skipped with the reason."""


class _SameOriginTransport:
    """Build a zeep transport that fetches documents only from the endpoint's own origin."""

    @staticmethod
    def build(session: requests.Session, endpoint: str, timeout: float) -> Any:
        from zeep.transports import Transport

        origin = urlsplit(endpoint)[:2]

        class Transport_(Transport):
            def load(self, url: str) -> bytes:
                if urlsplit(url)[:2] != origin:
                    raise ConnectorError(f"the WSDL points outside its endpoint ({url})")
                return super().load(url)  # type: ignore[no-untyped-call,no-any-return]

        return Transport_(session=session, timeout=timeout)  # type: ignore[no-untyped-call]


class SoapContractRunner:
    """Run one contract suite against a SOAP endpoint and return its ScriptResult."""

    def __init__(self, contract: Contract, *, target: SoapTarget, suite: str = "",
                 key: str = "", on_test: Callable[[TestResult], None] | None = None) -> None:
        self.contract = contract
        self.target = target
        self.suite = suite or contract.name
        self.key = key or contract.path.stem
        self.on_test = on_test
        self.endpoint = target.base_url.rstrip("/") + "/" + contract.service_path.lstrip("/")
        self.variables = {**contract.variables, **target.variables}

    def run(self) -> ScriptResult:
        """Run every check in order."""
        result = ScriptResult(suite=self.suite, key=self.key, name=self.contract.name,
                              title=self.contract.title, reference="", target=self.endpoint)
        for check in self.contract.checks:
            for test in self._check(check):
                result.tests.append(test)
                if self.on_test is not None:
                    self.on_test(test)
        return result

    # --- checks ------------------------------------------------------------------------------
    def _check(self, check: dict[str, Any]) -> list[TestResult]:
        name = str(check.get("name") or "check")
        description = str(check.get("description") or "")
        unknown = sorted(set(check) - _CHECK_KEYS)
        unknown += sorted(f"expect.{k}" for k in set(check.get("expect") or {}) - _EXPECT_KEYS)
        unknown += sorted(f"envelope.{k}" for k in set(check.get("envelope") or {})
                          - _ENVELOPE_KEYS)
        if unknown:
            return [_skipped(name, description, f"the check uses {', '.join(unknown)}, which "
                                                "this runner does not support")]
        if check.get("wsdl"):
            return [self._wsdl(name, description)]
        if check.get("hostile"):
            return [self._hostile(f"{name}: {variant}", description, check, str(variant))
                    for variant in check["hostile"]]
        if check.get("operation"):
            return [self._operation(name, description, check)]
        return [_skipped(name, description, "the check has no wsdl, operation or hostile key")]

    def _wsdl(self, name: str, description: str) -> TestResult:
        test = TestResult(name=name, description=description)
        url = f"{self.endpoint}?wsdl"
        try:
            response = self.target.session.get(url, timeout=self.target.timeout,
                                               allow_redirects=False)
        except requests.RequestException as exc:
            test.actions.append(ActionResult("operation", "error", "GET ?wsdl",
                                             f"no answer ({type(exc).__name__})"))
            return test
        test.actions.append(ActionResult("operation", "pass", "GET ?wsdl",
                                         f"HTTP {response.status_code}"))
        add = _adder(test)
        add("HTTP 200", response.status_code == 200, f"HTTP {response.status_code}")
        media = _media(response.headers.get("Content-Type", ""))
        add("an XML content type", media in XML_TYPES or media == "application/xml",
            f"content type {media or 'missing'}")
        try:
            root = xml.parse(response.content, max_depth=256)
        except ConnectorError:
            add("safe, well-formed XML", False, "the WSDL is not well-formed or is unsafe XML")
            return test
        add("safe, well-formed XML", True, "parsed with DTDs and entities refused")
        if root.tag != f"{{{WSDL_NS}}}definitions":
            add("a WSDL 1.1 document", False, "the root is not wsdl:definitions")
            return test
        add("a WSDL 1.1 document", True, "wsdl:definitions")
        served = read_wsdl(root)
        expected = self.contract.wsdl
        same = served.target_namespace == expected.target_namespace
        add("the contract's target namespace", same,
            f"targetNamespace {served.target_namespace!r}" + (
                "" if same else f", expected {expected.target_namespace!r}"))
        missing = sorted(op for op, action in expected.actions.items()
                         if served.actions.get(op) != action)
        add("every operation with its SOAPAction", not missing,
            f"all {len(expected.actions)} operations declared" if not missing else
            "missing or different: " + ", ".join(missing))
        addresses = [str(a.get("location") or "") for a in root.iterfind(
            f".//{{{WSDL_SOAP_NS}}}address")]
        bad = [a for a in addresses if urlsplit(a).scheme not in ("http", "https")]
        add("absolute endpoint addresses", bool(addresses) and not bad,
            "every port has an http(s) address" if addresses and not bad
            else "a port lacks an absolute http(s) address")
        add(*self._schemas_served(root, url))
        add(*self._toolkit(url))
        return test

    def _schemas_served(self, root: etree._Element, url: str) -> tuple[str, bool, str]:
        label = "the schemas it references are served"
        locations = sorted({str(n.get("schemaLocation")) for n in root.iter(
            f"{{{XSD_NS}}}include", f"{{{XSD_NS}}}import") if n.get("schemaLocation")})
        for location in locations:
            absolute = urljoin(url, location)
            try:
                response = self.target.session.get(absolute, timeout=self.target.timeout,
                                                   allow_redirects=False)
                schema = xml.parse(response.content, max_depth=256)
            except (requests.RequestException, ConnectorError):
                return label, False, f"schema {shorten(location, 60)} could not be fetched"
            if response.status_code != 200 or schema.tag != f"{{{XSD_NS}}}schema":
                return label, False, f"schema {shorten(location, 60)} is not served"
        return label, True, f"{len(locations)} schema document(s) served"

    def _toolkit(self, url: str) -> tuple[str, bool, str]:
        from zeep import Settings
        from zeep.wsdl import Document

        label = "a SOAP toolkit builds a client from it"
        settings = Settings(strict=True, forbid_dtd=True, forbid_entities=True,
                            forbid_external=False, xml_huge_tree=False)
        transport = _SameOriginTransport.build(self.target.session, url, self.target.timeout)
        try:
            document = Document(url, transport, settings=settings)
        except Exception as exc:  # noqa: BLE001 - zeep raises many unrelated types here
            return label, False, f"zeep cannot load it ({type(exc).__name__})"
        operations = {op for binding in document.bindings.values()
                      for op in binding._operations}  # zeep has no public list
        missing = sorted(set(self.contract.wsdl.actions) - operations)
        if missing:
            return label, False, "zeep does not see " + ", ".join(missing)
        return label, True, f"zeep loads it with {len(operations)} operations"

    def _operation(self, name: str, description: str, check: dict[str, Any]) -> TestResult:
        test = TestResult(name=name, description=description)
        operation = str(check["operation"])
        expect = check.get("expect") or {}
        try:
            body, message_id, soap_action = self._build(check, operation)
        except _Skip as exc:
            return _skipped(name, description, str(exc))
        except (UnresolvedVariable, ConnectorError, SuiteInvalid) as exc:
            detail = f"variable ${{{exc.name}}} has no value" if isinstance(
                exc, UnresolvedVariable) else str(exc)
            test.actions.append(ActionResult("operation", "error", f"POST {operation}", detail))
            return test
        reply = self._post(test, operation, body, soap_action, check)
        if reply is None:
            return test
        # A reply can only relate to a MessageID the endpoint could read.
        unreadable = check.get("raw") is not None or check.get("content_type") is not None
        omitted = (check.get("envelope") or {}).get("message_id") == "omit"
        related = None if unreadable or omitted else message_id
        if expect.get("fault"):
            self._fault_checks(test, reply, expect, related)
        else:
            self._success_checks(test, reply, expect, operation, message_id)
        return test

    def _hostile(self, name: str, description: str, check: dict[str, Any],
                 variant: str) -> TestResult:
        from connectors.mockserver import HOSTILE_VARIANTS, hostile_document

        test = TestResult(name=name, description=description)
        if variant not in HOSTILE_VARIANTS:
            return _skipped(name, description, f"no hostile document called {variant!r}")
        operation = str(check.get("operation") or next(iter(self.contract.wsdl.actions), ""))
        soap_action = str(check.get("soap_action") or self.contract.wsdl.actions.get(operation, ""))
        reply = self._post(test, f"{operation} ({variant})", hostile_document(variant),
                           soap_action, check)
        if reply is None:
            return test
        add = _adder(test)
        add("refused", reply.status >= 400, f"HTTP {reply.status}")
        echoed = [m for m in ECHO_MARKERS if m.encode() in reply.raw]
        add("no entity content in the reply", not echoed,
            "nothing expanded was echoed" if not echoed else "the reply echoes expanded content")
        if reply.envelope is None:
            add("a Client fault when the answer is XML", True,
                f"the answer is not a SOAP envelope (HTTP {reply.status})")
            return test
        expect = {"fault": "Client", **(check.get("expect") or {})}
        self._fault_body(test, reply, expect, None)
        return test

    # --- requests ----------------------------------------------------------------------------
    def _lookup(self, extra: dict[str, str]) -> Callable[[str], str | None]:
        """Look names up in extra, then the variables, then the templates (both rendered)."""
        rendering: set[str] = set()

        def lookup(name: str) -> str | None:
            if name in extra:
                return extra[name]
            text = self.variables.get(name)
            if text is None:
                text = self.contract.templates.get(name)
            if text is None or name in rendering:
                return None
            rendering.add(name)
            try:
                return substitute(text, lookup).strip()
            finally:
                rendering.discard(name)

        return lookup

    def _build(self, check: dict[str, Any], operation: str) -> tuple[bytes, str, str]:
        if operation not in self.contract.wsdl.actions:
            raise SuiteInvalid(f"operation {operation} is not in the WSDL")
        now = self.target.clock()
        message_id = str(uuid.uuid4()).upper()
        builtins = {"message_id": message_id, "uuid": str(uuid.uuid4()).upper(),
                    "now": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "today": now.date().isoformat(),
                    "unique_number": str(int(now.timestamp() * 1_000_000)),
                    "operation": operation}
        soap_action = substitute(str(check.get("soap_action")
                                     or self.contract.wsdl.actions[operation]),
                                 self._lookup(builtins))
        if check.get("raw") is not None:
            return substitute(str(check["raw"]), self._lookup(builtins)).encode(), message_id, \
                soap_action
        body = check.get("body")
        if isinstance(body, dict):
            template = self.contract.templates.get(str(body.get("template")))
            if template is None:
                raise SuiteInvalid(f"no template called {body.get('template')}")
            values = dict(builtins)
            for key, value in (body.get("with") or {}).items():
                values[str(key)] = substitute(str(value), self._lookup(values))
            text = substitute(template, self._lookup(values))
        elif isinstance(body, str):
            text = substitute(body, self._lookup(builtins))
        else:
            raise SuiteInvalid("an operation check needs a body or raw")
        payload = xml.parse(text.encode("utf-8"), max_depth=256)
        envelope = self._envelope(payload, check.get("envelope") or {}, soap_action, message_id,
                                  now)
        return xml.to_bytes(envelope), message_id, soap_action

    def _envelope(self, payload: etree._Element, options: dict[str, Any], soap_action: str,
                  message_id: str, now: datetime) -> etree._Element:
        envelope = etree.Element(f"{{{SOAP11_NS}}}Envelope",
                                 nsmap={"soap": SOAP11_NS, "wsa": WSA_NS})
        header = etree.SubElement(envelope, f"{{{SOAP11_NS}}}Header")
        if options.get("message_id") != "omit":
            etree.SubElement(header, f"{{{WSA_NS}}}MessageID").text = message_id
        action = options.get("action")
        if action != "omit":
            etree.SubElement(header, f"{{{WSA_NS}}}Action").text = str(action or soap_action)
        etree.SubElement(header, f"{{{WSA_NS}}}To").text = self.endpoint
        security = options.get("security")
        if security not in ("omit", "expired", "future", None):
            raise _Skip(f"envelope security {security!r} is not supported")
        if security != "omit":
            created = now
            if security == "expired":
                created = now - timedelta(hours=1)
            elif security == "future":
                created = now + timedelta(hours=1)
            add_security_header(envelope, username=self.contract.username,
                                password=self.contract.password, created=created,
                                ttl_seconds=self.contract.ttl_seconds)
        etree.SubElement(envelope, f"{{{SOAP11_NS}}}Body").append(payload)
        return envelope

    def _post(self, test: TestResult, label: str, body: bytes, soap_action: str,
              check: dict[str, Any]) -> _Reply | None:
        content_type = str(check.get("content_type") or "text/xml; charset=utf-8")
        headers = {"Content-Type": content_type, "SOAPAction": f'"{soap_action}"'}
        try:
            response = self.target.session.post(self.endpoint, data=body, headers=headers,
                                                timeout=self.target.timeout,
                                                allow_redirects=False)
        except requests.RequestException as exc:
            test.actions.append(ActionResult("operation", "error", f"POST {label}",
                                             f"no answer ({type(exc).__name__})"))
            return None
        test.actions.append(ActionResult("operation", "pass", f"POST {label}",
                                         f"HTTP {response.status_code}"))
        media = _media(response.headers.get("Content-Type", ""))
        envelope: etree._Element | None = None
        problem = ""
        if media in XML_TYPES or response.content.lstrip().startswith(b"<"):
            try:
                envelope = xml.parse(response.content)
            except ConnectorError:
                problem = "the reply is not well-formed or is unsafe XML"
            else:
                if envelope.tag != f"{{{SOAP11_NS}}}Envelope":
                    problem, envelope = "the reply is not a SOAP 1.1 envelope", None
        else:
            problem = f"the reply is not XML ({media or 'no content type'})"
        return _Reply(response.status_code, media, response.content, envelope, problem)

    # --- expectations ------------------------------------------------------------------------
    def _payload(self, reply: _Reply) -> etree._Element | None:
        if reply.envelope is None:
            return None
        bodies = reply.envelope.findall(f"{{{SOAP11_NS}}}Body")
        if len(bodies) != 1:
            return None
        children = [c for c in bodies[0] if isinstance(c.tag, str)]
        return children[0] if len(children) == 1 else None

    def _envelope_checks(self, test: TestResult, reply: _Reply) -> etree._Element | None:
        add = _adder(test)
        add("an XML content type", reply.content_type in XML_TYPES,
            f"content type {reply.content_type or 'missing'}")
        payload = self._payload(reply)
        if reply.envelope is None or payload is None:
            add("a SOAP 1.1 envelope with one body element", False,
                reply.problem or "the soap:Body does not hold exactly one element")
            return None
        add("a SOAP 1.1 envelope with one body element", True, "soap:Envelope/soap:Body")
        return payload

    def _addressing(self, test: TestResult, reply: _Reply, message_id: str | None,
                    action: str | None) -> None:
        if not self.contract.addressing or reply.envelope is None:
            return
        add = _adder(test)
        header = reply.envelope.find(f"{{{SOAP11_NS}}}Header")
        values: dict[str, str] = {}
        if header is not None:
            for name in ("MessageID", "Action", "RelatesTo"):
                node = header.find(f"{{{WSA_NS}}}{name}")
                if node is not None:
                    values[name] = (node.text or "").strip()
        if message_id is not None:
            add("wsa:RelatesTo is the request's MessageID",
                values.get("RelatesTo") == message_id,
                "the reply relates to the request" if values.get("RelatesTo") == message_id
                else "wsa:RelatesTo is missing or names another message")
        add("the reply has its own wsa:MessageID", bool(values.get("MessageID")),
            "wsa:MessageID present" if values.get("MessageID") else "no wsa:MessageID")
        if action:
            add(f"wsa:Action {action}", values.get("Action") == action,
                f"wsa:Action is {values.get('Action')!r}")

    def _success_checks(self, test: TestResult, reply: _Reply, expect: dict[str, Any],
                        operation: str, message_id: str) -> None:
        add = _adder(test)
        status = int(expect.get("status", 200))
        add(f"HTTP {status}", reply.status == status, f"HTTP {reply.status}")
        payload = self._envelope_checks(test, reply)
        if payload is None:
            return
        output = self.contract.wsdl.outputs.get(operation)
        if output:
            add("the WSDL's output element", payload.tag == output,
                f"{_short(payload.tag)}" if payload.tag == output
                else f"{_short(payload.tag)}, expected {_short(output)}")
        add(*self._valid(payload))
        self._addressing(test, reply, message_id, expect.get("action"))
        self._xpaths(test, payload, expect.get("xpath") or [])

    def _fault_checks(self, test: TestResult, reply: _Reply, expect: dict[str, Any],
                      message_id: str | None) -> None:
        add = _adder(test)
        status = int(expect.get("status", 500))
        add(f"HTTP {status}", reply.status == status, f"HTTP {reply.status}")
        if self._envelope_checks(test, reply) is None:
            return
        self._fault_body(test, reply, expect, message_id)

    def _fault_body(self, test: TestResult, reply: _Reply, expect: dict[str, Any],
                    message_id: str | None) -> None:
        add = _adder(test)
        payload = self._payload(reply)
        wanted = str(expect.get("fault"))
        if payload is None or payload.tag != f"{{{SOAP11_NS}}}Fault":
            add(f"a SOAP Fault ({wanted})", False, "the body is not a soap:Fault")
            return
        code = (payload.findtext("faultcode") or "").strip().rpartition(":")[2]
        add(f"faultcode {wanted}", code == wanted, f"faultcode {code or 'missing'}")
        detail = payload.find("detail")
        info = next((c for c in detail if isinstance(c.tag, str)), None) if detail is not None \
            else None
        if self.contract.fault_detail:
            ok = info is not None and info.tag == self.contract.fault_detail
            add("the documented fault detail", ok,
                _short(self.contract.fault_detail) if ok else "the detail is missing or another "
                                                              "element")
            if info is not None and ok:
                add(*self._valid(info))
                self._fault_code(test, info, expect)
        self._addressing(test, reply, message_id, None)
        self._xpaths(test, payload, expect.get("xpath") or [])

    def _fault_code(self, test: TestResult, info: etree._Element, expect: dict[str, Any]) -> None:
        if not self.contract.fault_code:
            return
        add = _adder(test)
        value = str(info.xpath(self.contract.fault_code, namespaces=self.contract.namespaces))
        documented = value in self.contract.documented
        add("a documented fault code", documented,
            f"code {value}" if documented else f"code {value or 'missing'} is not documented")
        if expect.get("code") is not None:
            add(f"fault code {expect['code']}", value == str(expect["code"]),
                f"code {value or 'missing'}")

    def _valid(self, element: etree._Element) -> tuple[str, bool, str]:
        """Validate element, and each element of another namespace nested in it, by namespace."""
        label = "valid against the schemas"
        checked = 0
        for node in element.iter():
            if not isinstance(node.tag, str):
                continue
            namespace = etree.QName(node).namespace or ""
            parent = node.getparent()
            if node is not element and parent is not None and \
                    namespace == (etree.QName(parent).namespace or ""):
                continue
            schema = self.contract.schemas.get(namespace)
            if schema is None:
                if node is element:
                    return label, False, f"no schema for {_short(node.tag)}"
                continue
            errors = xml.schema_errors(schema, copy.deepcopy(node))
            checked += 1
            if errors:
                return label, False, f"{_short(node.tag)}: " + "; ".join(errors[:3])
        return label, True, f"{checked} element(s) validated"

    def _xpaths(self, test: TestResult, context: etree._Element,
                checks: list[dict[str, Any]]) -> None:
        add = _adder(test)
        for item in checks:
            unknown = sorted(set(item) - _XPATH_KEYS)
            path = str(item.get("path") or "")
            if unknown or not path:
                test.actions.append(ActionResult("assert", "skip", path or "xpath",
                                                 f"unsupported xpath check keys: "
                                                 f"{', '.join(unknown) or 'path missing'}"))
                continue
            try:
                found = context.xpath(path, namespaces=self.contract.namespaces)
            except etree.XPathError:
                test.actions.append(ActionResult("assert", "error", path,
                                                 "the XPath does not evaluate"))
                continue
            value = _xpath_text(found)
            if "equals" in item:
                want = substitute(str(item["equals"]), self._lookup({}))
                add(f"{path} = {item['equals']}", value == want, f"got {shorten(value, 80)!r}")
            elif "in" in item:
                options = [str(o) for o in item["in"]]
                add(f"{path} in {', '.join(options)}", value in options,
                    f"got {shorten(value, 80)!r}")
            else:
                exists = bool(found) if isinstance(found, list) else value not in ("", "false",
                                                                                   "0")
                want_exists = bool(item.get("exists", True))
                add(f"{path} {'exists' if want_exists else 'is absent'}", exists == want_exists,
                    "present" if exists else "absent")


def _xpath_text(found: Any) -> str:
    if isinstance(found, bool):
        return "true" if found else "false"
    if isinstance(found, float):
        return str(int(found)) if found.is_integer() else str(found)
    if isinstance(found, list):
        if not found:
            return ""
        first = found[0]
        if isinstance(first, etree._Element):
            return (first.text or "").strip()
        return str(first)
    return str(found)


def _adder(test: TestResult) -> Callable[[str, bool, str], None]:
    def add(label: str, ok: bool, message: str) -> None:
        test.actions.append(ActionResult("assert", "pass" if ok else "fail", label, message))

    return add


def _skipped(name: str, description: str, reason: str) -> TestResult:
    return TestResult(name=name, description=description,
                      actions=[ActionResult("operation", "skip", "check", reason)])


def _media(value: str) -> str:
    return value.split(";")[0].strip().lower()


def _short(tag: str) -> str:
    namespace, _, local = tag.rpartition("}")
    return f"{local} ({namespace.lstrip('{')})" if namespace else local
