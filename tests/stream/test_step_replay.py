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
from unittest.mock import patch

import pytest
from aiokafka.errors import KafkaConnectionError
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError

from beacons.eid import compute_eid
from contracts.models import Event
from contracts.services import ServiceSettings
from stream.processor import EventProcessor, Step
from stream.registry import Purpose
from stream.runner import BatchRunner
from stream.visits import VisitState
from tests.factories import event_dict
from tests.kit.customers import make_customer
from tests.kit.services import redis_dropped_after
from transport.redis import connect_redis, drop_prefix

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
    # Meanwhile the v1 agent has a step of its own (another customer, the same worker): it
    # waits for the one in flight, which fails and is retried.
    bruno = _event(T0 + timedelta(seconds=1), KEY_BRUNO)
    other = asyncio.create_task(_runner(processor, v1).run([(bruno, None)], []))
    held[0].set_exception(KafkaConnectionError("broker away once"))
    await asyncio.wait_for(asyncio.gather(ana, other), 5)
    assert len(v2.arrivals("ana")) == 1, processor.stats.counts
    assert len(v1.arrivals("bruno")) == 1


@dataclass
class Holding(Kafka):
    """Kafka whose acks wait until :meth:`release`; a departure's first ack can fail."""

    hold: bool = False
    fail_departures: int = 0
    held: list[asyncio.Future[Any]] = field(default_factory=list)
    holding: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, topic: str, key: bytes | None, value: bytes | None) -> Any:
        ack: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if topic == "visits" and self.fail_departures and value and b'"departure"' in value:
            self.fail_departures -= 1
            ack.set_exception(KafkaConnectionError("broker away once"))
            return ack
        self.records.append((topic, value))
        if self.hold:
            self.held.append(ack)
            self.holding.set()
        else:
            ack.set_result(None)
        return ack

    def release(self) -> None:
        self.hold = False
        for ack in self.held:
            if not ack.done():
                ack.set_result(None)


def _moved(at: datetime, key: bytes = KEY_ANA, kind: str = "zone_enter", zone: str = "floor"):  # type: ignore[no-untyped-def]
    event = _event(at, key)
    return event.model_copy(update={"kind": kind, "zone_id": zone})


async def test_a_step_of_another_agent_waits_for_the_one_in_flight(
    processor: EventProcessor,
) -> None:
    # The v2 agent's step holds Ana's arrival, its acks pending; the v1 agent decides her
    # next event, 30 s later: the same visit (it had read no state and started another).
    v2, v1 = Holding(hold=True), Kafka()
    first = asyncio.create_task(_runner(processor, v2).run([(_event(T0), None)], []))
    await asyncio.wait_for(v2.holding.wait(), 5)
    second = asyncio.create_task(
        _runner(processor, v1).run([(_moved(T0 + timedelta(seconds=30)), None)], [])
    )
    await asyncio.sleep(0.05)
    assert not second.done()  # waiting for the step in flight
    v2.release()
    await asyncio.wait_for(asyncio.gather(first, second), 5)
    assert len(v2.arrivals() | v1.arrivals()) == 1, processor.stats.counts


async def test_the_departures_timer_waits_for_a_step_in_flight(processor: EventProcessor) -> None:
    # Ana leaves at +60 s (due to depart at +360 s); a step holds her return at +300 s and
    # Bruno at +400 s while its acks are pending. The timer must not depart her.
    kafka = Holding()
    await _runner(processor, kafka).run([(_event(T0), None)], [])
    left = _moved(T0 + timedelta(seconds=60), kind="zone_exit", zone="entrance")
    await _runner(processor, kafka).run([(left, None)], [])
    kafka.hold = True
    back = [(_event(T0 + timedelta(seconds=300)), None)]
    bruno = [(_event(T0 + timedelta(seconds=400), KEY_BRUNO), None)]
    step = asyncio.create_task(_runner(processor, kafka).run([*back, *bruno], []))
    await asyncio.wait_for(kafka.holding.wait(), 5)
    tick = asyncio.create_task(processor.tick())
    await asyncio.sleep(0.05)
    assert not tick.done()
    kafka.release()
    await asyncio.wait_for(step, 5)
    assert await asyncio.wait_for(tick, 5) == []


async def test_a_departure_kafka_refuses_is_left_for_the_timer_and_the_step_is_done(
    processor: EventProcessor,
) -> None:
    kafka = Holding()
    await _runner(processor, kafka).run([(_event(T0), None)], [])
    left = _moved(T0 + timedelta(seconds=60), kind="zone_exit", zone="entrance")
    await _runner(processor, kafka).run([(left, None)], [])
    kafka.fail_departures = 1
    bruno = _event(T0 + timedelta(seconds=400), KEY_BRUNO)
    sent = await _runner(processor, kafka).run([(bruno, None)], [])
    # Bruno's arrival is reported (the agent records it as sent), counted once, not redone.
    assert [a.customer_id for a, _ in sent] == ["bruno"]
    assert processor.stats.counts["duplicate_events"] == 0
    assert [d.customer_id for d in await processor.tick()] == ["ana"]  # still due


