"""WS-Security: Timestamp and UsernameToken, X.509 signing, and signature-wrapping resistance."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable

import pytest
from lxml import etree

from connectors.errors import SecurityFailure
from connectors.soap import SigningSettings, WsSecurity, xml
from connectors.soap.wsse import (
    DS_NS,
    WSSE_NS,
    WSU_NS,
    add_security_header,
    check_timestamp,
    sign_envelope,
    verify_signed_envelope,
)

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
S = f"{{{SOAP}}}"
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def _envelope(shield: str = "true") -> etree._Element:
    return xml.parse(
        f'<s:Envelope xmlns:s="{SOAP}"><s:Header/><s:Body>'
        f'<x:Record xmlns:x="urn:test"><x:Shield>{shield}</x:Shield></x:Record>'
        "</s:Body></s:Envelope>".encode()
    )


def _signed(keys: tuple[bytes, bytes], created: dt.datetime = NOW) -> etree._Element:
    envelope = _envelope()
    add_security_header(envelope, username="sender", created=created)
    sign_envelope(envelope, private_key_pem=keys[0], certificate_pem=keys[1])
    return xml.parse(xml.to_bytes(envelope))  # what a receiver parses


def _security(envelope: etree._Element) -> etree._Element:
    node = envelope.find(f"{S}Header/{{{WSSE_NS}}}Security")
    assert node is not None
    return node


def test_security_header_shape(
    c14n: Callable[[bytes | etree._Element], bytes], fixed_now: dt.datetime
) -> None:
    envelope = _envelope()
    add_security_header(envelope, username="gateway", created=fixed_now, ttl_seconds=300)
    expected = (
        f'<wsse:Security xmlns:wsse="{WSSE_NS}" xmlns:wsu="{WSU_NS}">'
        '<wsu:Timestamp wsu:Id="TS-1"><wsu:Created>2026-09-01T09:00:00Z</wsu:Created>'
        "<wsu:Expires>2026-09-01T09:05:00Z</wsu:Expires></wsu:Timestamp>"
        "<wsse:UsernameToken><wsse:Username>gateway</wsse:Username></wsse:UsernameToken>"
        "</wsse:Security>"
    ).encode()
    assert c14n(_security(envelope)) == c14n(expected)


def test_password_is_optional_and_typed(fixed_now: dt.datetime) -> None:
    envelope = _envelope()
    add_security_header(envelope, username="u", password="p", created=fixed_now)
    password = _security(envelope).find(f"{{{WSSE_NS}}}UsernameToken/{{{WSSE_NS}}}Password")
    assert password is not None and password.get("Type", "").endswith("#PasswordText")


@pytest.mark.parametrize(
    ("created_offset", "ttl", "ok"),
    [
        (0, 300, True),
        (-200, 300, True),
        (-400, 300, False),  # expired
        (600, 300, False),  # created in the future
        (0, 3600, False),  # window too long
    ],
)
def test_timestamp_rules(created_offset: int, ttl: int, ok: bool) -> None:
    envelope = _envelope()
    add_security_header(
        envelope, username=None, created=NOW + dt.timedelta(seconds=created_offset), ttl_seconds=ttl
    )
    if ok:
        check_timestamp(_security(envelope), now=NOW)
    else:
        with pytest.raises(SecurityFailure):
            check_timestamp(_security(envelope), now=NOW)


def test_genuine_signature_verifies_and_returns_the_body_node(
    signer_keys: tuple[bytes, bytes],
) -> None:
    envelope = _signed(signer_keys)
    body = verify_signed_envelope(envelope, certificate_pem=signer_keys[1], now=NOW)
    assert body is envelope.find(f"{S}Body")
    assert body.findtext("{urn:test}Record/{urn:test}Shield") == "true"


def _wrap_body(envelope: etree._Element, *, attacker_id: str | None) -> None:
    """XSW: move the signed Body into a wrapper in the Security header; add an attacker Body."""
    body = envelope.find(f"{S}Body")
    assert body is not None
    wrapper = etree.SubElement(_security(envelope), "{urn:attacker}Wrapper")
    envelope.remove(body)
    wrapper.append(body)
    evil = etree.SubElement(envelope, f"{S}Body")
    if attacker_id is not None:
        evil.set(f"{{{WSU_NS}}}Id", attacker_id)
    record = etree.SubElement(evil, "{urn:test}Record")
    etree.SubElement(record, "{urn:test}Shield").text = "false"


def _body_id(envelope: etree._Element) -> str:
    body = envelope.find(f"{S}Body")
    assert body is not None
    return body.get(f"{{{WSU_NS}}}Id") or ""


Attack = Callable[[etree._Element, tuple[bytes, bytes]], etree._Element]


def xsw_wrapped_body(envelope: etree._Element, keys: tuple[bytes, bytes]) -> etree._Element:
    _wrap_body(envelope, attacker_id=None)
    return envelope


def xsw_wrapped_body_duplicate_id(
    envelope: etree._Element, keys: tuple[bytes, bytes]
) -> etree._Element:
    _wrap_body(envelope, attacker_id=_body_id(envelope))
    return envelope


def xsw_wrapped_body_new_id(envelope: etree._Element, keys: tuple[bytes, bytes]) -> etree._Element:
    original = _body_id(envelope)
    _wrap_body(envelope, attacker_id="Body-evil")
    # Point nothing at the attacker Body: the signature still covers the wrapped original.
    assert original != "Body-evil"
    return envelope


def xsw_second_body(envelope: etree._Element, keys: tuple[bytes, bytes]) -> etree._Element:
    evil = etree.SubElement(envelope, f"{S}Body")
    etree.SubElement(etree.SubElement(evil, "{urn:test}Record"), "{urn:test}Shield").text = "false"
    return envelope


def xsw_body_in_object(envelope: etree._Element, keys: tuple[bytes, bytes]) -> etree._Element:
    body = envelope.find(f"{S}Body")
    assert body is not None
    signature = _security(envelope).find(f"{{{DS_NS}}}Signature")
    assert signature is not None
    obj = etree.SubElement(signature, f"{{{DS_NS}}}Object")
    envelope.remove(body)
    obj.append(body)
    evil = etree.SubElement(envelope, f"{S}Body")
    etree.SubElement(etree.SubElement(evil, "{urn:test}Record"), "{urn:test}Shield").text = "false"
    return envelope


def tampered_body(envelope: etree._Element, keys: tuple[bytes, bytes]) -> etree._Element:
    shield = envelope.find(f"{S}Body/{{urn:test}}Record/{{urn:test}}Shield")
    assert shield is not None
    shield.text = "false"
    return envelope


def timestamp_only_signed(envelope: etree._Element, keys: tuple[bytes, bytes]) -> etree._Element:
    fresh = _envelope("false")
    add_security_header(fresh, username="sender", created=NOW)
    security = _security(fresh)
    from signxml import SignatureConstructionMethod, XMLSigner

    signer = XMLSigner(
        method=SignatureConstructionMethod.detached,
        signature_algorithm="rsa-sha256",
        digest_algorithm="sha256",
        c14n_algorithm="http://www.w3.org/2001/10/xml-exc-c14n#",
    )
    security.append(
        signer.sign(
            fresh, key=keys[0], cert=keys[1].decode(), reference_uri=["#TS-1"], id_attribute="Id"
        )
    )
    return xml.parse(xml.to_bytes(fresh))


def expired_replay(envelope: etree._Element, keys: tuple[bytes, bytes]) -> etree._Element:
    return _signed(keys, created=NOW - dt.timedelta(hours=2))


def xpath_injection_uri(envelope: etree._Element, keys: tuple[bytes, bytes]) -> etree._Element:
    for reference in envelope.iter(f"{{{DS_NS}}}Reference"):
        reference.set("URI", "#x' or '1'='1")
    return envelope


def no_security_header(envelope: etree._Element, keys: tuple[bytes, bytes]) -> etree._Element:
    header = envelope.find(f"{S}Header")
    assert header is not None
    header.remove(_security(envelope))
    return envelope


@pytest.mark.parametrize(
    "attack",
    [
        xsw_wrapped_body,
        xsw_wrapped_body_duplicate_id,
        xsw_wrapped_body_new_id,
        xsw_second_body,
        xsw_body_in_object,
        tampered_body,
        timestamp_only_signed,
        expired_replay,
        xpath_injection_uri,
        no_security_header,
    ],
    ids=lambda f: f.__name__,
)
def test_attacks_on_signed_envelopes_fail(attack: Attack, signer_keys: tuple[bytes, bytes]) -> None:
    envelope = attack(_signed(signer_keys), signer_keys)
    with pytest.raises(SecurityFailure):
        verify_signed_envelope(envelope, certificate_pem=signer_keys[1], now=NOW)


def test_a_signature_by_another_key_fails_even_with_its_cert_in_keyinfo(
    signer_keys: tuple[bytes, bytes], attacker_keys: tuple[bytes, bytes]
) -> None:
    forged = _signed(attacker_keys)
    with pytest.raises(SecurityFailure):
        verify_signed_envelope(forged, certificate_pem=signer_keys[1], now=NOW)


def test_wssecurity_object_signs_and_verifies(signer_keys: tuple[bytes, bytes]) -> None:
    sender = WsSecurity(
        "gateway",
        signing=SigningSettings(private_key_pem=signer_keys[0], certificate_pem=signer_keys[1]),
    )
    envelope = _envelope()
    sender.apply(envelope, {})
    receiver = WsSecurity(signing=SigningSettings(peer_certificate_pem=signer_keys[1]))
    received = xml.parse(xml.to_bytes(envelope))
    assert receiver.verify(received) is received.find(f"{S}Body")


def test_unsigned_reply_refused_when_signatures_are_required() -> None:
    receiver = WsSecurity(signing=SigningSettings(require_signed_replies=True))
    with pytest.raises(SecurityFailure):
        receiver.verify(_envelope())


def test_verification_does_not_modify_the_envelope(signer_keys: tuple[bytes, bytes]) -> None:
    envelope = _signed(signer_keys)
    before = copy.deepcopy(envelope)
    verify_signed_envelope(envelope, certificate_pem=signer_keys[1], now=NOW)
    assert xml.canonical(envelope) == xml.canonical(before)
