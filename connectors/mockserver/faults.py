"""Fault injection for the mock national server: what can go wrong, per service and operation."""

from __future__ import annotations

import itertools
import threading
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["FAULT_KINDS", "HOSTILE_VARIANTS", "FaultRegistry", "FaultSpec", "hostile_document"]

FAULT_KINDS = (
    "latency",  # add `seconds` before answering normally
    "soap_fault",  # the service's SOAP Fault: `code` (service code), `fault_code`, `text`
    "http_error",  # answer with `status` (500 or 503) and an HTML body
    "malformed",  # answer 200 with XML that is not well-formed
    "hostile",  # answer 200 with a hostile XML document (`variant`, optional `url`)
    "hang",  # accept the request and answer nothing for `seconds` (until faults are cleared)
    "reset",  # reset the connection without answering
)

HOSTILE_VARIANTS = (
    "xxe_file",
    "xxe_network",
    "parameter_entity",
    "billion_laughs",
    "quadratic",
    "external_dtd",
    "external_dtd_file",
    "internal_entity",
    "xinclude",
    "oversized",
    "deep",
    "deep_moderate",
)


@dataclass(frozen=True)
class FaultSpec:
    """One injected fault; `operation` "*" matches every operation of the service."""

    id: int
    service: str
    operation: str
    kind: str
    seconds: float = 0.0
    status: int = 500
    code: str | None = None
    fault_code: str = "Client"
    text: str = "fault injected by the mock"
    variant: str = "xxe_file"
    url: str | None = None
    file_path: str | None = None
    utf16: bool = False
    times: int | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the fault as JSON-ready data."""
        return asdict(self)


class FaultRegistry:
    """Thread-safe set of injected faults, consumed by the mock on each request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[FaultSpec] = []
        self._remaining: dict[int, int] = {}
        self._ids = itertools.count(1)
        self.released = threading.Event()

    def add(self, data: dict[str, Any]) -> FaultSpec:
        """Validate and add a fault from admin JSON; raise ValueError when it is invalid."""
        kind = data.get("kind")
        if kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {', '.join(FAULT_KINDS)}")
        service = data.get("service")
        if not isinstance(service, str) or not service:
            raise ValueError("service is required")
        variant = data.get("variant", "xxe_file")
        if kind == "hostile" and variant not in HOSTILE_VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(HOSTILE_VARIANTS)}")
        status = int(data.get("status", 500))
        if kind == "http_error" and status not in (500, 502, 503, 504):
            raise ValueError("status must be 500, 502, 503 or 504")
        times = data.get("times")
        fault_code = str(data.get("fault_code", "Client"))
        if fault_code not in ("Client", "Server"):
            raise ValueError("fault_code must be Client or Server")
        with self._lock:
            spec = FaultSpec(
                id=next(self._ids),
                service=service,
                operation=str(data.get("operation", "*")),
                kind=kind,
                seconds=min(float(data.get("seconds", 0.0)), 600.0),
                status=status,
                code=data.get("code"),
                fault_code=fault_code,
                text=str(data.get("text", "fault injected by the mock")),
                variant=variant,
                url=data.get("url"),
                file_path=data.get("file_path"),
                utf16=bool(data.get("utf16", False)),
                times=int(times) if times is not None else None,
            )
            self._faults.append(spec)
            if spec.times is not None:
                self._remaining[spec.id] = spec.times
            self.released.clear()
        return spec

    def clear(self, service: str | None = None) -> int:
        """Remove faults (all, or one service's); release any hanging requests."""
        with self._lock:
            before = len(self._faults)
            self._faults = [f for f in self._faults if service is not None and f.service != service]
            removed = before - len(self._faults)
            if not self._faults:
                self.released.set()
        return removed

    def list(self) -> list[FaultSpec]:
        """Return the active faults."""
        with self._lock:
            return list(self._faults)

    def take(self, service: str, operation: str | None) -> FaultSpec | None:
        """Return the fault to apply to this request, consuming one use of it."""
        with self._lock:
            for spec in self._faults:
                if spec.service != service:
                    continue
                if spec.operation not in ("*", operation):
                    continue
                if spec.id in self._remaining:
                    self._remaining[spec.id] -= 1
                    if self._remaining[spec.id] <= 0:
                        self._faults.remove(spec)
                        del self._remaining[spec.id]
                return spec
        return None


