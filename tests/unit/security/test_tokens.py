"""The token endpoint rules (BS-1..BS-12) and bearer-token checks, on a SQLite file database."""
from __future__ import annotations

import json
import select
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from test_tokens_support import (
    AGENCY,
    CLIENT,
    DROP,
    NOW,
    REGISTERED_SCOPES,
    TOKEN_URL,
    Clock,
    Keys,
    Kit,
    b64url,
    ec_jwk,
    ed25519_key,
    rsa_jwk,
    swap_payload,
)

from gateway.config import Settings
from gateway.security.keys import thumbprint
from gateway.security.tokens import (
    ISSUER,
    LOCAL_AUDIENCE,
    AccessToken,
    InvalidAccessToken,
    OAuthError,
    TokenService,
)
from gateway.store import make_engine
from gateway.store.schema import clients, signing_keys, used_assertions


# -- fixtures -----------------------------------------------------------------------------------
@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def engine(sqlite_template: Path, tmp_path: Path) -> Iterator[sa.Engine]:
    target = tmp_path / "tokens.sqlite"
    shutil.copy(sqlite_template, target)
    eng = make_engine(f"sqlite:///{target}")
    yield eng
    eng.dispose()


def make_service(engine: sa.Engine, clock: Clock, env: str = "test", **kw: Any) -> TokenService:
    return TokenService(engine, Settings(env=env, database_url=str(engine.url)), clock=clock, **kw)


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys()


@pytest.fixture
def kit(keys: Keys, clock: Clock) -> Kit:
    return Kit(keys, clock)


@pytest.fixture
def service(engine: sa.Engine, clock: Clock, keys: Keys) -> TokenService:
    svc = make_service(engine, clock)
    svc.add_client(CLIENT, AGENCY, REGISTERED_SCOPES, keys.jwks())
    return svc


def refusal(service: TokenService, form: dict[str, Any]) -> OAuthError:
    with pytest.raises(OAuthError) as info:
        service.issue(form, TOKEN_URL)
    return info.value


