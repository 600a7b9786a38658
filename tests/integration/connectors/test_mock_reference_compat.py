"""Wire compatibility with the published PDS Mini Services interface.

A zeep client built from the REFERENCE WSDL (fixtures/soap/reference-smsp, the published NHS CfH
files) calls our mock for all five operations; every request our client builds and every reply the
mock sends validates against the reference HL7v3 schemas.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import zeep
from lxml import etree

from connectors.pds import messages as m
from connectors.soap import StableWsAddressing, WsSecurity, xml

ROOT = Path(__file__).resolve().parents[3]
REFERENCE = ROOT / "fixtures" / "soap" / "reference-smsp"
REFERENCE_WSDL = REFERENCE / "Schemas" / "wsdl" / "PDSMiniServices-v1-0.wsdl"
HL7_MODELS = [
    "QUPA_MT000001GB01",
    "QUPA_MT000002GB01",
    "QUPA_MT000003GB01",
    "QUPA_MT000004GB01",
    "QUPA_MT000005GB01",
    "COMT_MT000013GB01",
    "COMT_MT000014GB01",
    "COMT_MT000016GB01",
]


@pytest.fixture(scope="module")
def reference_schema(tmp_path_factory: pytest.TempPathFactory) -> etree.XMLSchema:
    """All reference HL7 message models in one schema."""
    includes = "".join(
        f'<xs:include schemaLocation="{(REFERENCE / "Schemas" / f"{name}.xsd").as_uri()}"/>'
        for name in HL7_MODELS
    )
    wrapper = tmp_path_factory.mktemp("reference") / "all.xsd"
    wrapper.write_text(
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns="urn:hl7-org:v3" '
        f'targetNamespace="urn:hl7-org:v3" elementFormDefault="qualified">{includes}</xs:schema>',
        encoding="utf-8",
    )
    return xml.load_schema(str(wrapper))


@pytest.fixture(scope="module")
def reference_client() -> zeep.Client:
    settings = zeep.Settings(
        strict=True,
        forbid_dtd=True,
        forbid_entities=True,
        forbid_external=True,
        xml_huge_tree=False,
    )
    return zeep.Client(
        str(REFERENCE_WSDL),
        settings=settings,
        plugins=[StableWsAddressing("urn:reference-client")],
        wsse=WsSecurity("reference-client"),
    )


def _params(op: m.Operation, patient: dict[str, Any]) -> m.QueryParameters:
    wanted = set(op.parameters)
    return m.QueryParameters(
        birth_date=dt.date.fromisoformat(patient["birth_date"]),
        nhs_number=patient["nhs_number"] if "NHSNumber" in wanted else None,
        gender=patient["gender"] if "Gender" in wanted else None,
        given=patient["given"][0],
        family=patient["family"],
        postcode=patient["address"]["postcode"] if "Postcode" in wanted else None,
    )


@pytest.mark.parametrize("operation", list(m.OPERATIONS), ids=list(m.OPERATIONS))
def test_reference_client_calls_every_operation(
    operation: str,
    reference_client: zeep.Client,
    reference_schema: etree.XMLSchema,
    mock: str,
    seed: dict[str, Any],
) -> None:
    op = m.OPERATIONS[operation]
    patient = next(p for p in seed["pds"] if not p["sensitive"] and not p["superseded_nhs_numbers"])
    payload = m.build_query(
        op, _params(op, patient), message_uuid="0A1B2C3D-0000-4000-8000-000000000001"
    )
    # What our client sends is valid against the published model.
    assert xml.schema_errors(reference_schema, payload) == []
    service = reference_client.create_service(
        f"{{urn:nhs-itk:ns:201005}}{operation}_pttBinding", f"{mock}/spine/pds"
    )
    args = m.distribution_envelope_args(
        op,
        payload,
        tracking_id="0A1B2C3D-0000-4000-8000-000000000002",
        payload_id="uuid_0A1B2C3D-0000-4000-8000-000000000003",
        audit_identity="urn:nhs-uk:identity:ods:LA926:SYS:REFERENCE",
        sender_address=None,
    )
    reply = service[operation](**args)
    assert reply.header.service == op.response_action
    assert reply.header.manifest.manifestitem[0].profileid == op.response_profile
    hl7 = reply.payloads.payload[0]._value_1
    # What the mock answers is valid against the published model too.
    assert xml.schema_errors(reference_schema, hl7) == []
    assert hl7.tag == f"{{urn:hl7-org:v3}}{op.response_element}"
    assert hl7.find("{urn:hl7-org:v3}value").get("code") == "SMSP-0000"


def test_reference_client_gets_a_toolkit_fault(reference_client: zeep.Client, mock: str) -> None:
    service = reference_client.create_service(
        "{urn:nhs-itk:ns:201005}verifyNHSNumber-v1-0_pttBinding", f"{mock}/spine/pds"
    )
    op = m.OPERATIONS["verifyNHSNumber-v1-0"]
    payload = etree.Element("{urn:hl7-org:v3}somethingElse")
    args = m.distribution_envelope_args(
        op,
        payload,
        tracking_id="0A1B2C3D-0000-4000-8000-000000000002",
        payload_id="uuid_1",
        audit_identity=None,
        sender_address=None,
    )
    args["header"]["service"] = "urn:nhs-itk:services:201005:getNHSNumber-v1-0"  # type: ignore[index]
    with pytest.raises(zeep.exceptions.Fault) as info:
        service["verifyNHSNumber-v1-0"](**args)
    assert info.value.code.endswith("Client")
    detail = info.value.detail
    assert detail is not None and detail.findtext(".//{urn:nhs-itk:ns:201005}ErrorCode") == "1000"


def test_reference_sample_payload_is_valid_for_both_schemas(
    reference_schema: etree.XMLSchema,
) -> None:
    sample = xml.parse((REFERENCE / "sample-verifyNHSNumber-response.soap.xml").read_bytes())
    hl7 = next(sample.iter("{urn:hl7-org:v3}verifyNHSNumberResponse-v1-0"))
    assert xml.schema_errors(reference_schema, hl7) == []
    ours = xml.load_schema(str(m.WSDL_DIR / "smsp-payloads.xsd"))
    assert xml.schema_errors(ours, hl7) == []
