"""Errors raised by the mapping engine and its readers.

```
MappingsError                   base of everything this package raises
├── MappingDefinitionError      a mapping file, partial or code table is invalid (file + place)
├── UnknownSource               no mapping is registered for a source or record type
├── ReaderError                 an input stream cannot be read further (location + message)
│   └── HostileInputError       the input uses DTDs, entities or other parser attacks
└── MappingError                one record cannot be mapped (location, field, message, all problems)
```

A `MappingError` rejects one record only; callers go on with the next one. A `ReaderError`
ends the stream at its location: records before it have already been yielded.
"""
from __future__ import annotations

from dataclasses import dataclass


class MappingsError(Exception):
    """Base class for errors raised by `mappings`."""

    code = "mappings-error"


class MappingDefinitionError(MappingsError):
    """A mapping file, partial or code table is invalid."""

    code = "mapping-definition"

    def __init__(self, path: str, message: str, where: str | None = None) -> None:
        self.path = path
        self.where = where
        self.message = message
        place = f"{path} ({where})" if where else path
        super().__init__(f"{place}: {message}")


class UnknownSource(MappingsError):
    """No mapping is registered for the requested source or record type."""

    code = "unknown-source"


class ReaderError(MappingsError):
    """The input stream cannot be read past `location`."""

    code = "unreadable-input"

    def __init__(self, location: str, message: str) -> None:
        self.location = location
        self.message = message
        super().__init__(f"{location}: {message}")


class HostileInputError(ReaderError):
    """The input uses a parser feature that is refused (DOCTYPE, entities, external references)."""

    code = "hostile-input"


@dataclass(frozen=True)
class Problem:
    """One located problem with one record."""

    location: str
    field: str | None
    message: str
    fhir_path: str | None = None

    def __str__(self) -> str:
        parts = [self.location]
        if self.field:
            parts.append(f"field {self.field}")
        if self.fhir_path:
            parts.append(self.fhir_path)
        return f"{', '.join(parts)}: {self.message}"


class MappingError(MappingsError):
    """A record was rejected; `problems` lists every located problem found."""

    code = "record-rejected"

    def __init__(self, problems: list[Problem] | tuple[Problem, ...]) -> None:
        if not problems:
            raise ValueError("a MappingError needs at least one problem")
        self.problems = tuple(problems)
        first = self.problems[0]
        self.location = first.location
        self.field = first.field
        self.message = first.message
        self.fhir_path = first.fhir_path
        text = "; ".join(str(p) for p in self.problems)
        super().__init__(text)

    @classmethod
    def single(
        cls, location: str, field: str | None, message: str, fhir_path: str | None = None
    ) -> MappingError:
        """Return an error carrying one problem."""
        return cls([Problem(location, field, message, fhir_path)])