def hostile_document(
    variant: str, url: str | None = None, file_path: str | None = None, *, utf16: bool = False
) -> bytes:
    """Return one hostile XML document from the catalogue (for replies and for tests).

    `url` is where network variants point (a canary listener in tests); `file_path` is the file
    the file-reading variants point at (a canary file in tests); `utf16` re-encodes the document
    so that a byte-level scan for declarations cannot see them.
    """
    data = _hostile(variant, url, file_path)
    if not utf16:
        return data
    text = data.decode("utf-8")
    if text.startswith("<?xml"):
        text = text.replace('<?xml version="1.0"?>', '<?xml version="1.0" encoding="UTF-16"?>', 1)
    else:
        text = '<?xml version="1.0" encoding="UTF-16"?>' + text
    return text.encode("utf-16")


def _hostile(variant: str, url: str | None, file_path: str | None) -> bytes:
    soap = "http://schemas.xmlsoap.org/soap/envelope/"
    target = url or "http://127.0.0.1:9/canary"
    file_uri = "file://" + (file_path or "/etc/passwd")
    if variant == "xxe_file":
        return (
            b'<?xml version="1.0"?>\n<!DOCTYPE e [<!ENTITY x SYSTEM "'
            + file_uri.encode()
            + b'">]>\n'
            b'<e:Envelope xmlns:e="' + soap.encode() + b'"><e:Body><r>&x;</r></e:Body></e:Envelope>'
        )
    if variant == "internal_entity":
        return (
            b'<?xml version="1.0"?>\n<!DOCTYPE e [<!ENTITY x "injected">]>\n'
            b'<e:Envelope xmlns:e="' + soap.encode() + b'"><e:Body><r>&x;</r></e:Body></e:Envelope>'
        )
    if variant == "xxe_network":
        return (
            b'<?xml version="1.0"?>\n<!DOCTYPE e [<!ENTITY x SYSTEM "' + target.encode() + b'">]>\n'
            b'<e:Envelope xmlns:e="' + soap.encode() + b'"><e:Body><r>&x;</r></e:Body></e:Envelope>'
        )
    if variant == "parameter_entity":
        return (
            b'<?xml version="1.0"?>\n<!DOCTYPE e [<!ENTITY % p SYSTEM "'
            + target.encode()
            + b'"> %p;]>\n<e:Envelope xmlns:e="'
            + soap.encode()
            + b'"><e:Body/></e:Envelope>'
        )
    if variant == "billion_laughs":
        lines = ['<!ENTITY l0 "ha">']
        for i in range(1, 10):
            lines.append(f'<!ENTITY l{i} "{("&l" + str(i - 1) + ";") * 10}">')
        return (
            '<?xml version="1.0"?>\n<!DOCTYPE e [' + "".join(lines) + "]>\n"
            f'<e:Envelope xmlns:e="{soap}"><e:Body><r>&l9;</r></e:Body></e:Envelope>'
        ).encode()
    if variant == "quadratic":
        return (
            '<?xml version="1.0"?>\n<!DOCTYPE e [<!ENTITY a "' + "x" * 50_000 + '">]>\n'
            f'<e:Envelope xmlns:e="{soap}"><e:Body><r>'
            + "&a;" * 20_000
            + "</r></e:Body></e:Envelope>"
        ).encode()
    if variant in ("external_dtd", "external_dtd_file"):
        system = target if variant == "external_dtd" else file_uri
        return (
            b'<?xml version="1.0"?>\n<!DOCTYPE e SYSTEM "' + system.encode() + b'">\n'
            b'<e:Envelope xmlns:e="' + soap.encode() + b'"><e:Body/></e:Envelope>'
        )
    if variant == "xinclude":
        return (
            f'<e:Envelope xmlns:e="{soap}" xmlns:xi="http://www.w3.org/2001/XInclude"><e:Body>'
            f'<xi:include href="{file_uri}" parse="text"/></e:Body></e:Envelope>'
        ).encode()
    if variant == "oversized":
        return (
            f'<e:Envelope xmlns:e="{soap}"><e:Body><r>'.encode()
            + b"A" * 6_000_000
            + b"</r></e:Body></e:Envelope>"
        )
    if variant in ("deep", "deep_moderate"):
        depth = 5_000 if variant == "deep" else 100
        return (
            f'<e:Envelope xmlns:e="{soap}"><e:Body>'.encode()
            + b"<d>" * depth
            + b"</d>" * depth
            + b"</e:Body></e:Envelope>"
        )
    raise ValueError(f"unknown hostile variant {variant!r}")
