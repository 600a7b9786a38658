"""What the assessment store client returns and takes: plain dataclasses, no XML."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

__all__ = [
    "ACTION_STATUSES",
    "CAF_DOMAINS",
    "CLOSE_REASONS",
    "STATUSES",
    "TRANSITIONS",
    "CafAction",
    "CafCheck",
    "CafConsent",
    "CafRecord",
    "CafReview",
    "DomainAssessment",
    "ElementAssessment",
    "TeamMember",
]

STATUSES = ("draft", "completed", "active", "reviewed", "closed")
# operation -> the states it may start from -> the state it leaves (None: unchanged).
TRANSITIONS: dict[str, tuple[frozenset[str], str | None]] = {
    "saveAssessment": (frozenset({"draft"}), None),
    "completeAssessment": (frozenset({"draft"}), "completed"),
    "setTeam": (frozenset({"completed", "active", "reviewed"}), "active"),
    "saveActionPlan": (frozenset({"active", "reviewed"}), None),
    "recordReview": (frozenset({"active", "reviewed"}), "reviewed"),
    "closeCaf": (frozenset({"active", "reviewed"}), "closed"),
    "recordConsent": (frozenset({"draft", "completed", "active", "reviewed"}), None),
    "withdrawConsent": (frozenset({"draft", "completed", "active", "reviewed"}), None),
}
CAF_DOMAINS: dict[str, tuple[str, ...]] = {
    "development": ("health", "emotional", "behaviour", "identity", "relationships",
                    "self-care", "learning"),
    "parents-carers": ("basic-care", "emotional-warmth", "guidance"),
    "family-environment": ("family-history", "wider-family", "housing", "community"),
}
ACTION_STATUSES = ("planned", "in-progress", "done", "cancelled")
CLOSE_REASONS = ("needs-met", "escalated-to-social-care", "moved-away", "consent-withdrawn",
                 "other")


@dataclass(frozen=True)
class ElementAssessment:
    """One element of a domain: strengths and needs."""

    code: str
    strengths: str | None = None
    needs: str | None = None


@dataclass(frozen=True)
class DomainAssessment:
    """One of the three CAF domains with its assessed elements."""

    code: str
    elements: tuple[ElementAssessment, ...]


@dataclass(frozen=True)
class TeamMember:
    """A member of the team around the child (one is the lead professional)."""

    name: str
    role: str
    organisation: str
    lead: bool = False


@dataclass(frozen=True)
class CafAction:
    """One line of the action plan."""

    description: str
    who: str
    by_when: date
    status: str = "planned"


@dataclass(frozen=True)
class CafConsent:
    """Whether consent to share the assessment is recorded."""

    given: bool
    given_by: str | None = None
    date: date | None = None


@dataclass(frozen=True)
class CafReview:
    """A review of progress against the action plan."""

    date: date
    summary: str


@dataclass(frozen=True)
class CafCheck:
    """Whether a child has a CAF (the open one, else the latest)."""

    index_id: str
    exists: bool
    caf_id: str | None = None
    status: str | None = None


@dataclass(frozen=True)
class CafRecord:
    """A CAF: status, version, consent, assessment, team, action plan, reviews and closure."""

    caf_id: str
    index_id: str
    status: str
    version: int
    registered: date
    consent: CafConsent
    domains: tuple[DomainAssessment, ...] = ()
    team: tuple[TeamMember, ...] = ()
    actions: tuple[CafAction, ...] = ()
    reviews: tuple[CafReview, ...] = ()
    close_reason: str | None = None
    closed_on: date | None = None

    @property
    def lead_professional(self) -> TeamMember | None:
        """Return the lead professional, if the team has one."""
        return next((m for m in self.team if m.lead), None)
