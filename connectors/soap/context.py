"""The context of one logical SOAP call, shared by the plugins that decorate it."""

from __future__ import annotations

import contextvars
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["CallContext", "call_context", "current_call", "new_message_id", "new_uuid"]


_BATCH = 256  # ids drawn from one os.urandom call
_VERSION_MASK = ~((0xF000 << 64) | (0xC000 << 48))
_VERSION_BITS = (0x4000 << 64) | (0x8000 << 48)


class _RandomPool(threading.local):
    """Random bytes for ids, drawn from os.urandom in blocks, per thread."""

    def __init__(self) -> None:
        self.block = b""
        self.pos = 0
        self.generation = -1


_pool = _RandomPool()
_generation = 0


def _after_fork() -> None:
    # A forked child must never hand out the ids its parent's pool still holds.
    global _generation
    _generation += 1


os.register_at_fork(after_in_child=_after_fork)


def new_message_id() -> str:
    """Return a fresh message id in the ITK style (upper-case random UUID, version 4).

    The same value `str(uuid.uuid4()).upper()` gives, from random bytes drawn in blocks (one
    system call per 256 ids instead of one per id; a forked child draws its own).
    """
    return _random_uuid("X")


def new_uuid() -> str:
    """Return a random UUID (version 4) as `str(uuid.uuid4())` writes it, drawn as above."""
    return _random_uuid("x")


def _random_uuid(case: str) -> str:
    pool = _pool
    if pool.pos >= len(pool.block) or pool.generation != _generation:
        pool.block = os.urandom(16 * _BATCH)
        pool.pos = 0
        pool.generation = _generation
    start = pool.pos
    pool.pos = start + 16
    value = int.from_bytes(pool.block[start:start + 16], "big") & _VERSION_MASK | _VERSION_BITS
    h = format(value, "032" + case)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


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
