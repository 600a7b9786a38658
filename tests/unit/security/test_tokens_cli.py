"""`wraparound clients add|list|revoke` and `wraparound dev-token`, on a scratch SQLite file."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from test_tokens_support import Keys, ec_jwk, rsa_jwk

from gateway.cli.clients import clients, dev_token, policy_default_scopes
from gateway.config import Settings
from gateway.security.tokens import TokenService
from gateway.store import make_engine


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"WRAPAROUND_ENV": "test", "WRAPAROUND_DATA_DIR": str(tmp_path),
            "WRAPAROUND_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite'}"}


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


@pytest.fixture
def jwks_file(tmp_path: Path, keys: Keys) -> Path:
    path = tmp_path / "client.jwks.json"
    path.write_text(json.dumps({"keys": [rsa_jwk(keys.rsa, "rsa-1"), ec_jwk(keys.ec, "ec-1")]}))
    return path


def run(command: Any, args: list[str], env: dict[str, str], **kw: Any) -> Result:
    return CliRunner().invoke(command, args, env=env, catch_exceptions=False, **kw)


def verify(env: dict[str, str], token: str) -> Any:
    engine = make_engine(env["WRAPAROUND_DATABASE_URL"])
    try:
        settings = Settings(env="test", database_url=env["WRAPAROUND_DATABASE_URL"])
        return TokenService(engine, settings).verify(token)
    finally:
        engine.dispose()


def test_add_list_revoke(env: dict[str, str], jwks_file: Path) -> None:
    added = run(clients, ["add", "care-app", "--agency", "social-care", "--scope",
                          "system/Patient.read", "--scope", "system/Flag.rs", "--jwks",
                          str(jwks_file), "--description", "synthetic"], env)
    assert added.exit_code == 0, added.output
    listed = run(clients, ["list"], env)
    header, row = listed.output.splitlines()
    assert header.split("\t") == ["client_id", "agency", "scopes", "kids", "created", "revoked"]
    fields = row.split("\t")
    assert fields[:4] == ["care-app", "social-care", "system/Patient.rs system/Flag.rs",
                          "rsa-1 ec-1"]
    assert fields[5] == "-"
    assert run(clients, ["revoke", "care-app"], env).exit_code == 0
    assert run(clients, ["list"], env).output.splitlines()[1].split("\t")[5] != "-"


@pytest.mark.parametrize(("args", "message"), [
    pytest.param(["add", "x", "--agency", "health", "--scope", "patient/*.rs"], "invalid scope",
                 id="bad scope"),
    pytest.param(["add", "dev:x", "--agency", "health", "--scope", "system/*.rs"], "reserved",
                 id="reserved id"),
])
def test_add_refusals(env: dict[str, str], jwks_file: Path, args: list[str],
                      message: str) -> None:
    result = run(clients, [*args, "--jwks", str(jwks_file)], env)
    assert result.exit_code == 1
    assert message in result.output


def test_add_refuses_an_unreadable_jwks(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    result = run(clients, ["add", "x", "--agency", "health", "--scope", "system/*.rs",
                           "--jwks", str(bad)], env)
    assert result.exit_code == 1 and "cannot read the JWKS" in result.output


def test_revoke_unknown(env: dict[str, str]) -> None:
    result = run(clients, ["revoke", "nobody"], env)
    assert result.exit_code == 1 and "no client" in result.output


def test_dev_token_with_scopes(env: dict[str, str]) -> None:
    result = run(dev_token, ["--agency", "health", "--scope", "system/Patient.read",
                             "--scope", "system/Flag.rs"], env)
    assert result.exit_code == 0, result.output
    caller = verify(env, result.output.strip())
    assert (caller.client_id, caller.agency, caller.scopes) == (
        "dev:health", "health", ("system/Patient.rs", "system/Flag.rs"))


def test_dev_token_default_scopes_come_from_the_hook(env: dict[str, str]) -> None:
    result = run(dev_token, ["--agency", "education"], env,
                 obj={"default_scopes": lambda agency: ["system/Patient.rs"]})
    assert verify(env, result.output.strip()).scopes == ("system/Patient.rs",)


def test_dev_token_default_is_the_policy(env: dict[str, str]) -> None:
    result = run(dev_token, ["--agency", "health"], env)
    assert verify(env, result.output.strip()).scopes == tuple(policy_default_scopes("health"))
    assert policy_default_scopes("health")  # system/*.rs until the policy provides a hook


def test_dev_token_bad_scope(env: dict[str, str]) -> None:
    result = CliRunner().invoke(dev_token, ["--agency", "health", "--scope", "openid"], env=env)
    assert result.exit_code == 2 and "--scope" in result.output


def test_dev_token_refused_in_production(env: dict[str, str]) -> None:
    result = CliRunner().invoke(dev_token, ["--agency", "health"],
                                env={**env, "WRAPAROUND_ENV": "production"})
    assert result.exit_code == 1
    assert "refused in production" in result.output
    assert not Path(env["WRAPAROUND_DATABASE_URL"].removeprefix("sqlite:///")).exists()

