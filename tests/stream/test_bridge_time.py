"""Time at the bridge, over real Mosquitto, Redis and the embedded Kafka broker: events of a
gateway whose clock is far off are parked with the reason; an old signed batch replayed is
refused by its signed publish time (and by the gateway's high-water mark), while a tool's
replay of a trace recorded months ago still goes through. Gateway status messages are
signature-checked like batches."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis

from contracts.models import DlqRecord, GatewayState, GatewayStatus, parse_model
from contracts.services import ServiceSettings
from contracts.signing import KID_PROPERTY, SIG_PROPERTY, sign, signature
from stream.bridge import Bridge
from stream.keyring import REPLAY_LABEL, KeyRecord, Keyring
from stream.settings import StreamSettings
from tests.factories import event_dict
from tests.kit.kafka import read_topic
from tests.stream.test_bridge_poison import until
from tests.stream.test_bridge_signatures import keyring  # noqa: F401 - a fixture
from transport.kafka import ensure_topics
from transport.mqtt import MqttClient
from transport.redis import drop_prefix

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
DAY = timedelta(days=1)


@contextlib.asynccontextmanager
async def bridge_with(namespace: str, kafka_url: str, **settings: Any) -> AsyncIterator[Bridge]:
    services = ServiceSettings(kafka=kafka_url, namespace=namespace)
    await ensure_topics(services.kafka_bootstrap, services.topics.all_kafka, 1)
    # v1: the bridge holds each event to its clock (with v2 the worker does: test_batches_v2).
    settings.setdefault("bridge_events_version", "v1")
    b = Bridge(services, StreamSettings(partitions=1, **settings), client_id="time-bridge")
    ready = asyncio.Event()
    task = asyncio.create_task(b.run(ready), name="time-bridge")
    try:
        await asyncio.wait_for(ready.wait(), 20)
        yield b
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def bridge(namespace: str, kafka_url: str) -> AsyncIterator[Bridge]:
    async with bridge_with(namespace, kafka_url) as b:
        yield b


def at(when: datetime, seq: int, **overrides: Any) -> dict[str, Any]:
    return event_dict(observed_at=when.isoformat(), seq=seq, **overrides)


def signed(key: KeyRecord, topic: str, batch: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    payload = json.dumps(batch).encode()
    return {
        "payload": payload,
        "user_properties": sign(key.kid, bytes.fromhex(key.secret), topic, payload, **kw),
    }


async def _dlq(services: ServiceSettings, n: int) -> list[DlqRecord]:
    raws = await read_topic(services.kafka_bootstrap, services.topics.events_dlq, n)
    return [parse_model(DlqRecord, raw) for raw in raws]


async def _seqs(services: ServiceSettings, n: int) -> list[int]:
    raws = await read_topic(services.kafka_bootstrap, services.topics.events, n)
    return sorted(json.loads(raw)["seq"] for raw in raws)


async def test_events_of_a_gateway_whose_clock_is_far_off_are_parked(
    bridge: Bridge,
    keyring: Keyring,  # noqa: F811
) -> None:
    services = bridge.services
    topic = services.topics.gateway_events("store-1", "gw-door")
    door = await keyring.add("store-1", "gw-door")
    now = datetime.now(UTC)
    batch = [
        at(now - 9 * DAY, 1),  # an RTC reset, or a 9-day-old batch: decided again after
        at(now, 2),  # the dedupe marks expired (the probe)
        at(now + timedelta(hours=1), 3),
        at(now - timedelta(minutes=5), 4),
    ]
    async with MqttClient(services.mqtt) as mqtt:
        await mqtt.publish(topic, **signed(door, topic, batch))
    assert await _seqs(services, 2) == [2, 4]
    dlq = {
        json.loads(base64.b64decode(d.original_b64))["seq"]: d.reason
        for d in await _dlq(services, 2)
    }
    assert "observed at" in dlq[1]
    assert "s before the bridge's clock, more than PROXIMA_STREAM_EVENT_MAX_AGE_S" in dlq[1]
    assert "s ahead of the bridge's clock" in dlq[3]
    assert "the gateway's clock is far off" in dlq[3]
    assert bridge.counts["clock_off"] == 2


async def test_an_old_signed_batch_replayed_is_refused_by_its_signed_time(
    bridge: Bridge,
    keyring: Keyring,  # noqa: F811
) -> None:
    """Even a tool's key, whose events may be of any date, cannot replay an old batch."""
    services = bridge.services
    topic = services.topics.gateway_events("s1", "gw-door")
    tool = await keyring.labelled("s1", "gw-door", REPLAY_LABEL)
    recorded = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)  # a trace's time, months ago
    now = datetime.now(UTC).timestamp()
    old = signed(tool, topic, [at(recorded, 1, store_id="s1")], published_at=now - 9 * 86400)
    latest = signed(tool, topic, [at(recorded, 2, store_id="s1")], published_at=now)
    earlier = signed(tool, topic, [at(recorded, 3, store_id="s1")], published_at=now - 3600)
    within = signed(tool, topic, [at(recorded, 4, store_id="s1")], published_at=now - 60)
    async with MqttClient(services.mqtt) as mqtt:
        for message in (old, latest):
            await mqtt.publish(topic, **message)
        await until(lambda: bridge.counts["acked"] == 2, "two batches handled")
        # Published an hour before the latest batch of its gateway: a replay. A minute
        # before is a batch that was overtaken (several bridges, a retry), and goes through.
        for message in (earlier, within):
            await mqtt.publish(topic, **message)
    assert await _seqs(services, 2) == [2, 4]
    dlq = {
        json.loads(base64.b64decode(d.original_b64))[0]["seq"]: d.reason
        for d in await _dlq(services, 2)
    }
    assert "batch published at" in dlq[1]
    assert "s before the bridge's clock" in dlq[1]
    assert "replayed batch" in dlq[3]
    assert "PROXIMA_STREAM_BATCH_REORDER_S=600 s before this gateway's latest batch" in dlq[3]
    assert bridge.counts["replayed"] == 1


