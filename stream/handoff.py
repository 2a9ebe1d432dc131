"""Faust's record hand-off without four tasks per record (:func:`install`).

faust-streaming 0.15's fetcher hands each record to the conductor with ``await
self.wait_first(callback(message), self.suspend_flow.wait())``: four tasks (the callback,
the flow's event, the consumer's stopped and crashed events), an ``asyncio.wait`` and three
cancellations per record, most of the worker's cost per record in a busy hour (one event
per record; README: bench stream). The callback (decode, put on the stream's queue) almost
never waits, so here it runs first in place; a callback that does wait (the queue is full,
the flow is suspended) goes on from where it stopped as a task, through the same
``wait_first`` as before, so the flow's suspension still cancels it.

Faust also pauses a partition whose stream queue is nearly full and fetches on from the
others, waiting up to 1 s for their records; records of the paused partition, resumed
meanwhile, waited for the end of that second: a worker on a backlog in one partition
stalled ~0.7 s after every ~4,000 records (the queue's size). Here a fetch waits at most
:data:`POLL_S`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine, Generator
from typing import Any, TypeVar, cast

from faust.transport import consumer as faust_consumer
from faust.types import ServiceT
from mode import Service

T = TypeVar("T")

POLL_S = 0.05
"""Longest one fetch of the records already fetched waits (Faust: 1 s)."""


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


async def hand_over(
    service: Service, callback: Coroutine[Any, Any, Any], suspend_flow: Any
) -> None:
    """``await service.wait_first(callback, suspend_flow.wait())``, with the callback run in
    place until it first waits (most never do)."""
    try:
        waiting = callback.send(None)
    except StopIteration:
        return
    await service.wait_first(go_on(callback, waiting), suspend_flow.wait())


async def _drain_messages(self: Any, fetcher: ServiceT) -> None:  # pragma: no cover
    """faust-streaming 0.15.x's ``Consumer._drain_messages`` (BSD licence), with
    :func:`hand_over` in place of its ``wait_first`` per record and :data:`POLL_S` in place
    of its 1 s fetch wait; otherwise unchanged."""
    callback = self.callback
    getmany = self.getmany
    consumer_should_stop = cast(Service, self)._stopped.is_set
    fetcher_should_stop = cast(Service, fetcher)._stopped.is_set

    get_read_offset = self._read_offset.__getitem__
    set_read_offset = self._read_offset.__setitem__
    flag_consumer_fetching = faust_consumer.CONSUMER_FETCHING
    set_flag = self.diag.set_flag
    unset_flag = self.diag.unset_flag
    commit_every = self._commit_every
    acks_enabled_for = self.app.topics.acks_enabled_for

    yield_every = 100
    num_since_yield = 0
    sleep = asyncio.sleep

    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            set_flag(flag_consumer_fetching)
            ait = cast(AsyncIterator[Any], getmany(timeout=POLL_S))

            # Sleeping because sometimes getmany is called in a loop
            # never releasing to the event loop
            await self.sleep(0)
            if not self.should_stop:
                async for tp, message in ait:
                    num_since_yield += 1
                    if num_since_yield > yield_every:
                        await sleep(0)
                        num_since_yield = 0

                    offset = message.offset
                    r_offset = get_read_offset(tp)
                    if r_offset is None or offset >= r_offset:
                        gap = offset - (r_offset or 0)
                        # We have a gap in income messages
                        if gap > 1 and r_offset:
                            acks_enabled = acks_enabled_for(message.topic)
                            if acks_enabled:
                                await self._add_gap(tp, r_offset + 1, offset)
                        if commit_every is not None and self._n_acked >= commit_every:
                            self._n_acked = 0
                            await self.commit()
                        await hand_over(self, callback(message), self.suspend_flow)
                        set_read_offset(tp, offset)
                    else:
                        self.log.dev(
                            "DROPPED MESSAGE ROFF %r: k=%r v=%r",
                            offset,
                            message.key,
                            message.value,
                        )
                unset_flag(flag_consumer_fetching)

    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            # we're already stopping so ignore
            self.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            # we're already stopping so ignore
            self.log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception as exc:
        self.log.exception("Drain messages raised: %r", exc)  # noqa: TRY401 - Faust's line
        raise
    finally:
        unset_flag(flag_consumer_fetching)


def install() -> None:
    """Make every Faust consumer of this process hand records over with :func:`hand_over`."""
    faust_consumer.Consumer._drain_messages = _drain_messages  # type: ignore[method-assign]
