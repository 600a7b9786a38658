"""The security-headers middleware: every response gets each header it does not set itself."""
from __future__ import annotations

from typing import Any

import pytest

from gateway.security.http import SECURITY_HEADERS, SecurityHeaders


def _respond(app_headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    def app(environ: Any, start_response: Any) -> list[bytes]:
        start_response("200 OK", list(app_headers))
        return [b"{}"]

    sent: list[tuple[str, str]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        sent.extend(headers)

    assert SecurityHeaders(app)({}, start_response) == [b"{}"]
    return sent


def test_every_security_header_is_added_to_a_response_without_them() -> None:
    sent = _respond([("Content-Type", "application/fhir+json")])
    assert sent[0] == ("Content-Type", "application/fhir+json")
    assert dict(sent[1:]) == SECURITY_HEADERS and len(sent) == 1 + len(SECURITY_HEADERS)


@pytest.mark.parametrize("name", ["Cache-Control", "cache-control", "X-Frame-Options"])
def test_a_header_the_app_sets_is_kept_and_not_repeated(name: str) -> None:
    sent = _respond([("Content-Type", "application/json"), (name, "app-value")])
    names = [n.lower() for n, _ in sent]
    assert len(names) == len(set(names)) == 1 + len(SECURITY_HEADERS)
    assert (name, "app-value") in sent
    assert {n.lower() for n in SECURITY_HEADERS} <= set(names)
