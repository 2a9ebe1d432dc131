"""transport.gc: a built service's objects frozen out of collections, a larger young generation."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from transport.gc import DEFAULT_THRESHOLD0, tune_gc


@pytest.fixture
def restore_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restore_gc")
def test_what_exists_is_frozen_and_the_young_threshold_raised() -> None:
    gc.unfreeze()
    built = [[i] for i in range(1000)]  # a service's start-up objects
    _, gen1, gen2 = gc.get_threshold()
    tune_gc()
    assert gc.get_freeze_count() >= len(built)
    assert gc.get_threshold() == (DEFAULT_THRESHOLD0, gen1, gen2)


@pytest.mark.usefixtures("restore_gc")
def test_cycles_made_after_are_still_collected() -> None:
    tune_gc()

    class Node:
        other: object = None

    a, b = Node(), Node()
    a.other, b.other = b, a
    del a, b
    assert gc.collect() >= 2  # the cycle was not frozen: a collection finds it


@pytest.mark.usefixtures("restore_gc")
def test_zero_keeps_pythons_threshold() -> None:
    before = gc.get_threshold()
    tune_gc(0)
    assert gc.get_threshold() == before
