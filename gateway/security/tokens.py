"""SMART Backend Services: the client registry, the token endpoint, and bearer-token checks.

A client registers its public keys (a JWKS) and the scopes it may ask for. It then posts a
`client_credentials` request with a JWT assertion signed RS384 or ES384 and gets a short-lived
access token, signed EdDSA by the gateway (see `gateway.security.keys`), which `verify` checks
on every request.

    Exception
    ├── OAuthError              the token endpoint refuses: RFC 6749 §5.2 `error`, HTTP status
    ├── InvalidAccessToken      a bearer token is malformed, forged, expired, retired or revoked
    └── ClientRegistryError     (ValueError) a registration is malformed or its id is taken
        └── UnknownClient       (also LookupError) no client has that id

`OAuthError.description` and `InvalidAccessToken` messages are safe to return to a caller: they
hold no personal data and never echo a token.
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeGuard

import jwt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, OperationalError

from gateway.config import Settings
from gateway.security.keys import ALGORITHM as GATEWAY_ALGORITHM
from gateway.security.keys import SigningKeys
from gateway.security.scopes import Scope, ScopeError, parse_scope
from gateway.store.base import StoreUnavailable
from gateway.store.schema import clients, used_assertions
from gateway.store.sql import utc_now

log = logging.getLogger(__name__)

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# The only assertion algorithms accepted, each with the JWK key type it must be verified with.
ASSERTION_ALGORITHMS = {"RS384": "RSA", "ES384": "EC"}
# Headers that point at or carry keys; honouring them lets the caller choose the key.
FORBIDDEN_HEADERS = ("jku", "x5u", "jwk", "x5c", "crit")
PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
MIN_RSA_BITS = 2048
CLOCK_SKEW = 60
MAX_ASSERTION_LIFETIME = 300
MAX_ACCESS_TOKEN_LIFETIME = 300
MAX_ASSERTION_CHARS = 16_384
MAX_ACCESS_TOKEN_CHARS = 4096
MAX_SCOPE_CHARS = 4096
MAX_JTI_CHARS = 256
CACHE_SECONDS = 5.0
UNKNOWN_KID_REFRESH_SECONDS = 1.0
VERIFIED_CACHE_SIZE = 10_000

ISSUER = "urn:wraparound:gateway"
# The audience of access tokens when no public base URL is configured (development, tests).
LOCAL_AUDIENCE = "urn:wraparound:fhir"
ACCESS_TOKEN_TYPE = "at+jwt"
DEV_PREFIX = "dev:"
RESERVED_PREFIXES = (DEV_PREFIX, "internal:")
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_CLIENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,127}")


@dataclass(frozen=True)
class AccessToken:
    """The verified caller behind a bearer token."""

    client_id: str
    agency: str
    scopes: tuple[str, ...]
    jti: str
    expires_at: int


class OAuthError(Exception):
    """A token-endpoint refusal, rendered as `{"error": error, "error_description": description}`."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = 401 if error == "invalid_client" else 400


class InvalidAccessToken(Exception):
    """A bearer token that must not be honoured; the message says why, safely."""


class ClientRegistryError(ValueError):
    """A client registration that cannot be accepted."""


class UnknownClient(ClientRegistryError, LookupError):
    """No client is registered with that id."""


@dataclass(frozen=True)
class _Client:
    client_id: str
    agency: str
    scopes: tuple[Scope, ...]
    keys: tuple[dict[str, Any], ...]
    revoked: bool


@dataclass(frozen=True)
class _VerifyState:
    keys: Mapping[str, Ed25519PublicKey]
    revoked: frozenset[str]
    loaded_at: float


# -- scopes -----------------------------------------------------------------------------------
def _within(scope: Scope, bound: Sequence[Scope]) -> bool:
    """Return True when the union of `bound` grants everything `scope` asks for."""
    letters: set[str] = set()
    for b in bound:
        if b.context == scope.context and b.resource_type in ("*", scope.resource_type):
            letters.update(b.actions)
    return set(scope.actions) <= letters


