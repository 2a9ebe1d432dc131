"""The services' own Redis paths on a real three-node Redis Cluster, through the URL factory.

Every client here comes from ``transport.redis.connect_redis`` (or the service that calls
it) with a ``redis+cluster://`` URL, the value ``PROXIMA_REDIS`` takes in production: the
customer CLI (enroll, grant, revoke, forget, with the consent outbox pumped to Kafka), the
stream's decision chain, the notifier's console (sessions, claim/done, the live feed's
pattern subscription, the ack outbox), gateway keys, app-device keys, the counters of
``proxima stats`` and ``drop_prefix``. The cluster is started from the installed
``redis-server`` (tests/redis_cluster.py); without it these tests skip, saying so.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from redis.asyncio.cluster import RedisCluster

from beacons.eid import compute_eid
from contracts.models import AckStatus, AlertAck, Event, parse_model
from contracts.services import ServiceSettings
from deploy.services import ServiceUnavailable, check_redis
from edge.devices import RedisDeviceRegistry, new_device_key, open_registry
from notifier.outbox import Entry
from notifier.service import Notifier
from notifier.settings import NotifierSettings
from notifier.web.auth import CSRF_HEADER
from stream.customers import register_device
from stream.keyring import Keyring
from stream.processor import EventProcessor
from stream.registry import SHARDS, Purpose, Registry
from tests.factories import event_dict
from tests.kit.cli import proxima
from tests.kit.clock import FakeUtcClock
from tests.kit.customers import make_customer
from tests.notifier.conftest import FAST_HASHER, make_alert
from transport.redis import connect_redis, drop_prefix
from transport.stats import publish, read_all

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

KEY_ANA = bytes.fromhex("0102030405060708090a111213141516")
T0 = datetime(2026, 3, 14, 10, 0, 0, tzinfo=UTC)
PASSWORD = "correct-horse"


@pytest.fixture
async def cluster(redis_cluster_url: str, namespace: str) -> AsyncIterator[RedisCluster]:
    """A cluster client from the factory; the test's keys are dropped after it."""
    client = connect_redis(redis_cluster_url)
    assert isinstance(client, RedisCluster)
    yield client
    await drop_prefix(redis_cluster_url, f"{namespace}:")
    await client.aclose()


async def _nodes_of(r: RedisCluster, pattern: str) -> set[str]:
    """The primaries that hold keys matching ``pattern`` (SCAN walks every primary)."""
    nodes = set()
    async for key in r.scan_iter(pattern, count=10000):
        node = r.get_node_from_key(key)
        assert node is not None
        nodes.add(node.name)
    return nodes


async def _customer_keys(r: RedisCluster, prefix: str, cid: str) -> list[str]:
    """Every key that names the customer (profile, consent, visit state, dedupe, ...)."""
    keys = [
        k.decode() if isinstance(k, bytes) else str(k)
        async for k in r.scan_iter(f"{prefix}*", count=10000)
    ]
    return sorted(k for k in keys if f":{cid}" in k)


# --- the customer CLI ------------------------------------------------------------------


def test_customer_cli_enrolls_grants_revokes_and_forgets_on_a_cluster(
    redis_cluster_url: str, proxima_env: dict[str, str], namespace: str
) -> None:
    env = dict(proxima_env, PROXIMA_REDIS=redis_cluster_url)
    key = KEY_ANA.hex()
    steps = [
        ("customers", "enroll", "ana", "--identity-key", key, "--consent", "arrival_alerts"),
        ("customers", "enroll", "bia", "--consent", "analytics"),
        ("customers", "grant", "ana", "analytics", "--store", "s1"),
        ("customers", "revoke", "ana", "arrival_alerts"),
    ]
    for args in steps:
        done = proxima(*args, env=env)
        assert done.returncode == 0, (args, done.stderr)
        # PROXIMA_KAFKA is set: the consent outbox went to Kafka through the cluster
        assert "not yet on proxima.consent.v1" not in done.stderr, done.stderr
    shown = proxima("customers", "show", "ana", env=env)
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["consent"] == {
        "arrival_alerts": False,
        "personalization": False,
        "analytics": False,
        "room_messages": False,
    }
    assert data["consent_records"]["analytics@s1"]["granted"] is True
    assert data["consent_records"]["arrival_alerts"]["granted"] is False

    async def check() -> tuple[list[str], int, int]:
        r = connect_redis(redis_cluster_url)
        try:
            assert isinstance(r, RedisCluster)
            reg = Registry(r, f"{namespace}:proxima:")
            keys = await _customer_keys(r, reg.p, "ana")
            return keys, len(await reg.audit("ana")), await reg.outbox_len()
        finally:
            await r.aclose()

    keys, audited, pending = asyncio.run(check())
    assert keys, "the customer's keys are on the cluster"
    assert pending == 0
    assert audited == 3  # grant at enroll, grant at s1, revoke
    forget = proxima("customers", "forget", "ana", env=env)
    assert forget.returncode == 0, forget.stderr
    assert "not yet on proxima.consent.v1" not in forget.stderr, forget.stderr
    assert proxima("customers", "show", "ana", env=env).returncode == 1
    keys, audited, pending = asyncio.run(check())
    assert keys == []  # profile, consent and devices gone; the audit stream keeps "forget"
    assert pending == 0
    other = proxima("customers", "show", "bia", env=env)
    assert other.returncode == 0, other.stderr


