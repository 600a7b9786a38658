"""Security: SMART Backend Services tokens, the agency policy layer, shielding and audit.

    Caller / current_caller / acting_as   who is calling (request-scoped)
    Policy                                scopes, agency rules, labels, redaction
    AuditTrail                            AuditEvent for every request
"""
from __future__ import annotations

from gateway.security.audit import AuditContext, AuditTrail
from gateway.security.context import Caller, acting_as, current_caller
from gateway.security.policy import Policy

__all__ = ["AuditContext", "AuditTrail", "Caller", "Policy", "acting_as", "current_caller"]