@pytest.mark.integration
@pytest.mark.parametrize("how", ["node_errors", "killed"])
async def test_on_a_cluster_no_event_is_marked_processed_without_its_visit_state(
    redis_cluster_url: str, namespace: str, how: str
) -> None:
    # A cluster pipeline goes to its nodes at once: with the states and the marks in one,
    # the node holding Ana's state failing (or the worker killed) let her event's mark land
    # on another node; the retry then skipped the event, her state was never written and
    # her next event started a second visit (a second arrival alert). From a review.
    cluster = connect_redis(redis_cluster_url)
    assert isinstance(cluster, RedisCluster)
    prefix = f"{namespace}:proxima:"

    def worker() -> EventProcessor:
        return EventProcessor(cluster, prefix, revisit_gap_s=4 * 3600)

    proc = worker()
    profile = make_customer(customer_id="ana", identity_key=KEY_ANA.hex(), visible_fields=["name"])
    await proc.registry.enroll(profile, [Purpose.ARRIVAL_ALERTS, Purpose.ANALYTICS])
    state_key = proc.visits.state_key("ana", "store-1")
    state_node = cluster.get_node_from_key(state_key)
    first = _event(T0)
    while cluster.get_node_from_key(proc._k("event", str(first.event_id))) == state_node:
        first = _event(T0)  # its mark on another node than her state
    original = ClusterNode.execute_pipeline
    failed = 0
    reached = asyncio.Event()

    async def faulty(self: ClusterNode, commands: list[Any]) -> bool:
        nonlocal failed
        if self.name == state_node.name and any(
            c.args[0] == "SET" and str(c.args[1]) == state_key for c in commands
        ):
            failed += 1
            reached.set()
            if how == "killed":
                await asyncio.Event().wait()  # the process dies before this node gets it
            if failed <= 20:  # longer than redis-py's own retries
                for c in commands:
                    c.result = RedisConnectionError("node away")
                return True
        return await original(self, commands)

    first_try = Kafka()
    try:
        with patch.object(ClusterNode, "execute_pipeline", faulty):
            if how == "killed":
                task = asyncio.create_task(_runner(proc, first_try).run([(first, None)], []))
                await asyncio.wait_for(reached.wait(), 5)
                await asyncio.sleep(0.1)  # the other nodes answer
                task.cancel()  # kill -9: nothing after this runs
                with pytest.raises(asyncio.CancelledError):
                    await task
            else:
                await _runner(proc, first_try).run([(first, None)], [])
        if how == "killed":
            proc = worker()  # the restarted worker replays the uncommitted step
            await _runner(proc, first_try).run([(first, None)], [])
        assert await cluster.exists(proc._k("event", str(first.event_id)))
        assert await cluster.get(state_key) is not None
        later = Kafka()
        await _runner(proc, later).run([(_moved(T0 + timedelta(minutes=5)), None)], [])
        assert len(first_try.arrivals() | later.arrivals()) == 1
    finally:
        await drop_prefix(redis_cluster_url, f"{namespace}:")
        await cluster.aclose()


async def _ana_due(processor: EventProcessor, kafka: Holding) -> None:
    """Ana arrives and leaves at +60 s; Bruno's arrival at +400 s makes her departure due,
    and Kafka refuses it once: it is left for the departures timer."""
    await _runner(processor, kafka).run([(_event(T0), None)], [])
    left = _moved(T0 + timedelta(seconds=60), kind="zone_exit", zone="entrance")
    await _runner(processor, kafka).run([(left, None)], [])
    kafka.fail_departures = 1
    await _runner(processor, kafka).run(
        [(_event(T0 + timedelta(seconds=400), KEY_BRUNO), None)], []
    )


def _ana_visits(kafka: Kafka) -> list[str]:
    return [
        v["change"]
        for v in (json.loads(raw) for t, raw in kafka.records if t == "visits" and raw)
        if v["customer_id"] == "ana"
    ]


async def test_a_step_waits_while_the_departures_timer_publishes(
    processor: EventProcessor,
) -> None:
    # The timer found Ana due and her departure is on its way to Kafka; a step holding
    # her return at +410 s waits for it to be published and settled, so the visits topic
    # reads departure, then return (a step in between had put her return first).
    kafka = Holding()
    await _ana_due(processor, kafka)
    gate, publishing = asyncio.Event(), asyncio.Event()

    async def publish(due: list[Any]) -> None:
        for visit in due:
            kafka.records.append(("visits", visit.to_json()))
        publishing.set()
        await gate.wait()

    timer = asyncio.create_task(processor.depart(publish))
    await asyncio.wait_for(publishing.wait(), 5)
    back = _moved(T0 + timedelta(seconds=410))
    step = asyncio.create_task(_runner(processor, kafka).run([(back, None)], []))
    await asyncio.sleep(0.05)
    assert not step.done()
    gate.set()
    await asyncio.wait_for(asyncio.gather(timer, step), 5)
    assert _ana_visits(kafka) == ["arrival", "departure", "zone_move"]
    assert await processor.tick() == []


async def test_settling_a_departure_never_writes_over_a_state_written_since_it_was_read(
    processor: EventProcessor,
) -> None:
    # Between the settle's read of Ana's state and its write, another writer continues her
    # visit (a worker that took her store's partition over during a rebalance). The settle
    # must not put back the closed state it read: her open signal would be lost, and with
    # it her next departure.
    kafka = Holding()
    await _ana_due(processor, kafka)
    (due,) = await processor.tick()
    r = processor.visits.r
    read = r.get
    other = EventProcessor(r, processor.p, revisit_gap_s=4 * 3600)
    continued: list[bool] = []

    async def get_then_continue(key: str) -> Any:
        raw = await read(key)
        if not continued:
            continued.append(True)
            back = _moved(T0 + timedelta(seconds=410))
            await _runner(other, kafka).run([(back, None)], [])
        return raw

    with patch.object(r, "get", get_then_continue):
        await processor.settle_departures([due])
    assert continued
    state = VisitState.load(await read(processor.visits.state_key("ana", due.store_id)))
    assert (state.departed, state.open) == (False, ["zone:floor"])
