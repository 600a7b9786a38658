"""WS-Security: UsernameToken + Timestamp, and X.509 signing and verification that resists wrapping.

Verification (`verify_signed_envelope`) does more than check digests, because a valid signature
only proves that *some* element with the referenced Id is intact (XML Signature Wrapping):

1. exactly one soap:Header, one wsse:Security, one ds:Signature (inside that Security header) and
   one soap:Body, the Body a direct child of the Envelope;
2. every Id value in the document is unique;
3. the signature's references must include the Id of *the* direct-child Body and of *the*
   Timestamp, each a bare ``#id``;
4. the signature must verify with the pinned peer certificate (KeyInfo is never trusted);
5. the canonical bytes that were signed for the Body reference must equal the canonical bytes of
   the direct-child Body, so the Body the caller reads is the Body that was signed; the same node
   object is returned to the caller;
6. the Timestamp must be current.

Any exception along the way is a `SecurityFailure`; nothing is ever accepted as "unsigned".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from lxml import etree

from connectors.errors import SecurityFailure
from connectors.soap import xml
from connectors.soap.settings import SigningSettings
from connectors.soap.wsa import SOAP11_NS, ensure_header

__all__ = [
    "DS_NS",
    "WSSE_NS",
    "WSU_NS",
    "WsSecurity",
    "add_security_header",
    "check_timestamp",
    "sign_envelope",
    "utcnow",
    "verify_signed_envelope",
]

WSSE_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
DS_NS = "http://www.w3.org/2000/09/xmldsig#"
_PASSWORD_TEXT = (
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"
    "#PasswordText"
)
_EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
_ID_ATTRIBUTES = (f"{{{WSU_NS}}}Id", "Id", "ID", "id")
_BARE_REF = re.compile(r"^#[A-Za-z_][A-Za-z0-9_.\-]*$")
_TS_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def utcnow() -> datetime:
    """Return the current time in UTC."""
    return datetime.now(UTC)


def _format(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime(_TS_FORMAT)


def _parse_time(value: str | None) -> datetime:
    if not value:
        raise SecurityFailure("timestamp value missing")
    text = value.strip().replace("Z", "+00:00")
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise SecurityFailure("timestamp without a time zone")
    return parsed


def add_security_header(
    envelope: etree._Element,
    *,
    username: str | None,
    password: str | None = None,
    created: datetime,
    ttl_seconds: int = 300,
    timestamp_id: str = "TS-1",
) -> etree._Element:
    """Add a wsse:Security header with a Timestamp and, when given, a UsernameToken."""
    header = ensure_header(envelope)
    for old in header.findall(f"{{{WSSE_NS}}}Security"):
        header.remove(old)
    security = etree.SubElement(
        header, f"{{{WSSE_NS}}}Security", nsmap={"wsse": WSSE_NS, "wsu": WSU_NS}
    )
    timestamp = etree.SubElement(security, f"{{{WSU_NS}}}Timestamp")
    timestamp.set(f"{{{WSU_NS}}}Id", timestamp_id)
    etree.SubElement(timestamp, f"{{{WSU_NS}}}Created").text = _format(created)
    etree.SubElement(timestamp, f"{{{WSU_NS}}}Expires").text = _format(
        created + timedelta(seconds=ttl_seconds)
    )
    if username:
        token = etree.SubElement(security, f"{{{WSSE_NS}}}UsernameToken")
        etree.SubElement(token, f"{{{WSSE_NS}}}Username").text = username
        if password is not None:
            pw = etree.SubElement(token, f"{{{WSSE_NS}}}Password", Type=_PASSWORD_TEXT)
            pw.text = password
    return security


def check_timestamp(
    security: etree._Element,
    *,
    now: datetime,
    max_skew_seconds: int = 60,
    max_window_seconds: int = 600,
) -> None:
    """Raise SecurityFailure unless the Security header holds exactly one current Timestamp."""
    stamps = security.findall(f"{{{WSU_NS}}}Timestamp")
    if len(stamps) != 1:
        raise SecurityFailure("expected exactly one wsu:Timestamp")
    created = _parse_time(stamps[0].findtext(f"{{{WSU_NS}}}Created"))
    expires = _parse_time(stamps[0].findtext(f"{{{WSU_NS}}}Expires"))
    skew = timedelta(seconds=max_skew_seconds)
    if created > now + skew:
        raise SecurityFailure("timestamp created in the future")
    if expires <= now - skew:
        raise SecurityFailure("timestamp expired")
    if expires - created > timedelta(seconds=max_window_seconds) or expires <= created:
        raise SecurityFailure("timestamp window not acceptable")


def _id_of(element: etree._Element) -> str | None:
    for attribute in _ID_ATTRIBUTES:
        value = element.get(attribute)
        if value:
            return str(value)
    return None


def sign_envelope(
    envelope: etree._Element,
    *,
    private_key_pem: bytes,
    certificate_pem: bytes,
    body_id: str = "Body-1",
) -> None:
    """Sign the soap:Body and wsu:Timestamp (RSA-SHA256, exclusive C14N) into wsse:Security."""
    from signxml.algorithms import SignatureConstructionMethod
    from signxml.signer import XMLSigner

    body = envelope.find(f"{{{SOAP11_NS}}}Body")
    security = ensure_header(envelope).find(f"{{{WSSE_NS}}}Security")
    if body is None or security is None:
        raise SecurityFailure("cannot sign: Body or Security header missing")
    timestamp = security.find(f"{{{WSU_NS}}}Timestamp")
    if timestamp is None:
        raise SecurityFailure("cannot sign: Timestamp missing")
    if _id_of(body) is None:
        body.set(f"{{{WSU_NS}}}Id", body_id)
    signer = XMLSigner(
        method=SignatureConstructionMethod.detached,
        signature_algorithm="rsa-sha256",
        digest_algorithm="sha256",
        c14n_algorithm=_EXC_C14N,
    )
    try:
        signature = signer.sign(
            envelope,
            key=private_key_pem,
            cert=certificate_pem.decode("ascii"),
            reference_uri=[f"#{_id_of(body)}", f"#{_id_of(timestamp)}"],
            id_attribute="Id",
        )
    except Exception as exc:  # any signing failure is a configuration/security problem
        raise SecurityFailure("signing failed") from exc
    security.append(signature)


def _single(found: list[etree._Element], what: str) -> etree._Element:
    if len(found) != 1:
        raise SecurityFailure(f"expected exactly one {what}, found {len(found)}")
    return found[0]


def verify_signed_envelope(
    envelope: etree._Element,
    *,
    certificate_pem: bytes,
    now: datetime,
    max_skew_seconds: int = 60,
) -> etree._Element:
    """Verify a signed envelope (see module docstring) and return the verified soap:Body node."""
    try:
        return _verify(envelope, certificate_pem, now, max_skew_seconds)
    except SecurityFailure:
        raise
    except Exception as exc:
        raise SecurityFailure("signature verification failed") from exc


def _verify(
    envelope: etree._Element, certificate_pem: bytes, now: datetime, max_skew_seconds: int
) -> etree._Element:
    from signxml.algorithms import DigestAlgorithm, SignatureMethod
    from signxml.verifier import SignatureConfiguration, XMLVerifier

    if envelope.tag != f"{{{SOAP11_NS}}}Envelope":
        raise SecurityFailure("not a SOAP 1.1 envelope")
    header = _single(envelope.findall(f"{{{SOAP11_NS}}}Header"), "soap:Header")
    body = _single(envelope.findall(f"{{{SOAP11_NS}}}Body"), "soap:Body")
    if len(envelope.findall(f".//{{{SOAP11_NS}}}Body")) != 1:
        raise SecurityFailure("more than one soap:Body in the document")
    security = _single(header.findall(f"{{{WSSE_NS}}}Security"), "wsse:Security")
    if len(envelope.findall(f".//{{{WSSE_NS}}}Security")) != 1:
        raise SecurityFailure("more than one wsse:Security in the document")
    signatures = envelope.findall(f".//{{{DS_NS}}}Signature")
    signature = _single(signatures, "ds:Signature")
    if signature.getparent() is not security:
        raise SecurityFailure("ds:Signature is not in the Security header")
    timestamp = _single(security.findall(f"{{{WSU_NS}}}Timestamp"), "wsu:Timestamp")

    seen: set[str] = set()
    for element in envelope.iter():
        if not isinstance(element.tag, str):
            continue
        for attribute in _ID_ATTRIBUTES:
            value = element.get(attribute)
            if value is None:
                continue
            if value in seen:
                raise SecurityFailure("duplicate Id values in the document")
            seen.add(value)

    body_id = _id_of(body)
    ts_id = _id_of(timestamp)
    if body_id is None or ts_id is None:
        raise SecurityFailure("Body or Timestamp carries no Id, so cannot be signed")
    uris = [ref.get("URI") or "" for ref in signature.iterfind(f".//{{{DS_NS}}}Reference")]
    if any(not _BARE_REF.match(uri) for uri in uris):
        raise SecurityFailure("only bare #id references are accepted")
    if f"#{body_id}" not in uris or f"#{ts_id}" not in uris:
        raise SecurityFailure("signature does not cover the Body and the Timestamp")

    config = SignatureConfiguration(
        require_x509=True,
        location=f"./{{{SOAP11_NS}}}Header/{{{WSSE_NS}}}Security/",
        expect_references=len(uris),
        signature_methods=frozenset(
            {SignatureMethod.RSA_SHA256, SignatureMethod.RSA_SHA512, SignatureMethod.ECDSA_SHA256}
        ),
        digest_algorithms=frozenset({DigestAlgorithm.SHA256, DigestAlgorithm.SHA512}),
    )
    results = XMLVerifier().verify(
        envelope,
        x509_cert=certificate_pem.decode("ascii"),
        parser=xml.parser(),
        id_attribute="Id",
        expect_config=config,
    )
    signed = results if isinstance(results, list) else [results]
    by_uri = dict(zip(uris, signed, strict=True))
    if by_uri[f"#{body_id}"].signed_data != xml.canonical(body):
        raise SecurityFailure("the Body read is not the Body that was signed")
    if by_uri[f"#{ts_id}"].signed_data != xml.canonical(timestamp):
        raise SecurityFailure("the Timestamp read is not the Timestamp that was signed")
    check_timestamp(security, now=now, max_skew_seconds=max_skew_seconds)
    return body


class WsSecurity:
    """zeep WS-Security object: UsernameToken + Timestamp out, optional signature both ways."""

    def __init__(
        self,
        username: str | None = None,
        password: str | None = None,
        *,
        ttl_seconds: int = 300,
        signing: SigningSettings | None = None,
        clock: Callable[[], datetime] = utcnow,
        max_skew_seconds: int = 60,
    ) -> None:
        self.username = username
        self.password = password
        self.ttl_seconds = ttl_seconds
        self.signing = signing or SigningSettings()
        self.clock = clock
        self.max_skew_seconds = max_skew_seconds

    def apply(
        self, envelope: etree._Element, headers: dict[str, str]
    ) -> tuple[etree._Element, dict[str, str]]:
        """Add the Security header (and sign) before sending."""
        add_security_header(
            envelope,
            username=self.username,
            password=self.password,
            created=self.clock(),
            ttl_seconds=self.ttl_seconds,
        )
        if self.signing.private_key_pem and self.signing.certificate_pem:
            sign_envelope(
                envelope,
                private_key_pem=self.signing.private_key_pem,
                certificate_pem=self.signing.certificate_pem,
            )
        return envelope, headers

    def verify(self, envelope: etree._Element) -> etree._Element:
        """Check a reply; return the soap:Body the caller may read."""
        if self.signing.peer_certificate_pem is not None:
            return verify_signed_envelope(
                envelope,
                certificate_pem=self.signing.peer_certificate_pem,
                now=self.clock(),
                max_skew_seconds=self.max_skew_seconds,
            )
        if self.signing.require_signed_replies:
            raise SecurityFailure("signed replies required but no peer certificate configured")
        body = envelope.find(f"{{{SOAP11_NS}}}Body")
        if body is None:
            raise SecurityFailure("reply has no soap:Body")
        return body