def _intersect(a: Sequence[Scope], b: Sequence[Scope]) -> list[Scope]:
    """Return the scopes granted by both `a` and `b`, without ones another already covers."""
    both: list[Scope] = []
    for x in a:
        for y in b:
            if x.context != y.context:
                continue
            if x.resource_type == "*":
                rtype = y.resource_type
            elif y.resource_type in ("*", x.resource_type):
                rtype = x.resource_type
            else:
                continue
            actions = "".join(c for c in "cruds" if c in x.actions and c in y.actions)
            if actions:
                both.append(Scope(x.context, rtype, actions))
    out: list[Scope] = []
    for s in both:
        if s not in out and not any(o != s and o.covers(s) for o in both):
            out.append(s)
    return out


def _parse_registered(texts: Sequence[str]) -> tuple[Scope, ...]:
    out: list[Scope] = []
    for text in texts:
        scope = parse_scope(text)
        if scope not in out:
            out.append(scope)
    return tuple(out)


# -- client keys ------------------------------------------------------------------------------
def _b64_int(value: Any) -> int:
    if not isinstance(value, str) or not value or "=" in value:
        raise ValueError("not unpadded base64url")
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64url") from exc
    return int.from_bytes(raw, "big")


def _public_key(jwk: Mapping[str, Any]) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
    """Build a verification key from a public JWK, by its kty; raise ValueError if unusable."""
    kty = jwk.get("kty")
    if kty == "RSA":
        key = rsa.RSAPublicNumbers(_b64_int(jwk.get("e")), _b64_int(jwk.get("n"))).public_key()
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"RSA keys must have at least {MIN_RSA_BITS} bits")
        return key
    if kty == "EC":
        if jwk.get("crv") != "P-384":
            raise ValueError("EC keys must be on P-384 (ES384)")
        # public_key() refuses a point that is not on the curve.
        return ec.EllipticCurvePublicNumbers(_b64_int(jwk.get("x")), _b64_int(jwk.get("y")),
                                             ec.SECP384R1()).public_key()
    raise ValueError("keys must be RSA (RS384) or EC P-384 (ES384)")


def _check_jwks(jwks: Any) -> tuple[dict[str, Any], ...]:
    """Return a registration's public keys, refusing private, unusable or ambiguous ones."""
    if isinstance(jwks, Mapping) and "kty" in jwks:
        jwks = {"keys": [jwks]}
    keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(keys, list) or not keys:
        raise ClientRegistryError("the JWKS must have a non-empty 'keys' list")
    kids: set[str] = set()
    out = []
    for jwk in keys:
        if not isinstance(jwk, Mapping):
            raise ClientRegistryError("each key in the JWKS must be a JSON object")
        if PRIVATE_JWK_MEMBERS & jwk.keys():
            raise ClientRegistryError("the JWKS holds private key material; register public keys")
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not kid:
            raise ClientRegistryError("each key needs a 'kid'")
        if kid in kids:
            raise ClientRegistryError("two keys share a 'kid'")
        kids.add(kid)
        if "alg" in jwk and (not isinstance(jwk["alg"], str)
                             or jwk["alg"] not in ASSERTION_ALGORITHMS):
            raise ClientRegistryError("key 'alg' must be RS384 or ES384")
        try:
            _public_key(jwk)
        except (ValueError, TypeError) as exc:
            raise ClientRegistryError(f"key {kid!r} is unusable: {exc}") from None
        out.append(dict(jwk))
    return tuple(out)


