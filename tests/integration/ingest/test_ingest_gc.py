"""While an export is ingested the garbage collector runs less often; afterwards, as before."""
from __future__ import annotations

import gc
import io
import threading
from collections.abc import Iterator

import pytest
from flask import Flask

from gateway.ingest import service as ingest_service
from gateway.security.context import Caller, acting_as
from tests.integration.ingest.ingest_support import sample


@pytest.fixture
def thresholds() -> Iterator[tuple[int, int, int]]:
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield gc.get_threshold()
    gc.set_threshold(*before)


def test_ingest_raises_the_gc_thresholds_while_it_runs_then_restores_them(
        app: Flask, thresholds: tuple[int, int, int]) -> None:
    ingest = app.extensions["wraparound"].ingest
    seen: list[tuple[int, int, int]] = []
    data, ctype = sample("social-care")
    with acting_as(Caller.internal("social-care")):
        report = ingest.run("social-care", io.BytesIO(data), ctype,
                            progress=lambda _: seen.append(gc.get_threshold()))
    assert report.counts["created"] > 0 and not report.rejected
    assert set(seen) == {(10_000, 100, 10)}
    assert gc.get_threshold() == thresholds


def test_overlapping_runs_restore_the_thresholds_when_the_last_one_ends(
        thresholds: tuple[int, int, int]) -> None:
    first_in, release = threading.Event(), threading.Event()
    during: list[tuple[int, int, int]] = []

    def _first() -> None:
        with ingest_service._collect_less():
            first_in.set()
            release.wait(10)

    worker = threading.Thread(target=_first)
    worker.start()
    assert first_in.wait(10)
    with ingest_service._collect_less():
        during.append(gc.get_threshold())
    during.append(gc.get_threshold())  # the first run still goes on
    release.set()
    worker.join(10)
    assert during == [(10_000, 100, 10), (10_000, 100, 10)]
    assert gc.get_threshold() == thresholds


def test_larger_thresholds_are_left_alone(thresholds: tuple[int, int, int]) -> None:
    gc.set_threshold(50_000, 200, 10)
    with ingest_service._collect_less():
        assert gc.get_threshold() == (50_000, 200, 10)
    assert gc.get_threshold() == (50_000, 200, 10)
