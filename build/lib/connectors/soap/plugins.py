"""Cross-cutting call plugins: correlation id and timing for audit and metrics (never envelopes)."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from lxml import etree
from zeep import Plugin

from connectors.soap.context import current_call

__all__ = ["CallObserver", "CallRecord", "CorrelationTimingPlugin"]

log = logging.getLogger("connectors.soap.calls")


@dataclass(frozen=True)
class CallRecord:
    """What one SOAP call did: ids, timing, outcome and sizes; never content."""

    service: str
    operation: str
    message_id: str
    correlation_id: str
    started_at: datetime
    duration_ms: float
    outcome: str  # "ok" or a ConnectorError code
    http_status: int | None
    request_bytes: int
    response_bytes: int


@runtime_checkable
class CallObserver(Protocol):
    """Anything told about every finished call (successful or not)."""

    def record(self, call: CallRecord) -> None:
        """Receive one finished call."""


class CorrelationTimingPlugin(Plugin):
    """Send the correlation id as an HTTP header; keep and log timing records of each call."""

    def __init__(
        self,
        sink: Callable[[CallRecord], None] | None = None,
        *,
        keep: int = 1000,
        header: str = "X-Correlation-ID",
    ) -> None:
        self.sink = sink
        self.header = header
        self._records: deque[CallRecord] = deque(maxlen=keep)
        self._lock = threading.Lock()

    def egress(
        self,
        envelope: etree._Element,
        http_headers: dict[str, str],
        operation: Any,
        binding_options: dict[str, Any],
    ) -> tuple[etree._Element, dict[str, str]]:
        """Add the correlation id header to the outgoing request."""
        call = current_call()
        if call is not None:
            http_headers[self.header] = call.correlation_id
        return envelope, http_headers

    def record(self, call: CallRecord) -> None:
        """Keep the record, log it (ids and timing only) and pass it to the sink."""
        with self._lock:
            self._records.append(call)
        log.info(
            "soap call service=%s operation=%s outcome=%s status=%s ms=%.1f correlation=%s",
            call.service,
            call.operation,
            call.outcome,
            call.http_status,
            call.duration_ms,
            call.correlation_id,
        )
        if self.sink is not None:
            self.sink(call)

    @property
    def records(self) -> list[CallRecord]:
        """Return the kept records, oldest first."""
        with self._lock:
            return list(self._records)