def _client_key(client: _Client, alg: str, kid: str) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
    """Return the one registered key the assertion names, consistent with its alg."""
    matches = [k for k in client.keys if k.get("kid") == kid]
    if len(matches) != 1:
        raise OAuthError("invalid_client", "kid does not match exactly one registered key")
    jwk = matches[0]
    if jwk.get("kty") != ASSERTION_ALGORITHMS[alg] or jwk.get("alg", alg) != alg:
        raise OAuthError("invalid_client", "the key named by kid is not for this alg")
    if jwk.get("use", "sig") != "sig" or "verify" not in jwk.get("key_ops", ["verify"]):
        raise OAuthError("invalid_client", "the key named by kid is not for signatures")
    try:
        return _public_key(jwk)
    except (ValueError, TypeError):
        raise OAuthError("invalid_client", "the key named by kid is unusable") from None


def _segment(text: str) -> bytes:
    """Decode one strict, unpadded base64url JWT segment; raise ValueError otherwise."""
    if not _SEGMENT.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not a base64url segment")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _stamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def audience_for(settings: Settings) -> str:
    """Return the audience of this gateway's access tokens: its FHIR base URL when a public
    base URL is configured, else LOCAL_AUDIENCE. A token minted for another deployment (another
    base URL) is refused even where the signing keys are the same (a copied database)."""
    if settings.base_url:
        return f"{settings.base_url.rstrip('/')}/fhir"
    return LOCAL_AUDIENCE


