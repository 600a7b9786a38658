"""The PDS façade service: FHIR requests in, Spine Mini Services calls out, UK Core answers back."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from connectors.errors import TooManyMatches
from connectors.pds import PdsClient
from gateway.errors import BadRequest, UnsupportedSearchParameter
from gateway.national.calls import CallIds
from gateway.national.resources import nhs_identifier, patient_from_pds, pds_response_coding
from vocab import is_valid_nhs_number, systems

SEARCH_PARAMS = ("family", "given", "birthdate", "gender", "address-postalcode")
IGNORED_PARAMS = ("_format",)
GENDERS = ("male", "female", "other", "unknown")


def check_nhs_number(value: str, where: str = "the NHS number") -> str:
    """Return a valid NHS number or raise 400 (format and Modulus 11 check)."""
    if not is_valid_nhs_number(value):
        raise BadRequest(f"{where} fails the NHS number format (10 digits) or Modulus 11 check")
    return value


def _date(value: str, name: str) -> date:
    text = value.removeprefix("eq")
    try:
        if len(text) != 10:
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError as exc:
        raise BadRequest(f"{name} must be a full date (YYYY-MM-DD, optionally with eq)") from exc


@dataclass(frozen=True)
class DemographicQuery:
    """A PDS search by demographics."""

    family: str
    birth_date: date
    gender: str
    given: str | None = None
    postcode: str | None = None

    @classmethod
    def parse(cls, pairs: Sequence[tuple[str, str]]) -> DemographicQuery:
        """Read the search parameters; raise 400 for unknown, repeated or missing ones."""
        values: dict[str, str] = {}
        for name, value in pairs:
            if name in IGNORED_PARAMS:
                continue
            if name not in SEARCH_PARAMS:
                raise UnsupportedSearchParameter(
                    f"unknown search parameter '{name}'; PDS is searched by "
                    + ", ".join(SEARCH_PARAMS))
            if name in values:
                raise BadRequest(f"'{name}' may be given once")
            if not value.strip():
                raise BadRequest(f"'{name}' is empty")
            values[name] = value.strip()
        missing = [n for n in ("family", "birthdate", "gender") if n not in values]
        if missing:
            raise BadRequest("a PDS search needs family, birthdate and gender; missing: "
                             + ", ".join(missing))
        if values["gender"] not in GENDERS:
            raise BadRequest("gender must be male, female, other or unknown")
        return cls(family=values["family"], birth_date=_date(values["birthdate"], "birthdate"),
                   gender=values["gender"], given=values.get("given"),
                   postcode=values.get("address-postalcode"))


@dataclass(frozen=True)
class VerifyRequest:
    """The input of Patient/$verify."""

    nhs_number: str
    birth_date: date
    family: str | None = None
    given: str | None = None

    @classmethod
    def parse(cls, parameters: dict[str, Any]) -> VerifyRequest:
        """Read a (valid) Parameters resource; raise 400 when an input is missing or wrong."""
        found: dict[str, dict[str, Any]] = {}
        for param in parameters.get("parameter") or ():
            name = param.get("name")
            if name not in ("nhs-number", "birthdate", "name", "family", "given"):
                raise BadRequest(f"unknown $verify parameter '{name}'")
            if name in found:
                raise BadRequest(f"the $verify parameter '{name}' may be given once")
            found[name] = param
        number = found.get("nhs-number")
        if number is None:
            raise BadRequest("$verify needs the nhs-number parameter")
        if "valueIdentifier" in number:
            ident = number["valueIdentifier"]
            if ident.get("system") not in (None, systems.NHS_NUMBER):
                raise BadRequest("nhs-number must use the system " + systems.NHS_NUMBER)
            nhs = str(ident.get("value", ""))
        else:
            nhs = str(number.get("valueString", ""))
        check_nhs_number(nhs, "nhs-number")
        birth = found.get("birthdate")
        if birth is None or "valueDate" not in birth:
            raise BadRequest("$verify needs the birthdate parameter (valueDate)")
        family = found.get("family", {}).get("valueString")
        given = found.get("given", {}).get("valueString")
        if "name" in found:
            name_value = found["name"].get("valueHumanName") or {}
            family = family or name_value.get("family")
            given = given or next(iter(name_value.get("given") or ()), None)
        return cls(nhs_number=nhs, birth_date=_date(str(birth["valueDate"]), "birthdate"),
                   family=family, given=given)


class PdsFacade:
    """Read, search and verify through the PDS client; every failure is a ConnectorError."""

    def __init__(self, client: Callable[[], PdsClient]) -> None:
        self._client = client

    def read(self, nhs_number: str, call: CallIds) -> dict[str, Any]:
        """Return the UK Core Patient for an NHS number (the current one if it was superseded)."""
        check_nhs_number(nhs_number)
        found = self._client().get_patient_details_by_nhs_number(
            nhs_number, message_id=call.message_id, correlation_id=call.correlation_id)
        return patient_from_pds(found)

    def search(self, query: DemographicQuery, call: CallIds) -> dict[str, Any] | None:
        """Return the one Patient matching the demographics, or None when nobody matches."""
        try:
            found = self._client().search(
                birth_date=query.birth_date, gender=query.gender, family=query.family,
                given=query.given, postcode=query.postcode,
                message_id=call.message_id, correlation_id=call.correlation_id)
        except TooManyMatches as exc:
            raise TooManyMatches(
                "PDS found more than one person with these demographics; add given and "
                "address-postalcode to narrow the search", service_code=exc.service_code,
                service="pds", operation=exc.operation,
                correlation_id=call.correlation_id) from exc
        return patient_from_pds(found) if found is not None else None

    def verify(self, request: VerifyRequest, call: CallIds) -> dict[str, Any]:
        """Return the $verify output Parameters: verified, the PDS response code, the number."""
        result = self._client().verify_nhs_number(
            request.nhs_number, request.birth_date, given=request.given, family=request.family,
            message_id=call.message_id, correlation_id=call.correlation_id)
        return {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "verified", "valueBoolean": result.verified},
                {"name": "pds-response-code", "valueCoding": pds_response_coding(
                    result.response_code)},
                {"name": "nhs-number", "valueIdentifier": nhs_identifier(
                    result.nhs_number, verified=result.verified)},
            ],
        }


__all__ = ["DemographicQuery", "PdsFacade", "VerifyRequest", "check_nhs_number"]