# --- the stream's decision chain ----------------------------------------------------------


def _enter(at: datetime, store: str, zone: str = "entrance") -> Event:
    eid = compute_eid(KEY_ANA, 10, int(at.timestamp()))
    data = event_dict(
        observed_at=at.isoformat(),
        store_id=store,
        zone_id=zone,
        kind="zone_enter",
        subject={"type": "eddystone_eid", "id": eid.hex()},
        event_id=str(uuid.uuid4()),
    )
    return Event.model_validate(data)


async def test_the_processor_decides_an_arrival_on_a_cluster_and_forget_sweeps_every_node(
    cluster: RedisCluster, namespace: str
) -> None:
    prefix = f"{namespace}:proxima:"
    proc = EventProcessor(cluster, prefix, revisit_gap_s=4 * 3600)
    others = [f"c{i}" for i in range(40)]  # customers on every shard, so every primary
    for cid in others:
        await proc.registry.enroll(
            make_customer(customer_id=cid, identity_key=f"{len(cid):02x}" * 16),
            [Purpose.ARRIVAL_ALERTS],
        )
    await proc.registry.enroll(
        make_customer(identity_key=KEY_ANA.hex(), name="Ana Lima", visible_fields=["name"]),
        [Purpose.ARRIVAL_ALERTS, Purpose.ANALYTICS],
    )
    assert len(await _nodes_of(cluster, f"{prefix}*")) == 3  # the registry spans the cluster
    # a store whose visit-state key is on another node than the customer's shard, so that
    # forget has keys of hers to find on two nodes
    home = cluster.get_node_from_key(proc.registry.keys.customer("ana"))
    store = next(
        s
        for s in (f"s{i}" for i in range(100))
        if cluster.get_node_from_key(proc.visits.state_key("ana", s)) != home
    )

    first = _enter(T0, store)
    (decision,) = await proc.decide_batch([first])
    (alert,) = decision.alerts
    assert (alert.customer_id, alert.store_id, alert.fields) == ("ana", store, {"name": "Ana Lima"})
    assert decision.visits, "analytics consent: the visit is reported"
    await proc.mark_done([alert], [first])
    assert await proc.process(first) == []  # the same event again: a duplicate
    assert proc.stats.counts["duplicate_events"] == 1
    assert await proc.process(_enter(T0 + timedelta(minutes=5), store, zone="floor")) == []
    # a revocation takes effect at once: a new visit later gets no alert
    await proc.registry.set_consent("ana", Purpose.ARRIVAL_ALERTS, False)
    assert await proc.process(_enter(T0 + timedelta(hours=6), store)) == []

    keys = await _customer_keys(cluster, prefix, "ana")
    assert f"{prefix}visit:ana:{store}" in keys, keys
    assert len({cluster.get_node_from_key(k).name for k in keys}) >= 2  # type: ignore[union-attr]
    assert await proc.registry.forget("ana")
    assert await _customer_keys(cluster, prefix, "ana") == []
    assert await proc.registry.get("c7") is not None


# --- the notifier --------------------------------------------------------------------


@pytest.fixture
async def notifier(redis_cluster_url: str, namespace: str) -> AsyncIterator[Notifier]:
    services = ServiceSettings(redis=redis_cluster_url, namespace=namespace)
    n = Notifier(services, settings=NotifierSettings(login_attempts=3), clock=FakeUtcClock())
    n.directory.hasher = FAST_HASHER
    yield n
    await drop_prefix(redis_cluster_url, f"{namespace}:")
    await n.close()


