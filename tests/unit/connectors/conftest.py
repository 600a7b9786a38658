"""Fixtures for connector unit tests: deterministic ids and clock, canned envelopes, keys."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree

from connectors.soap import xml

ROOT = Path(__file__).resolve().parents[3]
CANNED = ROOT / "fixtures" / "soap"
FIXED_NOW = dt.datetime(2026, 9, 1, 9, 0, 0, tzinfo=dt.UTC)


def make_ids() -> Callable[[], str]:
    """Return an id source counting 00000000-0000-4000-8000-000000000001, ...002, ..."""
    counter = itertools.count(1)
    return lambda: f"00000000-0000-4000-8000-{next(counter):012d}"


@pytest.fixture
def ids() -> Callable[[], str]:
    return make_ids()


@pytest.fixture
def clock() -> Callable[[], dt.datetime]:
    return lambda: FIXED_NOW


@pytest.fixture
def canned() -> Callable[[str], bytes]:
    def load(name: str) -> bytes:
        return (CANNED / name).read_bytes()

    return load


def canonical(data: bytes | etree._Element) -> bytes:
    """Return the exclusive canonical form of a document with whitespace-only text removed."""
    element = xml.parse(data) if isinstance(data, bytes) else data
    copy = xml.parse(xml.to_bytes(element))
    for node in copy.iter():
        if node.text is not None and not node.text.strip():
            node.text = None
        if node.tail is not None and not node.tail.strip():
            node.tail = None
    return xml.canonical(copy, exclusive=True)


@pytest.fixture
def c14n() -> Callable[[bytes | etree._Element], bytes]:
    """Return the canonical-XML function used to compare documents."""
    return canonical


@pytest.fixture
def fixed_now() -> dt.datetime:
    return FIXED_NOW


def _keypair(name: str) -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return (
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        cert.public_bytes(serialization.Encoding.PEM),
    )


@pytest.fixture(scope="session")
def signer_keys() -> tuple[bytes, bytes]:
    """A self-signed key pair for the signing side (private key PEM, certificate PEM)."""
    return _keypair("wraparound-test-signer")


@pytest.fixture(scope="session")
def attacker_keys() -> tuple[bytes, bytes]:
    """A second, untrusted key pair."""
    return _keypair("attacker")
