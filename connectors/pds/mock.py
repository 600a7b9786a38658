"""The mock health-spine-like PDS service: the five SMSP operations over seeded demographics."""

from __future__ import annotations

import json
import threading
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from lxml import etree

from connectors.errors import ConnectorError
from connectors.mockserver.service import MockReply, MockRequest
from connectors.pds import messages as m
from connectors.pds.models import GENDER_CODES
from connectors.soap import xml
from connectors.soap.context import new_message_id
from connectors.soap.server import build_envelope, build_fault

__all__ = ["PdsMockService", "PdsRecord", "load_pds_seed"]

_H = f"{{{m.HL7_NS}}}"
_I = f"{{{m.ITK_NS}}}"
ITK_ERROR_CODE_SYSTEM = "2.16.840.1.113883.2.1.3.2.4.17.268"
_CLIENT_FAULT_TEXT = (
    "A client related error has occurred, see detail element for further information"
)
_KIND_CODES = {"invalid": "2200", "security": "3000", "unsupported": "1000", "injected": "1000"}


def _fold(value: str | None) -> str:
    text = unicodedata.normalize("NFKD", value or "")
    return "".join(c for c in text if not unicodedata.combining(c)).casefold().strip()


def _postcode(value: str | None) -> str:
    return (value or "").replace(" ", "").upper()


@dataclass(frozen=True)
class PdsRecord:
    """One person PDS holds."""

    nhs_number: str
    superseded: tuple[str, ...]
    given: tuple[str, ...]
    family: str
    birth_date: date
    gender: str
    deceased_date: date | None
    address_lines: tuple[str, ...]
    postcode: str | None
    telecom: tuple[tuple[str, str], ...]
    gp_ods: str | None
    gp_name: str | None
    sensitive: bool


def load_pds_seed(path: Path) -> list[PdsRecord]:
    """Read the PDS seed file built by fixtures/national/build.py."""
    document = json.loads(path.read_text(encoding="utf-8"))
    records = []
    for p in document["patients"]:
        gp = p.get("gp") or {}
        records.append(
            PdsRecord(
                nhs_number=p["nhs_number"],
                superseded=tuple(p.get("superseded_nhs_numbers", [])),
                given=tuple(p.get("given", [])),
                family=p["family"],
                birth_date=date.fromisoformat(p["birth_date"]),
                gender=p["gender"],
                deceased_date=(
                    date.fromisoformat(p["deceased_date"]) if p.get("deceased_date") else None
                ),
                address_lines=tuple((p.get("address") or {}).get("lines", [])),
                postcode=(p.get("address") or {}).get("postcode"),
                telecom=tuple((t["value"], t.get("use") or "H") for t in p.get("telecom", [])),
                gp_ods=gp.get("ods_code"),
                gp_name=gp.get("name"),
                sensitive=bool(p.get("sensitive")),
            )
        )
    return records


