"""The eCAF-like national assessment store connector: client, models, faults, WSDL, mock."""

from __future__ import annotations

from connectors.ecaf.client import ECAF_SPEC, EcafClient, build_ecaf_client
from connectors.ecaf.errors import ECAF_FAULTS, AlreadyExists, IllegalTransition, VersionConflict
from connectors.ecaf.models import (
    ACTION_STATUSES,
    CAF_DOMAINS,
    CLOSE_REASONS,
    STATUSES,
    TRANSITIONS,
    CafAction,
    CafCheck,
    CafConsent,
    CafRecord,
    CafReview,
    DomainAssessment,
    ElementAssessment,
    TeamMember,
)

__all__ = [
    "ACTION_STATUSES",
    "CAF_DOMAINS",
    "CLOSE_REASONS",
    "ECAF_FAULTS",
    "ECAF_SPEC",
    "STATUSES",
    "TRANSITIONS",
    "AlreadyExists",
    "CafAction",
    "CafCheck",
    "CafConsent",
    "CafRecord",
    "CafReview",
    "DomainAssessment",
    "EcafClient",
    "ElementAssessment",
    "IllegalTransition",
    "TeamMember",
    "VersionConflict",
    "build_ecaf_client",
]
