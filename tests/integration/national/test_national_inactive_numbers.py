"""CP-IS inactive NHS numbers and unborn child plans end to end.

Inactive NHS numbers: the mock spine is told (admin control) that NHS numbers on the local
authority's plans are no longer current in PDS; it pushes an inactive-NHS-number notification to
the gateway's inbound endpoint, which verifies it, stores a Flag per number on the child and a
Communication to the local authority once per MessageID, and acknowledges it. Unborn child
plans: uploaded under the mother's NHS number with the expected delivery date, answered through
the CP-IS façade.
"""

from __future__ import annotations

import datetime as dt
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from lxml import etree

from connectors.cpis import InactiveNhsNumber, LocalAuthority, UploadRecord, build_cpis_client
from connectors.cpis.mock import MAX_NOTIFICATION_RECORDS
from connectors.cpis.notifications import (
    build_access_notification,
    build_inactive_nhs_number_notification,
)
from connectors.mockserver import HOSTILE_VARIANTS, hostile_document
from connectors.soap import SoapSettings, xml
from connectors.soap.wsse import add_security_header
from gateway.fhir.validation import validate_resource
from tests.conftest import FhirActions, LiveServer, client_as, make_patient
from tests.integration.connectors.test_mock_cpis_http import valid_nhs_numbers
from tests.integration.national.test_national_inbound import ACCESS

INBOUND = "/inbound/cpis/notifications"
INACTIVE = "urn:wraparound:spine:cpis:1:inactiveNhsNumberNotification"
ACCESS_ACTION = "urn:wraparound:spine:cpis:1:accessToServiceNotification"
URI = "urn:ietf:rfc:3986"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
CPIS_NS = "urn:wraparound:spine:cpis:1"
WSA = "{http://www.w3.org/2005/08/addressing}"
MESSAGE_TYPES = "urn:oid:2.16.840.1.113883.2.1.3.2.4.17.470"
SNOMED = "http://snomed.info/sct"
REPLACEMENT = "9990128383"
LA = LocalAuthority("LA926", "Norfolk County Council (synthetic)", "01632 960100", "01632 960199")


def _errors(resource: dict[str, Any]) -> list[Any]:
    return [
        i
        for i in validate_resource(resource, resource["resourceType"])
        if i.severity in ("error", "fatal")
    ]


def inactive(
    message_id: str, records: tuple[InactiveNhsNumber, ...], *, action: str | None = None
) -> bytes:
    envelope = build_inactive_nhs_number_notification(
        notification_id=message_id,
        local_authority_ods_code="LA926",
        notified_at=dt.datetime.now(dt.UTC),
        records=records,
        to="http://gateway.test" + INBOUND,
    )
    if action is not None:
        envelope.find(f".//{WSA}Action").text = action
    add_security_header(envelope, username="cpis-mock", created=dt.datetime.now(dt.UTC))
    return xml.to_bytes(envelope)


def post(client: FlaskClient, body: bytes, action: str = INACTIVE) -> Any:
    return client.post(
        INBOUND,
        data=body,
        headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{action}"'},
    )


def reply(resp: Any) -> etree._Element:
    assert resp.mimetype == "text/xml"
    return etree.fromstring(resp.get_data(), etree.XMLParser(resolve_entities=False))


def assert_fault(resp: Any) -> None:
    assert resp.status_code == 500
    fault = reply(resp).find(f"{{{SOAP_NS}}}Body/{{{SOAP_NS}}}Fault")
    assert fault is not None and fault.findtext("faultcode") == "soap:Client"


def by_message(client: FlaskClient, res_type: str, message_id: str) -> list[dict[str, Any]]:
    bundle = client.get(
        f"/fhir/{res_type}?identifier={URI}|urn:uuid:{message_id.lower()}"
    ).get_json()
    return [e["resource"] for e in bundle.get("entry", [])]


def count(client: FlaskClient, res_type: str) -> int:
    return int(client.get(f"/fhir/{res_type}?_summary=count").get_json()["total"])