def gateway_key(engine: sa.Engine) -> tuple[str, Ed25519PrivateKey]:
    with engine.connect() as conn:
        row = conn.execute(sa.select(signing_keys.c.kid, signing_keys.c.private_pem)
                           .where(signing_keys.c.active == sa.true())).one()
    key = serialization.load_pem_private_key(row.private_pem.encode(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return row.kid, key


# -- BS-1..BS-11: every refusal, with the OAuth error the spec names ----------------------------
Build = Callable[[Kit], dict[str, Any]]


def _now(k: Kit) -> int:
    return int(k.clock())


REFUSALS: list[Any] = [
    # BS-1 grant type
    pytest.param(lambda k: k.form(grant_type=DROP), "invalid_request", id="grant_type missing"),
    pytest.param(lambda k: k.form(grant_type="password"), "unsupported_grant_type",
                 id="grant_type password"),
    pytest.param(lambda k: k.form(grant_type="authorization_code"), "unsupported_grant_type",
                 id="grant_type authorization_code"),
    pytest.param(lambda k: k.form(grant_type=["client_credentials", "client_credentials"]),
                 "invalid_request", id="grant_type given twice"),
    # BS-2 assertion type
    pytest.param(lambda k: k.form(client_assertion_type=DROP), "invalid_client",
                 id="client_assertion_type missing"),
    pytest.param(lambda k: k.form(client_assertion_type="not_an_assertion_type"),
                 "invalid_client", id="client_assertion_type wrong"),
    pytest.param(lambda k: k.form(
        client_assertion_type="urn:ietf:params:oauth:client-assertion-type:saml2-bearer"),
        "invalid_client", id="client_assertion_type saml2"),
    pytest.param(lambda k: k.form(client_assertion=DROP), "invalid_client",
                 id="client_assertion missing"),
    pytest.param(lambda k: k.form(client_assertion="not-a-jwt"), "invalid_client",
                 id="client_assertion not a JWT"),
    pytest.param(lambda k: k.form(client_assertion="a.b.c"), "invalid_client",
                 id="client_assertion garbage segments"),
    pytest.param(lambda k: k.form(client_assertion=k.assertion(pad="x" * 20_000)),
                 "invalid_client", id="client_assertion oversized"),
    # BS-10 algorithms outside {RS384, ES384}
    pytest.param(lambda k: k.form(k.forged({"alg": "none", "kid": "rsa-1"}, None)),
                 "invalid_client", id="alg none"),
    pytest.param(lambda k: k.form(k.forged({"alg": "None", "kid": "rsa-1"}, None)),
                 "invalid_client", id="alg None"),
    pytest.param(lambda k: k.form(k.forged({"alg": "HS256", "kid": "rsa-1"},
                                           k.keys.rsa_public_pem())),
                 "invalid_client", id="HS256 keyed with the RSA public key PEM"),
    pytest.param(lambda k: k.form(k.forged({"alg": "HS384", "kid": "rsa-1"},
                                           k.keys.rsa_public_pem())),
                 "invalid_client", id="HS384 keyed with the RSA public key PEM"),
    pytest.param(lambda k: k.form(k.forged({"alg": "HS256", "kid": "rsa-1"}, json.dumps(
        rsa_jwk(k.keys.rsa, "rsa-1")).encode())), "invalid_client",
        id="HS256 keyed with the registered JWK"),
    pytest.param(lambda k: k.form(k.assertion(alg="RS256")), "invalid_client", id="RS256"),
    pytest.param(lambda k: k.form(k.assertion(alg="RS512")), "invalid_client", id="RS512"),
    pytest.param(lambda k: k.form(k.assertion(alg="PS384")), "invalid_client", id="PS384"),
    pytest.param(lambda k: k.form(k.assertion(key=k.keys.p256, alg="ES256", kid="ec-1")),
                 "invalid_client", id="ES256 with a P-256 key"),
    pytest.param(lambda k: k.form(k.assertion(key=ed25519_key(), alg="EdDSA")),
                 "invalid_client", id="EdDSA"),
    pytest.param(lambda k: k.form(k.forged({"alg": ["RS384"], "kid": "rsa-1"}, None)),
                 "invalid_client", id="alg not a string"),
    # BS-8 headers that carry or point at keys
    pytest.param(lambda k: k.form(k.assertion(headers={"jku": "https://attacker.example/jwks"})),
                 "invalid_client", id="jku header"),
    pytest.param(lambda k: k.form(k.assertion(headers={"x5u": "https://attacker.example/c.pem"})),
                 "invalid_client", id="x5u header"),
    pytest.param(lambda k: k.form(k.assertion(key=k.keys.other_rsa, headers={
        "jwk": rsa_jwk(k.keys.other_rsa, "rsa-1")})), "invalid_client",
        id="jwk header carrying the attacker's key"),
    pytest.param(lambda k: k.form(k.assertion(headers={"x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOC"]})),
                 "invalid_client", id="x5c header"),
    pytest.param(lambda k: k.form(k.assertion(headers={"crit": ["exp"]})), "invalid_client",
                 id="crit header"),
    # BS-9 kid
    pytest.param(lambda k: k.form(k.assertion(kid=None)), "invalid_client", id="kid missing"),
    pytest.param(lambda k: k.form(k.assertion(kid="")), "invalid_client", id="kid empty"),
    pytest.param(lambda k: k.form(k.assertion(kid="rsa-2")), "invalid_client", id="kid unknown"),
    pytest.param(lambda k: k.form(k.assertion(kid="ec-1")), "invalid_client",
                 id="RS384 naming the EC key"),
    pytest.param(lambda k: k.form(k.assertion(key=k.keys.ec, alg="ES384", kid="rsa-1")),
                 "invalid_client", id="ES384 naming the RSA key"),
    # BS-3 signature
    pytest.param(lambda k: k.form(swap_payload(k.assertion(), k.claims(exp=_now(k) + 280))),
                 "invalid_client", id="payload changed after signing"),
    pytest.param(lambda k: k.form(k.assertion()[:-6]), "invalid_client", id="signature cut short"),
    pytest.param(lambda k: k.form(k.assertion(key=k.keys.other_rsa)), "invalid_client",
                 id="signed by an unregistered RSA key"),
    pytest.param(lambda k: k.form(k.assertion(key=k.keys.other_ec, alg="ES384", kid="ec-1")),
                 "invalid_client", id="signed by an unregistered EC key"),
    # BS-4 iss and sub
    pytest.param(lambda k: k.form(k.assertion(sub="someone-else")), "invalid_client",
                 id="iss differs from sub"),
    pytest.param(lambda k: k.form(k.assertion(iss="stranger", sub="stranger")), "invalid_client",
                 id="iss not registered"),
    pytest.param(lambda k: k.form(k.assertion(iss=DROP)), "invalid_client", id="iss missing"),
    pytest.param(lambda k: k.form(k.assertion(sub=DROP)), "invalid_client", id="sub missing"),
    pytest.param(lambda k: k.form(client_id="another-client"), "invalid_client",
                 id="client_id parameter differs from iss"),
    # BS-5 aud
    pytest.param(lambda k: k.form(k.assertion(aud=TOKEN_URL + "/")), "invalid_client",
                 id="aud with trailing slash"),
    pytest.param(lambda k: k.form(k.assertion(aud=TOKEN_URL.replace("https:", "http:"))),
                 "invalid_client", id="aud http instead of https"),
    pytest.param(lambda k: k.form(k.assertion(
        aud="https://gateway-staging.example.org/auth/token")), "invalid_client",
        id="aud another environment"),
    pytest.param(lambda k: k.form(k.assertion(aud="https://gateway.example.org/fhir")),
                 "invalid_client", id="aud the FHIR base"),
    pytest.param(lambda k: k.form(k.assertion(aud=DROP)), "invalid_client", id="aud missing"),
    pytest.param(lambda k: k.form(k.assertion(aud=[TOKEN_URL, "https://other.example/token"])),
                 "invalid_client", id="aud list naming another server too"),
    # BS-6 exp
    pytest.param(lambda k: k.form(k.assertion(exp=DROP)), "invalid_client", id="exp missing"),
    pytest.param(lambda k: k.form(k.assertion(exp=_now(k) - 61)), "invalid_client",
                 id="exp past beyond the skew"),
    pytest.param(lambda k: k.form(k.assertion(exp=_now(k) + 361)), "invalid_client",
                 id="exp more than five minutes ahead"),
    pytest.param(lambda k: k.form(k.assertion(exp=_now(k) + 86_400)), "invalid_client",
                 id="exp a day ahead"),
    pytest.param(lambda k: k.form(k.assertion(exp="soon")), "invalid_client", id="exp a string"),
    pytest.param(lambda k: k.form(k.assertion(exp=True)), "invalid_client", id="exp a boolean"),
    pytest.param(lambda k: k.form(k.assertion(nbf=_now(k) + 120)), "invalid_client",
                 id="nbf in the future"),
    pytest.param(lambda k: k.form(k.assertion(iat=_now(k) + 120)), "invalid_client",
                 id="iat in the future"),
    # BS-7 jti
    pytest.param(lambda k: k.form(k.assertion(jti=DROP)), "invalid_client", id="jti missing"),
    pytest.param(lambda k: k.form(k.assertion(jti="")), "invalid_client", id="jti empty"),
    pytest.param(lambda k: k.form(k.assertion(jti=123)), "invalid_client", id="jti a number"),
    pytest.param(lambda k: k.form(k.assertion(jti="j" * 257)), "invalid_client",
                 id="jti too long"),
    # BS-11 scopes
    pytest.param(lambda k: k.form(scope="system/Patient.cruds"), "invalid_scope",
                 id="scope writes beyond the registration"),
    pytest.param(lambda k: k.form(scope="system/*.cruds"), "invalid_scope",
                 id="scope wildcard write"),
    pytest.param(lambda k: k.form(scope="system/Patient.rs system/Patient.d"), "invalid_scope",
                 id="scope one of two beyond the registration"),
    pytest.param(lambda k: k.form(scope="system/Patient.sr"), "invalid_scope",
                 id="scope letters out of order"),
    pytest.param(lambda k: k.form(scope="system/Patient.x"), "invalid_scope",
                 id="scope unknown letter"),
    pytest.param(lambda k: k.form(scope="system/patient.rs"), "invalid_scope",
                 id="scope lower-case type"),
    pytest.param(lambda k: k.form(scope="patient/Patient.rs"), "invalid_scope",
                 id="scope patient context"),
    pytest.param(lambda k: k.form(scope="user/Patient.rs"), "invalid_scope",
                 id="scope user context"),
    pytest.param(lambda k: k.form(scope="system/Observation.rs?category=laboratory"),
                 "invalid_scope", id="scope granular filter"),
    pytest.param(lambda k: k.form(scope="openid"), "invalid_scope", id="scope openid"),
    pytest.param(lambda k: k.form(scope="system/Patient.rs " * 400), "invalid_scope",
                 id="scope too long"),
]


@pytest.mark.parametrize(("build", "error"), REFUSALS)
def test_issue_refuses(service: TokenService, kit: Kit, build: Build, error: str) -> None:
    refused = refusal(service, build(kit))
    assert refused.error == error
    assert refused.status == (401 if error == "invalid_client" else 400)
    assert refused.description
    assert "eyJ" not in refused.description  # never echoes a token


@pytest.mark.parametrize(("build", "granted"), [
    pytest.param(lambda k: k.form(), "system/*.rs system/Flag.cud", id="RS384, all registered"),
    pytest.param(lambda k: k.form(k.assertion(alg="ES384")), "system/*.rs system/Flag.cud",
                 id="ES384"),
    pytest.param(lambda k: k.form(k.assertion(exp=_now(k) + 300)), "system/*.rs system/Flag.cud",
                 id="exp five minutes ahead"),
    pytest.param(lambda k: k.form(k.assertion(exp=_now(k) - 30)), "system/*.rs system/Flag.cud",
                 id="exp just past, within the skew"),
    pytest.param(lambda k: k.form(k.assertion(aud=[TOKEN_URL])), "system/*.rs system/Flag.cud",
                 id="aud a one-element list"),
    pytest.param(lambda k: k.form(client_id=CLIENT), "system/*.rs system/Flag.cud",
                 id="client_id parameter matching iss"),
    pytest.param(lambda k: k.form(scope=""), "system/*.rs system/Flag.cud", id="scope empty"),
    pytest.param(lambda k: k.form(scope="system/Patient.r"), "system/Patient.r",
                 id="wildcard grant covers one type"),
    pytest.param(lambda k: k.form(scope="system/Patient.read"), "system/Patient.rs",
                 id="v1 read normalised"),
    pytest.param(lambda k: k.form(scope="system/*.read"), "system/*.rs", id="v1 wildcard read"),
    pytest.param(lambda k: k.form(scope="system/Flag.cruds"), "system/Flag.cruds",
                 id="union of two registered scopes"),
    pytest.param(lambda k: k.form(scope="system/Flag.write"), "system/Flag.cud",
                 id="v1 write normalised"),
    pytest.param(lambda k: k.form(scope="system/Patient.rs  system/Patient.rs"),
                 "system/Patient.rs", id="duplicates collapsed"),
])
def test_issue_grants(service: TokenService, kit: Kit, build: Build, granted: str) -> None:
    answer = service.issue(build(kit), TOKEN_URL)
    assert set(answer) == {"access_token", "token_type", "expires_in", "scope"}  # no refresh
    assert answer["token_type"] == "bearer"
    assert 0 < answer["expires_in"] <= 300
    assert answer["scope"] == granted
    caller = service.verify(answer["access_token"])
    assert caller == AccessToken(CLIENT, AGENCY, tuple(granted.split()), caller.jti,
                                 int(NOW) + 300)


def test_access_token_claims(service: TokenService, kit: Kit) -> None:
    answer = service.issue(kit.form(scope="system/Patient.rs"), TOKEN_URL)
    header = jwt.get_unverified_header(answer["access_token"])
    jwk = service.jwks()["keys"][0]
    assert header == {"alg": "EdDSA", "typ": "at+jwt", "kid": jwk["kid"]}
    claims = jwt.decode(answer["access_token"], jwt.PyJWK(jwk).key, algorithms=["EdDSA"],
                        issuer=ISSUER, audience=LOCAL_AUDIENCE,
                        options={"verify_exp": False, "verify_iat": False})
    assert claims == {"iss": ISSUER, "aud": LOCAL_AUDIENCE, "sub": CLIENT, "agency": AGENCY,
                      "scope": "system/Patient.rs", "iat": int(NOW), "exp": int(NOW) + 300,
                      "jti": claims["jti"]}


def test_access_token_audience_is_the_configured_fhir_base(engine: sa.Engine,
                                                           clock: Clock) -> None:
    def at(base_url: str | None) -> TokenService:
        return TokenService(engine, Settings(env="test", database_url=str(engine.url),
                                             base_url=base_url), clock=clock)

    prod, staging, local = (at("https://gateway.example.org/"),
                            at("https://staging.example.org"), at(None))
    assert prod.audience == "https://gateway.example.org/fhir"
    assert local.audience == LOCAL_AUDIENCE
    token = prod.dev_token(AGENCY, ["system/Patient.rs"])
    assert jwt.decode(token, options={"verify_signature": False})["aud"] == prod.audience
    assert prod.verify(token).agency == AGENCY
    # The same signing keys (one database) but another deployment: refused, both ways.
    for other in (staging, local):
        with pytest.raises(InvalidAccessToken, match="aud"):
            other.verify(token)
    with pytest.raises(InvalidAccessToken, match="aud"):
        prod.verify(local.dev_token(AGENCY, ["system/Patient.rs"]))


def test_issue_uses_the_token_url_hook(engine: sa.Engine, clock: Clock, keys: Keys,
                                       kit: Kit) -> None:
    service = make_service(engine, clock, token_url_for=lambda: TOKEN_URL)
    service.add_client(CLIENT, AGENCY, REGISTERED_SCOPES, keys.jwks())
    assert service.issue(kit.form())["token_type"] == "bearer"


@pytest.mark.parametrize(("requested", "granted"), [
    pytest.param(None, "system/Patient.rs system/Flag.rs", id="missing: registered within policy"),
    pytest.param("system/Patient.r", "system/Patient.r", id="within both"),
    pytest.param("system/Flag.c", None, id="registered but not allowed"),
    pytest.param("system/Observation.rs", None, id="registered wildcard, type not allowed"),
])
def test_policy_bounds_the_grant(engine: sa.Engine, clock: Clock, keys: Keys, kit: Kit,
                                 requested: str | None, granted: str | None) -> None:
    asked: list[str] = []

    def allowed(agency: str) -> list[str]:
        asked.append(agency)
        return ["system/Patient.rs", "system/Flag.rs", "not a scope"]

    service = make_service(engine, clock, allowed_scopes_for=allowed)
    service.add_client(CLIENT, AGENCY, REGISTERED_SCOPES, keys.jwks())
    form = kit.form() if requested is None else kit.form(scope=requested)
    if granted is None:
        assert refusal(service, form).error == "invalid_scope"
    else:
        assert service.issue(form, TOKEN_URL)["scope"] == granted
    assert asked == [AGENCY]


def test_no_grant_left_is_invalid_scope(engine: sa.Engine, clock: Clock, keys: Keys,
                                        kit: Kit) -> None:
    service = make_service(engine, clock, allowed_scopes_for=lambda agency: [])
    service.add_client(CLIENT, AGENCY, REGISTERED_SCOPES, keys.jwks())
    assert refusal(service, kit.form()).error == "invalid_scope"


# -- BS-8: key URLs in the header are never fetched ---------------------------------------------
@pytest.mark.parametrize("header", ["jku", "x5u"])
def test_key_url_is_never_fetched(service: TokenService, kit: Kit, header: str) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/jwks.json"
        assertion = kit.assertion(key=kit.keys.other_rsa, headers={header: url})
        assert refusal(service, kit.form(assertion)).error == "invalid_client"
        readable, _, _ = select.select([listener], [], [], 0.3)
        assert readable == [], f"the {header} URL was contacted"


# -- BS-9: a kid that matches two registered keys -----------------------------------------------
def test_kid_matching_two_keys_is_refused(engine: sa.Engine, service: TokenService,
                                          kit: Kit) -> None:
    # Registration refuses duplicate kids; a registry edited by hand must still fail closed.
    twins = {"keys": [rsa_jwk(kit.keys.rsa, "twin"), rsa_jwk(kit.keys.other_rsa, "twin")]}
    with engine.begin() as conn:
        conn.execute(sa.update(clients).where(clients.c.client_id == CLIENT)
                     .values(jwks=json.dumps(twins)))
    refused = refusal(service, kit.form(kit.assertion(kid="twin")))
    assert (refused.error, refused.description) == (
        "invalid_client", "kid does not match exactly one registered key")


@pytest.mark.parametrize(("jwk_change", "description"), [
    pytest.param({"alg": "RS512"}, "the key named by kid is not for this alg", id="jwk alg other"),
    pytest.param({"use": "enc"}, "the key named by kid is not for signatures", id="jwk use enc"),
    pytest.param({"key_ops": ["encrypt"]}, "the key named by kid is not for signatures",
                 id="jwk key_ops without verify"),
])
def test_registered_key_must_be_for_signing_with_this_alg(
        engine: sa.Engine, service: TokenService, kit: Kit, jwk_change: dict[str, Any],
        description: str) -> None:
    jwk = {**rsa_jwk(kit.keys.rsa, "rsa-1"), **jwk_change}
    with engine.begin() as conn:
        conn.execute(sa.update(clients).where(clients.c.client_id == CLIENT)
                     .values(jwks=json.dumps({"keys": [jwk]})))
    refused = refusal(service, kit.form())
    assert (refused.error, refused.description) == ("invalid_client", description)


# -- BS-4 revoked clients, BS-7 replay -----------------------------------------------------------
def test_revoked_client_gets_no_token(service: TokenService, kit: Kit) -> None:
    service.revoke_client(CLIENT)
    assert refusal(service, kit.form()).error == "invalid_client"


def test_replayed_assertion_is_refused(service: TokenService, kit: Kit) -> None:
    form = kit.form()
    service.issue(form, TOKEN_URL)
    refused = refusal(service, form)
    assert (refused.error, refused.description) == (
        "invalid_client", "client_assertion jti was already used")
    service.issue(kit.form(), TOKEN_URL)  # a fresh jti is fine


def test_refused_assertion_does_not_spend_its_jti(service: TokenService, kit: Kit) -> None:
    assertion = kit.assertion()
    assert refusal(service, kit.form(assertion, scope="system/*.cruds")).error == "invalid_scope"
    assert service.issue(kit.form(assertion), TOKEN_URL)["token_type"] == "bearer"


def test_used_jtis_are_kept_until_expiry_then_purged(engine: sa.Engine, service: TokenService,
                                                     kit: Kit, clock: Clock) -> None:
    first = kit.form(kit.assertion(exp=int(clock()) + 60))
    service.issue(first, TOKEN_URL)
    clock.advance(119)  # exp + skew not yet reached: the jti is still remembered
    assert refusal(service, first).description == "client_assertion jti was already used"
    clock.advance(2)
    assert refusal(service, first).description == "client_assertion has expired"
    service.issue(kit.form(), TOKEN_URL)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(used_assertions)).scalar() == 1


