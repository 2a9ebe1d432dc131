"""The gateway keyring in real Redis, and the bridge's bounded key cache on a fake clock."""

from __future__ import annotations

import pytest

from stream.exceptions import KeyringError
from stream.keyring import KeyCache, Keyring
from tests.kit.clock import FakeClock
from tests.kit.services import RedisNs


@pytest.fixture
def keyring(redis_ns: RedisNs) -> Keyring:
    return Keyring(*redis_ns)


async def test_add_list_revoke(keyring: Keyring) -> None:
    a = await keyring.add("store-1", "gw-door")
    b = await keyring.add("store-1", "gw-till")
    assert a.kid != b.kid
    assert len(bytes.fromhex(a.secret)) == 32
    assert f"PROXIMA_EDGE_SIGNING_KID={a.kid}" in a.env_lines()
    assert f"PROXIMA_EDGE_SIGNING_KEY={a.secret}" in a.env_lines()
    assert [k.kid for k in await keyring.all()] == [a.kid, b.kid]
    revoked = await keyring.revoke(a.kid)
    assert revoked.revoked
    assert revoked.revoked_at is not None
    got = await keyring.get(a.kid)
    assert got is not None
    assert got.gateway_key().revoked
    with pytest.raises(KeyringError, match="no gateway key 'gk-missing'"):
        await keyring.revoke("gk-missing")


async def test_cache_refreshes_stale_keys_and_remembers_unknown_ones(keyring: Keyring) -> None:
    clock = FakeClock(1000.0)
    cache = KeyCache(keyring, ttl_s=30, negative_ttl_s=5, max_entries=2, clock=clock)
    a = await keyring.add("store-1", "gw-door")
    key = await cache.get(a.kid)
    assert key is not None
    assert not key.revoked
    await keyring.revoke(a.kid)
    still = await cache.get(a.kid)
    assert still is not None
    assert not still.revoked
    clock.advance(31)
    stale = await cache.get(a.kid)
    assert stale is not None
    assert stale.revoked
    fetches = cache.fetches
    for _ in range(10):
        assert await cache.get("gk-forged") is None
    assert cache.fetches == fetches + 1  # an unknown kid costs one read per negative ttl
    clock.advance(6)
    assert await cache.get("gk-forged") is None
    assert cache.fetches == fetches + 2
    await cache.get("gk-x")
    await cache.get("gk-y")
    assert len(cache) == 2  # bounded
