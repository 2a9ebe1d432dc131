"""Process counters in Redis (transport.stats) and `proxima stats`, against real Redis."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from typer.testing import CliRunner

from transport.stats import publish, read_all

pytestmark = pytest.mark.integration


@pytest.fixture
async def r() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url("redis://127.0.0.1:6379/0")
    yield client
    await client.aclose()


async def test_published_counters_are_read_back_and_replace_the_previous_snapshot(
    r: aioredis.Redis,
) -> None:
    prefix = f"test-stats-{uuid.uuid4().hex[:8]}:"
    await publish(r, prefix, "bridge", Counter(events=3, rejected=1), ttl_s=30, instance="h:1")
    await publish(r, prefix, "stream-worker", Counter(alerts=2), ttl_s=30, instance="h:2")
    await publish(r, prefix, "bridge", Counter(events=5), ttl_s=30, instance="h:1")
    got = await read_all(r, prefix)
    assert set(got) == {("bridge", "h:1"), ("stream-worker", "h:2")}
    assert got[("bridge", "h:1")][1] == Counter(events=5)  # the snapshot, not a merge
    assert got[("stream-worker", "h:2")][1] == Counter(alerts=2)
    assert got[("bridge", "h:1")][0] > 0  # when it was written
    await r.delete(*[f"{prefix}stats:bridge:h:1", f"{prefix}stats:stream-worker:h:2"])


async def test_a_dead_instance_disappears_after_its_expiry(r: aioredis.Redis) -> None:
    prefix = f"test-stats-{uuid.uuid4().hex[:8]}:"
    await publish(r, prefix, "bridge", Counter(events=1), ttl_s=1, instance="gone:1")
    assert ("bridge", "gone:1") in await read_all(r, prefix)
    await asyncio.sleep(1.2)
    assert await read_all(r, prefix) == {}


def test_proxima_stats_prints_every_instance(monkeypatch: pytest.MonkeyPatch) -> None:
    from deploy.cli import app

    namespace = f"t{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("PROXIMA_NAMESPACE", namespace)
    from contracts.services import ServiceSettings

    prefix = ServiceSettings().redis_prefix

    async def seed() -> None:
        client = aioredis.from_url("redis://127.0.0.1:6379/0")
        await publish(client, prefix, "bridge", Counter(rejected=7), ttl_s=30, instance="gw:9")
        await client.aclose()

    asyncio.run(seed())
    result = CliRunner().invoke(app, ["stats", "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    assert row["component"] == "bridge"
    assert row["instance"] == "gw:9"
    assert row["counts"] == {"rejected": 7}
    table = CliRunner().invoke(app, ["stats"])
    assert "rejected" in table.output
    assert "7" in table.output
