"""The client registry and replay protection on every database (SQLite and PostgreSQL)."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from test_tokens_support import (
    AGENCY,
    CLIENT,
    REGISTERED_SCOPES,
    TOKEN_URL,
    Clock,
    Keys,
    Kit,
    ec_jwk,
    rsa_jwk,
)

from gateway.config import Settings
from gateway.security.tokens import (
    ClientRegistryError,
    InvalidAccessToken,
    OAuthError,
    TokenService,
    UnknownClient,
)
from gateway.store import make_engine


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


@pytest.fixture
def kit(keys: Keys, clock: Clock) -> Kit:
    return Kit(keys, clock)


@pytest.fixture
def service(engine: sa.Engine, clock: Clock, keys: Keys) -> TokenService:
    svc = TokenService(engine, Settings(env="test", database_url=str(engine.url)), clock=clock)
    svc.add_client(CLIENT, AGENCY, REGISTERED_SCOPES, keys.jwks(), "synthetic test client")
    return svc


# -- registry ------------------------------------------------------------------------------------
def test_add_list_revoke(service: TokenService, keys: Keys) -> None:
    service.add_client("school-mis", "education", ["system/Patient.read"],
                       {"keys": [ec_jwk(keys.other_ec, "school-1")]})
    listed = service.list_clients()
    assert [c["client_id"] for c in listed] == [CLIENT, "school-mis"]
    hub, school = listed
    assert hub["scopes"] == list(REGISTERED_SCOPES)
    assert hub["kids"] == ["rsa-1", "ec-1"]
    assert hub["description"] == "synthetic test client"
    assert school["scopes"] == ["system/Patient.rs"]  # v1 normalised on registration
    assert hub["revoked"] is None and len(hub["created"]) == 26
    assert not {"jwks", "n", "e", "x", "y", "keys"} & set(hub)  # no key material

    service.revoke_client("school-mis")
    first = service.list_clients()[1]["revoked"]
    assert first is not None and len(first) == 26
    service.revoke_client("school-mis")
    assert service.list_clients()[1]["revoked"] == first  # revoking again keeps the time


def test_revoke_unknown_client(service: TokenService) -> None:
    with pytest.raises(UnknownClient):
        service.revoke_client("nobody")


def _jwks(keys: Keys, **change: Any) -> dict[str, Any]:
    return {"keys": [{**rsa_jwk(keys.rsa, "k1"), **change}]}


@pytest.mark.parametrize(("client_id", "scopes", "make_jwks", "message"), [
    pytest.param(CLIENT, ["system/*.rs"], lambda k: _jwks(k), "already registered",
                 id="client id taken"),
    pytest.param("dev:health", ["system/*.rs"], lambda k: _jwks(k), "reserved",
                 id="dev: prefix reserved"),
    pytest.param("internal:gateway", ["system/*.rs"], lambda k: _jwks(k), "reserved",
                 id="internal: prefix reserved"),
    pytest.param("has space", ["system/*.rs"], lambda k: _jwks(k), "client ids",
                 id="client id with a space"),
    pytest.param("trailing-newline\n", ["system/*.rs"], lambda k: _jwks(k), "client ids",
                 id="client id with a newline"),
    pytest.param("c" * 129, ["system/*.rs"], lambda k: _jwks(k), "client ids",
                 id="client id too long"),
    pytest.param("new", [], lambda k: _jwks(k), "at least one scope", id="no scopes"),
    pytest.param("new", "system/*.rs", lambda k: _jwks(k), "at least one scope",
                 id="scopes as a string"),
    pytest.param("new", ["patient/*.rs"], lambda k: _jwks(k), "invalid scope",
                 id="patient scope"),
    pytest.param("new", ["system/Patient.rs?x=1"], lambda k: _jwks(k), "invalid scope",
                 id="granular scope"),
    pytest.param("new", ["system/*.rs"], lambda k: {"keys": []}, "non-empty", id="no keys"),
    pytest.param("new", ["system/*.rs"], lambda k: {"keys": "k1"}, "non-empty",
                 id="keys not a list"),
    pytest.param("new", ["system/*.rs"], lambda k: _jwks(k, d="AQAB"), "private key",
                 id="RSA private key"),
    pytest.param("new", ["system/*.rs"], lambda k: {"keys": [{"kty": "oct", "kid": "s",
                                                              "k": "c2VjcmV0"}]},
                 "private key", id="symmetric key"),
    pytest.param("new", ["system/*.rs"], lambda k: {"keys": [rsa_jwk(k.weak_rsa, "w")]},
                 "2048 bits", id="RSA-1024"),
    pytest.param("new", ["system/*.rs"], lambda k: {"keys": [ec_jwk(k.p256, "p", alg=None)]},
                 "P-384", id="EC P-256"),
    pytest.param("new", ["system/*.rs"], lambda k: {"keys": [{"kty": "OKP", "kid": "o",
                                                              "crv": "Ed25519", "x": "AA"}]},
                 "must be RSA", id="OKP key"),
    pytest.param("new", ["system/*.rs"], lambda k: {"keys": [{**rsa_jwk(k.rsa, "x"), "kid": ""}]},
                 "kid", id="kid empty"),
    pytest.param("new", ["system/*.rs"], lambda k: {"keys": [rsa_jwk(k.rsa, "d"),
                                                             ec_jwk(k.ec, "d")]},
                 "share a 'kid'", id="duplicate kid"),
    pytest.param("new", ["system/*.rs"], lambda k: _jwks(k, alg="RS256"), "RS384 or ES384",
                 id="key alg RS256"),
    pytest.param("new", ["system/*.rs"], lambda k: _jwks(k, n="not base64!"), "unusable",
                 id="modulus not base64url"),
    pytest.param("new", ["system/*.rs"], lambda k: {"keys": [{**ec_jwk(k.ec, "e"), "y": "AQAB"}]},
                 "unusable", id="EC point off the curve"),
])
def test_registration_refusals(service: TokenService, keys: Keys, client_id: str, scopes: Any,
                               make_jwks: Any, message: str) -> None:
    with pytest.raises(ClientRegistryError, match=message):
        service.add_client(client_id, "health", scopes, make_jwks(keys))
    assert [c["client_id"] for c in service.list_clients()] == [CLIENT]


def test_single_jwk_is_accepted_as_a_set(service: TokenService, keys: Keys) -> None:
    service.add_client("single", "health", ["system/*.rs"], rsa_jwk(keys.other_rsa, "only"))
    assert service.list_clients()[1]["kids"] == ["only"]


# -- replay --------------------------------------------------------------------------------------
def test_replay_is_refused(service: TokenService, kit: Kit) -> None:
    form = kit.form()
    service.issue(form, TOKEN_URL)
    with pytest.raises(OAuthError) as refused:
        service.issue(form, TOKEN_URL)
    assert (refused.value.error, refused.value.status) == ("invalid_client", 401)


def test_jti_is_per_client(service: TokenService, kit: Kit, keys: Keys) -> None:
    service.add_client("second", AGENCY, ["system/*.rs"], keys.jwks())
    service.issue(kit.form(kit.assertion(jti="shared")), TOKEN_URL)
    service.issue(kit.form(kit.assertion(jti="shared", iss="second", sub="second")), TOKEN_URL)


def test_concurrent_replays_only_one_wins(service: TokenService, kit: Kit) -> None:
    form = kit.form()
    barrier = threading.Barrier(2)
    outcomes: list[Any] = []

    def attempt() -> None:
        barrier.wait()
        try:
            outcomes.append(service.issue(form, TOKEN_URL))
        except OAuthError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(outcomes) == 2
    wins = [o for o in outcomes if isinstance(o, dict)]
    losses = [o for o in outcomes if isinstance(o, OAuthError)]
    assert len(wins) == 1 and len(losses) == 1
    assert losses[0].error == "invalid_client"


def test_revoked_client_tokens_stop_working(service: TokenService, kit: Kit, engine: sa.Engine,
                                            clock: Clock) -> None:
    token = service.issue(kit.form(), TOKEN_URL)["access_token"]
    service.verify(token)
    service.revoke_client(CLIENT)
    with pytest.raises(InvalidAccessToken):
        service.verify(token)
    with pytest.raises(OAuthError):
        service.issue(kit.form(), TOKEN_URL)
