"""What identifies one brokered national call: a fresh message id and the request's correlation id."""
from __future__ import annotations

from dataclasses import dataclass

from connectors.soap import new_message_id


@dataclass(frozen=True)
class CallIds:
    """Ids of one logical national call.

    `message_id` is the WS-Addressing MessageID: fresh for each logical call (a retry of the same
    call would reuse it). `correlation_id` ties the gateway request, the SOAP call log and the
    AuditEvent together; it is the gateway's request id.
    """

    correlation_id: str
    message_id: str

    @classmethod
    def fresh(cls, correlation_id: str) -> CallIds:
        """Return ids for a new logical call within the given request."""
        return cls(correlation_id=correlation_id, message_id=new_message_id())


__all__ = ["CallIds"]
