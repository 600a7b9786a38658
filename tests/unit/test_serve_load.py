"""Each gunicorn worker builds the app, then freezes what start-up made (no full collection walks
it again)."""
from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from gateway.cli.serve import load_frozen


@pytest.fixture
def unfreeze() -> Iterator[None]:
    yield
    gc.unfreeze()


@pytest.mark.usefixtures("unfreeze")
def test_objects_alive_when_the_app_is_built_are_frozen_and_later_cycles_collected() -> None:
    built: list[object] = []

    def loader() -> dict[str, object]:
        app = {"registry": [{"n": n} for n in range(1000)]}
        built.append(app)
        return app

    gc.unfreeze()
    app = load_frozen(loader)
    assert app is built[0]
    frozen = gc.get_freeze_count()
    assert frozen >= 1000
    assert not any(app is obj for obj in gc.get_objects())  # out of every generation

    class Node:
        def __init__(self) -> None:
            self.other: Node | None = None

    a, b = Node(), Node()
    a.other, b.other = b, a
    del a, b
    assert gc.collect() >= 2  # a cycle made after start-up is still found
    assert gc.get_freeze_count() == frozen
