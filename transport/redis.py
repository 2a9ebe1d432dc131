"""Redis helpers shared by the launcher and the benchmarks."""

from __future__ import annotations

import redis.asyncio as aioredis


async def drop_prefix(url: str, prefix: str, *, chunk: int = 500) -> int:
    """Delete every key under ``prefix`` (a scratch namespace's data); returns how many.

    Refuses an empty prefix: that would be the whole database.
    """
    if not prefix:
        raise ValueError("refusing to drop every key: the prefix is empty")
    redis = aioredis.from_url(url)
    try:
        keys = [k async for k in redis.scan_iter(f"{prefix}*", count=1000)]
        for i in range(0, len(keys), chunk):
            await redis.delete(*keys[i : i + chunk])
        return len(keys)
    finally:
        await redis.aclose()
