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

from contracts.models import DlqRecord, parse_model
from contracts.services import ServiceSettings
from contracts.signing import sign
from stream.bridge import Bridge
from stream.keyring import KeyRecord, Keyring
from stream.settings import StreamSettings
from tests.kit.kafka import read_topic
from tests.kit.services import RedisNs
from tests.stream.test_bridge import fresh
from transport.kafka import ensure_topics
from transport.mqtt import MqttClient

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def keyring(redis_ns: RedisNs) -> Keyring:
    return Keyring(*redis_ns)


@pytest.fixture
async def strict_bridge(kafka_url: str, namespace: str) -> AsyncIterator[Bridge]:
    services = ServiceSettings(kafka=kafka_url, namespace=namespace)
    # v1: the events that pass are read one by one (v2 records: test_batches_v2).
    settings = StreamSettings(partitions=1, require_signatures=True, bridge_events_version="v1")
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

    events = await read_topic(services.kafka_bootstrap, services.topics.events, 2)
    assert sorted(json.loads(e)["seq"] for e in events) == [1, 8]

    dlq = [
        parse_model(DlqRecord, raw)
        for raw in await read_topic(services.kafka_bootstrap, services.topics.events_dlq, 6)
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


async def test_v2_forwards_the_batch_as_signed_so_a_consumer_can_verify_it(
    kafka_url: str, namespace: str, keyring: Keyring
) -> None:
    """proxima.events.v2: one record per batch, its bytes untouched, the MQTT topic and the
    gateway's signature in the headers; a forged batch stops at the bridge all the same."""
    from contracts.signing import GatewayKey, verify_message
    from stream.batches import BatchRecord
    from tests.kit.kafka import TopicReader

    services = ServiceSettings(kafka=kafka_url, namespace=namespace)
    await ensure_topics(services.kafka_bootstrap, services.topics.all_kafka, 1)
    settings = StreamSettings(partitions=1, require_signatures=True)
    assert settings.bridge_events_version == "v2"  # the default
    topic = services.topics.gateway_events("store-1", "gw-door")
    door = await keyring.add("store-1", "gw-door")
    # Two events and odd spacing: the record must be these bytes, not a re-serialisation.
    payload = b"[ %s ,\n%s ]" % (
        json.dumps(fresh(seq=1)).encode(),
        json.dumps(fresh(seq=2)).encode(),
    )
    forged = json.dumps([fresh(seq=3)]).encode()
    bridge = Bridge(services, settings, client_id="v2-bridge")
    ready = asyncio.Event()
    task = asyncio.create_task(bridge.run(ready))
    try:
        await asyncio.wait_for(ready.wait(), 20)
        async with (
            TopicReader(services.kafka_bootstrap, services.topics.events_v2) as records,
            MqttClient(services.mqtt) as mqtt,
        ):
            await mqtt.publish(topic, forged, user_properties=_props(door, topic, payload))
            await mqtt.publish(topic, payload, user_properties=_props(door, topic, payload))
            await records.at_least(1, 30)
            await records.until_idle(idle_s=1.0)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    (record,) = records.records
    assert record.value == payload
    assert record.key == b"store-1"
    info = BatchRecord.of(record.headers)
    assert info.mqtt_topic == topic
    secret = bytes.fromhex(door.secret)
    key = GatewayKey(door.kid, "store-1", "gw-door", secret)
    verified = verify_message(
        topic,
        record.value,
        info.properties,
        lambda _kid: key,
        store_id="store-1",
        gateway_id="gw-door",
    )
    assert verified.published_at_ms is not None
    assert bridge.counts["records_v2"] == 1
    assert bridge.counts["bad_signature"] == 1
