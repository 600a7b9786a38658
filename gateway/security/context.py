"""Who is calling: the request-scoped caller that every policy decision reads."""
from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field

from gateway.errors import NotAuthenticated


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: a client of one agency with its granted SMART v2 scopes."""

    client_id: str
    agency: str
    scopes: tuple[str, ...]
    break_glass_reason: str | None = None
    user: str | None = None
    system: bool = False  # the gateway itself (ingest from the CLI, migrations, workers)
    token_id: str | None = None
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    @classmethod
    def internal(cls, agency: str = "gateway") -> Caller:
        """Return the gateway acting for itself (full access; still audited)."""
        return cls(client_id=f"internal:{agency}", agency=agency, scopes=("system/*.cruds",),
                   system=True)


_current: ContextVar[Caller | None] = ContextVar("wraparound_caller", default=None)


def current_caller() -> Caller:
    """Return the caller of the current request or task; refuse when there is none."""
    caller = _current.get()
    if caller is None:
        raise NotAuthenticated("no authenticated caller",
                               headers={"WWW-Authenticate": 'Bearer realm="wraparound"'})
    return caller


def set_caller(caller: Caller | None) -> object:
    """Set the caller for the current context and return a token to reset it."""
    return _current.set(caller)


def reset_caller(token: object) -> None:
    """Restore the caller set before `set_caller` returned token."""
    _current.reset(token)  # type: ignore[arg-type]


class acting_as:
    """Run a block as the given caller: `with acting_as(Caller.internal("health")): ...`."""

    def __init__(self, caller: Caller) -> None:
        self.caller = caller
        self._token: object | None = None

    def __enter__(self) -> Caller:
        self._token = set_caller(self.caller)
        return self.caller

    def __exit__(self, *exc: object) -> None:
        reset_caller(self._token)
