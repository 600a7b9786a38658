"""A stand-in local system that receives Subscription notifications (for the demo and trials).

`wraparound mocks subscriber --port 8091` serves it. It accepts rest-hook notifications at
`/hook` (`PUT /hook/<type>/<id>` with the resource, or an empty `POST /hook`), answers 200,
de-duplicates by the `X-Message-ID` header as a real receiver should, and lists what arrived
at `GET /received` — message ids, methods and paths only, never the resources (which hold
personal data).
"""
from __future__ import annotations

import threading
from typing import Any

from flask import Flask, Response, jsonify, request


def create_subscriber_app() -> Flask:
    """Return the stand-in local system's app."""
    app = Flask("wraparound-subscriber")
    received: list[dict[str, Any]] = []
    seen: set[str] = set()
    lock = threading.Lock()

    @app.route("/hook", defaults={"rest": ""}, methods=["POST", "PUT"])
    @app.route("/hook/<path:rest>", methods=["POST", "PUT"])
    def hook(rest: str) -> Response:
        message_id = request.headers.get("X-Message-ID", "")[:64]
        with lock:
            duplicate = bool(message_id) and message_id in seen
            seen.add(message_id)
            received.append({"messageId": message_id, "method": request.method,
                             "path": request.path, "duplicate": duplicate,
                             "bytes": len(request.get_data())})
        return jsonify(status="received")

    @app.get("/received")
    def listing() -> Response:
        with lock:
            unique = sum(1 for r in received if not r["duplicate"])
            return jsonify(total=len(received), unique=unique, notifications=received[-100:])

    @app.get("/health")
    def health() -> Response:
        return jsonify(status="ok")

    return app


__all__ = ["create_subscriber_app"]