# -- the service ------------------------------------------------------------------------------
class TokenService:
    """Client registry, token issue and bearer verification on one database."""

    def __init__(self, engine: Engine, settings: Settings, *,
                 token_url_for: Callable[[], str] | None = None,
                 allowed_scopes_for: Callable[[str], Sequence[str]] | None = None,
                 clock: Callable[[], float] = time.time,
                 access_token_lifetime: int = MAX_ACCESS_TOKEN_LIFETIME) -> None:
        if not 0 < access_token_lifetime <= MAX_ACCESS_TOKEN_LIFETIME:
            raise ValueError(f"access tokens live 1..{MAX_ACCESS_TOKEN_LIFETIME} seconds")
        self.engine = engine
        self.settings = settings
        self._token_url_for = token_url_for
        self._allowed_scopes_for = allowed_scopes_for
        self._clock = clock
        self._lifetime = access_token_lifetime
        self._keys = SigningKeys(engine, clock=clock, cache_seconds=CACHE_SECONDS)
        self._lock = threading.Lock()
        self._state: _VerifyState | None = None
        self._forced_at = -math.inf
        self._verified: dict[str, tuple[AccessToken, str]] = {}
        self.audience = audience_for(settings)

    # -- clients ------------------------------------------------------------------------------
    def add_client(self, client_id: str, agency: str, scopes: Sequence[str], jwks: dict[str, Any],
                   description: str | None = None) -> None:
        """Register a client with its agency, pre-authorised scopes and public keys."""
        if not isinstance(client_id, str) or not _CLIENT_ID.fullmatch(client_id):
            raise ClientRegistryError("client ids are 1-128 letters, digits and . _ : @ / + -")
        if client_id.startswith(RESERVED_PREFIXES):
            raise ClientRegistryError("client ids starting 'dev:' or 'internal:' are reserved")
        if not agency or len(agency) > 64:
            raise ClientRegistryError("agency must be 1-64 characters")
        if isinstance(scopes, str) or not scopes:
            raise ClientRegistryError("give at least one scope, as a list")
        try:
            parsed = _parse_registered(scopes)
        except ScopeError as exc:
            raise ClientRegistryError(f"invalid scope: {exc}") from None
        keys = _check_jwks(jwks)
        if description is not None and len(description) > 256:
            raise ClientRegistryError("description must be at most 256 characters")
        row = {"client_id": client_id, "agency": agency,
               "scopes": " ".join(str(s) for s in parsed),
               "jwks": json.dumps({"keys": list(keys)}, sort_keys=True),
               "description": description, "created": utc_now(), "revoked": None}
        try:
            with self._connect(write=True) as conn:
                conn.execute(insert(clients).values(**row))
        except IntegrityError:
            raise ClientRegistryError("a client with that id is already registered") from None

    def list_clients(self) -> list[dict[str, Any]]:
        """Return every client, without key material."""
        with self._connect() as conn:
            rows = conn.execute(select(clients).order_by(clients.c.client_id)).all()
        return [{"client_id": r.client_id, "agency": r.agency, "scopes": r.scopes.split(),
                 "kids": [k.get("kid") for k in json.loads(r.jwks).get("keys", [])],
                 "description": r.description, "created": r.created, "revoked": r.revoked}
                for r in rows]

    def revoke_client(self, client_id: str) -> None:
        """Revoke a client: no new tokens, and tokens already issued stop working."""
        with self._connect(write=True) as conn:
            found = conn.execute(select(clients.c.revoked)
                                 .where(clients.c.client_id == client_id)).first()
            if found is None:
                raise UnknownClient("no client is registered with that id")
            if found.revoked is None:
                conn.execute(update(clients).where(clients.c.client_id == client_id)
                             .values(revoked=utc_now()))
        self._reload()

    # -- token endpoint -----------------------------------------------------------------------
    def issue(self, form: Mapping[str, str], token_url: str | None = None) -> dict[str, Any]:
        """Answer a client_credentials request; `token_url` is what the assertion's aud must be.

        Raises OAuthError with the RFC 6749 §5.2 error code for every refusal.
        """
        url = token_url if token_url is not None else (
            self._token_url_for() if self._token_url_for is not None else None)
        if not url:
            raise ValueError("issue() needs the token URL")
        try:
            return self._issue(form, url)
        except OAuthError as exc:
            log.info("token request refused: %s: %s", exc.error, exc.description)
            raise

    def _issue(self, form: Mapping[str, str], token_url: str) -> dict[str, Any]:
        for name in ("grant_type", "client_assertion_type", "client_assertion", "scope",
                     "client_id"):
            if name in form and not isinstance(form[name], str):
                raise OAuthError("invalid_request", f"{name} must be given once")
        grant = form.get("grant_type")
        if not grant:
            raise OAuthError("invalid_request", "grant_type is required")
        if grant != "client_credentials":
            raise OAuthError("unsupported_grant_type", "only client_credentials is supported")
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise OAuthError("invalid_client", f"client_assertion_type must be {ASSERTION_TYPE}")
        assertion = form.get("client_assertion")
        if not assertion:
            raise OAuthError("invalid_client", "client_assertion is required")
        if len(assertion) > MAX_ASSERTION_CHARS:
            raise OAuthError("invalid_client", "client_assertion is too large")
        alg, kid = self._assertion_header(assertion)
        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise OAuthError("invalid_client", "client_assertion is not a JWT") from None
        iss = unverified.get("iss")
        if not isinstance(iss, str) or not iss:
            raise OAuthError("invalid_client", "iss is required")
        if unverified.get("sub") != iss:
            raise OAuthError("invalid_client", "iss and sub must both be the client_id")
        if form.get("client_id") not in (None, iss):
            raise OAuthError("invalid_client", "client_id does not match the assertion")
        client = self._load_client(iss)
        if client is None or client.revoked:
            raise OAuthError("invalid_client", "the client is unknown or revoked")
        key = _client_key(client, alg, kid)
        try:
            claims = jwt.decode(assertion, key, algorithms=[alg], options={
                "verify_signature": True, "verify_exp": False, "verify_nbf": False,
                "verify_iat": False, "verify_aud": False, "verify_iss": False,
                "verify_sub": False, "verify_jti": False})
        except jwt.InvalidSignatureError:
            raise OAuthError("invalid_client", "the client_assertion signature is invalid") from None
        except jwt.PyJWTError:
            raise OAuthError("invalid_client", "client_assertion is malformed") from None
        now = self._clock()
        exp, jti = self._check_claims(claims, iss, token_url, now)
        scopes = self._grant(client, form.get("scope"))
        self._spend(client.client_id, jti, exp, now)
        token, _ = self._sign(client.client_id, client.agency, scopes)
        return {"access_token": token, "token_type": "bearer", "expires_in": self._lifetime,
                "scope": " ".join(scopes)}

    @staticmethod
    def _assertion_header(assertion: str) -> tuple[str, str]:
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError:
            raise OAuthError("invalid_client", "client_assertion is not a JWT") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ASSERTION_ALGORITHMS:
            raise OAuthError("invalid_client", "client_assertion alg must be RS384 or ES384")
        for name in FORBIDDEN_HEADERS:
            if name in header:
                raise OAuthError("invalid_client", f"the {name} header is not accepted; "
                                 "keys come only from the registered JWKS")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise OAuthError("invalid_client", "client_assertion needs a kid header")
        return alg, kid

    @staticmethod
    def _check_claims(claims: Mapping[str, Any], iss: str, token_url: str,
                      now: float) -> tuple[float, str]:
        if claims.get("iss") != iss or claims.get("sub") != iss:
            raise OAuthError("invalid_client", "iss and sub must both be the client_id")
        aud = claims.get("aud")
        if aud != token_url and aud != [token_url]:
            raise OAuthError("invalid_client", "aud must be this token endpoint's URL")
        exp = claims.get("exp")
        if not _is_number(exp):
            raise OAuthError("invalid_client", "exp is required and must be a number")
        if exp + CLOCK_SKEW <= now:
            raise OAuthError("invalid_client", "client_assertion has expired")
        if exp > now + MAX_ASSERTION_LIFETIME + CLOCK_SKEW:
            raise OAuthError("invalid_client", "exp must be at most five minutes ahead")
        for name in ("nbf", "iat"):
            if name in claims and (not _is_number(claims[name])
                                   or claims[name] > now + CLOCK_SKEW):
                raise OAuthError("invalid_client", f"{name} must be a time not in the future")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise OAuthError("invalid_client", "jti is required")
        if len(jti) > MAX_JTI_CHARS:
            raise OAuthError("invalid_client", f"jti must be at most {MAX_JTI_CHARS} characters")
        return float(exp), jti

    def _grant(self, client: _Client, requested: str | None) -> tuple[str, ...]:
        bounds: list[Sequence[Scope]] = [client.scopes]
        if self._allowed_scopes_for is not None:
            allowed = []
            for text in self._allowed_scopes_for(client.agency):
                try:
                    allowed.append(parse_scope(text))
                except ScopeError:
                    continue  # skipping an unparseable policy scope only narrows the grant
            bounds.append(allowed)
        if requested is None or not requested.strip():
            granted: list[Scope] = list(bounds[0])
            for bound in bounds[1:]:
                granted = _intersect(granted, bound)
            if not granted:
                raise OAuthError("invalid_scope", "no scopes may be granted to this client")
            return tuple(str(s) for s in granted)
        if len(requested) > MAX_SCOPE_CHARS:
            raise OAuthError("invalid_scope", "scope is too long")
        out: list[str] = []
        for text in requested.split():
            try:
                scope = parse_scope(text)
            except ScopeError:
                raise OAuthError("invalid_scope", "a requested scope is not a supported SMART "
                                 "system scope") from None
            if not all(_within(scope, bound) for bound in bounds):
                raise OAuthError("invalid_scope",
                                 "a requested scope exceeds what the client may be granted")
            if str(scope) not in out:
                out.append(str(scope))
        return tuple(out)

    def _spend(self, client_id: str, jti: str, exp: float, now: float) -> None:
        """Record the assertion's jti; the primary key makes a replay fail even when concurrent."""
        try:
            with self._connect(write=True) as conn:
                conn.execute(delete(used_assertions).where(used_assertions.c.expires < _stamp(now)))
                conn.execute(insert(used_assertions).values(
                    client_id=client_id, jti=jti, expires=_stamp(exp + CLOCK_SKEW)))
        except IntegrityError:
            raise OAuthError("invalid_client", "client_assertion jti was already used") from None

    def _load_client(self, client_id: str) -> _Client | None:
        with self._connect() as conn:
            row = conn.execute(select(clients).where(clients.c.client_id == client_id)).first()
        if row is None:
            return None
        keys = json.loads(row.jwks).get("keys", [])
        return _Client(row.client_id, row.agency, _parse_registered(row.scopes.split()),
                       tuple(k for k in keys if isinstance(k, dict)), row.revoked is not None)

    def _sign(self, client_id: str, agency: str, scopes: Sequence[str]) -> tuple[str, int]:
        kid, key = self._keys.signer()
        state = self._state
        if state is not None and kid not in state.keys:
            self._reload()  # a key made or picked up just now verifies at once
        iat = int(self._clock())
        exp = iat + self._lifetime
        claims = {"iss": ISSUER, "aud": self.audience, "sub": client_id, "agency": agency,
                  "scope": " ".join(scopes), "iat": iat, "exp": exp, "jti": uuid.uuid4().hex}
        token = jwt.encode(claims, key, algorithm=GATEWAY_ALGORITHM,
                           headers={"kid": kid, "typ": ACCESS_TOKEN_TYPE})
        return token, exp

    # -- bearer tokens ------------------------------------------------------------------------
    def verify(self, bearer: str) -> AccessToken:
        """Return the caller behind a bearer token (the token alone, without "Bearer ").

        The signature, issuer and audience are checked once per token and remembered; expiry,
        key retirement and client revocation are checked on every call against state reloaded
        at most every 5 seconds.
        """
        if not isinstance(bearer, str):
            raise InvalidAccessToken("the access token is malformed")
        now = self._clock()
        state = self._current_state(now)
        entry = self._verified.get(bearer)
        if entry is None:
            entry, state = self._check_signature(bearer, state, now)
            if len(self._verified) >= VERIFIED_CACHE_SIZE:
                self._verified.clear()
            self._verified[bearer] = entry
        token, kid = entry
        if kid not in state.keys:
            raise InvalidAccessToken("the access token was signed by a retired key")
        if now >= token.expires_at:
            raise InvalidAccessToken("the access token has expired")
        if token.client_id.startswith(DEV_PREFIX):
            if self.settings.is_production:
                raise InvalidAccessToken("development tokens are refused in production")
        elif token.client_id in state.revoked:
            raise InvalidAccessToken("the client has been revoked")
        return token

    def _check_signature(self, bearer: str, state: _VerifyState,
                         now: float) -> tuple[tuple[AccessToken, str], _VerifyState]:
        # Our own tokens have one shape: exactly {alg: EdDSA, kid, typ: at+jwt}, an Ed25519 key
        # chosen by kid among ours, and nothing the header could use to pick another algorithm.
        # Checking that shape directly is several times cheaper than a general JWT decode.
        parts = bearer.split(".")
        if len(bearer) > MAX_ACCESS_TOKEN_CHARS or len(parts) != 3:
            raise InvalidAccessToken("the access token is malformed")
        try:
            header = json.loads(_segment(parts[0]))
            signature = _segment(parts[2])
        except ValueError:
            raise InvalidAccessToken("the access token is malformed") from None
        if (not isinstance(header, dict) or header.keys() != {"alg", "kid", "typ"}
                or header["alg"] != GATEWAY_ALGORITHM or header["typ"] != ACCESS_TOKEN_TYPE
                or not isinstance(header["kid"], str)):
            raise InvalidAccessToken("the access token was not issued by this gateway")
        kid: str = header["kid"]
        key = state.keys.get(kid)
        if key is None and now - self._forced_at >= UNKNOWN_KID_REFRESH_SECONDS:
            # Another worker may have rotated to a key this one has not loaded yet.
            self._forced_at = now
            state = self._reload()
            key = state.keys.get(kid)
        if key is None:
            raise InvalidAccessToken("the access token was signed by an unknown or retired key")
        try:
            key.verify(signature, f"{parts[0]}.{parts[1]}".encode("ascii"))
        except InvalidSignature:
            raise InvalidAccessToken("the access token signature is invalid") from None
        try:
            claims = json.loads(_segment(parts[1]))
        except ValueError:
            raise InvalidAccessToken("the access token is malformed") from None
        if not isinstance(claims, dict) or claims.get("iss") != ISSUER:
            raise InvalidAccessToken("the access token was not issued by this gateway")
        if claims.get("aud") != self.audience:
            raise InvalidAccessToken("the access token is not for this gateway (aud)")
        sub, agency, scope = claims.get("sub"), claims.get("agency"), claims.get("scope")
        exp, jti = claims.get("exp"), claims.get("jti")
        if not (isinstance(sub, str) and isinstance(agency, str) and isinstance(scope, str)
                and isinstance(jti, str) and isinstance(exp, int) and not isinstance(exp, bool)):
            raise InvalidAccessToken("the access token claims are malformed")
        return (AccessToken(sub, agency, tuple(scope.split()), jti, exp), kid), state

    def _current_state(self, now: float) -> _VerifyState:
        state = self._state
        if state is not None and state.loaded_at <= now < state.loaded_at + CACHE_SECONDS:
            return state
        if state is None:
            return self._reload()
        if not self._lock.acquire(blocking=False):
            return state  # another thread is reloading right now
        try:
            return self._reload_locked()
        finally:
            self._lock.release()

    def _reload(self) -> _VerifyState:
        with self._lock:
            return self._reload_locked()

    def _reload_locked(self) -> _VerifyState:
        now = self._clock()
        with self._connect() as conn:
            keys = self._keys.public_keys(conn)
            revoked = frozenset(conn.execute(select(clients.c.client_id)
                                             .where(clients.c.revoked.is_not(None))).scalars())
        self._state = _VerifyState(keys, revoked, now)
        return self._state

    # -- development tokens and signing keys --------------------------------------------------
    def dev_token(self, agency: str, scopes: Sequence[str], client_id: str | None = None) -> str:
        """Return an access token for demos and tests; refused in production."""
        if self.settings.is_production:
            raise PermissionError("development tokens are refused in production")
        if isinstance(scopes, str):
            raise TypeError("scopes must be a sequence of scope strings")
        normalised = tuple(str(s) for s in _parse_registered(scopes))
        token, _ = self._sign(client_id or f"{DEV_PREFIX}{agency}", agency, normalised)
        return token

    def rotate_signing_key(self) -> str:
        """Make a new signing key active and return its kid; earlier keys verify until retired."""
        kid = self._keys.rotate()
        self._reload()
        return kid

    def retire_signing_key(self, kid: str) -> None:
        """Stop a signing key from verifying; tokens it signed are refused from now on."""
        self._keys.retire(kid)
        self._reload()

    def jwks(self) -> dict[str, Any]:
        """Return the gateway's public keys, for /.well-known/jwks.json."""
        self._keys.signer()  # the first key exists before anyone asks for it
        return self._keys.jwks()

    # -- storage ------------------------------------------------------------------------------
    @contextmanager
    def _connect(self, write: bool = False) -> Iterator[Connection]:
        try:
            conn = self.engine.connect()
            if write:
                conn = conn.execution_options(wraparound_write=True)
            with conn, conn.begin():
                yield conn
        except OperationalError as exc:
            raise StoreUnavailable("the database is unavailable") from exc


__all__ = ["ASSERTION_TYPE", "LOCAL_AUDIENCE", "AccessToken", "ClientRegistryError", "InvalidAccessToken",
           "OAuthError", "TokenService", "UnknownClient", "audience_for"]
