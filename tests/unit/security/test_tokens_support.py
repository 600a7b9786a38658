"""Keys, client assertions and a settable clock shared by the token tests (no tests here)."""
from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from gateway.security.tokens import ASSERTION_TYPE

TOKEN_URL = "https://gateway.example.org/auth/token"
NOW = 1_800_000_000.0
CLIENT = "children-hub"
AGENCY = "health"
REGISTERED_SCOPES = ("system/*.rs", "system/Flag.cud")


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _int_b64(value: int, size: int | None = None) -> str:
    length = size or (value.bit_length() + 7) // 8
    return b64url(value.to_bytes(length, "big"))


def rsa_jwk(key: rsa.RSAPrivateKey | rsa.RSAPublicKey, kid: str) -> dict[str, Any]:
    pub = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    numbers = pub.public_numbers()
    return {"kty": "RSA", "kid": kid, "n": _int_b64(numbers.n), "e": _int_b64(numbers.e),
            "alg": "RS384", "use": "sig"}


def ec_jwk(key: ec.EllipticCurvePrivateKey, kid: str, alg: str | None = "ES384") -> dict[str, Any]:
    numbers = key.public_key().public_numbers()
    size = (key.curve.key_size + 7) // 8
    crv = {"secp384r1": "P-384", "secp256r1": "P-256"}[key.curve.name]
    jwk = {"kty": "EC", "kid": kid, "crv": crv, "x": _int_b64(numbers.x, size),
           "y": _int_b64(numbers.y, size), "use": "sig"}
    if alg:
        jwk["alg"] = alg
    return jwk


@functools.cache
def _rsa(bits: int, n: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@functools.cache
def _ec(curve: str, n: int) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key({"P-384": ec.SECP384R1(), "P-256": ec.SECP256R1()}[curve])


@dataclass
class Keys:
    """The registered client's keys and some it never registered."""

    rsa: rsa.RSAPrivateKey = field(default_factory=lambda: _rsa(3072, 1))
    ec: ec.EllipticCurvePrivateKey = field(default_factory=lambda: _ec("P-384", 1))
    other_rsa: rsa.RSAPrivateKey = field(default_factory=lambda: _rsa(3072, 2))
    other_ec: ec.EllipticCurvePrivateKey = field(default_factory=lambda: _ec("P-384", 2))
    p256: ec.EllipticCurvePrivateKey = field(default_factory=lambda: _ec("P-256", 1))
    weak_rsa: rsa.RSAPrivateKey = field(default_factory=lambda: _rsa(1024, 1))

    def jwks(self) -> dict[str, Any]:
        return {"keys": [rsa_jwk(self.rsa, "rsa-1"), ec_jwk(self.ec, "ec-1")]}

    def rsa_public_pem(self) -> bytes:
        return self.rsa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


class Kit:
    """Builds client assertions and token requests at the clock's current time."""

    def __init__(self, keys: Keys, clock: Clock) -> None:
        self.keys = keys
        self.clock = clock

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(self.clock())
        claims: dict[str, Any] = {"iss": CLIENT, "sub": CLIENT, "aud": TOKEN_URL,
                                  "exp": now + 240, "iat": now, "jti": uuid.uuid4().hex}
        for name, value in overrides.items():
            if value is DROP:
                claims.pop(name, None)
            else:
                claims[name] = value
        return claims

    def assertion(self, key: Any = None, alg: str = "RS384", kid: str | None = "rsa-1",
                  headers: dict[str, Any] | None = None, **claims: Any) -> str:
        """Return a JWT assertion signed by `key` (the registered key for `alg` by default)."""
        if key is None:
            key = self.keys.ec if alg.startswith("ES") else self.keys.rsa
            if alg.startswith("ES") and kid == "rsa-1":
                kid = "ec-1"
        extra = dict(headers or {})
        if kid is not None:
            extra["kid"] = kid
        return jwt.encode(self.claims(**claims), key, algorithm=alg, headers=extra)

    def forged(self, header: dict[str, Any], secret: bytes | None, **claims: Any) -> str:
        """Return a JWT built by hand: HMAC-signed with `secret`, or unsigned when it is None."""
        signing_input = (b64url(json.dumps(header).encode()) + "."
                         + b64url(json.dumps(self.claims(**claims)).encode()))
        if secret is None:
            return signing_input + "."
        digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384}[header["alg"]]
        mac = hmac.new(secret, signing_input.encode(), digest).digest()
        return signing_input + "." + b64url(mac)

    def form(self, assertion: str | None = None, **fields: Any) -> dict[str, Any]:
        form: dict[str, Any] = {"grant_type": "client_credentials",
                                "client_assertion_type": ASSERTION_TYPE,
                                "client_assertion": assertion or self.assertion()}
        for name, value in fields.items():
            if value is DROP:
                form.pop(name, None)
            else:
                form[name] = value
        return form


class _Drop:
    def __repr__(self) -> str:
        return "DROP"


DROP: Any = _Drop()


def ed25519_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def swap_payload(token: str, payload: dict[str, Any]) -> str:
    """Return the token with its payload replaced and the original signature kept."""
    header, _, signature = token.split(".")
    return ".".join((header, b64url(json.dumps(payload).encode()), signature))
