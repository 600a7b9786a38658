"""The Spine Mini Services message shapes: operations, HL7v3 query payloads and response readers.

Shared by the client (building requests, reading responses) and the mock (reading requests,
building responses). Shapes follow the published QUPA_MT00000nGB01 / COMT_MT0000nnGB01 models.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

from lxml import etree

from connectors.errors import InvalidResponse
from connectors.pds.models import (
    GENDER_CODES,
    GENDER_FROM_CODE,
    Address,
    GpPractice,
    LocalIdentifier,
    PdsPatient,
    PersonName,
    Telecom,
)

__all__ = [
    "HL7_NS",
    "ITK_NS",
    "OPERATIONS",
    "WSDL_DIR",
    "Operation",
    "QueryParameters",
    "build_distribution_envelope",
    "build_query",
    "distribution_envelope_args",
    "find_hl7_payload",
    "format_hl7_date",
    "parse_hl7_date",
    "read_nhs_number_match",
    "read_patient",
    "read_query",
    "read_verification",
    "response_code",
]

HL7_NS = "urn:hl7-org:v3"
ITK_NS = "urn:nhs-itk:ns:201005"
SERVICE_PREFIX = "urn:nhs-itk:services:201005:"
PROFILE_PREFIX = "urn:nhs-en:profile:"
OID_MESSAGE_TYPE = "2.16.840.1.113883.2.1.3.2.4.17.284"
OID_RESPONSE_CODE = "2.16.840.1.113883.2.1.3.2.4.17.285"
OID_VALID_IDENTIFIER = "2.16.840.1.113883.2.1.3.2.4.17.287"
OID_GENDER = "2.16.840.1.113883.2.1.3.2.4.16.25"
OID_NHS_NUMBER = "2.16.840.1.113883.2.1.4.1"
OID_ODS_ORGANISATION = "2.16.840.1.113883.2.1.4.3"
WSDL_DIR = Path(__file__).resolve().parent / "wsdl"

_H = f"{{{HL7_NS}}}"
_I = f"{{{ITK_NS}}}"
# Schema defaults of the ITK attributes, written out as zeep writes them from the WSDL.
ITK_ADDRESS_TYPE = "2.16.840.1.113883.2.1.3.2.4.18.22"
ITK_IDENTITY_TYPE = "2.16.840.1.113883.2.1.3.2.4.18.27"
_MANIFEST_FLAGS = {
    "metadata": "false",
    "compressed": "false",
    "base64": "false",
    "encrypted": "false",
}


@dataclass(frozen=True)
class Operation:
    """One SMSP operation: names, message types and which query parameters it takes."""

    name: str
    request_element: str
    request_code: str
    response_element: str
    parameters: tuple[str, ...]
    required: tuple[str, ...]

    @property
    def action(self) -> str:
        """Return the SOAPAction / wsa:Action / ITK service URN."""
        return SERVICE_PREFIX + self.name

    @property
    def response_action(self) -> str:
        """Return the reply's wsa:Action and ITK service (the operation name + Response)."""
        return self.action + "Response"

    @property
    def request_profile(self) -> str:
        """Return the ITK profile id of the request payload."""
        return PROFILE_PREFIX + self.request_code

    @property
    def response_profile(self) -> str:
        """Return the ITK profile id of the response payload."""
        return PROFILE_PREFIX + self.response_element


# Parameters are listed in the order the schemas require (alphabetical by element name).
OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        Operation(
            "verifyNHSNumber-v1-0",
            "verifyNHSNumberRequest-v1-0",
            "verifyNHSNumberRequest-v1-0",
            "verifyNHSNumberResponse-v1-0",
            ("DateOfBirth", "NHSNumber", "Name"),
            ("DateOfBirth", "NHSNumber"),
        ),
        Operation(
            "getNHSNumber-v1-0",
            "getNHSNumberRequest-v1-0",
            "getNHSNumberRequest-v1-0",
            "getNHSNumberResponse-v1-0",
            ("DateOfBirth", "Gender", "LocalIdentifier", "Name", "Postcode"),
            ("DateOfBirth", "Gender", "Name"),
        ),
        Operation(
            "getPatientDetailsByNHSNumber-v1-0",
            "getPatientDetailsByNHSNumberRequest-v1-0",
            "getPatientDetailsByNHSNumberRequest-v1-0",
            "getPatientDetailsResponse-v1-0",
            ("DateOfBirth", "LocalIdentifier", "NHSNumber", "Name"),
            ("NHSNumber",),
        ),
        Operation(
            "getPatientDetailsBySearch-v1-0",
            "getPatientDetailsBySearchRequest-v1-0",
            "getPatientDetailsBySearchRequest-v1-0",
            "getPatientDetailsResponse-v1-0",
            ("DateOfBirth", "Gender", "LocalIdentifier", "Name", "Postcode"),
            ("DateOfBirth", "Gender", "Name"),
        ),
        Operation(
            "getPatientDetails-v1-0",
            "getPatientDetails-v1-0",
            "getPatientDetailsRequest-v1-0",
            "getPatientDetailsResponse-v1-0",
            ("DateOfBirth", "Gender", "LocalIdentifier", "NHSNumber", "Name", "Postcode"),
            ("DateOfBirth",),
        ),
    )
}


