"""Nothing a gateway sends, and no outage, makes the bridge hold a message for ever.

Over real Mosquitto and the embedded Kafka broker: every rejected message reaches the DLQ
(an oversized one as its size, hash and a prefix) and is acked, so a restarted bridge gets
none of them back; one gateway's poison cannot stop another store's batches; a Kafka
outage retries the same message until the broker is back, and every batch gets through."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from contracts.models import DLQ_ORIGINAL_MAX, DlqRecord, parse_model
from contracts.services import ServiceSettings
from deploy.embedded_kafka import EmbeddedKafka
from stream.bridge import Bridge
from stream.settings import StreamSettings
from tests.kit.kafka import TopicReader
from tests.stream.test_bridge import fresh
from transport.kafka import ensure_topics
from transport.mqtt import MqttClient

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@contextlib.asynccontextmanager
async def running(bridge: Bridge) -> AsyncIterator[Bridge]:
    ready = asyncio.Event()
    task = asyncio.create_task(bridge.run(ready), name="test-bridge")
    try:
        await asyncio.wait_for(ready.wait(), 20)
        yield bridge
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """Wait for a condition the bridge reaches (polled; fails naming it after ``timeout``)."""
    try:
        async with asyncio.timeout(timeout):
            while not check():  # noqa: ASYNC110 - counters of the bridge, no event to wait on
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"not reached in {timeout} s: {what}")


def _settings(**overrides: Any) -> StreamSettings:
    # Unsigned: these tests are about payloads and outages (signatures: test_bridge_signatures).
    # v1: what reaches Kafka is counted per event (v2 records: test_batches_v2).
    base: dict[str, Any] = {
        "partitions": 1,
        "require_signatures": False,
        "retry_backoff_max_s": 1,
        "bridge_events_version": "v1",
    }
    return StreamSettings(**(base | overrides))


async def test_four_bad_payloads_reach_the_dlq_and_are_all_acked(
    kafka_url: str, namespace: str
) -> None:
    services = ServiceSettings(kafka=kafka_url, namespace=namespace)
    topics = services.topics
    await ensure_topics(services.kafka_bootstrap, topics.all_kafka, 1)
    topic = topics.gateway_events("store-1", "gw-door")
    huge = b"x" * (3 * 1024 * 1024)
    bad = [
        b"this is not JSON",
        json.dumps([fresh(kind="teleport")]).encode(),  # an event of no known schema
        b"[]",
        huge,
    ]
    good = json.dumps([fresh(seq=1)]).encode()

    async with (
        TopicReader(services.kafka_bootstrap, topics.events_dlq) as dlq,
        TopicReader(services.kafka_bootstrap, topics.events) as events,
    ):
        first = Bridge(services, _settings(), client_id="poison-bridge")
        async with running(first), MqttClient(services.mqtt) as mqtt:
            for payload in [*bad, good]:
                await mqtt.publish(topic, payload, qos=1)
            records = [parse_model(DlqRecord, raw) for raw in await dlq.at_least(4)]
            await events.at_least(1)
            await until(lambda: first.counts["acked"] == 5, "the first bridge acked all five")
        reasons = [r.reason for r in records]
        assert "payload is not JSON" in reasons[0]
        assert "event 0: kind" in reasons[1]
        assert "batch is empty" in reasons[2]
        assert f"batch of {len(huge)} bytes exceeds the limit" in reasons[3]
        oversized = records[3]
        assert oversized.original_size == len(huge)
        assert oversized.original_sha256 == hashlib.sha256(huge).hexdigest()
        assert oversized.original_truncated
        assert base64.b64decode(oversized.original_b64) == huge[:DLQ_ORIGINAL_MAX]
        assert base64.b64decode(records[0].original_b64) == bad[0]
        assert first.counts["rejected"] == 4
        assert first.counts["events"] == 1

        # The same persistent session again: the broker hands back what was not acked
        # before anything new. Only the batch published now arrives.
        second = Bridge(services, _settings(), client_id="poison-bridge")
        async with running(second), MqttClient(services.mqtt) as mqtt:
            await mqtt.publish(topic, json.dumps([fresh(seq=2)]).encode(), qos=1)
            await events.at_least(2)
            await until(lambda: second.counts["acked"] >= 1, "the second bridge acked")
        assert second.counts["batches"] == 1, second.counts
        assert second.counts["rejected"] == 0, second.counts


async def test_one_gateways_oversized_batches_do_not_stop_another_stores(
    kafka_url: str, namespace: str
) -> None:
    services = ServiceSettings(kafka=kafka_url, namespace=namespace)
    topics = services.topics
    await ensure_topics(services.kafka_bootstrap, topics.all_kafka, 1)
    settings = _settings()
    # Big enough that a DLQ record holding the whole payload would exceed Kafka's limit.
    oversized = b"y" * (settings.kafka_max_request_size - 1000)
    async with (
        TopicReader(services.kafka_bootstrap, topics.events) as events,
        running(Bridge(services, settings, client_id="poison-bridge-2")) as bridge,
        MqttClient(services.mqtt) as mqtt,
    ):
        s1 = topics.gateway_events("s1", "gw-1")
        s2 = topics.gateway_events("s2", "gw-1")
        for _ in range(20):
            await mqtt.publish(s1, oversized, qos=1)
        for seq in (1, 2, 3):
            batch = [fresh(store_id="s2", gateway_id="gw-1", seq=seq)]
            await mqtt.publish(s2, json.dumps(batch).encode(), qos=1)
        got = await events.at_least(3)
        await until(lambda: bridge.counts["acked"] == 23, "every message acked")
    assert sorted(json.loads(v)["seq"] for v in got) == [1, 2, 3]
    assert bridge.counts["rejected"] == 20


async def test_a_kafka_outage_retries_the_same_batch_and_loses_none(namespace: str) -> None:
    """The broker stops with batches coming in (more than the broker's in-flight window of
    20), and comes back empty on the same port: every batch is on Kafka afterwards."""
    kafka = EmbeddedKafka(log_path=None)
    await kafka.start()
    try:
        services = ServiceSettings(kafka=kafka.url, namespace=namespace)
        topics = services.topics
        await ensure_topics(services.kafka_bootstrap, topics.all_kafka, 1)
        topic = topics.gateway_events("store-1", "gw-door")
        batches = [[fresh(seq=i)] for i in range(1, 31)]
        async with (
            running(Bridge(services, _settings(), client_id="outage-bridge")) as bridge,
            MqttClient(services.mqtt) as mqtt,
        ):
            await mqtt.publish(topic, json.dumps(batches[0]).encode(), qos=1)
            await until(lambda: bridge.counts["acked"] == 1, "the first batch through")
            await asyncio.to_thread(kafka.stop)
            for batch in batches[1:]:
                await mqtt.publish(topic, json.dumps(batch).encode(), qos=1)
            await until(lambda: bridge.counts["retries"] >= 2, "the bridge retrying")
            assert bridge.counts["acked"] == 1  # held, not skipped
            # Tansu keeps topics in memory: the new broker starts empty.
            kafka = EmbeddedKafka(port=kafka.port, log_path=None)
            await kafka.start()
            await ensure_topics(services.kafka_bootstrap, topics.all_kafka, 1)
            async with TopicReader(services.kafka_bootstrap, topics.events) as events:
                got = await events.at_least(len(batches) - 1, timeout=90)
            await until(lambda: bridge.counts["acked"] == len(batches), "every batch acked")
        assert {json.loads(v)["seq"] for v in got} == set(range(2, 31))
    finally:
        await asyncio.to_thread(kafka.stop)
