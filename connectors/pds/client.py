"""The health-spine-like PDS client: typed methods over the five Spine Mini Services operations."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime

from lxml import etree
from zeep import Plugin
from zeep.wsdl import Document

from connectors.errors import (
    ConnectorError,
    InvalidRequest,
    InvalidResponse,
    NotFound,
    Rejected,
    TooManyMatches,
    Unavailable,
)
from connectors.pds import messages as m
from connectors.pds.models import (
    GENDER_CODES,
    LocalIdentifier,
    NhsNumberMatch,
    NhsNumberVerification,
    PdsPatient,
)
from connectors.soap.client import ServiceSpec, SoapClient, build_soap_client
from connectors.soap.context import new_message_id
from connectors.soap.settings import SoapSettings
from connectors.soap.transport import HardenedTransport
from connectors.soap.wsse import WsSecurity, utcnow
from vocab import is_valid_nhs_number

__all__ = ["PDS_SPEC", "RESPONSE_CODES", "PdsClient", "build_pds_client"]

PDS_SPEC = ServiceSpec(
    name="pds",
    wsdl_path=m.WSDL_DIR / "pds.wsdl",
    binding="{urn:nhs-itk:ns:201005}PDSMiniServices-v1-0_pttBinding",
)

# SMSP/DEMOG response codes (OID 2.16.840.1.113883.2.1.3.2.4.17.285) that are not a success,
# and the error each becomes. SMSP-0000, SMSP-0003 and DEMOG-0017 are successes.
RESPONSE_CODES: dict[str, tuple[type[ConnectorError], str]] = {
    "SMSP-0001": (InvalidRequest, "input message validation error"),
    "SMSP-0002": (InvalidResponse, "response message validation error"),
    "SMSP-9999": (Unavailable, "generic provider failure"),
    "DEMOG-0001": (NotFound, "no match"),
    "DEMOG-0007": (TooManyMatches, "multiple matches found"),
    "DEMOG-0022": (NotFound, "NHS number of the record has been invalidated"),
    "DEMOG-0040": (Rejected, "NHS number not verified"),
    "DEMOG-0042": (InvalidRequest, "NHS number is not a new style number"),
    "DEMOG-9999": (Unavailable, "generic spine error"),
}
_SUCCESS = {"SMSP-0000", "SMSP-0003", "DEMOG-0017"}


def _raise_for(code: str, operation: str) -> None:
    if code in _SUCCESS:
        return
    klass, text = RESPONSE_CODES.get(code, (InvalidResponse, "unknown response code"))
    if issubclass(klass, Rejected):
        raise klass(text, service_code=code, permanent=True, service="pds", operation=operation)
    raise klass(f"{text} ({code})", service="pds", operation=operation)


def _check_nhs_number(nhs_number: str) -> None:
    if not is_valid_nhs_number(nhs_number):
        raise InvalidRequest(
            "NHS number fails the format or Modulus 11 check",
            service_code="invalid-nhs-number",
            service="pds",
        )


def _check_gender(gender: str | None) -> None:
    if gender is not None and gender not in GENDER_CODES:
        raise InvalidRequest("gender must be male, female, other or unknown", service="pds")


class PdsClient:
    """Typed access to the five PDS Mini Services operations.

    Every method checks NHS numbers (Modulus 11) before any call, accepts `message_id` (reuse it
    when retrying the same logical request) and `correlation_id` (for audit), and raises a
    `connectors.errors.ConnectorError` on any failure.
    """

    def __init__(
        self,
        soap: SoapClient,
        *,
        audit_identity: str | None = None,
        sender_address: str | None = None,
        ids: Callable[[], str] = new_message_id,
    ) -> None:
        self.soap = soap
        self.audit_identity = audit_identity
        self.sender_address = sender_address
        self.ids = ids

    def _call(
        self,
        operation_name: str,
        params: m.QueryParameters,
        message_id: str | None,
        correlation_id: str | None,
    ) -> tuple[etree._Element, str]:
        operation = m.OPERATIONS[operation_name]
        missing = set(operation.required) - params.present()
        if missing:
            raise InvalidRequest(
                "missing query parameters: " + ", ".join(sorted(missing)),
                service="pds",
                operation=operation_name,
            )
        payload = m.build_query(operation, params, message_uuid=self.ids())
        envelope = m.build_distribution_envelope(
            operation,
            payload,
            tracking_id=self.ids(),
            payload_id="uuid_" + self.ids(),
            audit_identity=self.audit_identity,
            sender_address=self.sender_address,
        )
        reply = self.soap.send(
            operation_name, envelope, message_id=message_id, correlation_id=correlation_id
        )
        try:
            hl7 = m.find_hl7_payload(reply.payload)
            code = m.response_code(hl7, operation.response_element)
        except ConnectorError as exc:
            raise exc.with_context(
                service="pds", operation=operation_name, correlation_id=reply.correlation_id
            )
        return hl7, code

    def verify_nhs_number(
        self,
        nhs_number: str,
        birth_date: date,
        *,
        given: str | None = None,
        family: str | None = None,
        message_id: str | None = None,
        correlation_id: str | None = None,
    ) -> NhsNumberVerification:
        """Check that an NHS number belongs to the person born on birth_date."""
        _check_nhs_number(nhs_number)
        params = m.QueryParameters(
            birth_date=birth_date, nhs_number=nhs_number, given=given, family=family
        )
        op = "verifyNHSNumber-v1-0"
        hl7, code = self._call(op, params, message_id, correlation_id)
        if code == "DEMOG-0001":
            return NhsNumberVerification(nhs_number=nhs_number, verified=False, response_code=code)
        _raise_for(code, op)
        number, valid = m.read_verification(hl7)
        return NhsNumberVerification(
            nhs_number=number or nhs_number, verified=valid, response_code=code
        )

    def get_nhs_number(
        self,
        *,
        birth_date: date,
        gender: str,
        family: str,
        given: str | None = None,
        postcode: str | None = None,
        local_identifier: LocalIdentifier | None = None,
        message_id: str | None = None,
        correlation_id: str | None = None,
    ) -> NhsNumberMatch:
        """Trace a person's NHS number from demographics; raise NotFound or TooManyMatches."""
        _check_gender(gender)
        params = m.QueryParameters(
            birth_date=birth_date,
            gender=gender,
            given=given,
            family=family,
            postcode=postcode,
            local_identifier=local_identifier,
        )
        op = "getNHSNumber-v1-0"
        hl7, code = self._call(op, params, message_id, correlation_id)
        _raise_for(code, op)
        number, local = m.read_nhs_number_match(hl7)
        if number is None:
            raise InvalidResponse("success without an NHS number", service="pds", operation=op)
        return NhsNumberMatch(nhs_number=number, response_code=code, local_identifier=local)

    def get_patient_details_by_nhs_number(
        self,
        nhs_number: str,
        birth_date: date | None = None,
        *,
        given: str | None = None,
        family: str | None = None,
        local_identifier: LocalIdentifier | None = None,
        message_id: str | None = None,
        correlation_id: str | None = None,
    ) -> PdsPatient:
        """Return a patient's demographics by NHS number; raise NotFound when there is none.

        The published service requires birth_date; this service also answers without it.
        """
        _check_nhs_number(nhs_number)
        params = m.QueryParameters(
            birth_date=birth_date,
            nhs_number=nhs_number,
            given=given,
            family=family,
            local_identifier=local_identifier,
        )
        return self._details(
            "getPatientDetailsByNHSNumber-v1-0", params, nhs_number, message_id, correlation_id
        )

    def search(
        self,
        *,
        birth_date: date,
        gender: str,
        family: str,
        given: str | None = None,
        postcode: str | None = None,
        local_identifier: LocalIdentifier | None = None,
        message_id: str | None = None,
        correlation_id: str | None = None,
    ) -> PdsPatient | None:
        """Find the one patient matching demographics; None when nobody matches.

        Raises TooManyMatches when the demographics match more than one patient.
        """
        _check_gender(gender)
        params = m.QueryParameters(
            birth_date=birth_date,
            gender=gender,
            given=given,
            family=family,
            postcode=postcode,
            local_identifier=local_identifier,
        )
        try:
            return self._details(
                "getPatientDetailsBySearch-v1-0", params, None, message_id, correlation_id
            )
        except NotFound as exc:
            if exc.service_code == "DEMOG-0001":
                return None
            raise

    def get_patient_details(
        self,
        *,
        birth_date: date,
        nhs_number: str | None = None,
        gender: str | None = None,
        family: str | None = None,
        given: str | None = None,
        postcode: str | None = None,
        local_identifier: LocalIdentifier | None = None,
        message_id: str | None = None,
        correlation_id: str | None = None,
    ) -> PdsPatient:
        """Return a patient by NHS number, demographics or both; raise NotFound when none."""
        if nhs_number is not None:
            _check_nhs_number(nhs_number)
        _check_gender(gender)
        params = m.QueryParameters(
            birth_date=birth_date,
            nhs_number=nhs_number,
            gender=gender,
            given=given,
            family=family,
            postcode=postcode,
            local_identifier=local_identifier,
        )
        return self._details(
            "getPatientDetails-v1-0", params, nhs_number, message_id, correlation_id
        )

    def _details(
        self,
        op: str,
        params: m.QueryParameters,
        asked_for: str | None,
        message_id: str | None,
        correlation_id: str | None,
    ) -> PdsPatient:
        hl7, code = self._call(op, params, message_id, correlation_id)
        _raise_for(code, op)
        patient = m.read_patient(hl7, code)
        if patient is None:
            raise InvalidResponse("success without a patient", service="pds", operation=op)
        if asked_for and patient.nhs_number != asked_for:
            patient = _replace_superseded(patient, asked_for)
        return patient


def _replace_superseded(patient: PdsPatient, asked_for: str) -> PdsPatient:
    from dataclasses import replace

    return replace(patient, superseded_nhs_number=asked_for)


def build_pds_client(
    settings: SoapSettings,
    *,
    wsdl: Document | str | None = None,
    transport: HardenedTransport | None = None,
    wsse: WsSecurity | None = None,
    plugins: Sequence[Plugin] | None = None,
    audit_identity: str | None = None,
    sender_address: str | None = None,
    clock: Callable[[], datetime] = utcnow,
    ids: Callable[[], str] = new_message_id,
) -> PdsClient:
    """Build a PdsClient; every collaborator is injectable and has a hardened default."""
    soap = build_soap_client(
        PDS_SPEC,
        settings,
        wsdl=wsdl,
        transport=transport,
        wsse=wsse,
        plugins=plugins,
        clock=clock,
        ids=ids,
    )
    return PdsClient(soap, audit_identity=audit_identity, sender_address=sender_address, ids=ids)