@dataclass(frozen=True)
class QueryParameters:
    """The person details a query carries (any subset, as each operation allows)."""

    birth_date: date | None = None
    nhs_number: str | None = None
    gender: str | None = None
    given: str | None = None
    family: str | None = None
    postcode: str | None = None
    local_identifier: LocalIdentifier | None = None

    def present(self) -> set[str]:
        """Return the parameter names that have a value."""
        names = set()
        if self.birth_date is not None:
            names.add("DateOfBirth")
        if self.nhs_number:
            names.add("NHSNumber")
        if self.gender:
            names.add("Gender")
        if self.given or self.family:
            names.add("Name")
        if self.postcode:
            names.add("Postcode")
        if self.local_identifier is not None:
            names.add("LocalIdentifier")
        return names


def format_hl7_date(value: date) -> str:
    """Return an HL7 TS date (YYYYMMDD)."""
    return value.strftime("%Y%m%d")


def parse_hl7_date(value: str | None) -> date | None:
    """Return the date part of an HL7 TS value, or None."""
    if not value or len(value) < 8 or not value[:8].isdigit():
        return None
    try:
        return date(int(value[:4]), int(value[4:6]), int(value[6:8]))
    except ValueError:
        return None


def _sub(parent: etree._Element, name: str, **attrs: str) -> etree._Element:
    return etree.SubElement(parent, _H + name, attrs)


def _param(parent: etree._Element, name: str) -> tuple[etree._Element, etree._Element]:
    holder = _sub(parent, f"Person.{name}")
    value = _sub(holder, "value")
    return holder, value


def build_query(
    operation: Operation, params: QueryParameters, *, message_uuid: str
) -> etree._Element:
    """Build the HL7v3 query payload for an operation."""
    root = etree.Element(
        _H + operation.request_element,
        {"classCode": "CACT", "moodCode": "EVN"},
        nsmap={None: HL7_NS},
    )
    _sub(root, "id", root=message_uuid)
    _sub(root, "code", code=operation.request_code, codeSystem=OID_MESSAGE_TYPE)
    event = _sub(root, "queryEvent")
    present = params.present()
    for name in operation.parameters:
        if name not in present:
            continue
        holder, value = _param(event, name)
        if name == "DateOfBirth" and params.birth_date is not None:
            value.set("value", format_hl7_date(params.birth_date))
        elif name == "NHSNumber" and params.nhs_number:
            value.set("root", OID_NHS_NUMBER)
            value.set("extension", params.nhs_number)
        elif name == "Gender" and params.gender:
            value.set("code", GENDER_CODES[params.gender])
            value.set("codeSystem", OID_GENDER)
        elif name == "Name":
            if params.given:
                _sub(value, "given").text = params.given
            if params.family:
                _sub(value, "family").text = params.family
        elif name == "Postcode" and params.postcode:
            _sub(value, "postalCode").text = params.postcode
        elif name == "LocalIdentifier" and params.local_identifier is not None:
            value.set("root", params.local_identifier.root)
            value.set("extension", params.local_identifier.extension)
        _sub(holder, "semanticsText").text = f"Person.{name}"
    return root


