"""The mock health-spine-like CP-IS service: uploads, NHS queries, access history, notifications.

Run-time control (`POST /admin/services/cpis/control/inactive-nhs-numbers`, see `control`): push
inactive-NHS-number notifications to the local authorities whose plans carry NHS numbers that
PDS no longer holds as current.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from lxml import etree

from connectors.cpis import messages as m
from connectors.cpis.models import (
    FILE_CODE_SYSTEM,
    RECORD_CODE_SYSTEM,
    RECORD_CODES,
    CpisAccess,
    InactiveNhsNumber,
    LocalAuthority,
    UploadRecord,
)
from connectors.cpis.notifications import (
    build_access_notification,
    build_inactive_nhs_number_notification,
)
from connectors.errors import ConnectorError
from connectors.mockserver.service import MockReply, MockRequest
from connectors.soap import xml
from connectors.soap.context import new_message_id
from connectors.soap.server import build_envelope, build_fault
from connectors.soap.settings import SigningSettings
from connectors.soap.wsse import add_security_header, sign_envelope, utcnow
from vocab import is_valid_nhs_number

__all__ = ["CpisMockService", "PdsLookup"]

log = logging.getLogger("connectors.cpis.mock")
_C = f"{{{m.CPIS_NS}}}"
_KIND_CODES = {
    "invalid": "CPIS-VALIDATION",
    "security": "CPIS-SECURITY",
    "unsupported": "CPIS-UNSUPPORTED",
    "injected": "CPIS-ERROR",
}
MAX_ACCESSES = 25
MAX_NOTIFICATION_RECORDS = 500  # records in one inactive-NHS-number notification (the schema's)
RETENTION_AFTER_END = timedelta(days=365)

# (nhs_number) -> "current" | "superseded" | "missing", and whether the record is sensitive.
PdsLookup = Callable[[str], tuple[str, bool]]
# (superseded nhs_number) -> the NHS number that replaced it, when PDS knows it.
ReplacementLookup = Callable[[str], str | None]
SENDER = "urn:nhs-uk:addressing:ods:X26:CPIS"


@dataclass
class _Plan:
    local_id: str
    plan_type: str
    start_date: date
    end_date: date | None
    la: LocalAuthority
    expected_delivery_date: date | None = None


class CpisMockService:
    """CP-IS at one endpoint: LA uploads with acknowledgement codes, NHS queries, notifications."""

    name = "cpis"
    path = "/spine/cpis"
    wsdl_dir = m.WSDL_DIR
    wsdl_file = "cpis.wsdl"
    require_addressing = True

    def __init__(
        self,
        seed_file: Path,
        pds_lookup: PdsLookup,
        *,
        callback_url: str | None = None,
        callback_username: str = "cpis-mock",
        signing: SigningSettings | None = None,
        clock: Callable[[], datetime] = utcnow,
        ids: Callable[[], str] = new_message_id,
        replacement_lookup: ReplacementLookup | None = None,
    ) -> None:
        self.seed_file = seed_file
        self.pds_lookup = pds_lookup
        self.replacement_lookup = replacement_lookup
        self.callback_url = callback_url
        self._initial_callback_url = callback_url
        self.callback_username = callback_username
        self.signing = signing or SigningSettings()
        self.clock = clock
        self.ids = ids
        self._lock = threading.Lock()
        self._schema = xml.load_schema(str(m.WSDL_DIR / "cpis.xsd"))
        self.reset()

    # --- state -------------------------------------------------------------------------------
    def reset(self) -> None:
        """Reload the seeded plans and callback; forget accesses, uploads and notifications."""
        plans: dict[tuple[str, str], _Plan] = {}
        la_default = LocalAuthority("LA000", "Local authority", "01632 960000", "01632 960001")
        if self.seed_file.exists():
            document = json.loads(self.seed_file.read_text(encoding="utf-8"))
            seed_la = document.get("local_authority") or {}
            la_default = LocalAuthority(
                ods_code=seed_la.get("ods_code", la_default.ods_code),
                name=seed_la.get("name", la_default.name),
                office_hours_phone=seed_la.get("office_phone", la_default.office_hours_phone),
                emergency_duty_phone=seed_la.get(
                    "emergency_phone", la_default.emergency_duty_phone
                ),
            )
            for p in document.get("plans", []):
                plans[(p["nhs_number"], p["plan_type"])] = _Plan(
                    local_id=p["local_id"],
                    plan_type=p["plan_type"],
                    start_date=date.fromisoformat(p["start_date"]),
                    end_date=date.fromisoformat(p["end_date"]) if p.get("end_date") else None,
                    la=la_default,
                    expected_delivery_date=date.fromisoformat(p["expected_delivery_date"])
                    if p.get("expected_delivery_date")
                    else None,
                )
        with self._lock:
            self.callback_url = self._initial_callback_url
            self.plans = plans
            self.accesses: dict[str, deque[CpisAccess]] = {}
            self.sequences: dict[str, int] = {}
            self.acks: OrderedDict[str, bytes] = OrderedDict()
            self.notifications: list[dict[str, Any]] = []
            self.uploads_processed = 0
            self.uploads_received = 0
            self.uploads_repeated = 0
            self.upload_ids: list[str] = []

    def configure(self, data: dict[str, Any]) -> None:
        """Change run-time settings (the notification callback URL)."""
        if "callback_url" in data:
            url = data["callback_url"]
            if url is not None and not str(url).startswith(("http://", "https://")):
                raise ValueError("callback_url must be an http(s) URL")
            self.callback_url = url

    def admin_state(self) -> dict[str, Any]:
        """Return counts and notification delivery states (ids only, no personal data)."""
        with self._lock:
            return {
                "plans": len(self.plans),
                "uploads_processed": self.uploads_processed,
                "uploads_received": self.uploads_received,
                "uploads_repeated": self.uploads_repeated,
                "upload_message_ids": list(self.upload_ids),
                "callback_url": self.callback_url,
                "notifications": [dict(n) for n in self.notifications],
            }

    # --- protocol ----------------------------------------------------------------------------
    def operation_for(self, soap_action: str) -> str | None:
        """Map a SOAPAction to an operation."""
        if soap_action.startswith(m.ACTION_PREFIX):
            name = soap_action[len(m.ACTION_PREFIX) :]
            if name in ("uploadLocalAuthorityRecords", "queryChildProtection", "getAccessHistory"):
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
        """Build a CP-IS fault with a cp:FaultInfo detail."""
        info = etree.Element(_C + "FaultInfo", nsmap={"cp": m.CPIS_NS})
        etree.SubElement(info, _C + "code").text = service_code or _KIND_CODES.get(
            kind, "CPIS-ERROR"
        )
        etree.SubElement(info, _C + "text").text = text
        envelope = build_fault(
            fault_code, text, detail=info, message_id=self.ids(), relates_to=relates_to
        )
        return MockReply(status=status, envelope=envelope)

    def handle(self, request: MockRequest) -> MockReply:
        """Answer one CP-IS request."""
        payload = request.message.payload
        if xml.schema_errors(self._schema, payload):
            return self.fault(
                fault_code="Client",
                text="the request does not conform to the CP-IS schema",
                service_code="CPIS-VALIDATION",
                relates_to=request.message_id,
            )
        try:
            if request.operation == "uploadLocalAuthorityRecords":
                return self._upload(request)
            if request.operation == "queryChildProtection":
                return self._query(request)
            return self._history(request)
        except ConnectorError:
            return self.fault(
                fault_code="Client",
                text="the request could not be read",
                service_code="CPIS-VALIDATION",
                relates_to=request.message_id,
            )

    def _reply(self, request: MockRequest, node: etree._Element) -> MockReply:
        envelope = build_envelope(
            node,
            action=m.ACTION_PREFIX + request.operation + "Response",
            message_id=self.ids(),
            relates_to=request.message_id,
        )
        return MockReply(status=200, envelope=envelope)

    # --- upload ------------------------------------------------------------------------------
    def _record_code(self, record: UploadRecord) -> tuple[str, str | None]:
        if not is_valid_nhs_number(record.nhs_number):
            return "CPR04", None
        if not record.nhs_number_verified:
            return "CPR03", None
        state, sensitive = self.pds_lookup(record.nhs_number)
        if state == "superseded":
            return "CPR05", None
        if state == "missing":
            return "CPR01", None
        if sensitive:
            return "CPR02", None
        if record.end_date is not None and record.end_date < record.start_date:
            return "CPR07", "end date before start date"
        if record.expected_delivery_date is not None and record.plan_type != "UCPP":
            return "CPR07", "an expected delivery date belongs to an unborn child plan only"
        return "CPR06", None

    def _upload(self, request: MockRequest) -> MockReply:
        message_id = request.message_id
        payload = request.message.payload
        la_node = payload.find(_C + "localAuthority")
        if la_node is None:
            raise ConnectorError("upload lacks localAuthority")
        la = m.read_local_authority(la_node)
        sequence = int((payload.findtext(_C + "fileSequenceNumber") or "0").strip())
        records = [m.read_upload_record(r) for r in payload.findall(_C + "record")]
        ack = etree.Element(_C + "LocalAuthorityAcknowledgement", nsmap={"cp": m.CPIS_NS})
        etree.SubElement(ack, _C + "fileSequenceNumber").text = str(sequence)
        file_response = etree.SubElement(ack, _C + "fileResponse", codeSystem=FILE_CODE_SYSTEM)
        quantity = etree.SubElement(ack, _C + "transmissionQuantity")
        with self._lock:
            # Checked under the same lock as the processing: two copies of one message arriving
            # together are answered once, the other from the cache.
            self.uploads_received += 1
            cached = self.acks.get(message_id)
            if cached is not None:
                # The same logical message again (a retry): answer as before, change nothing.
                self.uploads_repeated += 1
                return self._reply(request, xml.parse(cached))
            last = self.sequences.get(la.ods_code, 0)
            if sequence <= last or not records:
                file_response.set("code", "CPF01")
                quantity.text = "0"
            else:
                self.sequences[la.ods_code] = sequence
                accepted = 0
                for record in records:
                    code, detail = self._record_code(record)
                    if code == "CPR06":
                        accepted += 1
                        self._apply(record, la)
                    rr = etree.SubElement(ack, _C + "recordResponse")
                    etree.SubElement(rr, _C + "localId").text = record.local_id
                    etree.SubElement(rr, _C + "nhsNumber").text = record.nhs_number
                    etree.SubElement(rr, _C + "response", code=code, codeSystem=RECORD_CODE_SYSTEM)
                    etree.SubElement(rr, _C + "detail").text = detail or RECORD_CODES[code]
                quantity.text = str(len(records))
                if accepted == len(records):
                    file_response.set("code", "CPF02")
                elif accepted:
                    file_response.set("code", "CPF03")
                else:
                    file_response.set("code", "CPF04")
            self.uploads_processed += 1
            self.upload_ids.append(message_id)
            self.acks[message_id] = xml.to_bytes(ack, declaration=False)
            while len(self.acks) > 1000:
                self.acks.popitem(last=False)
        return self._reply(request, ack)

    def _apply(self, record: UploadRecord, la: LocalAuthority) -> None:
        key = (record.nhs_number, record.plan_type)
        if record.delete_date is not None:
            self.plans.pop(key, None)
            return
        self.plans[key] = _Plan(
            local_id=record.local_id,
            plan_type=record.plan_type,
            start_date=record.start_date,
            end_date=record.end_date,
            la=la,
            expected_delivery_date=record.expected_delivery_date,
        )

    # --- query -------------------------------------------------------------------------------
    def _plans_for(self, nhs_number: str) -> list[_Plan]:
        today = self.clock().date()
        found = []
        for (number, _), plan in sorted(self.plans.items()):
            if number != nhs_number:
                continue
            if plan.end_date is not None and plan.end_date + RETENTION_AFTER_END < today:
                continue  # out of scope twelve months after the plan ended
            found.append(plan)
        return found

    def _query(self, request: MockRequest) -> MockReply:
        payload = request.message.payload
        nhs_number = (payload.findtext(_C + "nhsNumber") or "").strip()
        if not is_valid_nhs_number(nhs_number):
            return self.fault(
                fault_code="Client",
                text="NHS number fails the Modulus 11 check",
                service_code="CPIS-INVALID-NHS-NUMBER",
                relates_to=request.message_id,
            )
        access_type = (payload.findtext(_C + "accessType") or "").strip()
        accessor_node = payload.find(_C + "accessor")
        response = etree.Element(_C + "NhsQueryResponse", nsmap={"cp": m.CPIS_NS})
        code = etree.SubElement(response, _C + "queryResponseCode")
        etree.SubElement(response, _C + "nhsNumber").text = nhs_number
        with self._lock:
            plans = self._plans_for(nhs_number)
            if plans and access_type == "unscheduled" and accessor_node is not None:
                wrapper = etree.Element(_C + "access")
                etree.SubElement(wrapper, _C + "accessTime").text = self.clock().isoformat()
                wrapper.append(_copy(accessor_node))
                setting = payload.findtext(_C + "careSetting")
                if setting:
                    etree.SubElement(wrapper, _C + "careSetting").text = setting
                access = m.read_access(wrapper)
                history = self.accesses.setdefault(nhs_number, deque(maxlen=MAX_ACCESSES))
                history.appendleft(access)
                self._notify(nhs_number, plans, access)
            accesses = list(self.accesses.get(nhs_number, ()))
        code.text = "OK" if plans else "NF"
        for plan in plans:
            node = etree.SubElement(response, _C + "plan")
            etree.SubElement(node, _C + "planType").text = plan.plan_type
            etree.SubElement(node, _C + "startDate").text = plan.start_date.isoformat()
            if plan.end_date is not None:
                etree.SubElement(node, _C + "endDate").text = plan.end_date.isoformat()
            m.local_authority_element(node, plan.la)
            if plan.expected_delivery_date is not None:
                etree.SubElement(
                    node, _C + "expectedDeliveryDate"
                ).text = plan.expected_delivery_date.isoformat()
        if plans:
            for access in accesses:
                m.access_element(response, access)
        return self._reply(request, response)

    def _history(self, request: MockRequest) -> MockReply:
        nhs_number = (request.message.payload.findtext(_C + "nhsNumber") or "").strip()
        response = etree.Element(_C + "AccessHistoryResponse", nsmap={"cp": m.CPIS_NS})
        etree.SubElement(response, _C + "nhsNumber").text = nhs_number
        with self._lock:
            for access in self.accesses.get(nhs_number, ()):
                m.access_element(response, access)
        return self._reply(request, response)

    # --- notifications -----------------------------------------------------------------------
    def _notify(self, nhs_number: str, plans: list[_Plan], access: CpisAccess) -> None:
        by_la: dict[str, list[_Plan]] = {}
        for plan in plans:
            by_la.setdefault(plan.la.ods_code, []).append(plan)
        for la_code, la_plans in sorted(by_la.items()):
            record: dict[str, Any] = {
                "id": self.ids(),
                "kind": "access-to-service",
                "local_authority": la_code,
                "status": "pending" if self.callback_url else "no-callback",
                "attempts": 0,
                "http_status": None,
            }
            self.notifications.append(record)
            if not self.callback_url:
                continue
            envelope = build_access_notification(
                notification_id=record["id"],
                nhs_number=nhs_number,
                local_id=la_plans[0].local_id,
                local_authority_ods_code=la_code,
                plan_types=tuple(p.plan_type for p in la_plans),
                access=access,
                to=self.callback_url,
                from_address=SENDER,
            )
            threading.Thread(
                target=self._deliver,
                args=(record, envelope, self.callback_url, m.NOTIFICATION_ACTION),
                name="cpis-notification",
                daemon=True,
            ).start()

    def control(self, action: str, data: dict[str, Any]) -> dict[str, Any]:
        """Run an admin control; raise ValueError for an unknown one or bad input.

        `inactive-nhs-numbers`: `{"nhs_numbers": [...]}` (optional; default every NHS number on
        a plan that PDS holds as superseded or does not hold), optionally `"replacements":
        {old: new}` (default: what PDS says replaced a superseded number). For each local
        authority with plans under those numbers, one inactive-NHS-number notification is pushed
        to the callback URL. Answers the notification ids and the count of numbers named.
        """
        if action != "inactive-nhs-numbers":
            raise ValueError("unknown control; the CP-IS mock has inactive-nhs-numbers")
        numbers = data.get("nhs_numbers")
        replacements = data.get("replacements") or {}
        if numbers is not None and (
            not isinstance(numbers, list) or not all(isinstance(n, str) for n in numbers)
        ):
            raise ValueError("nhs_numbers must be a list of strings")
        if not isinstance(replacements, dict) or not all(
            isinstance(v, str) and is_valid_nhs_number(v) for v in replacements.values()
        ):
            raise ValueError("replacements must map NHS numbers to valid NHS numbers")
        with self._lock:
            by_la: dict[str, tuple[LocalAuthority, dict[str, list[_Plan]]]] = {}
            for (number, _), plan in sorted(self.plans.items()):
                state, _sensitive = self.pds_lookup(number)
                if numbers is not None:
                    if number not in numbers:
                        continue
                elif state == "current":
                    continue
                la_entry = by_la.setdefault(plan.la.ods_code, (plan.la, {}))
                la_entry[1].setdefault(number, []).append(plan)
            sent: list[str] = []
            named = 0
            for la_code, (_la, plans_by_number) in sorted(by_la.items()):
                records = []
                for number, plans in sorted(plans_by_number.items()):
                    state, _sensitive = self.pds_lookup(number)
                    replacement = replacements.get(number)
                    if replacement is None and state == "superseded" and self.replacement_lookup:
                        replacement = self.replacement_lookup(number)
                    records.append(
                        InactiveNhsNumber(
                            nhs_number=number,
                            local_id=plans[0].local_id,
                            plan_types=tuple(sorted({p.plan_type for p in plans})),
                            reason="superseded"
                            if replacement or state == "superseded"
                            else "inactive",
                            replacement_nhs_number=replacement,
                        )
                    )
                named += len(records)
                # The schema allows 500 records a notification (the receiver stores two resources
                # per record in one transaction): more go in further notifications.
                for start in range(0, len(records), MAX_NOTIFICATION_RECORDS):
                    batch = tuple(records[start : start + MAX_NOTIFICATION_RECORDS])
                    sent.append(self._push_inactive(la_code, batch))
        return {"notifications": sent, "nhs_numbers": named}

    def _push_inactive(self, la_code: str, records: tuple[InactiveNhsNumber, ...]) -> str:
        record: dict[str, Any] = {
            "id": self.ids(),
            "kind": "inactive-nhs-number",
            "local_authority": la_code,
            "status": "pending" if self.callback_url else "no-callback",
            "attempts": 0,
            "http_status": None,
        }
        self.notifications.append(record)
        if self.callback_url:
            envelope = build_inactive_nhs_number_notification(
                notification_id=record["id"],
                local_authority_ods_code=la_code,
                notified_at=self.clock(),
                records=records,
                to=self.callback_url,
                from_address=SENDER,
            )
            threading.Thread(
                target=self._deliver,
                args=(record, envelope, self.callback_url, m.INACTIVE_NOTIFICATION_ACTION),
                name="cpis-notification",
                daemon=True,
            ).start()
        return str(record["id"])

    def _deliver(
        self, record: dict[str, Any], envelope: etree._Element, url: str, action: str
    ) -> None:
        for attempt in range(1, 4):
            add_security_header(envelope, username=self.callback_username, created=self.clock())
            if self.signing.private_key_pem and self.signing.certificate_pem:
                sign_envelope(
                    envelope,
                    private_key_pem=self.signing.private_key_pem,
                    certificate_pem=self.signing.certificate_pem,
                )
            status: int | None = None
            try:
                response = requests.post(
                    url,
                    data=xml.to_bytes(envelope),
                    headers={
                        "Content-Type": "text/xml; charset=utf-8",
                        "SOAPAction": f'"{action}"',
                    },
                    timeout=(2.0, 5.0),
                    allow_redirects=False,
                )
                status = response.status_code
            except requests.RequestException:
                status = None
            with self._lock:
                record["attempts"] = attempt
                record["http_status"] = status
                record["status"] = "delivered" if status == 200 else "failed"
            if status == 200:
                return
            log.info("cpis notification %s attempt %d failed", record["id"], attempt)
            time.sleep(0.2 * attempt)


def _copy(node: etree._Element) -> etree._Element:
    return xml.parse(xml.to_bytes(node, declaration=False))
