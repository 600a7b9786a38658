"""The HTTP transport of every SOAP client: timeouts, bounded replies, no redirects, no logs."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlparse

import requests
import requests.exceptions as rq
from urllib3.exceptions import ProtocolError, ReadTimeoutError
from zeep.transports import Transport

from connectors.errors import ConfigurationError, Timeout, Unavailable, UnsafeXml
from connectors.soap.settings import SoapSettings

__all__ = ["HardenedTransport", "build_transport"]

_CHUNK = 65_536


class HardenedTransport(Transport):
    """A zeep transport that never hangs, never follows redirects and never logs envelopes.

    - connect and read timeouts on every call, plus a total deadline per call;
    - the reply body is read incrementally and refused past `max_response_bytes`
      (decompressed size, so a gzip bomb is bounded too);
    - WSDL/XSD documents load from local files only, never over the network.
    """

    def __init__(
        self,
        *,
        connect_timeout: float,
        read_timeout: float,
        operation_timeout: float,
        max_response_bytes: int,
        load_timeout: float = 5.0,
        session: requests.Session | None = None,
    ) -> None:
        session = session or requests.Session()
        session.max_redirects = 0
        super().__init__(  # type: ignore[no-untyped-call]
            timeout=load_timeout,
            operation_timeout=(connect_timeout, read_timeout),
            session=session,
        )
        self.session.headers["User-Agent"] = "wraparound-connectors"
        self.session.headers["Accept-Encoding"] = "identity"
        self.total_timeout = operation_timeout
        self.max_response_bytes = max_response_bytes

    def load(self, url: str) -> bytes:
        """Load a WSDL or XSD from a local file; refuse every network scheme."""
        scheme = urlparse(url).scheme
        if scheme not in ("", "file"):
            raise ConfigurationError("WSDL and XSD documents load from package files only")
        return super().load(url)  # type: ignore[no-untyped-call,no-any-return]

    def get(self, address: str, params: Any, headers: dict[str, str]) -> requests.Response:
        """Refuse GET: clients only POST envelopes; documents come from package files."""
        raise ConfigurationError("the SOAP transport does not fetch documents over HTTP")

    def post(self, address: str, message: bytes, headers: dict[str, str]) -> requests.Response:
        """POST an envelope and read the bounded reply within the call deadline."""
        deadline = time.monotonic() + self.total_timeout
        response = self.session.post(
            address,
            data=message,
            headers=headers,
            timeout=self.operation_timeout,
            stream=True,
            allow_redirects=False,
        )
        try:
            response._content = self._read_bounded(response, deadline)
        except BaseException:
            response.close()  # a broken or oversized reply: drop the connection
            raise
        # Read to the end: hand the connection back to the pool for the next call.
        response._content_consumed = True
        response.close()
        return response

    def _read_bounded(self, response: requests.Response, deadline: float) -> bytes:
        chunks: list[bytes] = []
        total = 0
        raw = response.raw
        try:
            while True:
                if time.monotonic() > deadline:
                    raise Timeout("the reply did not complete within the operation timeout")
                chunk = raw.read1(_CHUNK, decode_content=True)
                if not chunk:
                    break
                total += len(chunk)
                if total > self.max_response_bytes:
                    raise UnsafeXml(f"reply larger than {self.max_response_bytes} bytes")
                chunks.append(chunk)
        except ReadTimeoutError as exc:
            raise Timeout("the reply stalled past the read timeout") from exc
        except ProtocolError as exc:
            raise Unavailable("the connection broke while reading the reply") from exc
        except rq.ConnectionError as exc:
            raise Unavailable("the connection broke while reading the reply") from exc
        return b"".join(chunks)


def build_transport(
    settings: SoapSettings, *, session: requests.Session | None = None
) -> HardenedTransport:
    """Build the default transport for a service from its settings."""
    session = session or requests.Session()
    session.verify = settings.verify_tls
    session.trust_env = settings.trust_env
    if settings.client_cert is not None:
        session.cert = settings.client_cert
    return HardenedTransport(
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        operation_timeout=settings.operation_timeout,
        max_response_bytes=settings.max_response_bytes,
        load_timeout=settings.wsdl_load_timeout,
        session=session,
    )
