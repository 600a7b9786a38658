"""Inbound CP-IS notifications: the mock pushes, the gateway verifies, stores once, acknowledges;
anything bad or hostile gets a SOAP Fault and stores nothing."""
from __future__ import annotations

import datetime as dt
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from flask import Flask
from flask.testing import FlaskClient
from lxml import etree
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from connectors.cpis import Accessor, CpisAccess
from connectors.cpis.notifications import build_access_notification
from connectors.mockserver import HOSTILE_VARIANTS, hostile_document
from connectors.soap import xml
from connectors.soap.wsse import add_security_header, sign_envelope
from gateway import create_app
from gateway.config import Settings
from tests.conftest import (
    FhirActions,
    LiveServer,
    bearer,
    clean_database,
    client_as,
    make_patient,
)

INBOUND = "/inbound/cpis/notifications"
ACTION = "urn:wraparound:spine:cpis:1:accessToServiceNotification"
URI = "urn:ietf:rfc:3986"
SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
CPIS_NS = "urn:wraparound:spine:cpis:1"
ACCESS = CpisAccess(dt.datetime(2026, 9, 1, 9, 30, tzinfo=dt.UTC),
                    Accessor("555000111222", "Dr Test Clinician", "ED doctor", "RGT01",
                             "Synthetic Hospital"), "Emergency department")


def notification(message_id: str, nhs: str = "9990043094", *, username: str | None = "cpis-mock",
                 password: str | None = None, created: dt.datetime | None = None,
                 keys: tuple[bytes, bytes] | None = None) -> bytes:
    """Return an access-to-service notification as the spine would send it."""
    envelope = build_access_notification(
        notification_id=message_id, nhs_number=nhs, local_id="C0001",
        local_authority_ods_code="LA926", plan_types=("CPP",), access=ACCESS,
        to="http://gateway.test" + INBOUND)
    add_security_header(envelope, username=username, password=password,
                        created=created or dt.datetime.now(dt.UTC))
    if keys is not None:
        sign_envelope(envelope, private_key_pem=keys[0], certificate_pem=keys[1])
    return xml.to_bytes(envelope)


def post(client: FlaskClient, body: bytes, *, action: str = ACTION,
         content_type: str = "text/xml; charset=utf-8") -> Any:
    return client.post(INBOUND, data=body,
                       headers={"Content-Type": content_type, "SOAPAction": f'"{action}"'})


def ack_status(resp: Any) -> str:
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.mimetype == "text/xml"
    root = etree.fromstring(resp.get_data(), etree.XMLParser(resolve_entities=False))
    return str(root.findtext(f".//{{{CPIS_NS}}}status"))


def assert_fault(resp: Any, code: str = "Client") -> None:
    assert resp.status_code == 500
    assert resp.mimetype == "text/xml"
    root = etree.fromstring(resp.get_data(), etree.XMLParser(resolve_entities=False))
    fault = root.find(f"{{{SOAP_NS}}}Body/{{{SOAP_NS}}}Fault")
    assert fault is not None
    assert fault.findtext("faultcode") == f"soap:{code}"


def communications(client: FlaskClient, message_id: str) -> list[dict[str, Any]]:
    bundle = client.get(f"/fhir/Communication?identifier={URI}|urn:uuid:{message_id.lower()}"
                        ).get_json()
    return [e["resource"] for e in bundle.get("entry", [])]


@pytest.fixture
def make_app(settings: Settings) -> Iterator[Callable[..., Flask]]:
    """Build another gateway app on the same database with some settings changed."""
    apps: list[Flask] = []

    def build(**changes: Any) -> Flask:
        app = create_app(settings.replace(**changes))
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.extensions["wraparound"].audit.flush()
        app.extensions["wraparound"].store.dispose()


def _keypair(name: str) -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA256()))
    return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()),
            cert.public_bytes(serialization.Encoding.PEM))


@pytest.fixture(scope="module")
def spine_keys() -> tuple[bytes, bytes]:
    return _keypair("cpis-test-spine")


@pytest.fixture(scope="module")
def attacker_keys() -> tuple[bytes, bytes]:
    return _keypair("attacker")


