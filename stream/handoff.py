"""Faust's record hand-off without four tasks per record (:func:`install`).

faust-streaming 0.15's fetcher (``Consumer._drain_messages``) hands each record to the
conductor with ``await self.wait_first(callback(message), self.suspend_flow.wait())``:
four tasks (the callback, the flow's event, the consumer's stopped and crashed events), an
``asyncio.wait`` and three cancellations per record, most of the worker's cost per record
in a busy hour (one event per record; README: bench stream). The callback (decode, put on
the stream's queue) almost never waits, so :func:`wait_first` runs it first in place; a
callback that does wait (the queue is full) goes on from where it stopped as a task,
through Faust's own ``wait_first``, so a suspended flow still cancels it.

Faust also pauses a partition whose stream queue is nearly full and fetches on from the
others, waiting up to 1 s for their records (``getmany(timeout=1.0)``); records of the
paused partition, resumed meanwhile, waited for the end of that second: a worker on a
backlog in one partition stalled ~0.7 s after every ~4,000 records (the queue's size).
:func:`getmany` caps that wait at :data:`POLL_S`.

Both are the consumer's own methods wrapped (``_drain_messages`` is the only caller of
either in faust-streaming 0.15.x, read in its source): nothing of Faust is copied, and a
Faust that changes how it hands records over simply stops taking the fast path (the fast
path is taken only for two coroutines, no timeout, the second an ``Event.wait()``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine, Generator
from typing import Any, TypeVar, cast

from faust.transport import consumer as faust_consumer
from mode import Service
from mode.services import WaitResults

T = TypeVar("T")

POLL_S = 0.05
"""Longest one fetch of the records already fetched waits (Faust: 1 s)."""

_faust_wait_first = Service.wait_first
_faust_getmany = faust_consumer.Consumer.getmany


class _Again:
    """Yields what a suspended coroutine yielded, to the task awaiting this, so the task
    waits on it (and cancels it when cancelled) as if the coroutine had yielded it."""

    __slots__ = ("waiting",)

    def __init__(self, waiting: Any) -> None:
        self.waiting = waiting

    def __await__(self) -> Generator[Any, None, None]:
        yield self.waiting


async def go_on(coro: Coroutine[Any, Any, T], waiting: Any) -> T:
    """Run ``coro``, suspended after yielding ``waiting``, on to its end, as its own task
    would: sent what the task is sent, thrown what the task is thrown (a cancellation)."""
    while True:
        try:
            await _Again(waiting)
        except BaseException as exc:  # passed on to the coroutine, as a task does
            try:
                waiting = coro.throw(exc)
            except StopIteration as stop:
                return cast(T, stop.value)
        else:
            try:
                waiting = coro.send(None)
            except StopIteration as stop:
                return cast(T, stop.value)


async def wait_first(self: Service, *coros: Any, timeout: Any = None) -> WaitResults:
    """The consumer's ``wait_first``: for the record hand-off (two coroutines, the record's
    callback and the flow's suspension, no timeout) the callback runs in place until it
    first waits; anything else is Faust's ``wait_first`` as it was."""
    if (
        timeout is not None
        or len(coros) != 2
        or not all(map(asyncio.iscoroutine, coros))
        or getattr(coros[1], "__qualname__", "") != "Event.wait"
    ):
        # Not the hand-off as Faust 0.15 writes it (the record's callback, then the flow's
        # ``Event.wait()``): a Faust whose call differs, even only in argument order, must
        # not have its suspension run in place and its callback closed unrun.
        return await _faust_wait_first(self, *coros, timeout=timeout)
    callback, suspended = coros
    try:
        waiting = callback.send(None)
    except StopIteration as stop:
        suspended.close()  # never started: nothing to wait for
        return WaitResults([callback], [stop.value], False)
    except BaseException:
        suspended.close()
        raise
    return await _faust_wait_first(self, go_on(callback, waiting), suspended)


async def hand_over(
    service: Service, callback: Coroutine[Any, Any, Any], suspend_flow: Any
) -> None:
    """What the fetcher does per record: ``wait_first(callback, suspend_flow.wait())``."""
    await wait_first(service, callback, suspend_flow.wait())


def getmany(self: Any, timeout: float) -> AsyncIterator[Any]:
    """The consumer's ``getmany``, waiting at most :data:`POLL_S` for records."""
    return cast(AsyncIterator[Any], _faust_getmany(self, timeout=min(timeout, POLL_S)))


def install() -> None:
    """Make every Faust consumer of this process hand records over with :func:`wait_first`
    and fetch with :func:`getmany` (idempotent)."""
    consumer = faust_consumer.Consumer
    consumer.wait_first = wait_first  # type: ignore[method-assign]
    consumer.getmany = getmany  # type: ignore[method-assign]
