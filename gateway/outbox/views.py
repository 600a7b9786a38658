"""Operating the outbox over HTTP: status, replay (one or by filter), and Prometheus metrics.

- `GET /admin/outbox` — counts by state and destination, the oldest pending message's age, the
  breakers, and the most recent messages (`?state=`, `?destination=`, `?_count=`); delivery
  records only, never payloads;
- `GET /admin/outbox/{id}` — one message's delivery record;
- `POST /admin/outbox/{id}/$replay` — a dead letter (or a delivered message) back to pending;
- `POST /admin/outbox/$replay?destination=&error=&since=&until=` — every dead letter matching;
- `GET /metrics` — Prometheus text: queue depth, delivery latency, attempts, breaker state.

All need an agency whose policy lists `operate: [outbox]` (metrics: `metrics`), and are audited.
"""
from __future__ import annotations

from typing import Any

import orjson
from flask import Blueprint, Response, request

from gateway.errors import BadRequest, Conflict, Forbidden, ResourceNotFound
from gateway.outbox import get_outbox
from gateway.outbox.breaker import CLOSED, HALF_OPEN, OPEN
from gateway.outbox.store import DELIVERED, FAILED, STATES
from gateway.security.audit import current_audit
from gateway.security.context import current_caller
from gateway.security.http import declare
from gateway.services import get_services
from gateway.store.sql import from_instant

bp = Blueprint("outbox", __name__)
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)


def _require(what: str) -> None:
    caller = current_caller()
    if not get_services().policy.may_operate(caller, what):
        raise Forbidden(f"the {caller.agency} agency may not operate the {what}")
    ctx = current_audit()
    if ctx is not None:
        ctx.description = f"{what} administration"


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status=status, mimetype="application/json")


def _instant(name: str) -> str | None:
    raw = request.args.get(name)
    if not raw:
        return None
    try:
        return from_instant(raw)
    except ValueError as exc:
        raise BadRequest(f"'{name}' must be a FHIR instant or date") from exc


@bp.get("/admin/outbox")
def status() -> Response:
    """Return the outbox's state and its most recent messages."""
    _require("outbox")
    parts = get_outbox()
    state = request.args.get("state")
    if state is not None and state not in STATES:
        raise BadRequest(f"state must be one of {', '.join(STATES)}")
    try:
        count = min(max(int(request.args.get("_count", "50")), 0), 500)
    except ValueError as exc:
        raise BadRequest("_count must be an integer") from exc
    stats = parts.outbox.stats()
    stats.pop("recentLatencySeconds", None)
    stats["messages"] = parts.outbox.list(state=state,
                                          destination=request.args.get("destination"),
                                          limit=count)
    return _json(stats)


@bp.get("/admin/outbox/<message_id>")
def message(message_id: str) -> Response:
    """Return one message's delivery record."""
    _require("outbox")
    found = get_outbox().outbox.get(message_id)
    if found is None:
        raise ResourceNotFound("no such outbox message")
    return _json(found)


@bp.post("/admin/outbox/<message_id>/$replay")
def replay_one(message_id: str) -> Response:
    """Put one dead letter (or delivered message) back to pending."""
    _require("outbox")
    outbox = get_outbox().outbox
    found = outbox.get(message_id)
    if found is None:
        raise ResourceNotFound("no such outbox message")
    if found["state"] not in (FAILED, DELIVERED):
        raise Conflict(f"the message is {found['state']}; only failed or delivered messages "
                       "can be replayed")
    outbox.replay(ids=[message_id], states=(FAILED, DELIVERED))
    return _json(outbox.get(message_id))


@bp.post("/admin/outbox/$replay")
def replay_many() -> Response:
    """Put every dead letter matching the filters back to pending."""
    _require("outbox")
    destination = request.args.get("destination") or None
    error = request.args.get("error") or None
    since, until = _instant("since"), _instant("until")
    if not any((destination, error, since, until)) and request.args.get("all") != "true":
        raise BadRequest("name a filter (destination, error, since, until) or all=true")
    ids = get_outbox().outbox.replay(destination=destination, error=error, since=since,
                                     until=until)
    return _json({"replayed": len(ids), "ids": ids[:1000]})


@bp.get("/metrics")
def metrics() -> Response:
    """Return the outbox metrics in the Prometheus text exposition format."""
    _require("metrics")
    stats = get_outbox().outbox.stats()
    lines: list[str] = []

    def family(name: str, kind: str, text: str) -> None:
        lines.append(f"# HELP {name} {text}")
        lines.append(f"# TYPE {name} {kind}")

    family("wraparound_outbox_messages", "gauge", "Outbox messages by destination and state.")
    for destination, counts in sorted(stats["destinations"].items()):
        for state in STATES:
            lines.append(f'wraparound_outbox_messages{{destination="{_label(destination)}",'
                         f'state="{state}"}} {counts.get(state, 0)}')
    family("wraparound_outbox_queue_depth", "gauge", "Messages waiting to be delivered.")
    lines.append(f"wraparound_outbox_queue_depth "
                 f"{stats['states']['pending'] + stats['states']['in-flight']}")
    family("wraparound_outbox_oldest_pending_seconds", "gauge",
           "Age of the oldest message not yet delivered.")
    lines.append(f"wraparound_outbox_oldest_pending_seconds {stats['oldestPendingSeconds']}")
    family("wraparound_outbox_attempts", "gauge", "Delivery attempts of the kept messages.")
    for destination, attempts in sorted(stats["attempts"].items()):
        lines.append(f'wraparound_outbox_attempts{{destination="{_label(destination)}"}} '
                     f"{attempts}")
    family("wraparound_outbox_delivery_latency_seconds", "histogram",
           "Queue-to-delivered time of the most recent 1000 delivered messages.")
    for destination, values in sorted(stats["recentLatencySeconds"].items()):
        label = _label(destination)
        for bound in LATENCY_BUCKETS:
            lines.append(f'wraparound_outbox_delivery_latency_seconds_bucket{{destination='
                         f'"{label}",le="{bound}"}} {sum(v <= bound for v in values)}')
        lines.append(f'wraparound_outbox_delivery_latency_seconds_bucket{{destination='
                     f'"{label}",le="+Inf"}} {len(values)}')
        lines.append(f'wraparound_outbox_delivery_latency_seconds_sum{{destination="{label}"}} '
                     f"{sum(values):.6f}")
        lines.append(f'wraparound_outbox_delivery_latency_seconds_count{{destination='
                     f'"{label}"}} {len(values)}')
    family("wraparound_outbox_breaker_state", "gauge",
           "Circuit breaker per destination: 0 closed, 1 half-open, 2 open.")
    codes = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}
    for destination, breaker in sorted(stats["breakers"].items()):
        lines.append(f'wraparound_outbox_breaker_state{{destination="{_label(destination)}"}} '
                     f"{codes.get(breaker['state'], 0)}")
    return Response("\n".join(lines) + "\n", mimetype="text/plain; version=0.0.4")


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


for _endpoint in ("outbox.status", "outbox.message", "outbox.replay_one", "outbox.replay_many",
                  "outbox.metrics"):
    declare(_endpoint, "operation")
