"""The layering rules: connectors never import gateway; clients never import Flask."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
CONNECTORS = ROOT / "connectors"
# Mock servers may use Flask; everything else in connectors is client-side.
MAY_USE_FLASK = ("mockserver", "mock.py")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


FILES = sorted(CONNECTORS.rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_connectors_import_nothing_from_gateway(path: Path) -> None:
    assert not any(name.split(".")[0] == "gateway" for name in _imports(path))


@pytest.mark.parametrize(
    "path",
    [p for p in FILES if not any(part in p.parts or p.name == part for part in MAY_USE_FLASK)],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_clients_never_import_flask_or_werkzeug(path: Path) -> None:
    roots = {name.split(".")[0] for name in _imports(path)}
    assert not roots & {"flask", "werkzeug"}


def test_packages_list_their_public_surface() -> None:
    import connectors.cpis
    import connectors.errors
    import connectors.mockserver
    import connectors.pds
    import connectors.soap

    for module in (
        connectors.cpis,
        connectors.errors,
        connectors.mockserver,
        connectors.pds,
        connectors.soap,
    ):
        exported = module.__all__
        assert len(exported) == len(set(exported))
        for name in exported:
            assert hasattr(module, name), f"{module.__name__}.{name}"