def distribution_envelope_args(
    operation: Operation,
    payload: etree._Element,
    *,
    tracking_id: str,
    payload_id: str,
    audit_identity: str | None,
    sender_address: str | None,
) -> dict[str, object]:
    """Return the zeep arguments for an ITK DistributionEnvelope carrying one payload."""
    header: dict[str, object] = {
        "service": operation.action,
        "trackingid": tracking_id,
        "manifest": {
            "count": 1,
            "manifestitem": [
                {"id": payload_id, "mimetype": "text/xml", "profileid": operation.request_profile}
            ],
        },
    }
    if audit_identity:
        header["auditIdentity"] = {"id": [{"uri": audit_identity}]}
    if sender_address:
        header["senderAddress"] = {"uri": sender_address}
    return {
        "header": header,
        "payloads": {"count": 1, "payload": [{"id": payload_id, "_value_1": payload}]},
    }


def build_distribution_envelope(
    operation: Operation,
    payload: etree._Element,
    *,
    tracking_id: str,
    payload_id: str,
    audit_identity: str | None,
    sender_address: str | None,
) -> etree._Element:
    """Build the ITK DistributionEnvelope carrying one payload, directly with lxml.

    The same document zeep writes from `distribution_envelope_args` and the package WSDL
    (elements in schema order, schema-default attributes written out), without zeep's object
    graph; the payload element is moved into the envelope.
    """
    # The prefix zeep writes, so both renderings are the same bytes (canonical-XML tests).
    envelope = etree.Element(_I + "DistributionEnvelope", nsmap={"ns0": ITK_NS})
    header = etree.SubElement(
        envelope, _I + "header", {"trackingid": tracking_id, "service": operation.action}
    )
    if audit_identity:
        identity = etree.SubElement(header, _I + "auditIdentity")
        etree.SubElement(identity, _I + "id", {"type": ITK_IDENTITY_TYPE, "uri": audit_identity})
    manifest = etree.SubElement(header, _I + "manifest", {"count": "1"})
    etree.SubElement(
        manifest,
        _I + "manifestitem",
        {
            "id": payload_id,
            "mimetype": "text/xml",
            "profileid": operation.request_profile,
            **_MANIFEST_FLAGS,
        },
    )
    if sender_address:
        etree.SubElement(
            header, _I + "senderAddress", {"type": ITK_ADDRESS_TYPE, "uri": sender_address}
        )
    payloads = etree.SubElement(envelope, _I + "payloads", {"count": "1"})
    etree.SubElement(payloads, _I + "payload", {"id": payload_id}).append(payload)
    return envelope


def find_hl7_payload(distribution_envelope: etree._Element) -> etree._Element:
    """Return the single HL7 payload element of an ITK DistributionEnvelope."""
    if distribution_envelope.tag != f"{{{ITK_NS}}}DistributionEnvelope":
        raise InvalidResponse("body is not an ITK DistributionEnvelope")
    payloads = distribution_envelope.findall(f"{{{ITK_NS}}}payloads/{{{ITK_NS}}}payload")
    if len(payloads) != 1:
        raise InvalidResponse("expected exactly one ITK payload")
    element = next((c for c in payloads[0] if isinstance(c.tag, str)), None)
    if element is None or not element.tag.startswith(_H):
        raise InvalidResponse("ITK payload holds no HL7v3 message")
    return element


def response_code(hl7: etree._Element, expected_element: str) -> str:
    """Return the response code of an SMSP response payload, checking its type."""
    if hl7.tag != _H + expected_element:
        raise InvalidResponse("unexpected response message type")
    value = hl7.find(_H + "value")
    code = value.get("code") if value is not None else None
    if not code:
        raise InvalidResponse("response carries no response code")
    return str(code)


def _text(element: etree._Element | None) -> str | None:
    if element is None or element.text is None:
        return None
    text = element.text.strip()
    return text or None


def _address(element: etree._Element) -> Address:
    lines = tuple(
        line for line in (_text(e) for e in element.findall(_H + "streetAddressLine")) if line
    )
    return Address(
        lines=lines, postcode=_text(element.find(_H + "postalCode")), use=element.get("use")
    )


def _ids(patient: etree._Element) -> tuple[str | None, LocalIdentifier | None]:
    nhs_number = None
    local = None
    for id_el in patient.findall(_H + "id"):
        root, ext = id_el.get("root"), id_el.get("extension")
        if not ext:
            continue
        if root == OID_NHS_NUMBER:
            nhs_number = ext
        elif root:
            local = LocalIdentifier(root=root, extension=ext)
    return nhs_number, local