# -- verify(): bearer tokens ---------------------------------------------------------------------
def _signed(engine: sa.Engine, claims: dict[str, Any], *, key: Any = None,
            headers: dict[str, Any] | None = None, alg: str = "EdDSA") -> str:
    kid, gateway = gateway_key(engine)
    return jwt.encode(claims, key or gateway, algorithm=alg,
                      headers={"kid": kid, "typ": "at+jwt", **(headers or {})})


def _claims(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {"iss": ISSUER, "aud": LOCAL_AUDIENCE, "sub": CLIENT, "agency": AGENCY,
                              "scope": "system/*.rs", "iat": int(NOW), "exp": int(NOW) + 300,
                              "jti": "t-1"}
    for name, value in changes.items():
        if value is DROP:
            claims.pop(name)
        else:
            claims[name] = value
    return claims


def _std_alphabet(service: TokenService) -> str:
    """Return a valid token rewritten in the standard base64 alphabet (one that has a '-' or
    '_' to rewrite: a token without either would come out unchanged, and valid)."""
    token = service.dev_token(AGENCY, [])
    while "-" not in token and "_" not in token:
        token = service.dev_token(AGENCY, [])
    return token.replace("-", "+").replace("_", "/")


BadToken = Callable[[sa.Engine, TokenService, Kit], Any]

BAD_TOKENS: list[Any] = [
    pytest.param(lambda e, s, k: "", id="empty"),
    pytest.param(lambda e, s, k: None, id="not a string"),
    pytest.param(lambda e, s, k: "not-a-token", id="garbage"),
    pytest.param(lambda e, s, k: "a.b.c", id="three garbage segments"),
    pytest.param(lambda e, s, k: "x" * 5000, id="oversized"),
    pytest.param(lambda e, s, k: swap_payload(s.dev_token(AGENCY, ["system/Patient.rs"]),
                                              _claims(agency="police")),
                 id="payload changed after signing"),
    pytest.param(lambda e, s, k: _signed(e, _claims(), key=ed25519_key()),
                 id="signed by another Ed25519 key with the gateway's kid"),
    pytest.param(lambda e, s, k: ".".join(
        s.dev_token(AGENCY, []).split(".")[:2]) + ".", id="signature stripped"),
    pytest.param(lambda e, s, k: k.forged({"alg": "none", "typ": "at+jwt",
                                           "kid": gateway_key(e)[0]}, None), id="alg none"),
    pytest.param(lambda e, s, k: k.forged(
        {"alg": "HS256", "typ": "at+jwt", "kid": gateway_key(e)[0]},
        json.dumps(s.jwks()["keys"][0]).encode()), id="HS256 keyed with the gateway JWK"),
    pytest.param(lambda e, s, k: k.assertion(), id="a client assertion"),
    pytest.param(lambda e, s, k: _signed(e, _claims(), headers={"typ": "JWT"}), id="typ JWT"),
    pytest.param(lambda e, s, k: _signed(e, _claims(), headers={"kid": "other"}),
                 id="unknown kid"),
    pytest.param(lambda e, s, k: _signed(e, _claims(), headers={"jku": "https://a.example/k"}),
                 id="extra header member"),
    pytest.param(lambda e, s, k: _std_alphabet(s),
                 id="standard base64 alphabet"),
    pytest.param(lambda e, s, k: s.dev_token(AGENCY, []) + "=", id="padded signature"),
    pytest.param(lambda e, s, k: s.dev_token(AGENCY, []) + ".x", id="four segments"),
    pytest.param(lambda e, s, k: _signed(e, _claims(iss="https://elsewhere.example")),
                 id="wrong issuer"),
    pytest.param(lambda e, s, k: _signed(e, _claims(aud=DROP)), id="aud missing"),
    pytest.param(lambda e, s, k: _signed(e, _claims(aud="https://gateway.example.org/fhir")),
                 id="aud of a deployment with a base URL"),
    pytest.param(lambda e, s, k: _signed(e, _claims(aud=[LOCAL_AUDIENCE, "urn:other"])),
                 id="aud a list"),
    pytest.param(lambda e, s, k: _signed(e, _claims(aud=ISSUER)), id="aud the issuer"),
    pytest.param(lambda e, s, k: _signed(e, _claims(exp=DROP)), id="exp missing"),
    pytest.param(lambda e, s, k: _signed(e, _claims(jti=DROP)), id="jti missing"),
    pytest.param(lambda e, s, k: _signed(e, _claims(agency=DROP)), id="agency missing"),
    pytest.param(lambda e, s, k: _signed(e, _claims(scope=["system/*.rs"])),
                 id="scope not a string"),
    pytest.param(lambda e, s, k: _signed(e, _claims(exp=int(NOW) - 1)), id="expired"),
]


@pytest.mark.parametrize("make", BAD_TOKENS)
def test_verify_refuses(engine: sa.Engine, service: TokenService, kit: Kit,
                        make: BadToken) -> None:
    service.jwks()  # the gateway key exists
    with pytest.raises(InvalidAccessToken):
        service.verify(make(engine, service, kit))


def test_verify_accepts_a_well_formed_gateway_token(engine: sa.Engine,
                                                    service: TokenService) -> None:
    service.jwks()
    caller = service.verify(_signed(engine, _claims()))
    assert caller == AccessToken(CLIENT, AGENCY, ("system/*.rs",), "t-1", int(NOW) + 300)


def test_token_expires(service: TokenService, kit: Kit, clock: Clock) -> None:
    token = service.issue(kit.form(), TOKEN_URL)["access_token"]
    clock.advance(299)
    service.verify(token)
    clock.advance(1)
    with pytest.raises(InvalidAccessToken, match="expired"):
        service.verify(token)


def test_revocation_stops_issued_tokens(engine: sa.Engine, service: TokenService, kit: Kit,
                                        clock: Clock) -> None:
    token = service.issue(kit.form(), TOKEN_URL)["access_token"]
    other_worker = make_service(engine, clock)
    other_worker.verify(token)
    service.revoke_client(CLIENT)
    with pytest.raises(InvalidAccessToken, match="revoked"):
        service.verify(token)  # at once in the process that revoked
    clock.advance(5)
    with pytest.raises(InvalidAccessToken, match="revoked"):
        other_worker.verify(token)  # within five seconds elsewhere


def test_verify_does_not_query_per_call(engine: sa.Engine, service: TokenService, kit: Kit,
                                        clock: Clock) -> None:
    tokens = [service.issue(kit.form(), TOKEN_URL)["access_token"] for _ in range(3)]
    service.verify(tokens[0])
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute",
                    lambda conn, cur, stmt, *a: stmt != "BEGIN" and statements.append(stmt))
    for _ in range(50):
        for token in tokens:
            service.verify(token)
    assert statements == []
    clock.advance(5)
    service.verify(tokens[0])
    assert len(statements) == 2  # one reload: keys and revocations


