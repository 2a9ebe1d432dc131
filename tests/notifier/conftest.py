"""Notifier fixtures: real Redis per test namespace, a clock tests move by hand."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from argon2 import PasswordHasher

from contracts.models import Alert
from contracts.services import ServiceSettings
from notifier.directory import Directory
from notifier.lifecycle import Lifecycle
from tests.factories import alert_dict


@dataclass
class FakeClock:
    """Injected time: tests advance it instead of sleeping."""

    now: datetime = field(default_factory=lambda: datetime(2026, 1, 1, 10, 0, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


# Cheap argon2 parameters: the tests check behaviour, not the hash's cost.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


class CountingHasher:
    """Our ``Hasher`` interface over the fast argon2 one: counts the checks, and how many
    run at once (each held ``pause_s`` in its thread, so that overlapping checks overlap)."""

    def __init__(self, pause_s: float = 0.0) -> None:
        self.pause_s = pause_s
        self._lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.verified = 0

    def hash(self, password: str) -> str:
        return FAST_HASHER.hash(password)

    def verify(self, hash: str, password: str) -> bool:
        with self._lock:
            self.verified += 1
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            time.sleep(self.pause_s)  # in the hashing thread, as argon2 would take it
            return FAST_HASHER.verify(hash, password)
        finally:
            with self._lock:
                self.running -= 1

    def check_needs_rehash(self, hash: str) -> bool:
        return FAST_HASHER.check_needs_rehash(hash)


def make_alert(**overrides: Any) -> Alert:
    return Alert.model_validate(alert_dict(**overrides))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def services(namespace: str) -> ServiceSettings:
    return ServiceSettings(namespace=namespace)


@pytest.fixture
async def redis(services: ServiceSettings) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(services.redis, decode_responses=True)
    try:
        yield client
    finally:
        keys = [k async for k in client.scan_iter(f"{services.redis_prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.fixture
def directory(redis: aioredis.Redis, services: ServiceSettings, clock: FakeClock) -> Directory:
    return Directory(redis, services.redis_prefix, hasher=FAST_HASHER, clock=clock)


@pytest.fixture
def lifecycle(
    redis: aioredis.Redis, services: ServiceSettings, directory: Directory, clock: FakeClock
) -> Lifecycle:
    return Lifecycle(redis, services.redis_prefix, directory, clock=clock)


@pytest.fixture
def store() -> str:
    return f"store-{uuid.uuid4().hex[:6]}"