async def test_v1_signatures_pass_unless_signed_time_is_required(
    namespace: str,
    kafka_url: str,
    keyring: Keyring,  # noqa: F811
) -> None:
    """A gateway of the version before signed times keeps working until the operator
    requires them."""
    services = ServiceSettings(kafka=kafka_url, namespace=namespace)
    topic = services.topics.gateway_events("store-1", "gw-door")
    door = await keyring.add("store-1", "gw-door")

    def v1(seq: int) -> dict[str, Any]:
        payload = json.dumps([at(datetime.now(UTC), seq)]).encode()
        sig = signature(bytes.fromhex(door.secret), topic, payload)
        return {"payload": payload, "user_properties": {KID_PROPERTY: door.kid, SIG_PROPERTY: sig}}

    async with bridge_with(namespace, kafka_url) as lenient, MqttClient(services.mqtt) as mqtt:
        await mqtt.publish(topic, **v1(1))
        await until(lambda: lenient.counts["acked"] == 1, "the v1 batch handled")
    assert lenient.counts["signed_v1"] == 1
    async with (
        bridge_with(namespace, kafka_url, require_signed_time=True) as strict,
        MqttClient(services.mqtt) as mqtt,
    ):
        await mqtt.publish(topic, **v1(2))
        await until(lambda: strict.counts["acked"] == 1, "the v1 batch handled")
    assert await _seqs(services, 1) == [1]
    (record,) = await _dlq(services, 1)
    assert "v1 signature (no signed publish time), refused" in record.reason


async def test_gateway_status_is_signature_checked(
    bridge: Bridge,
    keyring: Keyring,  # noqa: F811
) -> None:
    services = bridge.services
    door = await keyring.add("store-1", "gw-door")
    till = await keyring.add("store-1", "gw-till")
    topic = services.topics.gateway_status("store-1", "gw-door")

    def status(state: GatewayState) -> bytes:
        model = GatewayStatus(
            store_id="store-1", gateway_id="gw-door", state=state, at=datetime.now(UTC)
        )
        return model.model_dump_json(by_alias=True).encode()

    good, forged, unsigned = (
        status(s) for s in (GatewayState.ONLINE, GatewayState.DEGRADED, GatewayState.OFFLINE)
    )
    secret = bytes.fromhex(door.secret)
    async with MqttClient(services.mqtt) as mqtt:
        await mqtt.publish(topic, good, user_properties=sign(door.kid, secret, topic, good))
        await until(lambda: bridge.counts["acked"] == 1, "the signed status handled")
        # another gateway's key, and no signature at all: neither may write this status
        props = sign(till.kid, bytes.fromhex(till.secret), topic, forged)
        await mqtt.publish(topic, forged, user_properties=props)
        await mqtt.publish(topic, unsigned)
        await until(lambda: bridge.counts["acked"] == 3, "three statuses handled")
    reasons = sorted(d.reason for d in await _dlq(services, 2))
    assert "gateway status: gateway signature: key belongs to store-1/gw-till" in reasons[0]
    assert "gateway status: gateway signature: unsigned message" in reasons[1]
    assert bridge.counts["status_signed"] == 1
    assert bridge.counts["status_bad_signature"] == 2
    r = aioredis.from_url(services.redis)
    try:
        recorded = await r.hget(f"{services.redis_prefix}gateways", "store-1/gw-door")
    finally:
        await drop_prefix(services.redis, services.redis_prefix)
        await r.aclose()
    assert recorded is not None
    assert parse_model(GatewayStatus, recorded).state is GatewayState.ONLINE
