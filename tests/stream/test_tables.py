"""The worker's dedupe table over real Tansu, Redis and Faust: the changelog is created by
the worker (compacted, with the events topic's partition count), and a worker restarted
in a fresh process reads the table back and keeps a replayed event silent after Redis has
lost its dedupe key."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from beacons.eid import compute_eid
from contracts.services import ServiceSettings
from stream.registry import Purpose, Registry
from stream.settings import StreamSettings
from stream.tables import changelog_topics, ensure_changelogs
from tests.conftest import Procs
from tests.factories import event_dict
from tests.kit.customers import make_customer
from tests.kit.kafka import TopicReader, read_topic
from transport.kafka import TopicShape, describe_topic, ensure_topics, make_producer
from transport.redis import drop_prefix

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

KEY = bytes.fromhex("0102030405060708090a111213141516")
T0 = datetime(2026, 3, 14, 10, 0, 0, tzinfo=UTC)
PARTITIONS = 2


@dataclass
class Env:
    services: ServiceSettings
    redis: aioredis.Redis
    producer: AIOKafkaProducer

    async def send(self, raw: bytes) -> None:
        await (await self.producer.send(self.services.topics.events, key=b"store-1", value=raw))

    async def processed(self, raw: bytes, procs: Procs, worker: str) -> None:
        """Wait until the worker has marked this event processed."""
        key = f"{self.services.redis_prefix}event:{json.loads(raw)['event_id']}"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 120
        while not await self.redis.exists(key):
            if loop.time() > deadline:
                pytest.fail(f"event not processed\n{procs.log(worker)[-3000:]}")
            await asyncio.sleep(0.1)


@pytest.fixture
async def env(proxima_env: dict[str, str]) -> AsyncIterator[Env]:
    services = ServiceSettings(
        kafka=proxima_env["PROXIMA_KAFKA"], namespace=proxima_env["PROXIMA_NAMESPACE"]
    )
    # Only the contract topics: the worker creates its tables' changelogs itself.
    await ensure_topics(services.kafka_bootstrap, services.topics.all_kafka, PARTITIONS)
    redis = aioredis.from_url(services.redis)
    await Registry(redis, services.redis_prefix).enroll(
        make_customer(identity_key=KEY.hex(), name="Ana Lima", visible_fields=["name"]),
        [Purpose.ARRIVAL_ALERTS],
    )
    producer = make_producer(services.kafka_bootstrap, idempotent=False, client_id="test")
    await producer.start()
    try:
        yield Env(services, redis, producer)
    finally:
        await producer.stop()
        await drop_prefix(services.redis, services.redis_prefix)
        await redis.aclose()


async def _alerts(services: ServiceSettings) -> list[dict[str, str]]:
    values = await read_topic(services.kafka_bootstrap, services.topics.alerts, idle_s=0.5)
    return [json.loads(v or b"{}") for v in values]


async def _changelog_entries(services: ServiceSettings, topic: str, want: int) -> list[str]:
    """The keys on the changelog, once there are ``want`` of them."""
    async with TopicReader(services.kafka_bootstrap, topic) as reader:
        await reader.at_least(want, timeout=20)
    return [json.loads(r.key or b"null") for r in reader.records]


@pytest.mark.parametrize("store_url", ["memory://", "rocksdb://"])
async def test_a_restarted_worker_reads_the_dedupe_table_back_and_keeps_a_replay_silent(
    env: Env, procs: Procs, store_url: str
) -> None:
    services = env.services
    procs.env["PROXIMA_STREAM_STORE_URL"] = store_url
    eid = compute_eid(KEY, 10, int(T0.timestamp()))
    arrival = json.dumps(
        event_dict(
            observed_at=T0.isoformat(),
            subject={"type": "eddystone_eid", "id": eid.hex()},
            event_id=str(uuid.uuid4()),
        )
    ).encode()
    procs.start("worker", "stream", "worker")
    await env.send(arrival)
    await env.processed(arrival, procs, "worker")
    (alert,) = await _alerts(services)
    (changelog,) = changelog_topics(services, StreamSettings())
    dedupe_key = f"ana:store-1:{alert['visit_id']}:arrival"
    assert await _changelog_entries(services, changelog, 1) == [dedupe_key]
    procs.kill("worker", signal.SIGKILL)

    # Redis loses what says the event was processed and its alert sent; the visit state
    # stays, so the replay is the visit's first event again and would alert again.
    prefix = services.redis_prefix
    alerted = f"{prefix}alerted:{dedupe_key}"
    assert await env.redis.get(alerted) == f"sent:{alert['alert_id']}".encode()
    await env.redis.delete(alerted, f"{prefix}event:{json.loads(arrival)['event_id']}")

    procs.start("worker-2", "stream", "worker")
    await env.send(arrival)  # the replay
    sentinel = json.dumps(event_dict()).encode()  # nobody's: processed after the replay
    await env.send(sentinel)
    await env.processed(sentinel, procs, "worker-2")
    assert [a["alert_id"] for a in await _alerts(services)] == [alert["alert_id"]]
    assert not await env.redis.exists(alerted)  # the table answered, Redis was not asked


async def test_the_worker_creates_its_changelog_compacted_like_the_events_topic(
    env: Env, procs: Procs
) -> None:
    procs.start("worker", "stream", "worker")
    sentinel = json.dumps(event_dict()).encode()
    await env.send(sentinel)
    await env.processed(sentinel, procs, "worker")  # the worker is up: the topic exists
    (changelog,) = changelog_topics(env.services, StreamSettings())
    admin = AIOKafkaAdminClient(bootstrap_servers=env.services.kafka_bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([changelog])
        (resp,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, changelog)]
        )
    finally:
        await admin.close()
    assert len(described["partitions"]) == PARTITIONS
    assert {e[0]: e[1] for e in resp.resources[0][4]}.get("cleanup.policy") == "compact"


# Tansu accepts a replication factor above its one broker and reports it (each partition
# lists its one node that many times), so a changelog's replication can be checked here.
EVENTS_SHAPE = TopicShape(partitions=3, replication=2)


async def _events_topic_shaped(proxima_env: dict[str, str]) -> ServiceSettings:
    """A namespace whose events topic already exists, shaped unlike the defaults."""
    services = ServiceSettings(
        kafka=proxima_env["PROXIMA_KAFKA"], namespace=proxima_env["PROXIMA_NAMESPACE"]
    )
    bootstrap = services.kafka_bootstrap
    await ensure_topics(
        bootstrap, (services.topics.events,), EVENTS_SHAPE.partitions, EVENTS_SHAPE.replication
    )
    assert await describe_topic(bootstrap, services.topics.events) == EVENTS_SHAPE
    return services


async def test_the_worker_creates_a_changelog_with_the_events_topics_partitions_and_replicas(
    proxima_env: dict[str, str],
) -> None:
    services = await _events_topic_shaped(proxima_env)
    settings = StreamSettings(partitions=4)
    (changelog,) = await ensure_changelogs(services, settings)
    assert await describe_topic(services.kafka_bootstrap, changelog) == EVENTS_SHAPE


async def test_topics_ensure_shapes_a_new_changelog_like_the_existing_events_topic(
    proxima_env: dict[str, str], procs: Procs
) -> None:
    """An upgrade: the events topic was created before the tables existed, with another
    partition count than the one ``--partitions`` names now."""
    services = await _events_topic_shaped(proxima_env)
    printed = procs.run("topics", "topics", "ensure", "--partitions", "2")
    (changelog,) = changelog_topics(services, StreamSettings())
    assert await describe_topic(services.kafka_bootstrap, changelog) == EVENTS_SHAPE
    assert f"{changelog} (3 partitions, replication 2)" in printed
    assert f"{services.topics.events} (3 partitions, replication 2)" in printed
    assert f"{services.topics.alerts} (2 partitions, replication 1)" in printed