# -- development tokens --------------------------------------------------------------------------
def test_dev_token(service: TokenService) -> None:
    token = service.dev_token("education", ["system/Patient.read", "system/Flag.rs"])
    caller = service.verify(token)
    assert (caller.client_id, caller.agency, caller.scopes) == (
        "dev:education", "education", ("system/Patient.rs", "system/Flag.rs"))
    named = service.verify(service.dev_token("health", ["system/*.rs"], client_id=CLIENT))
    assert named.client_id == CLIENT


def test_dev_token_refuses_bad_scopes(service: TokenService) -> None:
    with pytest.raises(ValueError):
        service.dev_token("health", ["patient/Patient.rs"])


def test_dev_tokens_are_refused_in_production(engine: sa.Engine, service: TokenService,
                                              clock: Clock) -> None:
    token = service.dev_token("health", ["system/*.rs"])
    production = make_service(engine, clock, env="production")
    with pytest.raises(PermissionError):
        production.dev_token("health", ["system/*.rs"])
    with pytest.raises(InvalidAccessToken, match="production"):
        production.verify(token)


def test_access_token_lifetime_is_capped(engine: sa.Engine, clock: Clock) -> None:
    with pytest.raises(ValueError):
        make_service(engine, clock, access_token_lifetime=301)
    short = make_service(engine, clock, access_token_lifetime=60)
    assert short.verify(short.dev_token("health", [])).expires_at == int(NOW) + 60


