"""The gateway's own keys for signing access tokens: Ed25519 (JWS `EdDSA`), held in `signing_keys`.

One key is active and signs; keys it replaced keep verifying until they are retired. The first
key is generated on first use. A key's `kid` is its RFC 7638 thumbprint.

Private keys are stored as unencrypted PKCS#8 PEM in the database, so database backups must be
protected like the keys themselves.
"""
from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import Engine, insert, select, true, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError

from gateway.store.base import StoreUnavailable
from gateway.store.schema import signing_keys
from gateway.store.sql import utc_now

ALGORITHM = "EdDSA"
CACHE_SECONDS = 5.0


class UnknownSigningKey(LookupError):
    """Raised when asked to retire a key the gateway does not hold."""


def b64url(data: bytes) -> str:
    """Return unpadded base64url text for bytes."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def thumbprint(public: Ed25519PublicKey) -> str:
    """Return the RFC 7638 JWK thumbprint (SHA-256) of an Ed25519 public key."""
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": b64url(_raw(public))},
                           separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode("ascii")).digest())


def public_jwk(kid: str, public: Ed25519PublicKey) -> dict[str, str]:
    """Return the public JWK of a signing key."""
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url(_raw(public)), "kid": kid,
            "alg": ALGORITHM, "use": "sig"}


def _load_private(pem: str) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise TypeError("a signing key in the database is not an Ed25519 key")
    return key


class SigningKeys:
    """The gateway's signing keys on an engine, with the parsed keys cached in memory."""

    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time,
                 cache_seconds: float = CACHE_SECONDS) -> None:
        self.engine = engine
        self._clock = clock
        self._cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._signer: tuple[str, Ed25519PrivateKey, float] | None = None
        self._public: dict[str, Ed25519PublicKey] = {}

    # -- signing ------------------------------------------------------------------------------
    def signer(self) -> tuple[str, Ed25519PrivateKey]:
        """Return (kid, private key) of the active key, generating one if there is none."""
        now = self._clock()
        cached = self._signer
        if cached is not None and cached[2] <= now < cached[2] + self._cache_seconds:
            return cached[0], cached[1]
        with self._lock:
            with self._write() as conn:
                row = self._active_row(conn)
                if row is None:
                    kid, pem = self._insert_new(conn)
                else:
                    kid, pem = row
            key = _load_private(pem)
            self._signer = (kid, key, now)
            return kid, key

    def rotate(self) -> str:
        """Make a new key the active one and return its kid; earlier keys still verify."""
        with self._lock:
            with self._write() as conn:
                conn.execute(update(signing_keys).where(signing_keys.c.active == true())
                             .values(active=False))
                kid, _ = self._insert_new(conn)
            self._signer = None
            return kid

    def retire(self, kid: str) -> None:
        """Stop a key from verifying (and signing); retiring a retired key does nothing."""
        with self._lock:
            with self._write() as conn:
                found = conn.execute(select(signing_keys.c.retired)
                                     .where(signing_keys.c.kid == kid)).first()
                if found is None:
                    raise UnknownSigningKey("no signing key has that kid")
                if found.retired is None:
                    conn.execute(update(signing_keys).where(signing_keys.c.kid == kid)
                                 .values(retired=utc_now(), active=False))
            self._signer = None
            self._public.pop(kid, None)

    # -- verifying ----------------------------------------------------------------------------
    def public_keys(self, conn: Connection) -> dict[str, Ed25519PublicKey]:
        """Return the keys that may verify (every key not retired), read on `conn`."""
        rows = conn.execute(select(signing_keys.c.kid, signing_keys.c.private_pem)
                            .where(signing_keys.c.retired.is_(None))).all()
        out: dict[str, Ed25519PublicKey] = {}
        for kid, pem in rows:
            public = self._public.get(kid)
            if public is None:
                public = _load_private(pem).public_key()
                self._public[kid] = public
            out[kid] = public
        return out

    def jwks(self) -> dict[str, Any]:
        """Return the public JWKS of every key that may verify."""
        with self._read() as conn:
            keys = self.public_keys(conn)
        return {"keys": [public_jwk(kid, pub) for kid, pub in sorted(keys.items())]}

    # -- storage ------------------------------------------------------------------------------
    @staticmethod
    def _active_row(conn: Connection) -> tuple[str, str] | None:
        # Two processes racing on first use on PostgreSQL can both insert a key; both verify,
        # and every process signs with the same (newest) one.
        row = conn.execute(
            select(signing_keys.c.kid, signing_keys.c.private_pem)
            .where(signing_keys.c.active == true(), signing_keys.c.retired.is_(None))
            .order_by(signing_keys.c.created.desc(), signing_keys.c.kid.desc()).limit(1)).first()
        return None if row is None else (row.kid, row.private_pem)

    @staticmethod
    def _insert_new(conn: Connection) -> tuple[str, str]:
        private = Ed25519PrivateKey.generate()
        pem = private.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode("ascii")
        kid = thumbprint(private.public_key())
        conn.execute(insert(signing_keys).values(kid=kid, algorithm=ALGORITHM, private_pem=pem,
                                                 created=utc_now(), active=True, retired=None))
        return kid, pem

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        try:
            conn = self.engine.connect().execution_options(wraparound_write=True)
            with conn, conn.begin():
                yield conn
        except OperationalError as exc:
            raise StoreUnavailable("the database is unavailable") from exc

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn, conn.begin():
                yield conn
        except OperationalError as exc:
            raise StoreUnavailable("the database is unavailable") from exc


__all__ = ["ALGORITHM", "SigningKeys", "UnknownSigningKey", "public_jwk", "thumbprint"]
