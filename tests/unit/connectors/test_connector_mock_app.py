"""The mock national server as a Flask app (test client, no sockets): routing, checks, admin."""

from __future__ import annotations

import datetime as dt
import importlib.util
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from lxml import etree

from connectors.errors import ConnectorError
from connectors.mockserver import HOSTILE_VARIANTS, create_mock_app, hostile_document
from connectors.soap import xml

ROOT = Path(__file__).resolve().parents[3]
SOAP = "{http://schemas.xmlsoap.org/soap/envelope/}"
WSU = "{http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd}"
WSA = "{http://www.w3.org/2005/08/addressing}"
ITK = "{urn:nhs-itk:ns:201005}"
PDS_ACTION = "urn:nhs-itk:services:201005:getPatientDetailsByNHSNumber-v1-0"


@pytest.fixture(scope="module")
def app() -> Flask:
    return create_mock_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def fresh(
    data: bytes, *, offset: dt.timedelta = dt.timedelta(0), message_id: str | None = None
) -> bytes:
    """Return a canned request with a current Timestamp (and optionally another MessageID)."""
    root = xml.parse(data)
    now = dt.datetime.now(dt.UTC) + offset
    root.find(f".//{WSU}Created").text = now.strftime("%Y-%m-%dT%H:%M:%SZ")  # type: ignore[union-attr]
    expires = now + dt.timedelta(minutes=5)
    root.find(f".//{WSU}Expires").text = expires.strftime("%Y-%m-%dT%H:%M:%SZ")  # type: ignore[union-attr]
    if message_id is not None:
        root.find(f".//{WSA}MessageID").text = message_id  # type: ignore[union-attr]
    return xml.to_bytes(root)


def post(
    client: FlaskClient, path: str, body: bytes, action: str, **headers: str
) -> tuple[int, etree._Element | None]:
    response = client.post(
        path,
        data=body,
        headers={"SOAPAction": f'"{action}"', **headers},
        content_type=headers.pop("content_type", "text/xml; charset=utf-8"),
    )
    try:
        return response.status_code, xml.parse(response.data)
    except ConnectorError:
        return response.status_code, None


def _itk_error_code(envelope: etree._Element | None) -> str | None:
    assert envelope is not None
    assert envelope.find(f"{SOAP}Body/{SOAP}Fault") is not None
    return envelope.findtext(f".//{ITK}ErrorCode")


def test_health_lists_every_registered_service(client: FlaskClient) -> None:
    data = client.get("/health").get_json()
    assert data["services"] == {
        "pds": "/spine/pds",
        "cpis": "/spine/cpis",
        "contactpoint": "/contactpoint",
        "ecaf": "/ecaf",
    }


@pytest.mark.parametrize("path", ["/spine/pds", "/spine/cpis", "/contactpoint", "/ecaf"])
def test_each_service_serves_its_wsdl(client: FlaskClient, path: str) -> None:
    response = client.get(f"{path}?wsdl")
    assert response.status_code == 200
    wsdl = xml.parse(response.data)
    assert wsdl.tag == "{http://schemas.xmlsoap.org/wsdl/}definitions"
    locations = [
        a.get("location") for a in wsdl.iter("{http://schemas.xmlsoap.org/wsdl/soap/}address")
    ]
    assert all(loc and loc.endswith(path) for loc in locations)


def test_schemas_are_served_by_name_only(client: FlaskClient) -> None:
    assert client.get("/spine/pds?xsd=itk.xsd").status_code == 200
    assert client.get("/spine/pds?xsd=../../../etc/passwd").status_code == 404
    assert client.get("/spine/pds").status_code == 404


def test_pds_answers_a_valid_request(client: FlaskClient, canned: Callable[[str], bytes]) -> None:
    status, envelope = post(
        client,
        "/spine/pds",
        fresh(canned("pds/getPatientDetailsByNHSNumber.request.xml")),
        PDS_ACTION,
    )
    assert status == 200 and envelope is not None
    assert envelope.findtext(f"{SOAP}Header/{WSA}Action") == PDS_ACTION + "Response"
    assert (
        envelope.findtext(f"{SOAP}Header/{WSA}RelatesTo") == "00000000-0000-4000-8000-000000000004"
    )
    header = envelope.find(f".//{ITK}header")
    assert header is not None and header.get("service") == PDS_ACTION + "Response"


@pytest.mark.parametrize(
    ("mutation", "code"),
    [
        ("no-message-id", "1000"),
        ("action-mismatch", "1000"),
        ("expired-timestamp", "3000"),
        ("no-security", "3000"),
        ("service-mismatch", "1000"),
        ("schema-invalid-envelope", "2200"),
    ],
)
def test_pds_refuses_bad_envelopes_with_toolkit_faults(
    mutation: str, code: str, client: FlaskClient, canned: Callable[[str], bytes]
) -> None:
    offset = dt.timedelta(hours=-1) if mutation == "expired-timestamp" else dt.timedelta(0)
    root = xml.parse(fresh(canned("pds/getPatientDetailsByNHSNumber.request.xml"), offset=offset))
    if mutation == "no-message-id":
        node = root.find(f".//{WSA}MessageID")
        node.getparent().remove(node)  # type: ignore[union-attr]
    if mutation == "action-mismatch":
        root.find(f".//{WSA}Action").text = "urn:nhs-itk:services:201005:verifyNHSNumber-v1-0"  # type: ignore[union-attr]
    if mutation == "no-security":
        node = root.find(f"{SOAP}Header")[-1]  # type: ignore[index]
        node.getparent().remove(node)
    if mutation == "service-mismatch":
        root.find(f".//{ITK}header").set("service", "urn:other")  # type: ignore[union-attr]
    if mutation == "schema-invalid-envelope":
        manifest = root.find(f".//{ITK}manifest")
        manifest.getparent().remove(manifest)  # type: ignore[union-attr]
    status, envelope = post(client, "/spine/pds", xml.to_bytes(root), PDS_ACTION)
    assert status == 500
    assert _itk_error_code(envelope) == code
    assert envelope is not None and envelope.findtext(f".//{SOAP}Fault/faultcode") == "soap:Client"


