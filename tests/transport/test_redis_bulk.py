"""BulkWrites: SET EX, ZADD and ZREM applied in order in one round trip, the same on one
server (a Lua script) and on a Redis Cluster (a pipeline split by node)."""

from __future__ import annotations

from redis.asyncio.cluster import RedisCluster

from tests.kit.services import RedisNs
from transport.redis import RedisClient, connect_redis, drop_prefix
from transport.redis_bulk import CHUNK_KEYS, BulkWrites


def _writes(p: str) -> BulkWrites:
    writes = BulkWrites()
    for i in range(50):  # keys of many hash slots
        writes.set(f"{p}mark:{i}", 1, 60)
    writes.set(f"{p}state", '{"a": 1}', 120)
    writes.zadd(f"{p}departing", "c1", 1767607200.25)
    writes.zadd(f"{p}departing", "c2", 5)
    writes.zrem(f"{p}departing", "c2")
    writes.zadd(f"{p}departing", "c3", 7)
    return writes


async def _check(r: RedisClient, p: str) -> None:
    assert [await r.get(f"{p}mark:{i}") for i in range(50)] == [b"1"] * 50
    assert 55 < await r.ttl(f"{p}mark:7") <= 60
    assert await r.get(f"{p}state") == b'{"a": 1}'
    assert 115 < await r.ttl(f"{p}state") <= 120
    # In order: c2 added, then removed.
    assert await r.zrange(f"{p}departing", 0, -1, withscores=True) == [
        (b"c3", 7.0),
        (b"c1", 1767607200.25),
    ]


async def test_writes_apply_in_order_in_one_script_on_one_server(redis_ns: RedisNs) -> None:
    r, p = redis_ns
    writes = _writes(p)
    assert len(writes) == 55
    await writes.execute(r)
    await _check(r, p)


async def test_a_server_that_forgot_the_script_is_sent_it_again(redis_ns: RedisNs) -> None:
    r, p = redis_ns
    await BulkWrites().execute(r)  # nothing to write: no round trip
    await r.script_flush()
    await _writes(p).execute(r)
    await _check(r, p)


async def test_the_same_writes_go_through_a_pipeline_on_a_cluster(
    redis_cluster_url: str, namespace: str
) -> None:
    r = connect_redis(redis_cluster_url)
    assert isinstance(r, RedisCluster)
    p = f"{namespace}:"
    try:
        await _writes(p).execute(r)
        await _check(r, p)
    finally:
        await drop_prefix(redis_cluster_url, p)
        await r.aclose()


async def test_many_writes_go_in_chunks_in_order(redis_ns: RedisNs) -> None:
    r, p = redis_ns
    writes = BulkWrites()
    n = CHUNK_KEYS * 2 + 8  # ends with a removal
    for i in range(n):
        if i % 3 == 2:
            writes.zrem(f"{p}z", f"m{i - 1}")  # removes the member added just before
        elif i % 3 == 1:
            writes.zadd(f"{p}z", f"m{i}", i)
        else:
            writes.set(f"{p}k:{i}", i, 60)
    await writes.execute(r)
    assert await r.zcard(f"{p}z") == 0
    assert await r.get(f"{p}k:0") == b"0"
    assert await r.get(f"{p}k:{n - 1 - (n - 1) % 3}") == str(n - 1 - (n - 1) % 3).encode()
    assert len([k async for k in r.scan_iter(f"{p}k:*", count=10_000)]) == (n + 2) // 3
