"""The bridge over real Mosquitto and the embedded Kafka broker: good events through,
bad input parked in the DLQ with its reason, and the loop keeps running."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis.asyncio as aioredis

from contracts.models import DlqRecord, parse_model
from contracts.services import ServiceSettings
from stream.bridge import Bridge
from stream.settings import StreamSettings
from tests.factories import event_dict
from tests.kit.kafka import read_topic
from transport.kafka import ensure_topics
from transport.mqtt import MqttClient
from transport.stats import read_all

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
async def bridge(kafka_url: str, namespace: str) -> AsyncIterator[Bridge]:
    services = ServiceSettings(kafka=kafka_url, namespace=namespace)
    # Unsigned on purpose: this test is about everything but signatures (see test_bridge_signatures).
    # v1: the bridge checks every event itself (with v2 the worker does: test_batches_v2).
    settings = StreamSettings(
        partitions=1,
        bridge_max_payload=4096,
        require_signatures=False,
        stats_interval_s=0.2,
        bridge_events_version="v1",
    )
    await ensure_topics(services.kafka_bootstrap, services.topics.all_kafka, 1)
    b = Bridge(services, settings, client_id="test-bridge")
    ready = asyncio.Event()
    task = asyncio.create_task(b.run(ready))
    await asyncio.wait_for(ready.wait(), 20)
    yield b
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def fresh(**overrides: Any) -> dict[str, Any]:
    """An event observed now: the bridge parks events far from its clock."""
    return event_dict(observed_at=datetime.now(UTC).isoformat(), **overrides)


async def test_bad_input_goes_to_dlq_and_good_neighbours_get_through(bridge: Bridge) -> None:
    services = bridge.services
    topic = services.topics.gateway_events("store-1", "gw-door")
    good = [fresh(seq=1), fresh(seq=3)]
    mixed = [good[0], fresh(seq=2, kind="teleport"), good[1]]
    async with MqttClient(services.mqtt) as mqtt:
        await mqtt.publish(topic, b"\x00garbage", qos=1)
        await mqtt.publish(topic, json.dumps({"events": []}).encode(), qos=1)
        await mqtt.publish(topic, b"[" + b" " * 5000 + b"]", qos=1)
        await mqtt.publish(topic, json.dumps([fresh(store_id="store-2")]).encode(), qos=1)
        await mqtt.publish(topic, json.dumps(mixed).encode(), qos=1)

    events = await read_topic(services.kafka_bootstrap, services.topics.events, 2)
    assert sorted(json.loads(e)["seq"] for e in events) == [1, 3]

    dlq = [
        parse_model(DlqRecord, raw)
        for raw in await read_topic(services.kafka_bootstrap, services.topics.events_dlq, 5)
    ]
    reasons = [d.reason for d in dlq]
    assert any("not JSON" in r for r in reasons), reasons
    assert any("must be a JSON list" in r for r in reasons), reasons
    assert any("exceeds the limit of 4096" in r for r in reasons), reasons
    assert any("says store 'store-2'" in r for r in reasons), reasons
    assert any("event 1: kind" in r for r in reasons), reasons
    garbage = next(d for d in dlq if "not JSON" in d.reason)
    assert base64.b64decode(garbage.original_b64) == b"\x00garbage"
    assert all(d.store_id == "store-1" and d.gateway_id == "gw-door" for d in dlq)
    assert bridge.counts["rejected"] == 5
    assert bridge.counts["events"] == 2
    # ... and an operator reads the same counters from Redis (`proxima stats`).
    redis = aioredis.from_url(services.redis)
    try:
        async with asyncio.timeout(10):
            while True:
                published = await read_all(redis, services.redis_prefix)
                mine = [n for (component, _), (_, n) in published.items() if component == "bridge"]
                if mine and mine[0]["rejected"] == 5:
                    break
                await asyncio.sleep(0.1)
    finally:
        await redis.aclose()
    assert mine[0]["events"] == 2