def _wait(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# -- end to end with the mock -----------------------------------------------------------------
def _delivered(mock: str) -> list[dict[str, Any]]:
    state = requests.get(f"{mock}/admin/services/cpis", timeout=5).json()
    return [n for n in state["notifications"] if n["status"] == "delivered"]


def test_mock_pushes_and_the_gateway_stores_the_notification(
        app: Flask, client: FlaskClient, fhir: FhirActions, auditor: FlaskClient,
        live_server: LiveServer, mock: str, seed: dict[str, Any]) -> None:
    plan = seed["cpis"]["plans"][0]
    child = fhir.created(make_patient(plan["nhs_number"]))
    requests.post(f"{mock}/admin/services/cpis/config", timeout=5,
                  json={"callback_url": live_server.url + INBOUND}).raise_for_status()
    # An emergency department looks the child up through the gateway: an unscheduled access.
    ed = client_as(app, "health", **{"X-Access-Type": "unscheduled",
                                     "X-Care-Setting": "Emergency department"})
    assert ed.get(f"/national/cpis/Flag?nhs-number={plan['nhs_number']}").status_code == 200
    _wait(lambda: len(_delivered(mock)) == 1)
    (sent,) = _delivered(mock)
    assert (sent["attempts"], sent["http_status"]) == (1, 200)

    bundle = client.get(f"/fhir/Communication?patient=Patient/{child['id']}").get_json()
    assert bundle["total"] == 1
    (communication,) = [e["resource"] for e in bundle["entry"]]
    assert communications(client, sent["id"]) == [communication]
    assert communication["recipient"][0]["identifier"]["value"] == \
        seed["cpis"]["local_authority"]["ods_code"]
    assert "Emergency department" in communication["payload"][0]["contentString"]
    event_ref = communication["about"][0]["reference"]
    event = auditor.get(f"/fhir/{event_ref}").get_json()
    assert event["resourceType"] == "AuditEvent"
    assert event["entity"][0]["what"]["reference"] == f"Patient/{child['id']}"
    assert event["agent"][0]["who"]["identifier"]["value"] == "dev:health"
    assert event["agent"][0]["location"]["display"] == "Emergency department"
    # The notification is the local authority's: health does not see it.
    health = client_as(app, "health")
    assert health.get(f"/fhir/Communication?patient=Patient/{child['id']}").get_json()["total"] == 0


@pytest.fixture
def resending_proxy(live_server: LiveServer) -> Iterator[tuple[str, list[str]]]:
    """A hop that delivers every message it gets to the gateway twice (a re-send)."""
    acks: list[str] = []

    @Request.application  # type: ignore[misc]
    def proxy(request: Request) -> Response:
        body = request.get_data()
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() in ("content-type", "soapaction")}
        last = None
        for _ in range(2):
            last = requests.post(live_server.url + INBOUND, data=body, headers=headers,
                                 timeout=10)
            root = etree.fromstring(last.content, etree.XMLParser(resolve_entities=False))
            acks.append(str(root.findtext(f".//{{{CPIS_NS}}}status")))
        assert last is not None
        return Response(last.content, status=last.status_code,
                        content_type=last.headers["Content-Type"])

    server = make_server("127.0.0.1", 0, proxy, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}{INBOUND}", acks
    server.shutdown()
    server.server_close()
    thread.join()


def test_a_resent_notification_is_acknowledged_and_stored_once(
        app: Flask, client: FlaskClient, mock: str, seed: dict[str, Any],
        resending_proxy: tuple[str, list[str]]) -> None:
    url, acks = resending_proxy
    plan = seed["cpis"]["plans"][1]  # no local Patient: stored with the NHS number only
    requests.post(f"{mock}/admin/services/cpis/config", json={"callback_url": url},
                  timeout=5).raise_for_status()
    ed = client_as(app, "health", **{"X-Access-Type": "unscheduled"})
    assert ed.get(f"/national/cpis/Flag?nhs-number={plan['nhs_number']}").status_code == 200
    _wait(lambda: len(_delivered(mock)) == 1)
    assert acks == ["accepted", "duplicate"]
    (sent,) = _delivered(mock)
    (communication,) = communications(client, sent["id"])
    assert communication["subject"] == {"identifier": {
        "system": "https://fhir.nhs.uk/Id/nhs-number", "value": plan["nhs_number"]}}
    assert client.get("/fhir/Communication?_summary=count").get_json()["total"] == 1


# -- direct posts -----------------------------------------------------------------------------
def test_a_notification_is_stored_once_and_acknowledged(client: FlaskClient,
                                                        anonymous: FlaskClient) -> None:
    message_id = str(uuid.uuid4()).upper()
    body = notification(message_id)
    assert ack_status(post(anonymous, body)) == "accepted"
    assert ack_status(post(anonymous, body)) == "duplicate"
    (communication,) = communications(client, message_id)
    assert communication["status"] == "completed"
    assert communication["subject"]["identifier"]["value"] == "9990043094"


