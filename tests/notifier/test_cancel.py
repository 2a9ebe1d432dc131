"""A cancellation that redis-py turns into a ConnectionError still stops our loops."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from notifier.outbox import Entry, Handler, Outbox


class RedisEatsTheCancel(Outbox):
    """What redis-py does when a cancellation lands mid-command: a ConnectionError."""

    async def drain_once(self, handler: Handler, count: int = 100, block_ms: int = 1000) -> int:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise RedisConnectionError("Connection closed by server.") from None
        return 0


async def _ignore(entries: Sequence[Entry]) -> None:
    return None


@pytest.mark.timeout(30)
async def test_outbox_loop_stops_when_cancelled_even_if_redis_swallows_it() -> None:
    redis = aioredis.Redis()  # never used: drain_once is replaced
    outbox = RedisEatsTheCancel(redis, "k", group="g", consumer="c")
    task = asyncio.create_task(outbox.run(_ignore))
    await asyncio.sleep(0.01)
    task.cancel()
    # Without the check the loop logs the error, sleeps and goes on for ever.
    done, _ = await asyncio.wait({task}, timeout=5)
    assert task in done
    with pytest.raises(asyncio.CancelledError):
        task.result()
    await redis.aclose()
