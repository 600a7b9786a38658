"""A tiny in-memory FHIR server, correct enough for the CRUD and versioning scripts, and breakable.

Each breakage is a flag, so a test can show that exactly the assertions that should catch it fail:

- ``missing-is-200``     a read of an unknown id answers 200 with an empty Patient
- ``no-etag``            no ETag header anywhere
- ``no-location``        create answers without a Location header
- ``ignore-if-match``    updates ignore If-Match (no 412 for a stale version)
- ``no-version-bump``    updates keep the version id
- ``plain-json``         answers are application/json, not application/fhir+json
"""
from __future__ import annotations

import copy
import itertools
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask, Response, request
from werkzeug.serving import WSGIRequestHandler, make_server

BREAKAGES = ("missing-is-200", "no-etag", "no-location", "ignore-if-match", "no-version-bump",
             "plain-json")
_STAMP = "2026-09-01T09:00:00.000Z"


class _Quiet(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Write nothing."""


def toy_fhir_app(*broken: str) -> Flask:
    """Return the toy server with the given breakages."""
    unknown = set(broken) - set(BREAKAGES)
    if unknown:
        raise ValueError(f"unknown breakages {unknown}")
    app = Flask("toy-fhir")
    versions: dict[tuple[str, str], list[dict[str, Any] | None]] = {}
    ids = itertools.count(1)

    def answer(body: Any, status: int = 200, resource: dict[str, Any] | None = None,
               location: bool = False) -> Response:
        kind = "application/json" if "plain-json" in broken else "application/fhir+json"
        headers: dict[str, str] = {}
        if resource is not None:
            version = resource["meta"]["versionId"]
            if "no-etag" not in broken:
                headers["ETag"] = f'W/"{version}"'
            headers["Last-Modified"] = "Tue, 01 Sep 2026 09:00:00 GMT"
            if location and "no-location" not in broken:
                headers["Location"] = (f"{request.host_url}fhir/{resource['resourceType']}/"
                                       f"{resource['id']}/_history/{version}")
        data = b"" if body is None else json.dumps(body).encode()
        return Response(data, status=status, content_type=kind, headers=headers)

    def outcome(status: int, code: str) -> Response:
        return answer({"resourceType": "OperationOutcome",
                       "issue": [{"severity": "error", "code": code}]}, status)

    def store(rtype: str, rid: str, body: dict[str, Any]) -> dict[str, Any]:
        history = versions.setdefault((rtype, rid), [])
        version = len(history) + 1
        if "no-version-bump" in broken and history:
            version = 1
        resource = dict(copy.deepcopy(body), id=rid,
                        meta={"versionId": str(version), "lastUpdated": _STAMP})
        history.append(resource)
        return resource

    def current(rtype: str, rid: str) -> tuple[dict[str, Any] | None, bool]:
        history = versions.get((rtype, rid))
        if not history:
            return None, False
        return history[-1], history[-1] is None

    @app.post("/fhir/<rtype>")
    def create(rtype: str) -> Response:
        resource = store(rtype, f"toy{next(ids)}", request.get_json(force=True))
        return answer(resource, 201, resource, location=True)

    @app.get("/fhir/<rtype>/<rid>")
    def read(rtype: str, rid: str) -> Response:
        resource, deleted = current(rtype, rid)
        if deleted:
            return outcome(410, "deleted")
        if resource is None:
            if "missing-is-200" in broken:
                return answer({"resourceType": rtype, "id": rid}, 200)
            return outcome(404, "not-found")
        if request.headers.get("If-None-Match") == f'W/"{resource["meta"]["versionId"]}"':
            return answer(None, 304, resource)
        return answer(resource, 200, resource)

    @app.put("/fhir/<rtype>/<rid>")
    def update(rtype: str, rid: str) -> Response:
        resource, _ = current(rtype, rid)
        wanted = request.headers.get("If-Match")
        if (resource is not None and wanted and "ignore-if-match" not in broken
                and wanted != f'W/"{resource["meta"]["versionId"]}"'):
            return outcome(412, "conflict")
        stored = store(rtype, rid, request.get_json(force=True))
        return answer(stored, 201 if resource is None else 200, stored, location=True)

    @app.delete("/fhir/<rtype>/<rid>")
    def delete(rtype: str, rid: str) -> Response:
        resource, deleted = current(rtype, rid)
        if resource is not None and not deleted:
            versions[(rtype, rid)].append(None)
        return answer(None, 204)

    @app.get("/fhir/<rtype>/<rid>/_history/<vid>")
    def vread(rtype: str, rid: str, vid: str) -> Response:
        for resource in versions.get((rtype, rid), []):
            if resource is not None and resource["meta"]["versionId"] == vid:
                return answer(resource, 200, resource)
        return outcome(404, "not-found")

    @app.get("/fhir/<rtype>/<rid>/_history")
    @app.get("/fhir/<rtype>/_history")
    def history(rtype: str, rid: str | None = None) -> Response:
        found = [r for (t, i), h in versions.items() if t == rtype and rid in (None, i)
                 for r in reversed(h) if r is not None]
        count = int(request.args.get("_count", "100"))
        return answer({"resourceType": "Bundle", "type": "history", "total": len(found),
                       "entry": [{"fullUrl": f"{request.host_url}fhir/{rtype}/{r['id']}",
                                  "resource": r} for r in found[:count]]})

    return app


@contextmanager
def serve(app: Flask) -> Iterator[str]:
    """Serve app on a free loopback port; yield its FHIR base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/fhir"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
