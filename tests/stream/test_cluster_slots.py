"""Redis Cluster: the registry, the consent log and the EID index never send a command,
transaction or script over more than one hash slot. Checked two ways: through the
slot-checking client on the test server (every key of every call, as the server names
them), and on a real three-node Redis Cluster started from the installed redis-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime

import pytest
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot
from redis.exceptions import RedisClusterException, ResponseError

from beacons.eid import compute_eid
from contracts.models import ConsentDecision, ConsentRecord, Subject, SubjectType
from contracts.services import ServiceSettings
from stream.consent_log import pump_outbox, restore_consent, snapshot
from stream.customers import register_device
from stream.identity import IdentityIndex
from stream.registry import (
    SHARD_TAGS,
    SHARDS,
    CustomerProfile,
    Purpose,
    Registry,
    shard_of,
)
from tests.kit.customers import make_customer
from tests.redis_slots import CrossSlotError, SlotCheckedRedis
from transport.redis import RedisClient, drop_prefix

CUSTOMERS = [f"c{i}" for i in range(48)]
T = 1_773_000_000  # an EID time counter (Unix seconds)


def _profile(i: int) -> CustomerProfile:
    return make_customer(customer_id=CUSTOMERS[i], identity_key=f"{i + 1:02x}" * 16)


async def exercise(r: RedisClient, prefix: str) -> None:
    """Every registry, consent-log and index operation, on customers of every shard."""
    assert {shard_of(c) for c in CUSTOMERS} == set(range(SHARDS))
    reg = Registry(r, prefix)
    for i in range(len(CUSTOMERS)):
        consent = [Purpose.ARRIVAL_ALERTS] if i % 2 == 0 else []
        await reg.enroll(_profile(i), consent, store="s1" if i % 4 == 0 else None)
    await reg.set_consent("c1", Purpose.ARRIVAL_ALERTS, True, store="s2")
    await reg.set_consent("c2", Purpose.ARRIVAL_ALERTS, False)

    got = await reg.get_many([*CUSTOMERS, "nobody"])
    assert [p.customer_id for p in got.values() if p] == CUSTOMERS
    assert got["nobody"] is None
    decided = await reg.consent_many([(c, "s1") for c in CUSTOMERS[:5]], Purpose.ARRIVAL_ALERTS)
    assert list(decided.values()) == [True, False, False, False, True]
    assert await reg.has_consent("c1", Purpose.ARRIVAL_ALERTS, "s2")
    assert [p.customer_id for p in await reg.all_profiles()] == sorted(CUSTOMERS)
    version = await reg.version()
    assert version == len(CUSTOMERS) + 2

    index = IdentityIndex(reg, drift_windows=1)
    await index.refresh(force=True)
    eid = compute_eid(bytes.fromhex(_profile(7).identity_key), 10, T).hex()
    assert await index.resolve(Subject(type=SubjectType.EDDYSTONE_EID, id=eid), T) == "c7"

    # The consent outbox: one record per customer whose consent changed, then empty.
    sent: dict[bytes, bytes | None] = {}

    async def send(topic: str, key: bytes, value: bytes | None) -> Awaitable[object]:
        sent[key] = value
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    assert await reg.outbox_len() == len(CUSTOMERS) // 2 + 2
    assert await pump_outbox(r, prefix, send, "consent") == len(CUSTOMERS) // 2 + 1
    assert await reg.outbox_len() == 0
    assert sent[b"c1"] is not None

    # forget: the shard's transaction, then the sweep of keys in other slots.
    await register_device(r, prefix, "c4", "d00d04", public_key=None)
    await reg.register_device("c5", "d00d05")
    await r.set(f"{prefix}visit:c4:s1", "state")
    await r.set(f"{prefix}alerted:c4:s1:v1:arrival", "sent:x")
    await r.set(f"{prefix}cooldown:c4:s1:vip", "1")
    await r.zadd(f"{prefix}departing:s1", {"c4": 1.0, "c5": 2.0})
    await r.hset(f"{prefix}devices:d00d04", mapping={"public_key": "k", "revoked": "0"})
    assert await reg.customer_for_device("d00d04") == "c4"
    assert await reg.forget("c4")
    assert await reg.get("c4") is None
    assert await reg.consent_records("c4") == {}
    assert await reg.devices("c4") == []
    assert await reg.customer_for_device("d00d04") is None
    assert await reg.customer_for_device("d00d05") == "c5"
    for key in ("visit:c4:s1", "alerted:c4:s1:v1:arrival", "cooldown:c4:s1:vip", "devices:d00d04"):
        assert not await r.exists(f"{prefix}{key}"), key
    assert await r.zscore(f"{prefix}departing:s1", "c4") is None
    assert await r.zscore(f"{prefix}departing:s1", "c5") == 2.0
    assert [e["action"] for e in await reg.audit("c4")] == ["grant", "device", "forget"]
    assert await snapshot(r, prefix, "c4") is None
    assert await pump_outbox(r, prefix, send, "consent") == 1
    assert sent[b"c4"] is None  # the tombstone

    # restore from the topic's latest records: one transaction per shard.
    record = ConsentRecord(
        customer_id="c0",
        consent={"analytics": ConsentDecision(granted=True, at=datetime.now(UTC))},
        version=1,
    )
    assert await restore_consent(r, prefix, {"c0": record, "c2": None, "c3": record}) == (2, 1)
    assert list(await reg.consent_records("c0")) == ["analytics"]
    assert await reg.consent_records("c2") == {}
    assert await reg.version() > version
    snap = await snapshot(r, prefix, "c0")
    assert snap is not None
    assert list(snap.consent) == ["analytics"]


def test_the_registry_shards_spread_over_the_whole_slot_range() -> None:
    # one shard per 1,024-slot range: any cluster's primaries get their share
    assert [key_slot(tag.encode()) // 1024 for tag in SHARD_TAGS] == list(range(SHARDS))


@pytest.fixture
async def checked(namespace: str) -> AsyncIterator[tuple[SlotCheckedRedis, str]]:
    services = ServiceSettings(namespace=namespace)
    r = SlotCheckedRedis.connect(services.redis)
    yield r, services.redis_prefix
    await drop_prefix(services.redis, services.redis_prefix)
    await r.aclose()


async def test_the_slot_checker_refuses_what_a_cluster_refuses(
    checked: tuple[SlotCheckedRedis, str],
) -> None:
    r, prefix = checked
    reg = Registry(r, prefix)
    a, b = "c0", next(c for c in CUSTOMERS if shard_of(c) != shard_of("c0"))
    ka, kb = reg.keys.customer(a), reg.keys.customer(b)
    with pytest.raises(CrossSlotError, match="MGET over 2 slots"):
        await r.mget([ka, kb])  # what all_profiles did
    async with r.pipeline(transaction=True) as pipe:
        pipe.set(ka, "1")
        pipe.set(kb, "1")
        with pytest.raises(CrossSlotError, match="MULTI/EXEC"):
            await pipe.execute()
    with pytest.raises(CrossSlotError, match="EVAL over 2 slots"):
        await r.eval("return 1", 2, ka, kb)
    async with r.pipeline(transaction=True) as pipe:  # a change in the layout before the shards
        pipe.hset(f"{prefix}consent:{a}", "analytics", "{}")
        pipe.xadd(f"{prefix}consent-outbox", {"customer_id": a})
        with pytest.raises(CrossSlotError, match="MULTI/EXEC"):
            await pipe.execute()
    # one shard's keys go together; a DEL over slots is split by redis-py's cluster client
    async with r.pipeline(transaction=True) as pipe:
        pipe.set(ka, "1")
        pipe.xadd(reg.keys.outbox(shard_of(a)), {"customer_id": a})
        await pipe.execute()
    await r.delete(ka, kb)


async def test_registry_consent_log_and_index_never_cross_a_hash_slot(
    checked: tuple[SlotCheckedRedis, str],
) -> None:
    r, prefix = checked
    await exercise(r, prefix)
    seen = r.checker.seen
    # the checker saw the calls that matter: every change's transaction, the snapshots'
    assert seen["transaction"] >= len(CUSTOMERS) + 2 + 3 + len(CUSTOMERS) // 2
    assert seen["multi-key DEL"] >= 1


# --- a real Redis Cluster ----------------------------------------------------------


@pytest.fixture
async def cluster_client(redis_cluster_nodes: list[tuple[str, int]]) -> AsyncIterator[RedisCluster]:
    client = RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in redis_cluster_nodes])
    await client.initialize()
    yield client
    await client.aclose()


@pytest.mark.integration
async def test_the_registry_works_on_a_real_three_node_cluster(
    cluster_client: RedisCluster, namespace: str
) -> None:
    prefix = f"{namespace}:"
    reg = Registry(cluster_client, prefix)
    nodes = {cluster_client.get_node_from_key(reg.keys.customers(s)) for s in range(SHARDS)}
    assert len({node.name for node in nodes if node}) == 3  # the shards are on every primary
    await exercise(cluster_client, prefix)


@pytest.mark.integration
async def test_a_real_cluster_refuses_the_old_cross_slot_calls(
    cluster_client: RedisCluster, namespace: str
) -> None:
    reg = Registry(cluster_client, f"{namespace}:")
    a, b = "c0", next(c for c in CUSTOMERS if shard_of(c) != shard_of("c0"))
    with pytest.raises((ResponseError, RedisClusterException)):
        await cluster_client.mget([reg.keys.customer(a), reg.keys.customer(b)])
    async with cluster_client.pipeline(transaction=True) as pipe:
        pipe.set(reg.keys.customer(a), "1")
        pipe.set(reg.keys.customer(b), "1")
        with pytest.raises(RedisClusterException):
            await pipe.execute()