def _wait(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _sent(mock: str, kind: str) -> list[dict[str, Any]]:
    state = requests.get(f"{mock}/admin/services/cpis", timeout=5).json()
    return [n for n in state["notifications"] if n.get("kind") == kind]


# -- end to end with the mock -----------------------------------------------------------------
def test_the_mock_pushes_inactive_numbers_and_the_gateway_flags_the_child(
    client: FlaskClient, fhir: FhirActions, live_server: LiveServer, mock: str, seed: dict[str, Any]
) -> None:
    first, second = seed["cpis"]["plans"][:2]
    child = fhir.created(make_patient(first["nhs_number"]))
    requests.post(
        f"{mock}/admin/services/cpis/config",
        timeout=5,
        json={"callback_url": live_server.url + INBOUND},
    ).raise_for_status()
    resp = requests.post(
        f"{mock}/admin/services/cpis/control/inactive-nhs-numbers",
        timeout=5,
        json={
            "nhs_numbers": [first["nhs_number"], second["nhs_number"]],
            "replacements": {first["nhs_number"]: REPLACEMENT},
        },
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["nhs_numbers"] == 2
    (message_id,) = resp.json()["notifications"]  # one local authority holds both plans
    _wait(lambda: [n["status"] for n in _sent(mock, "inactive-nhs-number")] == ["delivered"])
    (sent,) = _sent(mock, "inactive-nhs-number")
    assert (sent["id"], sent["attempts"], sent["http_status"]) == (message_id, 1, 200)

    (communication,) = by_message(client, "Communication", message_id)
    flags = {f["id"]: f for f in by_message(client, "Flag", message_id)}
    assert len(flags) == 2
    assert _errors(communication) == [] and all(_errors(f) == [] for f in flags.values())
    assert [c["code"] for c in communication["category"][0]["coding"]] == ["06"]
    assert {a["reference"] for a in communication["about"]} == {f"Flag/{i}" for i in flags}
    assert (
        communication["recipient"][0]["identifier"]["value"]
        == seed["cpis"]["local_authority"]["ods_code"]
    )
    assert "subject" not in communication  # two children: each Flag names its own

    on_child = client.get(f"/fhir/Flag?patient=Patient/{child['id']}").get_json()
    (flag,) = [e["resource"] for e in on_child["entry"]]
    assert flag["id"] in flags and flag["status"] == "active"
    assert flag["code"]["coding"][0]["system"] == MESSAGE_TYPES
    assert f"superseded by NHS number {REPLACEMENT}" in flag["code"]["text"]
    assert first["local_id"] in flag["code"]["text"]
    (other,) = [f for f in flags.values() if f["id"] != flag["id"]]
    assert other["subject"] == {"identifier": {"system": NHS, "value": second["nhs_number"]}}
    assert "no longer active in PDS" in other["code"]["text"]


def test_the_control_names_nothing_when_every_number_is_current(mock: str) -> None:
    resp = requests.post(f"{mock}/admin/services/cpis/control/inactive-nhs-numbers", timeout=5)
    assert resp.status_code == 200
    assert resp.json() == {"notifications": [], "nhs_numbers": 0}  # the seeds are all current
    assert _sent(mock, "inactive-nhs-number") == []


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("cpis/control/no-such-control", {}, 400),
        ("cpis/control/inactive-nhs-numbers", {"nhs_numbers": "9990197768"}, 400),
        ("cpis/control/inactive-nhs-numbers", {"replacements": {"9990197768": "123"}}, 400),
        ("pds/control/inactive-nhs-numbers", {}, 404),
    ],
)
def test_the_control_refuses_bad_requests(
    mock: str, path: str, body: dict[str, Any], status: int
) -> None:
    resp = requests.post(f"{mock}/admin/services/{path}", json=body, timeout=5)
    assert resp.status_code == status
    assert "error" in resp.json()


