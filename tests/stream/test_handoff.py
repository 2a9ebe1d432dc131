"""stream.handoff: a record's callback runs in place until it first waits; one that waits
goes on as a task, through the same wait_first, so the flow's suspension still cancels it."""

from __future__ import annotations

import asyncio

import pytest
from mode import Service

from stream.handoff import go_on, hand_over


class Svc(Service):
    pass


async def test_a_callback_that_never_waits_runs_in_place_without_a_task() -> None:
    svc, suspend = Svc(), asyncio.Event()
    ran: list[asyncio.Task[object] | None] = []

    async def callback() -> None:
        ran.append(asyncio.current_task())

    outer = asyncio.current_task()
    await hand_over(svc, callback(), suspend)
    assert ran == [outer]


async def test_a_callback_that_waits_goes_on_until_it_is_done() -> None:
    svc, suspend = Svc(), asyncio.Event()
    queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
    queue.put_nowait(0)  # full: the callback's put waits

    async def callback() -> None:
        await asyncio.sleep(0)  # a bare yield first
        await queue.put(1)

    handing = asyncio.create_task(hand_over(svc, callback(), suspend))
    await asyncio.sleep(0.01)
    assert not handing.done()
    assert queue.get_nowait() == 0
    await asyncio.wait_for(handing, 1)
    assert queue.get_nowait() == 1


async def test_a_suspended_flow_cancels_a_callback_that_waits() -> None:
    svc, suspend = Svc(), asyncio.Event()
    queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
    queue.put_nowait(0)
    cancelled = asyncio.Event()

    async def callback() -> None:
        try:
            await queue.put(1)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    handing = asyncio.create_task(hand_over(svc, callback(), suspend))
    await asyncio.sleep(0.01)
    suspend.set()
    await asyncio.wait_for(handing, 1)
    assert cancelled.is_set()
    # The put was given up: the queue holds only what was there.
    assert queue.qsize() == 1
    assert queue.get_nowait() == 0
    await asyncio.sleep(0.01)
    assert queue.empty()


async def test_an_error_of_the_callback_reaches_the_caller_either_way() -> None:
    svc, suspend = Svc(), asyncio.Event()

    async def at_once() -> None:
        raise ValueError("bad record")

    async def later() -> None:
        await asyncio.sleep(0)
        raise ValueError("bad record later")

    with pytest.raises(ValueError, match="bad record"):
        await hand_over(svc, at_once(), suspend)
    with pytest.raises(ValueError, match="bad record later"):
        await hand_over(svc, later(), suspend)


async def test_go_on_returns_the_coroutines_value_and_passes_a_cancellation_in() -> None:
    async def value() -> int:
        await asyncio.sleep(0)
        await asyncio.sleep(0.001)
        return 7

    coro = value()
    waiting = coro.send(None)
    assert await go_on(coro, waiting) == 7

    seen: list[str] = []

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            seen.append("cancelled inside")
            raise

    coro2 = forever()
    task = asyncio.create_task(go_on(coro2, coro2.send(None)))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == ["cancelled inside"]


async def test_other_waits_of_the_consumer_are_faust_s_own() -> None:
    # A timeout, or anything but two coroutines: Faust's wait_first, untouched.
    from stream.handoff import wait_first

    svc = Svc()
    done = asyncio.Event()
    done.set()
    got = await wait_first(svc, done, timeout=1.0)
    assert got.results == [True]
    assert not got.stopped


def test_a_fetch_waits_at_most_poll_s_and_install_wraps_the_consumer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from faust.transport import consumer as faust_consumer

    from stream import handoff

    asked: list[float] = []

    def recording(self: object, timeout: float) -> object:
        asked.append(timeout)
        return iter(())

    monkeypatch.setattr(handoff, "_faust_getmany", recording)
    handoff.getmany(object(), timeout=1.0)
    handoff.getmany(object(), timeout=0.01)
    assert asked == [handoff.POLL_S, 0.01]
    monkeypatch.setattr(faust_consumer.Consumer, "wait_first", faust_consumer.Consumer.wait_first)
    monkeypatch.setattr(faust_consumer.Consumer, "getmany", faust_consumer.Consumer.getmany)
    handoff.install()
    assert faust_consumer.Consumer.wait_first is handoff.wait_first
    assert faust_consumer.Consumer.getmany is handoff.getmany


async def test_a_hand_off_in_another_order_is_faust_s_own_and_runs_the_callback() -> None:
    # A Faust that passed the flow's wait first must not have it run in place and the
    # record's callback closed unrun: only the hand-off as Faust 0.15 writes it is fast.
    from stream.handoff import wait_first

    svc, suspend = Svc(), asyncio.Event()
    suspend.set()  # the flow's wait returns at once
    ran: list[str] = []

    async def callback() -> None:
        ran.append("callback")

    await wait_first(svc, suspend.wait(), callback())
    assert ran == ["callback"]