def read_patient(hl7: etree._Element, code: str) -> PdsPatient | None:
    """Read the patient of a getPatientDetailsResponse payload, or None when it has none."""
    patient = hl7.find(f"{_H}subject/{_H}patient")
    if patient is None:
        return None
    nhs_number, local = _ids(patient)
    if nhs_number is None:
        raise InvalidResponse("patient carries no NHS number")
    name_el = patient.find(_H + "name")
    name = None
    if name_el is not None:
        name = PersonName(
            family=_text(name_el.find(_H + "family")),
            given=tuple(g for g in (_text(e) for e in name_el.findall(_H + "given")) if g),
            prefix=_text(name_el.find(_H + "prefix")),
            use=name_el.get("use"),
        )
    person = patient.find(_H + "patientPerson")
    gender = birth = deceased = None
    gp = None
    if person is not None:
        gender_el = person.find(_H + "administrativeGenderCode")
        if gender_el is not None:
            gender = GENDER_FROM_CODE.get(gender_el.get("code") or "")
        birth_el = person.find(_H + "birthTime")
        birth = parse_hl7_date(birth_el.get("value")) if birth_el is not None else None
        deceased_el = person.find(_H + "deceasedTime")
        deceased = parse_hl7_date(deceased_el.get("value")) if deceased_el is not None else None
        gp_el = person.find(_H + "gPPractice")
        if gp_el is not None:
            org = gp_el.find(_H + "locationOrganization")
            org_id = org.find(_H + "id") if org is not None else None
            addr = gp_el.find(_H + "addr")
            tel = gp_el.find(_H + "telecom")
            gp = GpPractice(
                ods_code=org_id.get("extension") if org_id is not None else None,
                name=_text(org.find(_H + "name")) if org is not None else None,
                address=_address(addr) if addr is not None else None,
                telecom=Telecom(tel.get("value") or "", tel.get("use"))
                if tel is not None
                else None,
            )
    return PdsPatient(
        nhs_number=nhs_number,
        response_code=code,
        name=name,
        birth_date=birth,
        gender=gender,
        deceased_date=deceased,
        addresses=tuple(_address(a) for a in patient.findall(_H + "addr")),
        telecoms=tuple(
            Telecom(t.get("value") or "", t.get("use"))
            for t in patient.findall(_H + "telecom")
            if t.get("value")
        ),
        gp=gp,
        local_identifier=local,
        from_local_store=code == "SMSP-0003",
    )


def read_nhs_number_match(hl7: etree._Element) -> tuple[str | None, LocalIdentifier | None]:
    """Return the NHS number and local identifier of a getNHSNumberResponse payload."""
    patient = hl7.find(f"{_H}subject/{_H}patient")
    if patient is None:
        return None, None
    return _ids(patient)


def read_verification(hl7: etree._Element) -> tuple[str | None, bool]:
    """Return (NHS number, valid) from a verifyNHSNumberResponse payload."""
    valid = hl7.find(f"{_H}component/{_H}validIdentifier")
    if valid is None:
        return None, False
    value = valid.find(_H + "value")
    patient_id = valid.find(f"{_H}subject/{_H}patient/{_H}id")
    return (
        patient_id.get("extension") if patient_id is not None else None,
        value is not None and value.get("value") == "true",
    )


def read_query(hl7: etree._Element) -> QueryParameters:
    """Read the parameters of an SMSP query payload (used by the mock)."""
    event = hl7.find(_H + "queryEvent")
    if event is None:
        return QueryParameters()

    def value(name: str) -> etree._Element | None:
        return event.find(f"{_H}Person.{name}/{_H}value")

    dob = value("DateOfBirth")
    nhs = value("NHSNumber")
    gender = value("Gender")
    name = value("Name")
    postcode = value("Postcode")
    local = value("LocalIdentifier")
    return QueryParameters(
        birth_date=parse_hl7_date(dob.get("value")) if dob is not None else None,
        nhs_number=nhs.get("extension") if nhs is not None else None,
        gender=GENDER_FROM_CODE.get(gender.get("code") or "") if gender is not None else None,
        given=_text(name.find(_H + "given")) if name is not None else None,
        family=_text(name.find(_H + "family")) if name is not None else None,
        postcode=_text(postcode.find(_H + "postalCode")) if postcode is not None else None,
        local_identifier=(
            LocalIdentifier(local.get("root") or "", local.get("extension") or "")
            if local is not None
            else None
        ),
    )
