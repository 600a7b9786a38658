"""`POST /auth/token` over HTTP: SMART Backend Services client_credentials with a JWT assertion."""
from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from flask import Flask
from flask.testing import FlaskClient

from gateway.security.tokens import ASSERTION_TYPE, TokenService

TOKEN_URL = "http://localhost/auth/token"
CLIENT = "children-hub"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64int(value: int, size: int | None = None) -> str:
    return _b64(value.to_bytes(size or (value.bit_length() + 7) // 8, "big"))


UNSIGNED = (_b64(json.dumps({"alg": "none", "kid": "rsa-1"}).encode()) + "."
            + _b64(json.dumps({"iss": CLIENT, "sub": CLIENT, "aud": TOKEN_URL,
                               "exp": 4_000_000_000, "jti": "unsigned"}).encode()) + ".")


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=3072)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


@pytest.fixture
def tokens(app: Flask) -> TokenService:
    service: TokenService = app.extensions["wraparound"].tokens
    return service


@pytest.fixture
def registered(tokens: TokenService, rsa_key: rsa.RSAPrivateKey,
               ec_key: ec.EllipticCurvePrivateKey) -> None:
    rn = rsa_key.public_key().public_numbers()
    en = ec_key.public_key().public_numbers()
    tokens.add_client(CLIENT, "health", ["system/*.rs"], {"keys": [
        {"kty": "RSA", "kid": "rsa-1", "n": _b64int(rn.n), "e": _b64int(rn.e), "alg": "RS384"},
        {"kty": "EC", "kid": "ec-1", "crv": "P-384",
         "x": _b64int(en.x, 48), "y": _b64int(en.y, 48), "alg": "ES384"},
    ]})


def assertion(key: Any, alg: str = "RS384", kid: str = "rsa-1", **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": CLIENT, "sub": CLIENT, "aud": TOKEN_URL, "exp": now + 240,
            "jti": uuid.uuid4().hex, **claims}
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})


def post(client: FlaskClient, **form: str) -> Any:
    return client.post("/auth/token", data=form)


def request_form(token: str, **extra: str) -> dict[str, str]:
    return {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": token, **extra}


@pytest.mark.usefixtures("registered")
def test_token_is_issued_and_works(client: FlaskClient, tokens: TokenService,
                                   rsa_key: rsa.RSAPrivateKey) -> None:
    resp = post(client, **request_form(assertion(rsa_key), scope="system/Patient.rs"))
    assert resp.status_code == 200, resp.get_json()
    assert resp.headers["Cache-Control"] == "no-store"
    body = resp.get_json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert body["token_type"] == "bearer" and body["expires_in"] <= 300
    assert body["scope"] == "system/Patient.rs"
    assert tokens.verify(body["access_token"]).client_id == CLIENT
    fhir = client.get("/fhir/Patient", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert fhir.status_code == 200


@pytest.mark.usefixtures("registered")
def test_es384_is_accepted(client: FlaskClient, ec_key: ec.EllipticCurvePrivateKey) -> None:
    resp = post(client, **request_form(assertion(ec_key, alg="ES384", kid="ec-1")))
    assert resp.status_code == 200, resp.get_json()


@pytest.mark.usefixtures("registered")
@pytest.mark.parametrize(("change", "status", "error"), [
    pytest.param({"grant_type": "password"}, 400, "unsupported_grant_type", id="BS-1"),
    pytest.param({"client_assertion_type": "not_an_assertion_type"}, 401, "invalid_client",
                 id="BS-2"),
    pytest.param({"client_assertion": UNSIGNED}, 401, "invalid_client", id="BS-10 alg none"),
    pytest.param({"aud": TOKEN_URL + "/"}, 401, "invalid_client", id="BS-5 aud"),
    pytest.param({"exp": "far"}, 401, "invalid_client", id="BS-6 exp"),
    pytest.param({"scope": "system/*.cruds"}, 400, "invalid_scope", id="BS-11 scope"),
])
def test_refusals(client: FlaskClient, rsa_key: rsa.RSAPrivateKey, change: dict[str, str],
                  status: int, error: str) -> None:
    change = dict(change)  # the parameter table is shared by the sqlite and postgres runs
    claims: dict[str, Any] = {}
    if "aud" in change:
        claims["aud"] = change.pop("aud")
    if "exp" in change:
        change.pop("exp")
        claims["exp"] = int(time.time()) + 3600
    resp = post(client, **{**request_form(assertion(rsa_key, **claims)), **change})
    assert resp.status_code == status
    body = resp.get_json()
    assert body["error"] == error and body["error_description"]
    assert "eyJ" not in resp.get_data(as_text=True)
    assert resp.headers["Cache-Control"] == "no-store"


@pytest.mark.usefixtures("registered")
def test_replay_over_http(client: FlaskClient, rsa_key: rsa.RSAPrivateKey) -> None:
    form = request_form(assertion(rsa_key))
    assert post(client, **form).status_code == 200
    replay = post(client, **form)
    assert (replay.status_code, replay.get_json()["error"]) == (401, "invalid_client")


def test_get_is_not_allowed(client: FlaskClient) -> None:
    assert client.get("/auth/token").status_code == 405


@pytest.mark.parametrize("authorization", [None, "Bearer not-a-token", "Basic dXNlcjpwYXNz"])
def test_fhir_without_a_valid_token_is_401(anonymous: FlaskClient,
                                           authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    resp = anonymous.get("/fhir/Patient", headers=headers)
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


def test_jwks_and_smart_configuration(client: FlaskClient, tokens: TokenService) -> None:
    assert client.get("/.well-known/jwks.json").get_json() == tokens.jwks()
    smart = client.get("/fhir/.well-known/smart-configuration").get_json()
    assert smart["token_endpoint"] == TOKEN_URL
    assert "private_key_jwt" in smart["token_endpoint_auth_methods_supported"]
    assert set(smart["token_endpoint_auth_signing_alg_values_supported"]) == {"RS384", "ES384"}
    assert "client_credentials" in smart["grant_types_supported"]
    assert {"client-confidential-asymmetric", "permission-v2"} <= set(smart["capabilities"])
