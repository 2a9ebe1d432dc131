"""The start-up check that Redis keeps its data across a restart, against real servers
configured each way (and one that refuses CONFIG, as managed services do)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio.cluster import RedisCluster

from tests.redis_server import RedisServer
from transport.redis import (
    Persistence,
    connect_redis,
    redis_persistence,
    warn_if_not_persistent,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisServer]:
    s = RedisServer(tmp_path / "redis", *request.param).start()
    try:
        yield s
    finally:
        s.stop()


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        (("--appendonly", "no", "--save", ""), Persistence(aof=False, rdb=False)),
        (("--appendonly", "yes", "--save", ""), Persistence(aof=True, rdb=False)),
        (("--appendonly", "no", "--save", "900 1"), Persistence(aof=False, rdb=True)),
    ],
    indirect=["server"],
    ids=["none", "aof", "rdb"],
)
async def test_the_check_reads_aof_and_rdb(
    server: RedisServer, expected: Persistence, caplog: pytest.LogCaptureFixture
) -> None:
    redis = connect_redis(server.url)
    counts: Counter[str] = Counter()
    try:
        found = await warn_if_not_persistent(redis, "bridge", counts)
    finally:
        await redis.aclose()
    assert found == expected
    if expected.persistent:
        assert counts == Counter()
        assert "Redis keeps NO data" not in caplog.text
    else:
        assert counts == Counter(redis_not_persistent=1)
        assert "bridge: Redis keeps NO data across a restart" in caplog.text


@pytest.mark.parametrize(
    "server", [("--rename-command", "CONFIG", "")], indirect=True, ids=["no-config"]
)
async def test_a_refused_config_get_is_reported_as_unknown_not_raised(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    redis = connect_redis(server.url)
    counts: Counter[str] = Counter()
    try:
        found = await warn_if_not_persistent(redis, "stream-worker", counts)
    finally:
        await redis.aclose()
    assert found.persistent is None
    assert "CONFIG GET refused" in (found.unknown or "")
    assert counts == Counter(redis_persistence_unknown=1)
    assert "cannot tell whether Redis is persistent" in caplog.text


async def test_a_cluster_is_persistent_only_if_every_primary_is(redis_cluster_url: str) -> None:
    redis = connect_redis(redis_cluster_url)
    assert isinstance(redis, RedisCluster)
    try:
        await redis.initialize()
        primaries = redis.get_primaries()
        assert len(primaries) == 3
        # tests/redis_cluster.py starts its nodes without AOF or RDB.
        assert await redis_persistence(redis) == Persistence(aof=False, rdb=False)
        await redis.config_set("appendonly", "yes", target_nodes=primaries[:-1])
        assert await redis_persistence(redis) == Persistence(aof=False, rdb=False)
        await redis.config_set("appendonly", "yes", target_nodes=primaries[-1])
        assert await redis_persistence(redis) == Persistence(aof=True, rdb=False)
    finally:
        await redis.config_set("appendonly", "no", target_nodes=RedisCluster.PRIMARIES)
        await redis.aclose()