# -- direct posts -----------------------------------------------------------------------------
def test_an_inactive_notification_is_stored_once_and_acknowledged(
    client: FlaskClient, anonymous: FlaskClient
) -> None:
    message_id = str(uuid.uuid4()).upper()
    body = inactive(message_id, (InactiveNhsNumber("9990043094", "C0001", ("CPP",), "inactive"),))
    statuses = []
    for _ in range(2):
        resp = post(anonymous, body)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        root = reply(resp)
        assert root.findtext(f".//{WSA}Action") == INACTIVE + "Response"
        assert root.findtext(f".//{WSA}RelatesTo") == message_id
        statuses.append(root.findtext(f".//{{{CPIS_NS}}}status"))
    assert statuses == ["accepted", "duplicate"]
    (communication,) = by_message(client, "Communication", message_id)
    (flag,) = by_message(client, "Flag", message_id)
    assert (
        communication["subject"]
        == flag["subject"]
        == {"identifier": {"system": NHS, "value": "9990043094"}}
    )
    assert (count(client, "Flag"), count(client, "Communication")) == (1, 1)


def test_an_inactive_notification_at_the_schema_limit_is_stored(
    client: FlaskClient, anonymous: FlaskClient
) -> None:
    numbers = valid_nhs_numbers(MAX_NOTIFICATION_RECORDS)
    message_id = str(uuid.uuid4())
    records = tuple(InactiveNhsNumber(n, None, ("CPP",), "inactive") for n in numbers)
    resp = post(anonymous, inactive(message_id, records))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert reply(resp).findtext(f".//{{{CPIS_NS}}}status") == "accepted"
    assert (count(client, "Flag"), count(client, "Communication")) == (len(numbers), 1)


@pytest.mark.parametrize(
    "case",
    ["access-payload-inactive-action", "inactive-payload-access-action", "soapaction-disagrees"],
)
def test_a_notification_whose_action_and_payload_disagree_is_refused(
    client: FlaskClient, anonymous: FlaskClient, case: str
) -> None:
    records = (InactiveNhsNumber("9990043094", None, ("LAC",), "inactive"),)
    if case == "access-payload-inactive-action":
        envelope = build_access_notification(
            notification_id="N-1",
            nhs_number="9990043094",
            local_id=None,
            local_authority_ods_code="LA926",
            plan_types=("CPP",),
            access=ACCESS,
            to="http://gateway.test" + INBOUND,
        )
        envelope.find(f".//{WSA}Action").text = INACTIVE
        add_security_header(envelope, username="cpis-mock", created=dt.datetime.now(dt.UTC))
        resp = post(anonymous, xml.to_bytes(envelope))
    elif case == "inactive-payload-access-action":
        resp = post(anonymous, inactive("N-2", records, action=ACCESS_ACTION), ACCESS_ACTION)
    else:
        resp = post(anonymous, inactive("N-3", records), ACCESS_ACTION)
    assert_fault(resp)
    assert (count(client, "Flag"), count(client, "Communication")) == (0, 0)


@pytest.mark.parametrize("variant", HOSTILE_VARIANTS)
def test_hostile_xml_sent_as_an_inactive_notification_is_refused(
    anonymous: FlaskClient, client: FlaskClient, variant: str, tmp_path: Path
) -> None:
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
    assert (count(client, "Flag"), count(client, "Communication")) == (0, 0)