class PdsMockService:
    """SMSP PDS at one endpoint, dispatched on SOAPAction, answering in the published shapes."""

    name = "pds"
    path = "/spine/pds"
    wsdl_dir = m.WSDL_DIR
    wsdl_file = "pds.wsdl"
    require_addressing = True

    def __init__(self, seed_file: Path, *, ids: Callable[[], str] = new_message_id) -> None:
        self.seed_file = seed_file
        self.ids = ids
        self._lock = threading.Lock()
        self._itk_schema = xml.load_schema(str(m.WSDL_DIR / "itk.xsd"))
        self._hl7_schema = xml.load_schema(str(m.WSDL_DIR / "smsp-payloads.xsd"))
        self.reset()

    # --- state -------------------------------------------------------------------------------
    def reset(self) -> None:
        """Reload the seeded records."""
        records = load_pds_seed(self.seed_file) if self.seed_file.exists() else []
        with self._lock:
            self.records = {r.nhs_number: r for r in records}
            self.superseded = {old: r.nhs_number for r in records for old in r.superseded}
            self.calls = 0

    def admin_state(self) -> dict[str, Any]:
        """Return counts only."""
        return {
            "records": len(self.records),
            "superseded": len(self.superseded),
            "calls": self.calls,
        }

    # --- protocol ----------------------------------------------------------------------------
    def operation_for(self, soap_action: str) -> str | None:
        """Map a SOAPAction to one of the five operations."""
        if soap_action.startswith(m.SERVICE_PREFIX):
            name = soap_action[len(m.SERVICE_PREFIX) :]
            if name in m.OPERATIONS:
                return name
        return None

    def fault(
        self,
        *,
        fault_code: str,
        text: str,
        service_code: str | None,
        relates_to: str | None,
        status: int = 500,
        kind: str = "invalid",
    ) -> MockReply:
        """Build the ITK fault: HTTP 500, faultcode Client, detail itk:ToolkitErrorInfo."""
        info = etree.Element(_I + "ToolkitErrorInfo", nsmap={"itk": m.ITK_NS})
        etree.SubElement(info, _I + "ErrorID").text = self.ids()
        code = etree.SubElement(info, _I + "ErrorCode", codeSystem=ITK_ERROR_CODE_SYSTEM)
        code.text = service_code or _KIND_CODES.get(kind, "1000")
        etree.SubElement(info, _I + "ErrorText").text = text
        fault_string = (
            _CLIENT_FAULT_TEXT if fault_code == "Client" else "A server error has occurred"
        )
        envelope = build_fault(
            fault_code, fault_string, detail=info, message_id=self.ids(), relates_to=relates_to
        )
        return MockReply(status=status, envelope=envelope)

    def handle(self, request: MockRequest) -> MockReply:
        """Answer one SMSP request."""
        operation = m.OPERATIONS[request.operation]
        de = request.message.payload

        def reject(text: str, kind: str = "invalid") -> MockReply:
            return self.fault(
                fault_code="Client",
                text=text,
                service_code=None,
                relates_to=request.message_id,
                kind=kind,
            )

        if de.tag != _I + "DistributionEnvelope":
            return reject("the body must be an ITK DistributionEnvelope")
        if xml.schema_errors(self._itk_schema, de):
            return reject("the DistributionEnvelope does not conform to its schema")
        header = de.find(_I + "header")
        if header is None or header.get("service") != operation.action:
            return reject(
                "DistributionEnvelope service does not match the SOAPAction", "unsupported"
            )
        try:
            hl7 = m.find_hl7_payload(de)
        except ConnectorError:
            return reject("the DistributionEnvelope carries no HL7 payload")
        with self._lock:
            self.calls += 1
        if hl7.tag != _H + operation.request_element or xml.schema_errors(self._hl7_schema, hl7):
            return self._reply(operation, request, "SMSP-0001")
        params = m.read_query(hl7)
        return self._answer(operation, request, params)

    # --- business rules ----------------------------------------------------------------------
    def _by_nhs_number(self, params: m.QueryParameters) -> tuple[str, PdsRecord | None]:
        number = params.nhs_number or ""
        record = self.records.get(number)
        code = "SMSP-0000"
        if record is None and number in self.superseded:
            record = self.records.get(self.superseded[number])
            code = "DEMOG-0017"
        if record is None:
            return "DEMOG-0001", None
        if params.birth_date is not None and params.birth_date != record.birth_date:
            return "DEMOG-0001", None
        if params.family and _fold(params.family) != _fold(record.family):
            return "DEMOG-0001", None
        return code, record

    def _search(self, params: m.QueryParameters) -> tuple[str, PdsRecord | None]:
        if params.birth_date is None or not params.gender or not params.family:
            return "SMSP-0001", None
        found = []
        for record in self.records.values():
            if record.birth_date != params.birth_date or record.gender != params.gender:
                continue
            if _fold(record.family) != _fold(params.family):
                continue
            if params.given and not _fold(record.given[0] if record.given else "").startswith(
                _fold(params.given)
            ):
                continue
            # Restricted records are never found by a search that includes a postcode.
            if params.postcode and (
                record.sensitive or _postcode(record.postcode) != _postcode(params.postcode)
            ):
                continue
            found.append(record)
        if not found:
            return "DEMOG-0001", None
        if len(found) > 1:
            return "DEMOG-0007", None
        return "SMSP-0000", found[0]

    def _answer(
        self, operation: m.Operation, request: MockRequest, params: m.QueryParameters
    ) -> MockReply:
        if params.nhs_number is not None and (
            len(params.nhs_number) != 10 or not params.nhs_number.isdigit()
        ):
            return self._reply(operation, request, "DEMOG-0042")
        name = operation.name
        if name == "verifyNHSNumber-v1-0":
            code, record = self._by_nhs_number(params)
            return self._reply(operation, request, code, record, asked=params.nhs_number)
        if name in ("getPatientDetailsByNHSNumber-v1-0",) or (
            name == "getPatientDetails-v1-0" and params.nhs_number
        ):
            code, record = self._by_nhs_number(params)
        else:
            code, record = self._search(params)
        return self._reply(operation, request, code, record, local=params.local_identifier)

    # --- replies -----------------------------------------------------------------------------
    def _reply(
        self,
        operation: m.Operation,
        request: MockRequest,
        code: str,
        record: PdsRecord | None = None,
        *,
        asked: str | None = None,
        local: Any = None,
    ) -> MockReply:
        hl7 = etree.Element(
            _H + operation.response_element,
            {"classCode": "OBS", "moodCode": "EVN"},
            nsmap={None: m.HL7_NS},
        )
        etree.SubElement(hl7, _H + "id", root=self.ids())
        etree.SubElement(
            hl7, _H + "code", code=operation.response_element, codeSystem=m.OID_MESSAGE_TYPE
        )
        etree.SubElement(hl7, _H + "value", code=code, codeSystem=m.OID_RESPONSE_CODE)
        if record is not None:
            if operation.name == "verifyNHSNumber-v1-0":
                self._verification(hl7, record, valid=code == "SMSP-0000")
            elif operation.name == "getNHSNumber-v1-0":
                patient = self._subject(hl7)
                etree.SubElement(
                    patient, _H + "id", root=m.OID_NHS_NUMBER, extension=record.nhs_number
                )
                if local is not None:
                    etree.SubElement(patient, _H + "id", root=local.root, extension=local.extension)
            else:
                self._details(hl7, record, local)
        return self._wrap(operation, request, hl7)

    def _subject(self, hl7: etree._Element) -> etree._Element:
        subject = etree.SubElement(hl7, _H + "subject", typeCode="SBJ")
        return etree.SubElement(subject, _H + "patient", classCode="PAT")

    def _verification(self, hl7: etree._Element, record: PdsRecord, *, valid: bool) -> None:
        component = etree.SubElement(hl7, _H + "component", typeCode="COMP")
        vi = etree.SubElement(component, _H + "validIdentifier", classCode="OBS", moodCode="EVN")
        etree.SubElement(vi, _H + "code", code="VI", codeSystem=m.OID_VALID_IDENTIFIER)
        etree.SubElement(vi, _H + "value", value="true" if valid else "false")
        subject = etree.SubElement(vi, _H + "subject", typeCode="SBJ")
        patient = etree.SubElement(subject, _H + "patient", classCode="PAT")
        etree.SubElement(patient, _H + "id", root=m.OID_NHS_NUMBER, extension=record.nhs_number)

    def _address(
        self, parent: etree._Element, lines: tuple[str, ...], postcode: str | None
    ) -> None:
        addr = etree.SubElement(parent, _H + "addr", use="H")
        if postcode:
            etree.SubElement(addr, _H + "postalCode").text = postcode
        padded = (list(lines) + [""] * 5)[:5]
        for line in padded:
            etree.SubElement(addr, _H + "streetAddressLine").text = line or None

    def _details(self, hl7: etree._Element, record: PdsRecord, local: Any) -> None:
        patient = self._subject(hl7)
        etree.SubElement(patient, _H + "id", root=m.OID_NHS_NUMBER, extension=record.nhs_number)
        if local is not None:
            etree.SubElement(patient, _H + "id", root=local.root, extension=local.extension)
        name = etree.SubElement(patient, _H + "name", use="L")
        for given in record.given[:2]:
            etree.SubElement(name, _H + "given").text = given
        etree.SubElement(name, _H + "family").text = record.family
        if not record.sensitive:
            # Restricted records never disclose address, telecom or GP.
            self._address(patient, record.address_lines, record.postcode)
            for value, use in record.telecom:
                etree.SubElement(patient, _H + "telecom", value=value, use=use)
        person = etree.SubElement(
            patient, _H + "patientPerson", classCode="PSN", determinerCode="INSTANCE"
        )
        etree.SubElement(
            person,
            _H + "administrativeGenderCode",
            code=GENDER_CODES[record.gender],
            codeSystem=m.OID_GENDER,
        )
        etree.SubElement(person, _H + "birthTime", value=m.format_hl7_date(record.birth_date))
        if record.deceased_date is not None:
            etree.SubElement(
                person, _H + "deceasedTime", value=m.format_hl7_date(record.deceased_date)
            )
        if record.gp_ods and not record.sensitive:
            gp = etree.SubElement(person, _H + "gPPractice", classCode="SDLOC")
            org = etree.SubElement(
                gp, _H + "locationOrganization", classCode="ORG", determinerCode="INSTANCE"
            )
            etree.SubElement(org, _H + "id", root=m.OID_ODS_ORGANISATION, extension=record.gp_ods)
            if record.gp_name:
                etree.SubElement(org, _H + "name").text = record.gp_name

    def _wrap(self, operation: m.Operation, request: MockRequest, hl7: etree._Element) -> MockReply:
        payload_id = "uuid_" + self.ids()
        de = etree.Element(_I + "DistributionEnvelope", nsmap={"itk": m.ITK_NS})
        header = etree.SubElement(
            de, _I + "header", service=operation.response_action, trackingid=self.ids()
        )
        audit = etree.SubElement(header, _I + "auditIdentity")
        etree.SubElement(audit, _I + "id", uri="urn:nhs-uk:identity:ods:X26:SYS:SMSP-MOCK")
        manifest = etree.SubElement(header, _I + "manifest", count="1")
        etree.SubElement(
            manifest,
            _I + "manifestitem",
            id=payload_id,
            mimetype="text/xml",
            profileid=operation.response_profile,
        )
        etree.SubElement(header, _I + "senderAddress", uri="urn:nhs-uk:addressing:ods:X26:SMSP")
        payloads = etree.SubElement(de, _I + "payloads", count="1")
        payload = etree.SubElement(payloads, _I + "payload", id=payload_id)
        payload.append(hl7)
        envelope = build_envelope(
            de,
            action=operation.response_action,
            message_id=self.ids(),
            relates_to=request.message_id or None,
        )
        return MockReply(status=200, envelope=envelope)
