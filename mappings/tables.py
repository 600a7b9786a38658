"""Code tables: a local code to a FHIR coding, with a declared default or an error when unmapped."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mappings.errors import MappingDefinitionError
from vocab import systems

_ENTRY_KEYS = frozenset({"code", "display", "system"})


@dataclass(frozen=True)
class CodeTable:
    """One code table loaded from YAML."""

    name: str
    path: str
    system: str | None
    entries: Mapping[str, dict[str, str]]
    default: dict[str, str] | None
    case_sensitive: bool = False
    description: str = ""

    def key(self, value: object) -> str:
        """Return the lookup key for a local code as it appears in data."""
        text = " ".join(str(value).split())
        return text if self.case_sensitive else text.casefold()

    def find(self, value: object) -> tuple[str | None, dict[str, str] | None]:
        """Return (matched entry key, coding) for a local code; (None, default) when unmapped."""
        key = self.key(value)
        entry = self._index.get(key)
        if entry is not None:
            return entry
        return None, self.default

    @property
    def _index(self) -> dict[str, tuple[str, dict[str, str]]]:
        cached: dict[str, tuple[str, dict[str, str]]] | None = self.__dict__.get("_cache")
        if cached is None:
            cached = {self.key(k): (k, v) for k, v in self.entries.items()}
            object.__setattr__(self, "_cache", cached)
        return cached


@dataclass
class TableUsage:
    """Collects which table entries were used and which codes had no entry (for `check`)."""

    used: dict[str, set[str]] = field(default_factory=dict)
    missing: dict[str, dict[str, int]] = field(default_factory=dict)

    def hit(self, table: str, key: str) -> None:
        """Record that `key` of `table` mapped a value."""
        self.used.setdefault(table, set()).add(key)

    def miss(self, table: str, value: str) -> None:
        """Record a code seen in data that `table` does not list."""
        counts = self.missing.setdefault(table, {})
        counts[value] = counts.get(value, 0) + 1


def _system(value: Any, path: str, where: str) -> str | None:
    """Return a system URI; `@NAME` names a constant in `vocab.systems`."""
    if not value:
        return None
    text = str(value)
    if text.startswith("@"):
        resolved = getattr(systems, text[1:], None)
        if not isinstance(resolved, str) or not text[1:].isupper():
            raise MappingDefinitionError(path, f"vocab.systems has no {text[1:]}", where)
        return resolved
    return text


def _coding(raw: Any, system: str | None, path: str, where: str) -> dict[str, str]:
    if isinstance(raw, str):
        raw = {"code": raw}
    if not isinstance(raw, Mapping) or "code" not in raw:
        raise MappingDefinitionError(path, "an entry is a code or a mapping with `code`", where)
    unknown = set(raw) - _ENTRY_KEYS
    if unknown:
        raise MappingDefinitionError(path, f"unknown entry keys {sorted(unknown)}", where)
    coding: dict[str, str] = {}
    entry_system = _system(raw["system"], path, where) if "system" in raw else system
    if entry_system:
        coding["system"] = str(entry_system)
    coding["code"] = str(raw["code"])
    if raw.get("display"):
        coding["display"] = str(raw["display"])
    return coding


def load_table(path: Path) -> CodeTable:
    """Return the code table in `path` (every scalar is read as text, so `01` stays `01`)."""
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"),
                        Loader=getattr(yaml, "CBaseLoader", yaml.BaseLoader))
    except yaml.YAMLError as exc:
        raise MappingDefinitionError(str(path), f"not valid YAML: {exc}") from exc
    if not isinstance(raw, Mapping):
        raise MappingDefinitionError(str(path), "a code table is a mapping")
    unknown = set(raw) - {"table", "system", "description", "codes", "default", "case_sensitive"}
    if unknown:
        raise MappingDefinitionError(str(path), f"unknown keys {sorted(unknown)}")
    name = str(raw.get("table") or path.stem)
    system = _system(raw.get("system"), str(path), "system")
    codes = raw.get("codes")
    if not isinstance(codes, Mapping) or not codes:
        raise MappingDefinitionError(str(path), "`codes` must be a non-empty mapping")
    entries = {str(k): _coding(v, system, str(path), f"codes.{k}") for k, v in codes.items()}
    default = None
    if raw.get("default") not in (None, "", "error"):
        default = _coding(raw["default"], system, str(path), "default")
    table = CodeTable(
        name=name,
        path=str(path),
        system=str(system) if system else None,
        entries=entries,
        default=default,
        case_sensitive=str(raw.get("case_sensitive", "false")).lower() == "true",
        description=str(raw.get("description", "")),
    )
    keys = [table.key(k) for k in entries]
    if len(set(keys)) != len(keys):
        raise MappingDefinitionError(str(path), "two codes differ only in case or spacing")
    return table
