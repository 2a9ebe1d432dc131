"""The worker's Faust agent driven through ``agent.test_context()``: no Kafka broker, the
app's producer replaced by a recorder of what the worker would write, real Redis (the
agent's identity, consent and dedupe state live there)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faust
import pytest
import redis.asyncio as aioredis

from beacons.eid import compute_eid
from contracts.services import ServiceSettings
from stream.app import create_app
from stream.processor import EventProcessor
from stream.registry import CustomerProfile, Purpose, Registry
from stream.settings import StreamSettings
from tests.factories import event_dict

pytestmark = pytest.mark.integration  # Redis
KEY = bytes.fromhex("0102030405060708090a111213141516")
T0 = datetime(2026, 3, 14, 10, 0, 0, tzinfo=UTC)


@dataclass
class Recorder:
    """What the worker hands to Kafka: (topic, key, value), acknowledged at once."""

    records: list[tuple[str, bytes | None, bytes | None]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, topic: str, key: bytes | None, value: bytes | None) -> Awaitable[Any]:
        self.records.append((topic, key, value))
        self.changed.set()
        ack: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        ack.set_result(None)
        return ack

    def on(self, topic: str) -> list[dict[str, Any]]:
        return [json.loads(v) for t, _, v in self.records if t == topic and v is not None]

    async def wait_for(self, topic: str, n: int) -> list[dict[str, Any]]:
        async with asyncio.timeout(30):
            while len(self.on(topic)) < n:
                self.changed.clear()
                await self.changed.wait()
        return self.on(topic)


@dataclass
class Harness:
    app: faust.App
    services: ServiceSettings
    recorder: Recorder
    registry: Registry
    processor: EventProcessor


@pytest.fixture
async def harness(namespace: str, tmp_path: Path) -> AsyncIterator[Harness]:
    # The bootstrap address is only a string here: nothing connects to it.
    services = ServiceSettings(namespace=namespace, kafka="kafka://127.0.0.1:9")
    recorder = Recorder()
    r = aioredis.from_url(services.redis)
    processor = EventProcessor(r, services.redis_prefix)
    app = create_app(
        services,
        StreamSettings(data_dir=tmp_path, departure_check_s=3600, consent_publish_s=3600),
        raw_send=recorder.send,
        processor=processor,
    )
    app.finalize()
    registry = processor.registry
    profile = CustomerProfile(
        customer_id="ana",
        identity_key=KEY.hex(),
        rotation_exponent=10,
        name="Ana Lima",
        tier="gold",
        visible_fields=["name"],
    )
    await registry.enroll(profile, [Purpose.ARRIVAL_ALERTS])
    yield Harness(app, services, recorder, registry, processor)
    # The agent's stream asks for app.consumer (to track offsets), which builds Faust's
    # Kafka consumer thread object with an event loop of its own; it never starts here.
    consumer: Any = app._consumer
    if consumer is not None:
        consumer._thread.thread_loop.close()
    keys = [k async for k in r.scan_iter(f"{services.redis_prefix}*")]
    if keys:
        await r.delete(*keys)
    await r.aclose()


def _agent(app: faust.App) -> Any:
    (agent,) = [a for name, a in app.agents.items() if name.endswith(".decide")]
    return agent


def _ana_event(event_id: str | None = None, **overrides: Any) -> bytes:
    eid = compute_eid(KEY, 10, int(T0.timestamp()))
    data = event_dict(
        observed_at=T0.isoformat(),
        subject={"type": "eddystone_eid", "id": eid.hex()},
        event_id=event_id or str(uuid.uuid4()),
    )
    data.update(overrides)
    return json.dumps(data).encode()


async def test_bad_events_go_to_the_dlq_with_their_reason_and_good_neighbours_alert(
    harness: Harness,
) -> None:
    topics = harness.services.topics
    async with _agent(harness.app).test_context() as agent:
        await agent.put(b"\xff not json", wait=False)
        await agent.put(_ana_event(kind="geofence_enter"), wait=False)  # wrong schema family
        await agent.put(_ana_event(), wait=False)
        dlq = await harness.recorder.wait_for(topics.events_dlq, 2)
        alerts = await harness.recorder.wait_for(topics.alerts, 1)
    assert [d["source"] for d in dlq] == ["stream.worker", "stream.worker"]
    assert "invalid Event" in dlq[0]["reason"]
    assert "kind 'geofence_enter' belongs to schema" in dlq[1]["reason"]
    assert [a["customer_id"] for a in alerts] == ["ana"]
    assert alerts[0]["fields"] == {"name": "Ana Lima"}
    assert harness.processor.stats.counts["rejected"] == 2


async def _processed(harness: Harness, raw: bytes) -> None:
    """Wait until the worker has marked this event processed (its batch is done)."""
    key = f"{harness.services.redis_prefix}event:{json.loads(raw)['event_id']}"
    async with asyncio.timeout(30):
        while not await harness.processor.r.exists(key):  # noqa: ASYNC110 - set by the agent
            await asyncio.sleep(0.01)


async def test_a_repeated_event_id_is_decided_once_in_a_batch_and_after_it(
    harness: Harness,
) -> None:
    topics = harness.services.topics
    event = _ana_event(event_id=str(uuid.uuid4()))
    # An event of nobody enrolled: once it is marked processed, so is everything before it
    # (one channel, batches handled in order, marks written at the end of a batch).
    sentinels = [json.dumps(event_dict()).encode() for _ in range(2)]
    async with _agent(harness.app).test_context() as agent:
        await agent.put(event, wait=False)
        await agent.put(event, wait=False)
        await agent.put(sentinels[0], wait=False)
        await _processed(harness, sentinels[0])
        await agent.put(event, wait=False)  # after the first copies were marked processed
        await agent.put(sentinels[1], wait=False)
        await _processed(harness, sentinels[1])
    alerts = harness.recorder.on(topics.alerts)
    assert len(alerts) == 1
    assert alerts[0]["caused_by"] == [json.loads(event)["event_id"]]
    counts = harness.processor.stats.counts
    assert (counts["events"], counts["duplicate_events"], counts["unresolved"]) == (5, 2, 2)
