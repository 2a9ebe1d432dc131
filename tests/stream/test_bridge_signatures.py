"""Gateway signatures at the bridge, over real Mosquitto, Redis and the embedded Kafka broker:
forged, misplaced, revoked and unsigned batches land in the DLQ with their reason while a
good batch next to them gets through."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from contracts.models import DlqRecord, parse_model
from contracts.services import ServiceSettings
from contracts.signing import sign
from stream.bridge import Bridge
from stream.keyring import KeyRecord, Keyring
from stream.settings import StreamSettings
from tests.stream.test_bridge import _consume, fresh
from transport.kafka import ensure_topics
from transport.mqtt import MqttClient

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
async def keyring(namespace: str) -> AsyncIterator[Keyring]:
    services = ServiceSettings(namespace=namespace)
    r = aioredis.from_url(services.redis)
    yield Keyring(r, services.redis_prefix)
    await r.delete(f"{services.redis_prefix}gateway-keys")
    await r.aclose()


@pytest.fixture
async def strict_bridge(kafka_url: str, namespace: str) -> AsyncIterator[Bridge]:
    services = ServiceSettings(kafka=kafka_url, namespace=namespace)
    settings = StreamSettings(partitions=1, require_signatures=True)
    await ensure_topics(services.kafka_bootstrap, services.topics.all_kafka, 1)
    b = Bridge(services, settings, client_id="sig-bridge")
    ready = asyncio.Event()
    task = asyncio.create_task(b.run(ready))
    await asyncio.wait_for(ready.wait(), 20)
    yield b
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _props(key: KeyRecord, topic: str, payload: bytes) -> dict[str, str]:
    return sign(key.kid, bytes.fromhex(key.secret), topic, payload)


async def test_only_correctly_signed_batches_pass(strict_bridge: Bridge, keyring: Keyring) -> None:
    services = strict_bridge.services
    topic = services.topics.gateway_events("store-1", "gw-door")
    door = await keyring.add("store-1", "gw-door")
    other = await keyring.add("store-1", "gw-till")
    old = await keyring.add("store-1", "gw-door")
    await keyring.revoke(old.kid)

    def batch(seq: int) -> bytes:
        return json.dumps([fresh(seq=seq)]).encode()

    good, wrong_key, other_gw, unsigned, revoked, unknown, after = (batch(i) for i in range(1, 8))
    forged_secret = KeyRecord.model_validate(door.model_dump() | {"secret": "ab" * 32})
    unknown_key = KeyRecord.model_validate(door.model_dump() | {"kid": "gk-nobody"})
    async with MqttClient(services.mqtt) as mqtt:
        await mqtt.publish(topic, good, user_properties=_props(door, topic, good))
        await mqtt.publish(
            topic, wrong_key, user_properties=_props(forged_secret, topic, wrong_key)
        )
        await mqtt.publish(topic, other_gw, user_properties=_props(other, topic, other_gw))
        await mqtt.publish(topic, unsigned)
        await mqtt.publish(topic, revoked, user_properties=_props(old, topic, revoked))
        await mqtt.publish(topic, unknown, user_properties=_props(unknown_key, topic, unknown))
        # Signed for another payload: the signature covers the bytes, not just the key.
        await mqtt.publish(topic, after, user_properties=_props(door, topic, good))
        tail = batch(8)
        await mqtt.publish(topic, tail, user_properties=_props(door, topic, tail))

    events = await _consume(services.kafka_bootstrap, services.topics.events, 2)
    assert sorted(json.loads(e)["seq"] for e in events) == [1, 8]

    dlq = [
        parse_model(DlqRecord, raw)
        for raw in await _consume(services.kafka_bootstrap, services.topics.events_dlq, 6)
    ]
    by_payload = {base64.b64decode(d.original_b64): d.reason for d in dlq}
    assert "signature does not match" in by_payload[wrong_key]
    assert "key belongs to store-1/gw-till, not store-1/gw-door" in by_payload[other_gw]
    assert "unsigned message" in by_payload[unsigned]
    assert "revoked key" in by_payload[revoked]
    assert "unknown key id" in by_payload[unknown]
    assert "signature does not match" in by_payload[after]
    assert strict_bridge.counts["bad_signature"] == 6
    assert strict_bridge.counts["signed"] == 2
