"""reraise_if_cancelled: a cancellation turned into another error still ends the task."""

from __future__ import annotations

import asyncio

import pytest

from transport.cancel import reraise_if_cancelled


async def _loop_that_logs_and_goes_on() -> None:
    while True:
        try:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                raise ConnectionError("what redis-py raises mid-command") from None
        except ConnectionError:
            reraise_if_cancelled()
            await asyncio.sleep(0)


@pytest.mark.timeout(30)
async def test_a_loop_catching_the_converted_error_still_stops() -> None:
    task = asyncio.create_task(_loop_that_logs_and_goes_on())
    await asyncio.sleep(0.01)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)
    assert task in done
    with pytest.raises(asyncio.CancelledError):
        task.result()


async def test_outside_a_cancellation_it_does_nothing() -> None:
    reraise_if_cancelled()  # no exception: the current task is not being cancelled