# -- the gateway's signing keys -----------------------------------------------------------------
def test_first_key_is_generated_on_first_use(service: TokenService) -> None:
    jwks = service.jwks()
    assert len(jwks["keys"]) == 1
    jwk = jwks["keys"][0]
    assert set(jwk) == {"kty", "crv", "x", "kid", "alg", "use"}  # public members only
    public = jwt.PyJWK(jwk).key
    assert jwk["kid"] == thumbprint(public)
    assert service.jwks() == jwks


def test_rotation_and_retirement(service: TokenService, kit: Kit) -> None:
    old_token = service.issue(kit.form(), TOKEN_URL)["access_token"]
    old_kid = jwt.get_unverified_header(old_token)["kid"]
    new_kid = service.rotate_signing_key()
    assert new_kid != old_kid
    new_token = service.issue(kit.form(), TOKEN_URL)["access_token"]
    assert jwt.get_unverified_header(new_token)["kid"] == new_kid
    service.verify(old_token)  # previous keys verify until retired
    service.verify(new_token)
    assert {k["kid"] for k in service.jwks()["keys"]} == {old_kid, new_kid}

    service.retire_signing_key(old_kid)
    with pytest.raises(InvalidAccessToken, match="retired"):
        service.verify(old_token)
    service.verify(new_token)
    assert [k["kid"] for k in service.jwks()["keys"]] == [new_kid]
    service.retire_signing_key(old_kid)  # again: nothing to do


