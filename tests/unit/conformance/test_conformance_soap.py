"""SOAP contract suites: WSDL reading, suite loading, and the requests the runner builds."""
from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conformance_fakes import WsgiAdapter
from flask import Flask, Response, request
from lxml import etree

from connectors.soap import xml
from connectors.soap.wsa import SOAP11_NS, WSA_NS
from connectors.soap.wsse import WSSE_NS, WSU_NS
from gateway.conformance import SoapContractRunner, SoapTarget, SuiteInvalid, load_contract
from gateway.conformance.soap import read_wsdl

NOW = datetime(2026, 9, 1, 9, 0, tzinfo=UTC)
PDS = "urn:nhs-itk:services:201005:"
SUITE = textwrap.dedent("""\
    kind: soap-contract
    name: unit
    service:
      path: /svc
      wsdl: connectors.pds:wsdl/pds.wsdl
      schemas: [connectors.pds:wsdl/itk.xsd]
    namespaces: {itk: "urn:nhs-itk:ns:201005"}
    security: {username: tester}
    faults:
      detail: "{urn:nhs-itk:ns:201005}ToolkitErrorInfo"
      code: string(itk:ErrorCode)
      documented: {"2200": schema}
    variables: {who: "${inner}", inner: world}
    templates:
      hello: <hello xmlns="urn:example">${greeting} ${who}</hello>
    checks:
    """)


class Endpoint:
    """A SOAP endpoint stand-in: records what it receives and answers a canned envelope."""

    def __init__(self, status: int = 500, body: bytes = b"") -> None:
        self.status = status
        self.body = body
        self.received: list[tuple[dict[str, str], bytes]] = []

    def app(self) -> Flask:
        app = Flask("endpoint")

        @app.route("/svc", methods=["GET", "POST"])
        def svc() -> Response:
            self.received.append((dict(request.headers), request.get_data()))
            return Response(self.body, status=self.status, content_type="text/xml")

        return app

    def envelope(self, index: int = -1) -> etree._Element:
        return xml.parse(self.received[index][1])


def _fault(code: str = "2200", relates_to: str = "") -> bytes:
    return textwrap.dedent(f"""\
        <soap:Envelope xmlns:soap="{SOAP11_NS}" xmlns:wsa="{WSA_NS}">
          <soap:Header><wsa:MessageID>M1</wsa:MessageID>
            <wsa:RelatesTo>{relates_to}</wsa:RelatesTo></soap:Header>
          <soap:Body><soap:Fault><faultcode>soap:Client</faultcode><faultstring>no</faultstring>
            <detail><itk:ToolkitErrorInfo xmlns:itk="urn:nhs-itk:ns:201005">
              <itk:ErrorID>E1</itk:ErrorID><itk:ErrorCode>{code}</itk:ErrorCode>
              <itk:ErrorText>bad</itk:ErrorText></itk:ToolkitErrorInfo></detail>
          </soap:Fault></soap:Body></soap:Envelope>""").encode()


def _run(tmp_path: Path, checks: str, endpoint: Endpoint, **variables: str) -> Any:
    path = tmp_path / "unit.yaml"
    path.write_text(SUITE + textwrap.indent(textwrap.dedent(checks), "  "))
    session = __import__("requests").Session()
    session.mount("http://soap.test", WsgiAdapter(endpoint.app()))
    target = SoapTarget("http://soap.test", session=session, variables=variables,
                        clock=lambda: NOW)
    return SoapContractRunner(load_contract(path), target=target).run()


def test_read_wsdl_gives_actions_and_message_elements() -> None:
    from connectors.pds.messages import WSDL_DIR

    wsdl = read_wsdl(xml.parse_file(WSDL_DIR / "pds.wsdl"))
    assert wsdl.target_namespace == "urn:nhs-itk:ns:201005"
    assert wsdl.actions["verifyNHSNumber-v1-0"] == PDS + "verifyNHSNumber-v1-0"
    assert len(wsdl.actions) == 5
    assert wsdl.outputs["getNHSNumber-v1-0"] == "{urn:nhs-itk:ns:201005}DistributionEnvelope"
    assert wsdl.faults["getNHSNumber-v1-0"] == ("{urn:nhs-itk:ns:201005}ToolkitErrorInfo",)


def test_the_request_carries_addressing_security_and_the_rendered_body(tmp_path: Path) -> None:
    endpoint = Endpoint(500, _fault())
    _run(tmp_path, """\
        - name: hello
          operation: verifyNHSNumber-v1-0
          body: {template: hello, with: {greeting: hi}}
          expect: {fault: Client, code: "2200"}
        """, endpoint, inner="there")
    headers, _ = endpoint.received[0]
    assert headers["Soapaction"] == f'"{PDS}verifyNHSNumber-v1-0"'
    assert headers["Content-Type"] == "text/xml; charset=utf-8"
    envelope = endpoint.envelope()
    header = envelope.find(f"{{{SOAP11_NS}}}Header")
    assert header is not None
    assert header.findtext(f"{{{WSA_NS}}}Action") == PDS + "verifyNHSNumber-v1-0"
    assert header.findtext(f"{{{WSA_NS}}}To") == "http://soap.test/svc"
    assert len(header.findtext(f"{{{WSA_NS}}}MessageID") or "") == 36
    assert header.findtext(f".//{{{WSSE_NS}}}Username") == "tester"
    assert header.findtext(f".//{{{WSU_NS}}}Created") == "2026-09-01T09:00:00Z"
    assert envelope.findtext(".//{urn:example}hello") == "hi there"


