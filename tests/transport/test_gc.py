"""transport.gc: a built service's objects frozen out of collections, a larger young generation."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from transport.gc import DEFAULT_THRESHOLD0, tune_gc


@pytest.fixture
def restore_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def _tracked_ids() -> set[int]:
    """The objects every generation the collector walks holds (the frozen are in none)."""
    return {id(o) for generation in range(3) for o in gc.get_objects(generation)}


@pytest.mark.usefixtures("restore_gc")
def test_what_exists_is_frozen_and_the_young_threshold_raised() -> None:
    gc.unfreeze()
    built = [[i] for i in range(1000)]  # a service's start-up objects
    assert id(built[0]) in _tracked_ids()
    frozen_before = gc.get_freeze_count()
    _, gen1, gen2 = gc.get_threshold()
    tune_gc()
    assert gc.get_freeze_count() >= frozen_before + len(built)
    tracked = _tracked_ids()
    assert id(built[0]) not in tracked
    assert id(built[-1]) not in tracked
    assert gc.get_threshold() == (DEFAULT_THRESHOLD0, gen1, gen2)


@pytest.mark.usefixtures("restore_gc")
def test_cycles_made_after_are_collected_by_the_collector_on_its_own() -> None:
    tune_gc()
    assert gc.isenabled()

    class Node:
        other: object = None

    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    del a, b
    # No gc.collect(): the young generation's own collection, once its threshold of net new
    # container objects is passed, finds the cycle.
    keep = [[] for _ in range(3 * DEFAULT_THRESHOLD0)]
    assert gone() is None
    assert len(keep) == 3 * DEFAULT_THRESHOLD0


@pytest.mark.usefixtures("restore_gc")
def test_zero_leaves_the_collector_as_cpython_set_it() -> None:
    gc.unfreeze()
    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    tune_gc(0)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen
    with pytest.raises(ValueError, match="threshold0"):
        tune_gc(-1)
