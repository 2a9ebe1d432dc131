"""A Redis restart stops neither the bridge nor the worker. Each test runs a Redis server of
its own (with AOF, as README asks: the keys it holds survive the restart), stops it under
load and starts it again on the same port; real Mosquitto, Tansu and Faust."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

import pytest

from beacons.eid import compute_eid
from contracts.models import Event
from contracts.services import ServiceSettings
from contracts.signing import sign
from stream.bridge import Bridge
from stream.keyring import Keyring
from stream.registry import Purpose, Registry
from stream.settings import StreamSettings
from tests.conftest import Procs
from tests.kit.customers import make_customer
from tests.kit.kafka import TopicReader
from tests.redis_server import RedisServer
from tests.stream.test_bridge import fresh
from tests.stream.test_bridge_poison import running, until
from transport.kafka import ensure_topics, make_producer
from transport.mqtt import MqttClient
from transport.redis import connect_redis

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
KEY = bytes.fromhex("0102030405060708090a111213141516")


async def test_the_bridge_holds_its_batches_while_redis_is_away(
    kafka_url: str, namespace: str, redis_server: RedisServer
) -> None:
    """Redis away past the key cache: the batch in hand is retried, not skipped, and none of
    the batches behind it (more than the broker's in-flight window) is lost."""
    services = ServiceSettings(kafka=kafka_url, namespace=namespace, redis=redis_server.url)
    topics = services.topics
    await ensure_topics(services.kafka_bootstrap, topics.all_kafka, 1)
    r = connect_redis(services.redis)
    try:
        key = await Keyring(r, services.redis_prefix).add("store-1", "gw-door")
    finally:
        await r.aclose()
    topic = topics.gateway_events("store-1", "gw-door")
    secret = bytes.fromhex(key.secret)
    settings = StreamSettings(partitions=1, key_cache_ttl_s=0.001, retry_backoff_max_s=0.5)

    async def publish(mqtt: MqttClient, seq: int) -> None:
        payload = json.dumps([fresh(seq=seq)]).encode()
        await mqtt.publish(topic, payload, user_properties=sign(key.kid, secret, topic, payload))

    async with (
        TopicReader(services.kafka_bootstrap, topics.events_v2) as batches,
        running(Bridge(services, settings, client_id="redis-bridge")) as bridge,
        MqttClient(services.mqtt) as mqtt,
    ):
        await publish(mqtt, 1)
        await until(lambda: bridge.counts["acked"] == 1, "the first batch through")
        await asyncio.to_thread(redis_server.stop)
        for seq in range(2, 31):
            await publish(mqtt, seq)
        await until(lambda: bridge.counts["retries"] >= 2, "the bridge retrying")
        assert bridge.counts["acked"] == 1  # held, not skipped
        await asyncio.to_thread(redis_server.start)
        got = await batches.at_least(30)  # one record per batch (proxima.events.v2)
        await until(lambda: bridge.counts["acked"] == 30, "every batch acked")
    assert sorted(e["seq"] for v in got for e in json.loads(v)) == list(range(1, 31))
    assert bridge.counts["bad_signature"] == 0


async def test_the_worker_keeps_running_through_a_redis_restart(
    procs: Procs, proxima_env: dict[str, str], redis_server: RedisServer
) -> None:
    """The departures timer meets Redis away (it ended the worker: exit 1); once Redis is
    back the worker decides new events."""
    procs.env.update(PROXIMA_REDIS=redis_server.url, PROXIMA_STREAM_DEPARTURE_CHECK_S="0.2")
    services = ServiceSettings(
        kafka=proxima_env["PROXIMA_KAFKA"],
        namespace=proxima_env["PROXIMA_NAMESPACE"],
        redis=redis_server.url,
    )
    await ensure_topics(services.kafka_bootstrap, services.topics.all_kafka, 4)
    worker = procs.start("worker", "stream", "worker")
    producer = make_producer(services.kafka_bootstrap, idempotent=False, client_id="test")
    await producer.start()
    r = connect_redis(services.redis)

    # A consenting customer: the worker watches the departures of stores it saw her in.
    await Registry(r, services.redis_prefix).enroll(
        make_customer(identity_key=KEY.hex()),
        [Purpose.ARRIVAL_ALERTS],
    )

    async def decide_one(timeout: float) -> None:
        now = datetime.now(UTC)
        eid = compute_eid(KEY, 10, int(now.timestamp())).hex()
        event = Event.model_validate(
            fresh(event_id=str(uuid.uuid4()), subject={"type": "eddystone_eid", "id": eid})
        )
        await producer.send_and_wait(services.topics.events, key=b"store-1", value=event.to_json())
        mark = f"{services.redis_prefix}event:{event.event_id}"
        try:
            async with asyncio.timeout(timeout):
                while not await r.exists(mark):  # noqa: ASYNC110 - state in Redis
                    await asyncio.sleep(0.1)
        except TimeoutError:
            pytest.fail(f"event not decided in {timeout} s\n{procs.log('worker')[-3000:]}")

    try:
        await decide_one(120)  # the worker has joined, and now watches store-1's departures
        await asyncio.to_thread(redis_server.stop)
        await until(
            lambda: "timer departures failed" in procs.log("worker") or worker.poll() is not None,
            "the departures timer meeting Redis away",
        )
        assert worker.poll() is None, procs.log("worker")[-3000:]
        await r.aclose()
        await asyncio.to_thread(redis_server.start)
        r = connect_redis(services.redis)
        await decide_one(60)
        assert worker.poll() is None
        assert "timer departures failed" in procs.log("worker")
    finally:
        await producer.stop()
        await r.aclose()
