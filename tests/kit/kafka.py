"""Read a Kafka topic from its start in a test: until enough records, or until it is idle."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord

Record = ConsumerRecord[bytes, bytes]


class TopicReader:
    """Every record of one topic from the start, read as it comes (an async context)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
        )
        self.records: list[Record] = []

    async def __aenter__(self) -> TopicReader:
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    @property
    def values(self) -> list[bytes]:
        return [r.value or b"" for r in self.records]

    async def _poll(self, timeout_ms: int) -> int:
        batch: dict[Any, list[Record]] = await self.consumer.getmany(timeout_ms=timeout_ms)
        for records in batch.values():
            self.records.extend(records)
        return sum(map(len, batch.values()))

    async def until(
        self, done: Callable[[list[Record]], bool], timeout: float = 60, what: str = ""
    ) -> list[Record]:
        """Read until ``done(records)``; fail the test when it is not within ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                while not done(self.records):
                    await self._poll(200)
        except TimeoutError:
            pytest.fail(
                f"{what or 'not reached'}: {len(self.records)} records on {self.topic} "
                f"after {timeout} s"
            )
        return self.records

    async def at_least(self, n: int, timeout: float = 60) -> list[bytes]:
        """The values read, once there are ``n`` or more."""
        await self.until(lambda rs: len(rs) >= n, timeout, f"waiting for {n} records")
        return self.values

    async def until_idle(
        self, *, at_least: int = 1, idle_s: float = 0.5, timeout: float = 60
    ) -> list[bytes]:
        """Every value on the topic: once ``at_least`` are in, until a poll of ``idle_s``
        brings no more."""
        await self.at_least(at_least, timeout)
        while await self._poll(int(idle_s * 1000)):
            pass
        return self.values


async def read_topic(
    bootstrap: str,
    topic: str,
    at_least: int = 1,
    *,
    idle_s: float | None = None,
    timeout: float = 60,
) -> list[bytes]:
    """The values on ``topic`` once ``at_least`` are in (with ``idle_s``: and a poll of
    ``idle_s`` brings no more); fails the test when too few come within ``timeout``."""
    async with TopicReader(bootstrap, topic) as reader:
        if idle_s is None:
            return await reader.at_least(at_least, timeout)
        return await reader.until_idle(at_least=at_least, idle_s=idle_s, timeout=timeout)