def test_the_same_notification_at_once_is_stored_once(client: FlaskClient,
                                                      live_server: LiveServer) -> None:
    message_id = str(uuid.uuid4()).upper()
    body = notification(message_id)
    statuses: list[str] = []
    barrier = threading.Barrier(4)

    def send() -> None:
        barrier.wait()
        resp = requests.post(live_server.url + INBOUND, data=body, timeout=30, headers={
            "Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{ACTION}"'})
        root = etree.fromstring(resp.content, etree.XMLParser(resolve_entities=False))
        statuses.append(f"{resp.status_code} {root.findtext(f'.//{{{CPIS_NS}}}status')}")

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == ["200 accepted", "200 duplicate", "200 duplicate",
                                "200 duplicate"]
    assert len(communications(client, message_id)) == 1


@pytest.mark.parametrize("variant", HOSTILE_VARIANTS)
def test_hostile_xml_is_refused_with_a_fault(anonymous: FlaskClient, client: FlaskClient,
                                             variant: str, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CANARY")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(0.2)
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/canary.dtd"
        resp = post(anonymous, hostile_document(variant, url, str(secret)))
        assert_fault(resp)
        assert b"TOP-SECRET-CANARY" not in resp.get_data()
        with pytest.raises(OSError):
            listener.accept()[0].close()  # nobody connected to the canary
    finally:
        listener.close()
    assert client.get("/fhir/Communication?_summary=count").get_json()["total"] == 0


@pytest.mark.parametrize(("body", "kwargs"), [
    pytest.param(b"", {}, id="empty"),
    pytest.param(b"not xml at all", {}, id="not-xml"),
    pytest.param(b"<a><b></a>", {}, id="malformed"),
    pytest.param(b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">'
                 b"<soap:Body><x/></soap:Body></soap:Envelope>", {}, id="not-a-notification"),
    pytest.param(None, {"action": "urn:other:action"}, id="wrong-soapaction"),
    pytest.param(None, {"content_type": "application/json"}, id="wrong-media-type"),
])
def test_bad_messages_get_a_fault(anonymous: FlaskClient, body: bytes | None,
                                  kwargs: dict[str, str]) -> None:
    assert_fault(post(anonymous, body if body is not None else notification("M-1"), **kwargs))


def test_a_stale_timestamp_is_refused(anonymous: FlaskClient) -> None:
    old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    assert_fault(post(anonymous, notification(str(uuid.uuid4()), created=old)))


def test_an_oversized_message_is_refused_unread(anonymous: FlaskClient) -> None:
    assert_fault(post(anonymous, b"<x>" + b"A" * 1_100_000 + b"</x>"))


def test_other_methods_get_an_outcome_not_html(anonymous: FlaskClient) -> None:
    resp = anonymous.get(INBOUND)
    assert resp.status_code == 405
    assert resp.get_json()["resourceType"] == "OperationOutcome"


def test_the_configured_username_token_is_required(make_app: Callable[..., Flask]) -> None:
    app = make_app(cpis_inbound_username="cpis-mock", cpis_inbound_password="s3cret")
    anonymous = app.test_client()
    assert_fault(post(anonymous, notification(str(uuid.uuid4()), username="intruder",
                                              password="s3cret")))
    assert_fault(post(anonymous, notification(str(uuid.uuid4()), password="wrong")))
    assert_fault(post(anonymous, notification(str(uuid.uuid4()), password=None)))
    assert_fault(post(anonymous, notification(str(uuid.uuid4()), username=None)))
    assert ack_status(post(anonymous, notification(str(uuid.uuid4()), password="s3cret"))) \
        == "accepted"


def test_a_required_signature_without_a_certificate_refuses_everything(
        make_app: Callable[..., Flask]) -> None:
    app = make_app(cpis_inbound_require_signature=True)
    assert_fault(post(app.test_client(), notification(str(uuid.uuid4()))))


def test_signed_notifications_are_verified_against_the_configured_certificate(
        make_app: Callable[..., Flask], tmp_path: Path, spine_keys: tuple[bytes, bytes],
        attacker_keys: tuple[bytes, bytes]) -> None:
    pem = tmp_path / "spine.pem"
    pem.write_bytes(spine_keys[1])
    app = make_app(cpis_inbound_cert=pem)
    anonymous = app.test_client()
    assert_fault(post(anonymous, notification(str(uuid.uuid4()))))  # unsigned
    assert_fault(post(anonymous, notification(str(uuid.uuid4()), keys=attacker_keys)))
    message_id = str(uuid.uuid4()).upper()
    assert ack_status(post(anonymous, notification(message_id, keys=spine_keys))) == "accepted"
    reader = app.test_client()
    reader.environ_base["HTTP_AUTHORIZATION"] = bearer(app)
    assert len(communications(reader, message_id)) == 1


def test_refused_notifications_are_audited(app: Flask, anonymous: FlaskClient,
                                           auditor: FlaskClient) -> None:
    resp = anonymous.post(INBOUND, data=b"<x/>", headers={
        "Content-Type": "text/xml", "X-Request-ID": "inbound-refused-1"})
    assert_fault(resp)
    app.extensions["wraparound"].audit.flush()
    events = auditor.get("/fhir/AuditEvent?_count=100").get_json().get("entry", [])
    matching = [e["resource"] for e in events if "inbound-refused-1" in str(e["resource"])]
    assert len(matching) == 1
    assert matching[0]["outcome"] == "8"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Store notifications on both databases."""
    return clean_database(request, tmp_path, request.param)
