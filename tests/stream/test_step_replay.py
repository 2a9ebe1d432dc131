"""A step that runs again decides as it did the first time, against real Redis.

The worker retries a failed step whole (Kafka refusing, Redis away) and a restarted worker
replays every step whose events were not marked processed. Nothing of a try may reach
Redis before its output is on Kafka but its dedupe claims (stream.processor.Step): a visit
state written early had made an earlier visit's event in the same step a late straggler on
the replay, and that visit's arrival alert was never sent. And two agents (v1 and v2
records) decide through one processor: a failed try releases its own claims, not the other
agent's. (Found by a review of the worker, 2026-12-04; the first two tests failed before.)
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError

from beacons.eid import compute_eid
from contracts.models import Event
from contracts.services import ServiceSettings
from stream.processor import EventProcessor, Step
from stream.registry import Purpose
from stream.runner import BatchRunner
from tests.factories import event_dict
from tests.kit.customers import make_customer
from tests.kit.services import redis_dropped_after

KEY_ANA = bytes.fromhex("0102030405060708090a111213141516")
KEY_BRUNO = bytes.fromhex("11111111111111111111111111111111")
T0 = datetime(2026, 3, 14, 10, 0, 0, tzinfo=UTC)
LATER = T0 + timedelta(hours=4, minutes=5)  # more than revisit_gap away: a new visit


@pytest.fixture
async def processor(namespace: str) -> AsyncIterator[EventProcessor]:
    services = ServiceSettings(namespace=namespace)
    async with redis_dropped_after(services) as r:
        proc = EventProcessor(r, services.redis_prefix, revisit_gap_s=4 * 3600)
        for cid, key in (("ana", KEY_ANA), ("bruno", KEY_BRUNO)):
            profile = make_customer(
                customer_id=cid, identity_key=key.hex(), visible_fields=["name"]
            )
            await proc.registry.enroll(profile, [Purpose.ARRIVAL_ALERTS, Purpose.ANALYTICS])
        yield proc


def _event(at: datetime, key: bytes = KEY_ANA) -> Event:
    eid = compute_eid(key, 10, int(at.timestamp()))
    data = event_dict(
        observed_at=at.isoformat(),
        subject={"type": "eddystone_eid", "id": eid.hex()},
        event_id=str(uuid.uuid4()),
    )
    return Event.model_validate(data)


@dataclass
class Kafka:
    """What reaches Kafka; the first ``refuse`` alerts' acks fail, as with a broker away."""

    records: list[tuple[str, bytes | None]] = field(default_factory=list)
    refuse: int = 0

    async def send(self, topic: str, key: bytes | None, value: bytes | None) -> Any:
        ack: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if topic == "alerts" and self.refuse:
            self.refuse -= 1
            ack.set_exception(KafkaConnectionError("broker away once"))
        else:
            self.records.append((topic, value))
            ack.set_result(None)
        return ack

    def arrivals(self, customer: str = "ana") -> set[str]:
        """The visit ids of the customer's arrival alerts on Kafka."""
        return {
            a["visit_id"]
            for a in (json.loads(v) for t, v in self.records if t == "alerts" and v)
            if a["kind"] == "arrival" and a["customer_id"] == customer
        }


def _runner(proc: EventProcessor, kafka: Kafka) -> BatchRunner[None]:
    async def no_wait(_s: float) -> None:
        return None

    return BatchRunner[None](
        proc, kafka.send, alerts="alerts", visits="visits", dlq="dlq",
        original=lambda e, _s: e.to_json(), backoff_s=0.01, backoff_max_s=0.01, sleep=no_wait,
    )  # fmt: skip


async def test_a_retried_step_alerts_both_visits_it_holds(processor: EventProcessor) -> None:
    # Ana's two visits, 4 h apart, in one step (a backlog); Kafka refuses an alert once.
    kafka = Kafka(refuse=1)
    await _runner(processor, kafka).run([(_event(T0), None), (_event(LATER), None)], [])
    assert len(kafka.arrivals()) == 2, processor.stats.counts
    assert processor.stats.counts["batch_retries"] == 1
    assert processor.stats.counts["late_events"] == 0


async def test_a_restarted_worker_replaying_a_step_alerts_both_visits(
    processor: EventProcessor,
) -> None:
    first, second = _event(T0), _event(LATER)
    # The dead worker decided the step and claimed its alerts, then died before Kafka's acks.
    await processor.decide_batch([first, second], Step())
    restarted = EventProcessor(processor.r, processor.p, revisit_gap_s=4 * 3600)
    kafka = Kafka()
    await _runner(restarted, kafka).run([(first, None), (second, None)], [])
    assert len(kafka.arrivals()) == 2, restarted.stats.counts


async def test_a_step_writes_its_visits_only_with_its_marks(processor: EventProcessor) -> None:
    first = _event(T0)
    step = Step()
    (decision,) = await processor.decide_batch([first], step)
    key = processor.visits.state_key("ana", first.store_id)
    assert await processor.r.get(key) is None  # nothing yet: its output is not on Kafka
    await processor.mark_done(decision.alerts, [first], step)
    assert await processor.r.get(key) is not None
    assert await processor.r.exists(processor._k("event", str(first.event_id)))


async def test_a_failed_try_of_one_agent_keeps_the_other_agents_claims(
    processor: EventProcessor,
) -> None:
    held: list[asyncio.Future[Any]] = []
    holding = asyncio.Event()

    class Held(Kafka):
        """The v2 agent's producer: its first alert's ack is held, then refused."""

        async def send(self, topic: str, key: bytes | None, value: bytes | None) -> Any:
            if topic == "alerts" and not held:
                ack: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
                held.append(ack)
                holding.set()
                return ack
            return await super().send(topic, key, value)

    v2, v1 = Held(), Kafka()
    ana = asyncio.create_task(_runner(processor, v2).run([(_event(T0), None)], []))
    await asyncio.wait_for(holding.wait(), 5)
    # Meanwhile the v1 agent decides a step of its own (another customer, the same worker).
    bruno = _event(T0 + timedelta(seconds=1), KEY_BRUNO)
    await _runner(processor, v1).run([(bruno, None)], [])
    held[0].set_exception(KafkaConnectionError("broker away once"))
    await asyncio.wait_for(ana, 5)
    assert len(v2.arrivals("ana")) == 1, processor.stats.counts
    assert len(v1.arrivals("bruno")) == 1
