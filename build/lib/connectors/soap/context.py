"""The context of one logical SOAP call, shared by the plugins that decorate it."""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["CallContext", "call_context", "current_call", "new_message_id"]


def new_message_id() -> str:
    """Return a fresh message id in the ITK style (upper-case UUID)."""
    return str(uuid.uuid4()).upper()


@dataclass(frozen=True)
class CallContext:
    """Identity of one logical message: its stable id, and the correlation id for audit/logs."""

    service: str
    operation: str
    message_id: str
    correlation_id: str
    to: str | None = None


_current: contextvars.ContextVar[CallContext | None] = contextvars.ContextVar(
    "wraparound_soap_call", default=None
)


def current_call() -> CallContext | None:
    """Return the call being sent on this thread or task, if any."""
    return _current.get()


@contextmanager
def call_context(context: CallContext) -> Iterator[CallContext]:
    """Make context the current call for the duration of the block."""
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)