# -- unborn child plans -----------------------------------------------------------------------
def test_an_unborn_child_plan_is_answered_under_the_mother_with_the_delivery_date(
    app: Flask, mock: str, seed: dict[str, Any]
) -> None:
    plan_numbers = {p["nhs_number"] for p in seed["cpis"]["plans"]}
    mother = next(
        p["nhs_number"]
        for p in seed["pds"]
        if not p["sensitive"] and not p["deceased_date"] and p["nhs_number"] not in plan_numbers
    )
    start, due = dt.date(2026, 7, 1), dt.date(2026, 12, 24)
    cpis = build_cpis_client(SoapSettings(address=f"{mock}/spine/cpis"))
    ack = cpis.upload(
        [
            UploadRecord("U0001", mother, True, "UCPP", start, expected_delivery_date=due),
            UploadRecord("U0002", mother, True, "CPP", start, expected_delivery_date=due),
        ],
        file_sequence_number=1,
        local_authority=LA,
    )
    assert [r.code for r in ack.records] == ["CPR06", "CPR07"]  # a due date is for UCPP only

    health = client_as(app, "health")
    bundle = health.get(f"/national/cpis/Flag?nhs-number={mother}").get_json()
    assert _errors(bundle) == []
    found: dict[str, list[dict[str, Any]]] = {}
    for entry in bundle["entry"]:
        found.setdefault(entry["resource"]["resourceType"], []).append(entry["resource"])
    (flag,), (care_plan,) = found["Flag"], found["CarePlan"]
    assert (SNOMED, "818901000000100") in {(c["system"], c["code"]) for c in flag["code"]["coding"]}
    assert flag["subject"]["identifier"] == {"system": NHS, "value": mother}
    assert (
        flag["subject"]["display"]
        == care_plan["subject"]["display"]
        == "the mother (unborn child's plan)"
    )
    assert care_plan["description"].endswith("expected delivery date 2026-12-24")
    assert care_plan["activity"][0]["detail"]["scheduledPeriod"] == {"start": "2026-12-24"}


def test_a_stored_unborn_child_plan_is_uploaded_with_its_delivery_date(
    client: FlaskClient, fhir: FhirActions, seed: dict[str, Any]
) -> None:
    """$upload reads the due date from the CarePlan activity the facade itself answers with."""
    plan_numbers = {p["nhs_number"] for p in seed["cpis"]["plans"]}
    mother = next(
        p["nhs_number"]
        for p in seed["pds"]
        if not p["sensitive"]
        and not p["deceased_date"]
        and not p["superseded_nhs_numbers"]
        and p["nhs_number"] not in plan_numbers
    )
    verified = {
        "system": NHS,
        "value": mother,
        "extension": [
            {
                "url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus",
                "valueCodeableConcept": {
                    "coding": [
                        {
                            "system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland",
                            "code": "01",
                        }
                    ]
                },
            }
        ],
    }
    patient = fhir.created(make_patient(mother, identifier=[verified]))
    fhir.created(
        {
            "resourceType": "CarePlan",
            "status": "active",
            "intent": "plan",
            "category": [
                {
                    "coding": [
                        {
                            "system": "https://wraparound.example.org/fhir/CodeSystem/cp-plan-type",
                            "code": "UCPP",
                        }
                    ]
                }
            ],
            "subject": {"reference": f"Patient/{patient['id']}"},
            "period": {"start": "2026-06-01"},
            "activity": [
                {
                    "detail": {
                        "kind": "Appointment",
                        "status": "not-started",
                        "code": {"coding": [{"system": "http://loinc.org", "code": "11778-8"}]},
                        "scheduledPeriod": {"start": "2027-01-15"},
                    }
                }
            ],
        }
    )
    resp = client.post(
        "/national/cpis/$upload",
        headers={"Content-Type": "application/fhir+json"},
        json={
            "resourceType": "Parameters",
            "parameter": [
                {"name": "patient", "valueReference": {"reference": f"Patient/{patient['id']}"}}
            ],
        },
    )
    assert resp.status_code == 200, resp.get_json()
    bundle = client.get(f"/national/cpis/Flag?nhs-number={mother}").get_json()
    (care_plan,) = [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "CarePlan"
    ]
    assert care_plan["category"][0]["coding"][0]["code"] == "818901000000100"
    assert care_plan["activity"][0]["detail"]["scheduledPeriod"] == {"start": "2027-01-15"}
    assert care_plan["activity"][0]["detail"]["code"]["coding"][0]["code"] == "11778-8"
