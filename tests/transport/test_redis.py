"""The Redis client chosen by URL scheme, and drop_prefix deleting only a scratch namespace."""

from __future__ import annotations

import uuid

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from contracts.services import ServiceSettings
from transport.redis import (
    REDIS_SCHEMES,
    cluster_kwargs,
    connect_redis,
    drop_prefix,
    is_cluster_url,
    scheme_of,
)


@pytest.mark.integration
async def test_drops_only_keys_under_the_prefix() -> None:
    url = ServiceSettings().redis
    prefix, other = f"t{uuid.uuid4().hex[:8]}:", f"t{uuid.uuid4().hex[:8]}:"
    redis = aioredis.from_url(url)
    try:
        await redis.mset({f"{prefix}{i}": i for i in range(1200)} | {f"{other}keep": 1})
        assert await drop_prefix(url, prefix, chunk=500) == 1200
        assert [k async for k in redis.scan_iter(f"{prefix}*", count=10000)] == []
        assert await redis.get(f"{other}keep") == b"1"
    finally:
        await redis.delete(f"{other}keep")
        await redis.aclose()


async def test_refuses_an_empty_prefix() -> None:
    with pytest.raises(ValueError, match="prefix is empty"):
        await drop_prefix(ServiceSettings().redis, "")


# --- the client by URL scheme (no server needed: clients connect on first command) -----


async def test_single_server_schemes_give_a_plain_client() -> None:
    for url in ("redis://127.0.0.1:6379/2", "rediss://h:6380/0", "unix:///run/redis.sock"):
        client = connect_redis(url)
        assert isinstance(client, aioredis.Redis), url
        await client.aclose()


async def test_a_cluster_url_gives_a_cluster_client_with_every_listed_startup_node() -> None:
    client = connect_redis("redis+cluster://10.0.0.1:7000,10.0.0.2:7001,[::1]:7002,10.0.0.4")
    assert isinstance(client, RedisCluster)
    assert [(n.host, n.port) for n in client.startup_nodes] == [
        ("10.0.0.1", 7000),
        ("10.0.0.2", 7001),
        ("::1", 7002),
        ("10.0.0.4", 6379),
    ]
    await client.aclose()


def test_cluster_credentials_tls_and_options_apply_to_every_node() -> None:
    kwargs = cluster_kwargs(
        "rediss+cluster://app:s%40cret@a:7000,b:7001/0?socket_timeout=2.5&client_name=px"
    )
    nodes = kwargs.pop("startup_nodes")
    assert [(n.host, n.port) for n in nodes] == [("a", 7000), ("b", 7001)]
    assert kwargs == {
        "username": "app",
        "password": "s@cret",
        "ssl": True,
        "socket_timeout": 2.5,
        "client_name": "px",
    }
    assert "ssl" not in cluster_kwargs("redis+cluster://a:7000")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+cluster://a:7000/3", "database 0 only"),
        ("redis+cluster://a:7000,,b:7001", "empty node"),
        ("redis+cluster://a:port", "no valid port"),
        ("memcached://a:11211", "unsupported Redis URL"),
        ("redis-cluster://user:hunter2@a:7000", r"user:\*\*\*@a:7000"),
    ],
)
def test_a_url_that_cannot_be_a_client_is_refused_naming_why(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        connect_redis(url)
    assert "hunter2" not in str(caught.value)


def test_schemes_are_told_apart() -> None:
    assert is_cluster_url("redis+cluster://a:1")
    assert is_cluster_url("REDISS+CLUSTER://a:1")
    assert not is_cluster_url("redis://a:1/0")
    assert scheme_of("redis+cluster://a:1") in REDIS_SCHEMES
    assert scheme_of("file:devices.toml") == ""


def test_one_decoding_policy_for_replies() -> None:
    from transport.redis import as_text, text_map

    assert as_text(b"caf\xc3\xa9") == "café"
    assert as_text("already") == "already"
    assert as_text(None) == ""
    assert as_text(3) == "3"
    assert text_map({b"k": b"v", "n": 1}) == {"k": "v", "n": "1"}


async def test_redis_for_closes_its_client(namespace: str) -> None:
    """Seen from the server (CLIENT LIST): connected in the block, gone after it."""
    from contracts.services import ServiceSettings
    from transport.redis import connect_redis, redis_for

    services = ServiceSettings(namespace=namespace)
    name = f"redis-for-{namespace}"
    observer = connect_redis(services.redis)
    try:

        async def connected() -> bool:
            return any(c.get("name") == name for c in await observer.client_list())

        async with redis_for(services, client_name=name) as r:
            assert await r.ping()
            assert await connected()
        assert not await connected()
    finally:
        await observer.aclose()


@pytest.mark.integration
@pytest.mark.parametrize("url_tail", ["", "?decode_responses=true"])
async def test_a_single_server_client_packs_with_hiredis_and_round_trips(url_tail: str) -> None:
    """With hiredis installed (the services extra), a single server's connections pack
    commands in C; what goes in comes back the same, text, numbers and bytes alike, and
    what redis-py refuses is refused the same way."""
    from redis.asyncio.connection import SSLConnection
    from redis.exceptions import DataError
    from redis.utils import HIREDIS_AVAILABLE

    if not HIREDIS_AVAILABLE:
        pytest.skip("hiredis is not installed (the services extra brings it)")
    tls = connect_redis("rediss://127.0.0.1:1/0").connection_pool.connection_class
    assert tls.__name__ == "HiredisSSLConnection"
    assert issubclass(tls, SSLConnection)
    redis = connect_redis(ServiceSettings().redis + url_tail)
    assert redis.connection_pool.connection_class.__name__ == "HiredisConnection"
    key = f"t{uuid.uuid4().hex[:8]}:packed"
    raw = b"" if url_tail else b"\x00\xff"  # replies decoded as text cannot hold these
    try:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.set(key, "café ☕", ex=60)
            pipe.get(key)
            pipe.hset(f"{key}:h", mapping={"n": 7, "f": 1.5, "b": raw})
            pipe.hmget(f"{key}:h", ["n", "f", "b"])
            got = await pipe.execute()
        if url_tail:
            assert got[1] == "café ☕"
            assert got[3] == ["7", "1.5", ""]
        else:
            assert got[1] == "café ☕".encode()
            assert got[3] == [b"7", b"1.5", raw]
        with pytest.raises(DataError):
            await redis.set(key, None)  # type: ignore[arg-type]
    finally:
        await redis.delete(key, f"{key}:h")
        await redis.aclose()
