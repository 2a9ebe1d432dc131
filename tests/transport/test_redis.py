"""drop_prefix deletes a scratch namespace's keys and nothing else."""

from __future__ import annotations

import uuid

import pytest
import redis.asyncio as aioredis

from contracts.services import ServiceSettings
from transport.redis import drop_prefix

pytestmark = pytest.mark.integration


async def test_drops_only_keys_under_the_prefix() -> None:
    url = ServiceSettings().redis
    prefix, other = f"t{uuid.uuid4().hex[:8]}:", f"t{uuid.uuid4().hex[:8]}:"
    redis = aioredis.from_url(url)
    try:
        await redis.mset({f"{prefix}{i}": i for i in range(1200)} | {f"{other}keep": 1})
        assert await drop_prefix(url, prefix, chunk=500) == 1200
        assert [k async for k in redis.scan_iter(f"{prefix}*")] == []
        assert await redis.get(f"{other}keep") == b"1"
    finally:
        await redis.delete(f"{other}keep")
        await redis.aclose()


async def test_refuses_an_empty_prefix() -> None:
    with pytest.raises(ValueError, match="prefix is empty"):
        await drop_prefix(ServiceSettings().redis, "")
