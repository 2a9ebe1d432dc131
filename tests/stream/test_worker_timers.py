"""The worker's timers survive a Redis restart: a transient error is retried with backoff,
any other error is logged and counted, and the timer keeps running (Faust ends the worker
when a timer raises: a Redis restart under the departures timer did, exit 1)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from tests.stream.test_agent import _harness
from transport.retry import run_guarded


class FakeSleep:
    """Records the waits instead of sleeping them."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


async def test_a_transient_error_is_retried_with_backoff_until_the_run_succeeds() -> None:
    calls = 0

    async def body() -> None:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise RedisConnectionError("Connection refused")

    counts: Counter[str] = Counter()
    sleep = FakeSleep()
    await run_guarded(
        body, what="t", base_s=0.5, cap_s=4.0, counts=counts, sleep=sleep, rng=lambda: 1.0
    )
    assert calls == 3
    assert sleep.waits == [0.5, 1.0]  # doubling (full jitter: rng 1.0 is the ceiling)
    assert counts == Counter(timer_retries=2)


async def test_any_other_error_is_counted_and_the_run_ends_without_raising(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def body() -> None:
        raise ValueError("a bug")

    counts: Counter[str] = Counter()
    sleep = FakeSleep()
    await run_guarded(body, what="timer x", base_s=0.5, cap_s=4.0, counts=counts, sleep=sleep)
    assert counts == Counter(timer_errors=1)
    assert sleep.waits == []  # a bug is not retried in a tight loop: the next run tries
    assert "timer x failed" in caplog.text


async def test_cancelling_a_retrying_run_stops_it() -> None:
    async def body() -> None:
        raise RedisConnectionError("Connection refused")

    task = asyncio.create_task(
        run_guarded(body, what="t", base_s=10, cap_s=10, counts=Counter(), rng=lambda: 1.0)
    )
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def _timer(app: Any, name: str) -> Any:
    """The task Faust starts for the timer ``name`` (its wrappers keep the body's name)."""
    (task,) = [t for t in app._app_tasks if t.__name__ == name]
    return task


@pytest.mark.integration  # Redis
async def test_the_departures_timer_keeps_running_after_a_redis_error(
    namespace: str, tmp_path: Path
) -> None:
    async with _harness(namespace, tmp_path, departure_check_s=0.02) as h:
        h.processor.failures["depart"] = [RedisConnectionError("Connection refused")]
        timer = asyncio.create_task(_timer(h.app, "departures")(), name="departures")
        try:
            async with asyncio.timeout(30):
                while h.processor.calls["depart"] < 4 and not timer.done():  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            assert not timer.done(), timer.exception()
        finally:
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer
    assert h.processor.stats.counts["timer_retries"] == 1
