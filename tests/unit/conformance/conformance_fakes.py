"""In-process fakes for the conformance engine's unit tests: no sockets, real HTTP semantics.

`session_for(app)` returns a requests Session whose requests to http://fhir.test go straight to a
WSGI app; `Recorder` is a FHIR-ish app that records every request and answers what a test set up.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from flask import Flask, Response, request
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict
from werkzeug.test import Client

BASE = "http://fhir.test/fhir"
FHIR_JSON = "application/fhir+json"


class WsgiAdapter(BaseAdapter):
    """A requests transport adapter that calls a WSGI app in-process."""

    def __init__(self, app: Any) -> None:
        super().__init__()
        self.client = Client(app)

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None,
             verify: Any = True, cert: Any = None, proxies: Any = None) -> requests.Response:
        parts = urlsplit(request.url or "")
        body = request.body.encode() if isinstance(request.body, str) else request.body
        answer = self.client.open(path=parts.path, query_string=parts.query,
                                  method=request.method or "GET",
                                  headers=dict(request.headers), data=body or b"")
        response = requests.Response()
        response.status_code = answer.status_code
        response.headers = CaseInsensitiveDict(dict(answer.headers))
        response._content = answer.get_data()
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        """Nothing to release."""


def session_for(app: Any) -> requests.Session:
    """Return a session whose http://fhir.test requests go to app."""
    session = requests.Session()
    session.mount("http://fhir.test", WsgiAdapter(app))
    return session


@dataclass
class Seen:
    """One request the Recorder received."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Recorder:
    """Records requests; answers from `replies[(METHOD, path)]`, else `(METHOD, '*')`, else 200."""

    seen: list[Seen] = field(default_factory=list)
    replies: dict[tuple[str, str], tuple[int, dict[str, str], Any]] = field(default_factory=dict)

    def reply(self, method: str, path: str, status: int = 200, body: Any = None,
              **headers: str) -> None:
        """Set the answer to METHOD path (path relative to /fhir, or '*')."""
        self.replies[(method, path)] = (status, {k.replace("_", "-"): v
                                                 for k, v in headers.items()}, body)

    def app(self) -> Flask:
        flask_app = Flask("recorder")

        @flask_app.route("/<path:rest>", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
        def anything(rest: str) -> Response:
            path = "/" + rest.removeprefix("fhir").lstrip("/")
            self.seen.append(Seen(request.method, path, request.query_string.decode(),
                                  dict(request.headers), request.get_data()))
            status, headers, body = self.replies.get(
                (request.method, path), self.replies.get((request.method, "*"), (
                    200, {}, {"resourceType": "OperationOutcome",
                              "issue": [{"severity": "information", "code": "informational"}]})))
            data = b"" if body is None else (body if isinstance(body, bytes)
                                             else json.dumps(body).encode())
            headers = {"Content-Type": f"{FHIR_JSON}; charset=utf-8", **headers}
            return Response(data, status=status, headers=headers)

        return flask_app

    @property
    def last(self) -> Seen:
        return self.seen[-1]


def make_script(*tests: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """Return a TestScript with the given tests (each {name, action})."""
    script: dict[str, Any] = {"resourceType": "TestScript", "id": "unit", "name": "Unit",
                              "status": "active", "test": list(tests)}
    script.update(extra)
    return script


def op(code: str, **fields: Any) -> dict[str, Any]:
    """Return an operation action."""
    return {"operation": {"type": {"code": code}, **fields}}


def check(**fields: Any) -> dict[str, Any]:
    """Return an assert action (warningOnly false unless given)."""
    return {"assert": {"warningOnly": False, **fields}}