@pytest.mark.parametrize(("envelope", "missing", "created"), [
    ("{message_id: omit}", "MessageID", "2026-09-01T09:00:00Z"),
    ("{action: omit}", "Action", "2026-09-01T09:00:00Z"),
    ("{security: expired}", None, "2026-09-01T08:00:00Z"),
    ("{security: future}", None, "2026-09-01T10:00:00Z"),
    ("{security: omit}", None, None),
])
def test_envelope_changes(tmp_path: Path, envelope: str, missing: str | None,
                          created: str | None) -> None:
    endpoint = Endpoint(500, _fault())
    _run(tmp_path, f"""\
        - name: changed
          operation: verifyNHSNumber-v1-0
          envelope: {envelope}
          body: <x xmlns="urn:example"/>
          expect: {{fault: Client}}
        """, endpoint)
    header = endpoint.envelope().find(f"{{{SOAP11_NS}}}Header")
    assert header is not None
    if missing:
        assert header.find(f"{{{WSA_NS}}}{missing}") is None
    assert header.findtext(f".//{{{WSU_NS}}}Created") == created


def test_fault_checks_pass_and_fail_with_clear_messages(tmp_path: Path) -> None:
    endpoint = Endpoint(500, _fault("9999"))
    result = _run(tmp_path, """\
        - name: fault
          operation: verifyNHSNumber-v1-0
          body: <x xmlns="urn:example"/>
          expect: {fault: Client, code: "2200"}
        """, endpoint)
    outcomes = {a.label: (a.result, a.message) for a in result.tests[0].actions}
    assert outcomes["HTTP 500"] == ("pass", "HTTP 500")
    assert outcomes["faultcode Client"] == ("pass", "faultcode Client")
    assert outcomes["the documented fault detail"][0] == "pass"
    assert outcomes["a documented fault code"] == ("fail", "code 9999 is not documented")
    assert outcomes["fault code 2200"] == ("fail", "code 9999")
    assert outcomes["wsa:RelatesTo is the request's MessageID"] == (
        "fail", "wsa:RelatesTo is missing or names another message")
    assert result.tests[0].result == "fail"


def test_a_success_where_a_fault_is_due_fails(tmp_path: Path) -> None:
    endpoint = Endpoint(200, f'<soap:Envelope xmlns:soap="{SOAP11_NS}"><soap:Body>'
                             '<ok xmlns="urn:example"/></soap:Body></soap:Envelope>'.encode())
    result = _run(tmp_path, """\
        - name: no security
          operation: verifyNHSNumber-v1-0
          envelope: {security: omit}
          body: <x xmlns="urn:example"/>
          expect: {fault: Client, code: "2200"}
        """, endpoint)
    failed = {a.label: a.message for a in result.tests[0].actions if a.result == "fail"}
    assert failed == {"HTTP 500": "HTTP 200",
                      "a SOAP Fault (Client)": "the body is not a soap:Fault"}


def test_unknown_check_keys_are_skipped_with_the_reason(tmp_path: Path) -> None:
    endpoint = Endpoint()
    result = _run(tmp_path, """\
        - name: later
          operation: verifyNHSNumber-v1-0
          mtom: true
          body: <x/>
        - name: odd expectation
          operation: verifyNHSNumber-v1-0
          body: <x/>
          expect: {latency_ms: 10}
        """, endpoint)
    assert [t.result for t in result.tests] == ["skip", "skip"]
    assert "uses mtom" in result.tests[0].actions[0].message
    assert "uses expect.latency_ms" in result.tests[1].actions[0].message
    assert endpoint.received == []


def test_an_unknown_operation_or_variable_is_an_error(tmp_path: Path) -> None:
    result = _run(tmp_path, """\
        - name: no such operation
          operation: notInTheWsdl
          body: <x/>
        - name: no such variable
          operation: verifyNHSNumber-v1-0
          body: <x>${nobody}</x>
        """, Endpoint())
    messages = [t.actions[0].message for t in result.tests]
    assert messages == ["operation notInTheWsdl is not in the WSDL",
                        "variable ${nobody} has no value"]
    assert all(t.result == "error" for t in result.tests)


@pytest.mark.parametrize(("text", "message"), [
    ("kind: other\n", "is not a SOAP contract suite"),
    ("kind: soap-contract\nservice: {path: /x}\nchecks: [{wsdl: true}]\n",
     "service needs a path and a wsdl"),
    ("kind: soap-contract\nservice: {path: /x, wsdl: connectors.pds:wsdl/pds.wsdl}\n",
     "the suite has no checks"),
    ("kind: soap-contract\nextras: 1\n", "unknown top-level keys extras"),
    ("kind: soap-contract\nservice: {path: /x, wsdl: missing.wsdl}\nchecks: [{wsdl: true}]\n",
     "cannot read XML file"),
])
def test_load_contract_refuses_broken_suites(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(SuiteInvalid, match=message):
        load_contract(path)