async def test_notifier_console_claims_and_closes_an_alert_on_a_cluster(
    notifier: Notifier,
) -> None:
    assert isinstance(notifier.redis, RedisCluster)  # the service's own client
    store = "s1"
    for who in ("maria", "joao"):
        await notifier.directory.add(store, who.title(), PASSWORD, associate_id=who)
        await notifier.directory.set_on_shift(store, who, True)
    server = TestServer(notifier.console.app())
    await server.start_server()  # starts the feed hub: a pattern subscription on one node
    http = aiohttp.ClientSession(
        base_url=str(server.make_url("")), cookie_jar=aiohttp.CookieJar(unsafe=True)
    )
    try:
        async with http.post(
            "/api/session", json={"store": store, "associate": "maria", "password": PASSWORD}
        ) as res:
            body: dict[str, Any] = await res.json()
            assert res.status == 200, body
        headers = {CSRF_HEADER: body["csrf"]}
        with notifier.console.hub.listen(store) as feed:
            alert = make_alert(store_id=store)
            alert_id = str(alert.alert_id)
            assert await notifier.lifecycle.create(alert) is not None
            # published on the alert's channel, received through whichever node
            pushed = await asyncio.wait_for(feed.get(), 30)
            assert pushed["alert"]["alert_id"] == alert_id
            assert pushed["alert"]["state"] == "delivered"
            async with http.post(f"/api/alerts/{alert_id}/claim", headers=headers) as res:
                assert res.status == 200, await res.text()
            assert (await asyncio.wait_for(feed.get(), 30))["alert"]["state"] == "claimed"
            async with http.post(f"/api/alerts/{alert_id}/done", headers=headers) as res:
                assert res.status == 200, await res.text()
            assert (await asyncio.wait_for(feed.get(), 30))["alert"]["state"] == "done"
        async with http.get("/api/alerts") as res:
            listed = await res.json()
            assert res.status == 200, listed
        async with http.get("/healthz") as res:
            assert (await res.json())["status"] == "ok"
    finally:
        await http.close()
        await server.close()
    with pytest.raises(Exception, match="already done"):
        await notifier.lifecycle.claim(alert_id, store, "joao")

    acks: list[AlertAck] = []

    async def take(entries: list[Entry]) -> None:
        acks.extend(parse_model(AlertAck, f["ack"]) for _, f in entries)

    while await notifier.ack_outbox.drain_once(take, block_ms=10):
        pass
    assert [(a.associate_id, a.status) for a in acks] == [
        ("maria", AckStatus.CLAIMED),
        ("maria", AckStatus.DONE),
    ]


# --- keys, devices, counters, scratch data -------------------------------------------------


async def test_gateway_keys_device_keys_counters_and_drop_prefix_on_a_cluster(
    cluster: RedisCluster, redis_cluster_url: str, namespace: str
) -> None:
    prefix = f"{namespace}:proxima:"
    keyring = Keyring(cluster, prefix)
    record = await keyring.add("s1", "gw-door")
    assert (await keyring.get(record.kid)) == record
    assert (await keyring.revoke(record.kid)).revoked

    await Registry(cluster, prefix).enroll(make_customer(), [])
    _, public = new_device_key()
    await register_device(cluster, prefix, "ana", "d00d01", public_key=public)
    devices = open_registry(redis_cluster_url, redis_prefix=prefix)
    assert isinstance(devices, RedisDeviceRegistry)
    try:
        found = await devices.get("d00d01")
        assert found is not None
        assert (found.device_id, found.revoked) == ("d00d01", False)
        assert await Registry(cluster, prefix).customer_for_device("d00d01") == "ana"
    finally:
        await devices.aclose()

    for i in range(6):  # instances whose hashes land on different nodes
        await publish(cluster, prefix, "bridge", {"batches": i}, ttl_s=60, instance=f"host:{i}")
    counted = await read_all(cluster, prefix)
    assert sorted(int(c["batches"]) for _, c in counted.values()) == list(range(6))

    total = len([k async for k in cluster.scan_iter(f"{namespace}:*", count=10000)])
    assert total > SHARDS // 4
    assert await drop_prefix(redis_cluster_url, f"{namespace}:") == total
    assert [k async for k in cluster.scan_iter(f"{namespace}:*", count=10000)] == []


# --- the URL ------------------------------------------------------------------------------


async def test_the_launcher_check_names_a_cluster_node_behind_a_single_server_url(
    redis_cluster_nodes: list[tuple[str, int]], redis_cluster_url: str
) -> None:
    host, port = redis_cluster_nodes[0]
    with pytest.raises(ServiceUnavailable, match=r"redis\+cluster://"):
        await check_redis(f"redis://{host}:{port}/0")
    await check_redis(redis_cluster_url)
    with pytest.raises(ServiceUnavailable, match="does not answer"):
        await check_redis(f"redis+cluster://127.0.0.1:{_closed_port()}", timeout=1)


def _closed_port() -> int:
    from transport.net import free_port

    return free_port()
