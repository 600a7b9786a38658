"""Find suites: the ones shipped with the product, or any file or folder named on the command line.

A suite is either FHIR TestScripts (one JSON/YAML file, or a folder of them; fixture files live in
sub-folders and are not scripts) or one SOAP contract suite file (YAML with
``kind: soap-contract``). Shipped suites live in ``gateway/conformance/suites/``: a folder per
TestScript suite, a ``<name>.yaml`` per SOAP contract suite.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from gateway.conformance.errors import SuiteInvalid, SuiteNotFound, load_yaml, parse_position

__all__ = ["SHIPPED_DIR", "Suite", "resolve_suite", "shipped_suites"]

SHIPPED_DIR = Path(__file__).resolve().parent / "suites"
_SUFFIXES = (".json", ".yaml", ".yml")
SuiteKind = Literal["fhir", "soap"]


@dataclass(frozen=True)
class Suite:
    """A named suite and its files (TestScripts, or the one SOAP contract file)."""

    name: str
    kind: SuiteKind
    files: tuple[Path, ...]
    title: str = ""


def _read(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
        return json.loads(text) if path.suffix == ".json" else load_yaml(text)
    except OSError as exc:
        raise SuiteInvalid(f"cannot read {path}: {exc.strerror}") from exc
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise SuiteInvalid(f"{path} does not parse ({parse_position(exc)})") from exc


def _kind_of(path: Path) -> tuple[SuiteKind, str]:
    data = _read(path)
    if isinstance(data, dict) and data.get("resourceType") == "TestScript":
        return "fhir", str(data.get("title") or data.get("name") or path.stem)
    if isinstance(data, dict) and data.get("kind") == "soap-contract":
        return "soap", str(data.get("title") or data.get("name") or path.stem)
    raise SuiteInvalid(f"{path} is neither a TestScript nor a SOAP contract suite")


def _folder(path: Path, name: str) -> Suite:
    scripts = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in _SUFFIXES)
    if not scripts:
        raise SuiteInvalid(f"{path} holds no TestScript files")
    for script in scripts:
        kind, _ = _kind_of(script)
        if kind != "fhir":
            raise SuiteInvalid(f"{script}: a suite folder holds TestScripts only")
    return Suite(name=name, kind="fhir", files=tuple(scripts), title=name)


def shipped_suites() -> list[Suite]:
    """Return every suite shipped with the product, sorted by name."""
    found: list[Suite] = []
    if not SHIPPED_DIR.is_dir():
        return found
    for path in sorted(SHIPPED_DIR.iterdir()):
        if path.is_dir() and not path.name.startswith(("_", ".")):
            found.append(_folder(path, path.name))
        elif path.is_file() and path.suffix in _SUFFIXES:
            kind, title = _kind_of(path)
            found.append(Suite(name=path.stem, kind=kind, files=(path,), title=title))
    return found


def resolve_suite(argument: str) -> Suite:
    """Return the suite a SUITE argument names: a shipped suite, a file or a folder."""
    if "/" not in argument and not argument.startswith("."):
        if (SHIPPED_DIR / argument).is_dir():
            return _folder(SHIPPED_DIR / argument, argument)
        for suffix in _SUFFIXES:
            if (SHIPPED_DIR / f"{argument}{suffix}").is_file():
                path = SHIPPED_DIR / f"{argument}{suffix}"
                kind, title = _kind_of(path)
                return Suite(name=argument, kind=kind, files=(path,), title=title)
    path = Path(argument)
    if path.is_dir():
        return _folder(path, path.resolve().name)
    if path.is_file():
        kind, title = _kind_of(path)
        return Suite(name=path.stem, kind=kind, files=(path,), title=title)
    known = ", ".join(s.name for s in shipped_suites()) or "none"
    raise SuiteNotFound(f"{argument!r} is not a shipped suite ({known}), a file or a folder")
