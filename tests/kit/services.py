"""The real services, one namespace per test: Redis keys dropped after it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

import pytest
import redis.asyncio as aioredis

from contracts.services import ServiceSettings
from transport.redis import drop_prefix

RedisNs: TypeAlias = tuple[aioredis.Redis, str]
"""A Redis client and the key prefix a test owns."""


@asynccontextmanager
async def redis_dropped_after(
    services: ServiceSettings, **client_kwargs: Any
) -> AsyncIterator[aioredis.Redis]:
    """A client to ``services.redis``; every key under ``services.redis_prefix`` is dropped
    when the block ends, whatever the test left there."""
    if not services.namespace:
        raise ValueError("a test's Redis keys need a namespace of their own to drop")
    client = aioredis.from_url(services.redis, **client_kwargs)
    try:
        yield client
    finally:
        try:
            await drop_prefix(services.redis, services.redis_prefix)
        finally:
            await client.aclose()


@pytest.fixture
async def redis_ns(namespace: str) -> AsyncIterator[RedisNs]:
    """(client, prefix) of the test's own namespace, dropped after the test."""
    services = ServiceSettings(namespace=namespace)
    async with redis_dropped_after(services) as client:
        yield client, services.redis_prefix
