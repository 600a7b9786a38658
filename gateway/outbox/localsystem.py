"""A stand-in local system that receives Subscription notifications (for the demo and trials).

`wraparound mocks subscriber --port 8091` serves it. It accepts rest-hook notifications at
`/hook` (`PUT /hook/<type>/<id>` with the resource, or an empty `POST /hook`), answers 200,
de-duplicates by the `X-Message-ID` header as a real receiver should, and lists what arrived
at `GET /received` — message ids, methods and paths only, never the resources (which hold
personal data).

For fault trials it takes faults like the mock national server (`connectors.mockserver`):

- ``POST /admin/faults`` ``{"kind": "http_error|hang|reset|latency", "status": 500|502|503|504,
  "seconds": s, "times": n}`` → 201. `http_error` answers that status (the notification is not
  accepted); `hang` answers nothing for `seconds` (then 503); `reset` drops the connection;
  `latency` accepts the notification, then waits `seconds` before answering 200 (the sender may
  give up although it was received). Faults apply in the order they were added.
- ``GET /admin/faults``, ``DELETE /admin/faults`` (which also releases hanging requests);
- ``GET /received/ids`` every accepted message id with how often it arrived, and the counts of
  refused and dropped requests (``?order=1``: also the accepted ids in arrival order);
  ``POST /admin/reset`` forgets faults and what arrived.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from flask import Flask, Response, jsonify, request

from connectors.mockserver.app import _reset_connection
from connectors.mockserver.faults import FaultRegistry

SERVICE = "subscriber"
SUBSCRIBER_FAULTS = ("http_error", "hang", "reset", "latency")


def create_subscriber_app() -> Flask:
    """Return the stand-in local system's app."""
    app = Flask("wraparound-subscriber")
    received: list[dict[str, Any]] = []
    accepted: Counter[str] = Counter()
    order: list[str] = []  # accepted message ids in the order they arrived
    counts = {"refused": 0, "dropped": 0}
    faults = FaultRegistry()
    lock = threading.Lock()

    def record(message_id: str, status: int) -> bool:
        with lock:
            duplicate = bool(message_id) and message_id in accepted
            if 200 <= status < 300:
                accepted[message_id] += 1
                order.append(message_id)
            else:
                counts["refused"] += 1
            received.append(
                {
                    "messageId": message_id,
                    "method": request.method,
                    "path": request.path,
                    "status": status,
                    "duplicate": duplicate,
                    "bytes": len(request.get_data()),
                }
            )
            if len(received) > 1000:
                del received[:-1000]
        return duplicate

    @app.route("/hook", defaults={"rest": ""}, methods=["POST", "PUT"])
    @app.route("/hook/<path:rest>", methods=["POST", "PUT"])
    def hook(rest: str) -> Response:
        message_id = request.headers.get("X-Message-ID", "")[:64]
        fault = faults.take(SERVICE, None)
        if fault is not None and fault.kind == "reset":
            with lock:
                counts["dropped"] += 1
            return _reset_connection()
        if fault is not None and fault.kind == "hang":
            faults.released.wait(fault.seconds or 3600.0)
            with lock:
                counts["dropped"] += 1
            return Response(b"", status=503, content_type="text/plain")
        if fault is not None and fault.kind == "http_error":
            record(message_id, fault.status)
            return Response(b"", status=fault.status, content_type="text/plain")
        record(message_id, 200)
        if fault is not None and fault.kind == "latency":
            time.sleep(fault.seconds)
        return jsonify(status="received")

    @app.get("/received")
    def listing() -> Response:
        with lock:
            unique = len(accepted)
            total = sum(accepted.values())
            return jsonify(total=total, unique=unique, notifications=received[-100:])

    @app.get("/received/ids")
    def ids() -> Response:
        with lock:
            extra = {"order": list(order)} if request.args.get("order") else {}
            return jsonify(accepted=dict(accepted), **counts, **extra)

    @app.post("/admin/faults")
    def add_fault() -> Response | tuple[Response, int]:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            return jsonify(error="a JSON object is required"), 400
        if data.get("kind") not in SUBSCRIBER_FAULTS:
            return jsonify(error=f"kind must be one of {', '.join(SUBSCRIBER_FAULTS)}"), 400
        try:
            spec = faults.add({**data, "service": SERVICE, "operation": "*"})
        except (ValueError, TypeError) as exc:
            return jsonify(error=str(exc)), 400
        return jsonify(spec.to_json()), 201

    @app.get("/admin/faults")
    def list_faults() -> Response:
        return jsonify([f.to_json() for f in faults.list()])

    @app.delete("/admin/faults")
    def clear_faults() -> Response:
        return jsonify(removed=faults.clear())

    @app.post("/admin/reset")
    def reset() -> Response:
        faults.clear()
        with lock:
            received.clear()
            accepted.clear()
            order.clear()
            counts.update(refused=0, dropped=0)
        return jsonify(status="reset")

    @app.get("/health")
    def health() -> Response:
        return jsonify(status="ok")

    app.extensions["wraparound_subscriber_faults"] = faults
    return app


__all__ = ["SUBSCRIBER_FAULTS", "create_subscriber_app"]