def test_pds_answers_invalid_payload_with_smsp_0001(
    client: FlaskClient, canned: Callable[[str], bytes]
) -> None:
    root = xml.parse(fresh(canned("pds/getPatientDetailsByNHSNumber.request.xml")))
    node = root.find(".//{urn:hl7-org:v3}semanticsText")
    node.text = "Person.Wrong"  # type: ignore[union-attr]
    status, envelope = post(client, "/spine/pds", xml.to_bytes(root), PDS_ACTION)
    assert status == 200 and envelope is not None
    value = envelope.find(
        ".//{urn:hl7-org:v3}value[@codeSystem='2.16.840.1.113883.2.1.3.2.4.17.285']"
    )
    assert value is not None and value.get("code") == "SMSP-0001"


@pytest.mark.parametrize("variant", [v for v in HOSTILE_VARIANTS if v != "oversized"])
@pytest.mark.parametrize("path", ["/spine/pds", "/spine/cpis"])
def test_hostile_requests_get_a_client_fault(client: FlaskClient, path: str, variant: str) -> None:
    action = PDS_ACTION if path == "/spine/pds" else "urn:wraparound:spine:cpis:1:getAccessHistory"
    status, envelope = post(client, path, hostile_document(variant), action)
    assert status == 500 and envelope is not None
    assert envelope.findtext(f".//{SOAP}Fault/faultcode") == "soap:Client"


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b"<a>" + b"x" * 1_100_000 + b"</a>", {}),
        (b"<a/>", {"content_type": "application/json"}),
        (b"<a/>", {"Content-Encoding": "gzip"}),
    ],
)
def test_transport_level_refusals(
    client: FlaskClient, body: bytes, headers: dict[str, str]
) -> None:
    status, _ = post(client, "/spine/pds", body, PDS_ACTION, **headers)
    assert status in (413, 500)


@pytest.mark.parametrize("path", ["/contactpoint", "/ecaf"])
def test_index_and_assessment_store_refuse_unknown_actions(client: FlaskClient, path: str) -> None:
    status, envelope = post(
        client,
        path,
        b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><x/></s:Body></s:Envelope>',
        "urn:any",
    )
    assert status == 500 and envelope is not None
    assert envelope.findtext(f".//{SOAP}Fault/faultcode") == "soap:Client"


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({"service": "pds", "kind": "latency", "seconds": 0.01}, 201),
        ({"service": "pds", "kind": "explode"}, 400),
        ({"service": "nowhere", "kind": "latency"}, 400),
        ({"service": "pds", "kind": "hostile", "variant": "unknown"}, 400),
        ({"service": "pds", "kind": "http_error", "status": 418}, 400),
        ({"service": "pds", "kind": "soap_fault", "fault_code": "Sideways"}, 400),
        (["not", "an", "object"], 400),
    ],
)
def test_admin_fault_validation(client: FlaskClient, payload: object, status: int) -> None:
    assert client.post("/admin/faults", json=payload).status_code == status
    client.delete("/admin/faults")


def test_admin_faults_list_consume_and_clear(
    client: FlaskClient, canned: Callable[[str], bytes]
) -> None:
    client.post(
        "/admin/faults", json={"service": "pds", "kind": "http_error", "status": 503, "times": 1}
    )
    assert len(client.get("/admin/faults").get_json()) == 1
    body = fresh(canned("pds/getPatientDetailsByNHSNumber.request.xml"))
    assert post(client, "/spine/pds", body, PDS_ACTION)[0] == 503
    assert client.get("/admin/faults").get_json() == []
    assert post(client, "/spine/pds", body, PDS_ACTION)[0] == 200
    client.post("/admin/faults", json={"service": "pds", "kind": "malformed"})
    assert client.delete("/admin/faults").get_json() == {"removed": 1}


def test_admin_state_and_config(client: FlaskClient) -> None:
    assert client.get("/admin/services/pds").get_json()["records"] > 250
    assert client.get("/admin/services/nope").status_code == 404
    bad = client.post("/admin/services/cpis/config", json={"callback_url": "ftp://x"})
    assert bad.status_code == 400
    ok = client.post("/admin/services/cpis/config", json={"callback_url": None})
    assert ok.status_code == 200
    assert client.post("/admin/services/pds/config", json={}).status_code == 404


def test_seed_files_are_up_to_date() -> None:
    spec = importlib.util.spec_from_file_location(
        "national_build", ROOT / "fixtures" / "national" / "build.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--check"]) == 0