def test_retiring_the_active_key_makes_a_new_one(service: TokenService) -> None:
    token = service.dev_token("health", [])
    kid = jwt.get_unverified_header(token)["kid"]
    service.retire_signing_key(kid)
    with pytest.raises(InvalidAccessToken):
        service.verify(token)
    fresh = service.dev_token("health", [])
    assert jwt.get_unverified_header(fresh)["kid"] != kid
    service.verify(fresh)


def test_retiring_an_unknown_key(service: TokenService) -> None:
    from gateway.security.keys import UnknownSigningKey

    with pytest.raises(UnknownSigningKey):
        service.retire_signing_key("no-such-kid")


def test_other_workers_follow_rotation_and_retirement(engine: sa.Engine, service: TokenService,
                                                      clock: Clock) -> None:
    worker = make_service(engine, clock)
    old = service.dev_token("health", [])
    worker.verify(old)
    old_kid = jwt.get_unverified_header(old)["kid"]
    service.rotate_signing_key()
    worker.verify(service.dev_token("health", []))  # a kid it has not seen: reloads at once
    service.retire_signing_key(old_kid)
    clock.advance(5)
    with pytest.raises(InvalidAccessToken, match="retired"):
        worker.verify(old)


def test_unknown_kids_reload_at_most_once_a_second(engine: sa.Engine, service: TokenService,
                                                   clock: Clock) -> None:
    service.jwks()
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute",
                    lambda conn, cur, stmt, *a: stmt != "BEGIN" and statements.append(stmt))
    forged = [_signed(engine, _claims(), headers={"kid": f"k{i}"}) for i in range(20)]
    statements.clear()
    for token in forged:
        with pytest.raises(InvalidAccessToken):
            service.verify(token)
    assert len(statements) <= 4  # first load plus at most one forced reload


def test_forged_token_with_the_public_key_as_hmac_secret(engine: sa.Engine,
                                                         service: TokenService) -> None:
    service.jwks()
    kid, key = gateway_key(engine)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw,
                                        serialization.PublicFormat.Raw)
    header = b64url(json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": kid}).encode())
    body = b64url(json.dumps(_claims()).encode())
    import hashlib
    import hmac
    mac = hmac.new(raw, f"{header}.{body}".encode(), hashlib.sha256).digest()
    with pytest.raises(InvalidAccessToken):
        service.verify(f"{header}.{body}.{b64url(mac)}")


def test_ec_jwk_helper_round_trips(keys: Keys) -> None:
    # Guards the test support: a registered EC JWK must describe the signing key.
    jwk = ec_jwk(keys.ec, "ec-1")
    assert jwt.PyJWK(jwk).key.public_numbers() == keys.ec.public_key().public_numbers()
