"""The bridge killed with kill -9, or stopped with SIGTERM, while batches are in flight
loses nothing: its MQTT 5 session outlives it (clean start off, session expiry) and it acks
MQTT only after Kafka, so the broker redelivers whatever the bridge had not finished.
Checked at the Kafka topic, event by event."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal

import pytest
from aiokafka import AIOKafkaConsumer

from contracts.services import ServiceSettings
from contracts.signing import sign
from stream.cli import with_keyring
from tests.conftest import Procs
from tests.stream.test_bridge import fresh
from transport.kafka import ensure_topics
from transport.mqtt import MqttClient

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

BATCHES = 300
PER_BATCH = 5


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
async def test_bridge_killed_mid_stream_loses_no_event(
    procs: Procs, proxima_env: dict[str, str], sig: signal.Signals
) -> None:
    services = ServiceSettings(
        kafka=proxima_env["PROXIMA_KAFKA"], namespace=proxima_env["PROXIMA_NAMESPACE"]
    )
    topics = services.topics
    await ensure_topics(services.kafka_bootstrap, topics.all_kafka, 1)
    key = await with_keyring(services, lambda ring: ring.add("store-1", "gw-door"))
    procs.start("bridge", "bridge")

    batches = [[fresh(seq=b * PER_BATCH + i + 1) for i in range(PER_BATCH)] for b in range(BATCHES)]
    sent = {e["event_id"] for batch in batches for e in batch}
    seen: set[str] = set()
    copies = 0
    # proxima.events.v2: one record per gateway batch, its bytes as the gateway signed them.
    consumer = AIOKafkaConsumer(
        topics.events_v2, bootstrap_servers=services.kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()

    async def drain(until: int, timeout: float, what: str) -> None:
        nonlocal copies
        try:
            async with asyncio.timeout(timeout):
                while len(seen) < until:
                    for records in (await consumer.getmany(timeout_ms=200)).values():
                        for r in records:
                            for event in json.loads(r.value or b"[]"):
                                seen.add(event["event_id"])
                                copies += 1
        except TimeoutError:
            pytest.fail(
                f"{what}: {len(seen)} of {until} events on Kafka after {timeout}s\n"
                + procs.log("bridge")[-3000:]
            )

    try:
        # Until the bridge has subscribed nobody queues for it: repeat the first batch (the
        # same event ids) until it comes through.
        async with MqttClient(services.mqtt) as mqtt:
            topic = topics.gateway_events("store-1", "gw-door")

            async def publish(batch: list[dict[str, object]]) -> None:
                payload = json.dumps(batch).encode()
                props = sign(key.kid, bytes.fromhex(key.secret), topic, payload)
                await mqtt.publish(topic, payload, user_properties=props)

            for _ in range(60):
                await publish(batches[0])
                with contextlib.suppress(pytest.fail.Exception):
                    await drain(PER_BATCH, 1, "bridge start")
                if seen:
                    break
            await drain(PER_BATCH, 5, "bridge start")

            async def publish_rest() -> None:
                for batch in batches[1:]:
                    await publish(batch)

            publisher = asyncio.create_task(publish_rest())
            await drain(PER_BATCH * 40, 40, "bridge under load")
            procs.kill("bridge", sig)
            killed_at = len(seen)
            await publisher  # the rest queue in the dead bridge's session
        assert killed_at < len(sent), "the bridge finished before it was killed; nothing tested"

        procs.start("bridge-2", "bridge")
        await drain(len(sent), 60, "after restart")
    finally:
        await consumer.stop()

    assert seen == sent
    assert copies >= len(sent)  # redelivery may duplicate; event_id dedupes downstream
