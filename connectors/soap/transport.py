"""The HTTP transport of every SOAP client: timeouts, bounded replies, no redirects, no logs."""

from __future__ import annotations

import datetime
import time
from typing import Any
from urllib.parse import urlparse

import requests
import requests.exceptions as rq
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers
from urllib3.exceptions import (
    ClosedPoolError,
    ConnectTimeoutError,
    InvalidHeader,
    LocationValueError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    ResponseError,
)
from urllib3.exceptions import HTTPError as Urllib3HTTPError
from urllib3.exceptions import ProxyError as Urllib3ProxyError
from urllib3.exceptions import SSLError as Urllib3SSLError
from urllib3.util import Timeout as Urllib3Timeout
from zeep.transports import Transport

from connectors.errors import ConfigurationError, Timeout, Unavailable, UnsafeXml
from connectors.soap.settings import SoapSettings

__all__ = ["HardenedTransport", "build_transport"]

_CHUNK = 65_536
# The stock adapter's send: when it has been replaced (a test double such as `responses`, or a
# subclass), every post goes through requests unchanged.
_STOCK_SEND = HTTPAdapter.send


class _Route:
    """What a post to one address needs, worked out once: the connection pool, path, headers."""

    __slots__ = ("adapter", "key", "path", "pool", "session_headers")

    def __init__(self, key: tuple[Any, ...], adapter: HTTPAdapter, pool: Any, path: str,
                 session_headers: dict[str, str]) -> None:
        self.key = key
        self.adapter = adapter
        self.pool = pool
        self.path = path
        self.session_headers = session_headers


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
        self._timeout = Urllib3Timeout(connect=connect_timeout, read=read_timeout)
        self._routes: dict[str, _Route] = {}

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
        route = self._route(address)
        if route is None:
            response = self.session.post(
                address,
                data=message,
                headers=headers,
                timeout=self.operation_timeout,
                stream=True,
                allow_redirects=False,
            )
        else:
            response = self._send(route, address, message, headers)
        try:
            response._content = self._read_bounded(response, deadline)
        except BaseException:
            response.close()  # a broken or oversized reply: drop the connection
            raise
        # Read to the end: hand the connection back to the pool for the next call.
        response._content_consumed = True
        response.close()
        return response

    def _route(self, address: str) -> _Route | None:
        """Return the cached route to address, or None when the post must go through requests.

        The direct route is the one requests itself takes for this session (same adapter, same
        urllib3 pool with the session's TLS verification and client certificate, same retries,
        same headers, no redirects) without preparing a new request, merging environment
        settings and walking cookie jars on every call. It is used only for a plain session:
        no environment (proxies, netrc), no proxies, auth, cookies or hooks, and the stock
        adapter; anything else goes through `session.post` as before.
        """
        session = self.session
        if (
            session.trust_env
            or session.proxies
            or session.auth is not None
            or len(session.cookies)
            or any(session.hooks.values())
        ):
            return None
        adapter = session.get_adapter(address)
        if type(adapter) is not HTTPAdapter or HTTPAdapter.send is not _STOCK_SEND:
            return None
        key = (adapter, session.verify, session.cert, tuple(session.headers.items()))
        route = self._routes.get(address)
        if route is not None and route.key == key:
            return route
        prepared = requests.Request("POST", address).prepare()
        try:
            pool = adapter.get_connection_with_tls_context(
                prepared, session.verify, proxies={}, cert=session.cert
            )
        except LocationValueError as exc:
            raise rq.InvalidURL(exc, request=prepared) from exc
        adapter.cert_verify(pool, address, session.verify, session.cert)
        route = _Route(
            key,
            adapter,
            pool,
            adapter.request_url(prepared, {}),
            {k: v for k, v in session.headers.items() if v is not None},
        )
        self._routes[address] = route
        return route

    def _send(
        self, route: _Route, address: str, message: bytes, headers: dict[str, str]
    ) -> requests.Response:
        """POST on the route's pool; errors and the response as `HTTPAdapter.send` makes them."""
        merged = CaseInsensitiveDict(route.session_headers)
        for name, value in headers.items():
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = value
        merged["Content-Length"] = str(len(message))
        request = requests.PreparedRequest()
        request.method = "POST"
        request.url = address
        request.headers = merged
        request.body = message
        start = time.perf_counter()
        try:
            raw = route.pool.urlopen(
                method="POST",
                url=route.path,
                body=message,
                headers=merged,
                redirect=False,
                assert_same_host=False,
                preload_content=False,
                decode_content=False,
                retries=route.adapter.max_retries,
                timeout=self._timeout,
                chunked=False,
            )
        except (ProtocolError, OSError) as err:
            raise rq.ConnectionError(err, request=request) from err
        except MaxRetryError as exc:
            reason = exc.reason
            if isinstance(reason, ConnectTimeoutError) and not isinstance(
                reason, NewConnectionError
            ):
                raise rq.ConnectTimeout(exc, request=request) from exc
            if isinstance(reason, ResponseError):
                raise rq.RetryError(exc, request=request) from exc
            if isinstance(reason, Urllib3ProxyError):
                raise rq.ProxyError(exc, request=request) from exc
            if isinstance(reason, Urllib3SSLError):
                raise rq.SSLError(exc, request=request) from exc
            raise rq.ConnectionError(exc, request=request) from exc
        except ClosedPoolError as exc:
            raise rq.ConnectionError(exc, request=request) from exc
        except Urllib3ProxyError as exc:
            raise rq.ProxyError(exc) from exc
        except (Urllib3SSLError, Urllib3HTTPError) as exc:
            if isinstance(exc, Urllib3SSLError):
                raise rq.SSLError(exc, request=request) from exc
            if isinstance(exc, ReadTimeoutError):
                raise rq.ReadTimeout(exc, request=request) from exc
            if isinstance(exc, InvalidHeader):
                raise rq.InvalidHeader(exc, request=request) from exc
            raise
        response = requests.Response()
        response.status_code = raw.status
        response.headers = CaseInsensitiveDict(raw.headers)
        response.encoding = get_encoding_from_headers(response.headers)
        response.raw = raw
        response.reason = raw.reason
        response.url = address
        response.request = request
        response.connection = route.adapter
        response.elapsed = datetime.timedelta(seconds=time.perf_counter() - start)
        if response.is_redirect:
            # What requests does with max_redirects 0, even with allow_redirects off.
            response.close()
            raise rq.TooManyRedirects(
                f"Exceeded {self.session.max_redirects} redirects.", response=response
            )
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
