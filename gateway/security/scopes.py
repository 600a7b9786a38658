"""SMART v2 scopes: `system/(Type|*).[c][r][u][d][s]`, with v1 `.read`, `.write`, `.*` accepted."""
from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

_SCOPE = re.compile(r"^(system|user|patient)/(\*|[A-Z][A-Za-z]+)\.([a-z*]+)$")
_ORDER = "cruds"
V1 = {"read": "rs", "write": "cud", "*": "cruds"}


class ScopeError(ValueError):
    """Raised for a scope outside the supported syntax."""


@dataclass(frozen=True)
class Scope:
    """One parsed scope."""

    context: str
    resource_type: str
    actions: str

    def __str__(self) -> str:
        return f"{self.context}/{self.resource_type}.{self.actions}"

    def covers(self, other: Scope) -> bool:
        """Return True when this scope grants everything `other` asks for."""
        return (self.context == other.context
                and self.resource_type in ("*", other.resource_type)
                and set(other.actions) <= set(self.actions))


@functools.lru_cache(maxsize=4096)
def parse_scope(text: str) -> Scope:
    """Parse one scope; granular query suffixes are refused rather than widened."""
    if "?" in text:
        raise ScopeError("granular scope filters are not supported")
    m = _SCOPE.match(text)
    if not m:
        raise ScopeError("not a SMART scope")
    context, rtype, actions = m.groups()
    actions = V1.get(actions, actions)
    if not actions or any(a not in _ORDER for a in actions) or list(actions) != sorted(
            set(actions), key=_ORDER.index):
        raise ScopeError("scope actions must be a subset of cruds, in that order")
    if context != "system":
        raise ScopeError("only system/ scopes are issued to backend services")
    return Scope(context, rtype, actions)


def parse_scopes(texts: Iterable[str]) -> list[Scope]:
    """Parse scopes, skipping non-resource scopes such as `openid`."""
    out = []
    for text in texts:
        if "/" in text:
            out.append(parse_scope(text))
    return out


def allows(granted: Iterable[str], resource_type: str, action: str) -> bool:
    """Return True when the granted scopes permit `action` (one of c r u d s) on the type."""
    wanted = Scope("system", resource_type, action)
    for text in granted:
        try:
            if parse_scope(text).covers(wanted):
                return True
        except ScopeError:
            continue
    return False
