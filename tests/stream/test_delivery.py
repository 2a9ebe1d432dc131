"""stream.delivery: the worker's Kafka consumer hands records over without tasks when it
can, waits as Faust does when it cannot, and never polls longer than its bound.

The unit tests drive a real :class:`ProximaConsumer` built by an unstarted Faust app (no
broker); the integration test runs ``proxima stream worker`` with a stream buffer so
small that the hand-off waits and Faust pauses and resumes the partition all the time."""

from __future__ import annotations

import asyncio
import inspect
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import faust
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer

from beacons.eid import compute_eid
from contracts.models import Event, EventKind, Subject, SubjectType
from contracts.services import ServiceSettings
from stream.delivery import ProximaConsumer, continued, use_proxima_consumer
from stream.registry import CustomerProfile, Purpose, Registry
from tests.conftest import Procs
from transport.kafka import ensure_topics, make_producer
from transport.redis import drop_prefix


@pytest.fixture
async def consumer() -> AsyncIterator[ProximaConsumer]:
    app = faust.App(
        f"test-delivery-{uuid.uuid4().hex[:8]}",
        broker="kafka://127.0.0.1:9",  # never connected: the consumer is not started
        web_enabled=False,
        autodiscover=False,
    )
    use_proxima_consumer(app, poll_s=0.05)
    built = app.consumer
    assert isinstance(built, ProximaConsumer)
    try:
        yield built
    finally:
        built._thread.thread_loop.close()  # made by the consumer thread, which never ran


async def test_a_hand_off_that_does_not_wait_runs_in_the_callers_task(
    consumer: ProximaConsumer,
) -> None:
    ran_in: list[asyncio.Task[Any] | None] = []

    async def hand_off() -> str:
        ran_in.append(asyncio.current_task())
        return "queued"

    head, suspended = hand_off(), asyncio.Event().wait()
    got = await consumer.wait_first(head, suspended)  # type: ignore[arg-type]
    assert ran_in == [asyncio.current_task()]
    assert (got.done, got.results, got.stopped) == ([head], ["queued"], False)
    # the waitable that lost was never started, and is closed (no "never awaited" warning)
    assert inspect.getcoroutinestate(suspended) == inspect.CORO_CLOSED


async def test_a_hand_off_that_waits_is_finished_and_its_result_returned(
    consumer: ProximaConsumer,
) -> None:
    room = asyncio.Event()
    steps: list[str] = []

    async def hand_off() -> str:
        steps.append("queue full")
        await room.wait()
        steps.append("queued")
        return "queued"

    head = hand_off()
    waiting = asyncio.ensure_future(consumer.wait_first(head, asyncio.Event().wait()))  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    assert steps == ["queue full"]
    assert not waiting.done()
    room.set()
    got = await waiting
    assert steps == ["queue full", "queued"]
    assert (got.done, got.results, got.stopped) == ([head], ["queued"], False)


async def test_a_waiting_hand_off_is_abandoned_when_flow_is_suspended(
    consumer: ProximaConsumer,
) -> None:
    suspend_flow = asyncio.Event()
    cancelled = asyncio.Event()

    async def hand_off() -> None:
        try:
            await asyncio.Event().wait()  # the stream's queue never gets room
        except asyncio.CancelledError:
            cancelled.set()
            raise

    waiting = asyncio.ensure_future(consumer.wait_first(hand_off(), suspend_flow))
    await asyncio.sleep(0.01)
    suspend_flow.set()  # a rebalance: Faust's drain loop must not stay blocked
    got = await asyncio.wait_for(waiting, 5)
    assert got.done == [suspend_flow]
    assert not got.stopped
    await asyncio.wait_for(cancelled.wait(), 5)  # the blocked hand-off saw its cancellation


async def test_an_error_of_the_hand_off_is_raised_whether_it_waited_or_not(
    consumer: ProximaConsumer,
) -> None:
    async def at_once() -> None:
        raise ValueError("undecodable")

    other = asyncio.Event().wait()
    with pytest.raises(ValueError, match="undecodable"):
        await consumer.wait_first(at_once(), other)  # type: ignore[arg-type]
    assert inspect.getcoroutinestate(other) == inspect.CORO_CLOSED

    async def after_a_wait() -> None:
        await asyncio.sleep(0)
        raise ValueError("later")

    with pytest.raises(ValueError, match="later"):
        await consumer.wait_first(after_a_wait(), asyncio.Event().wait())  # type: ignore[arg-type]


async def test_a_stopped_consumer_reports_stopped_as_mode_does(
    consumer: ProximaConsumer,
) -> None:
    async def hand_off() -> str:
        return "queued"

    consumer._stopped.set()
    got = await consumer.wait_first(hand_off(), asyncio.Event().wait())  # type: ignore[arg-type]
    assert (got.done, got.results, got.stopped) == ([], [], True)


async def test_waiting_for_events_only_is_modes_wait_first(consumer: ProximaConsumer) -> None:
    first, second = asyncio.Event(), asyncio.Event()
    second.set()
    got = await consumer.wait_first(first, second)
    assert got.done == [second]
    assert not got.stopped


async def test_continued_passes_results_errors_and_cancellation_through() -> None:
    loop = asyncio.get_running_loop()

    async def two_waits(a: asyncio.Future[int], b: asyncio.Future[int]) -> int:
        return await a + await b

    a, b = loop.create_future(), loop.create_future()
    coro = two_waits(a, b)
    signal = coro.send(None)
    assert signal is a  # its first step waits for a
    task = asyncio.ensure_future(continued(coro, signal))
    a.set_result(2)
    b.set_result(3)
    assert await task == 5

    c = loop.create_future()
    coro = two_waits(c, loop.create_future())
    task = asyncio.ensure_future(continued(coro, coro.send(None)))
    c.set_exception(ValueError("broken"))
    with pytest.raises(ValueError, match="broken"):
        await task

    coro = two_waits(loop.create_future(), loop.create_future())
    task = asyncio.ensure_future(continued(coro, coro.send(None)))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED


async def test_a_poll_waits_at_most_poll_s(consumer: ProximaConsumer) -> None:
    # Faust's drain loop asks for records with getmany(timeout=1.0); the wait reaches
    # Consumer._wait_next_records, stood in for here (the seam getmany calls).
    asked: list[float] = []

    async def wait_next_records(timeout: float) -> tuple[None, None]:
        asked.append(timeout)
        return None, None  # no records: getmany ends

    consumer._wait_next_records = wait_next_records  # type: ignore[method-assign]
    assert [r async for r in consumer.getmany(timeout=1.0)] == []
    assert [r async for r in consumer.getmany(timeout=0.01)] == []
    assert asked == [0.05, 0.01]


def test_use_proxima_consumer_refuses_a_poll_that_cannot_wait() -> None:
    app = faust.App("test-delivery-refuse", broker="kafka://127.0.0.1:9", autodiscover=False)
    with pytest.raises(ValueError, match="poll_s"):
        use_proxima_consumer(app, poll_s=0)


# --- a real worker whose stream buffer is always full -------------------------------------
CUSTOMERS = 20
EVENTS = 3000
T0 = datetime(2026, 3, 14, 10, 0, 0, tzinfo=UTC)


def _events() -> list[Event]:
    out = []
    for i in range(EVENTS):
        c = i % (2 * CUSTOMERS)  # half enrolled, half strangers
        at = T0 + timedelta(milliseconds=100 * i)
        key = bytes.fromhex(f"{c + 1:032x}")
        out.append(
            Event(
                schema_="proxima.zone.v1",
                event_id=uuid.uuid4(),
                store_id="store-1",
                gateway_id="gw-door",
                observed_at=at,
                seq=i + 1,
                kind=EventKind.ZONE_ENTER,
                subject=Subject(
                    type=SubjectType.EDDYSTONE_EID,
                    id=compute_eid(key, 10, int(at.timestamp())).hex(),
                ),
                zone_id="entrance",
            )
        )
    return out


@pytest.mark.integration
@pytest.mark.timeout(180)
async def test_a_worker_with_a_tiny_stream_buffer_processes_every_event_and_alerts_once(
    procs: Procs, proxima_env: dict[str, str]
) -> None:
    # 16 records of buffer: Faust pauses the partition past 12 and resumes under 6, and the
    # hand-off waits for room (stream.delivery's slow path) for most of the 3,000 events.
    procs.env["PROXIMA_STREAM_BUFFER_MAXSIZE"] = "16"
    services = ServiceSettings(
        kafka=proxima_env["PROXIMA_KAFKA"], namespace=proxima_env["PROXIMA_NAMESPACE"]
    )
    await ensure_topics(services.kafka_bootstrap, services.topics.all_kafka, 4)
    redis = aioredis.from_url(services.redis)
    registry = Registry(redis, services.redis_prefix)
    for c in range(CUSTOMERS):
        await registry.enroll(
            CustomerProfile(
                customer_id=f"c{c}",
                identity_key=f"{c + 1:032x}",
                rotation_exponent=10,
                name=f"C {c}",
                visible_fields=["name"],
            ),
            [Purpose.ARRIVAL_ALERTS],
        )
    events = _events()
    producer = make_producer(services.kafka_bootstrap, idempotent=False, client_id="test")
    await producer.start()
    procs.start("worker", "stream", "worker")
    try:
        await asyncio.gather(
            *[
                await producer.send(services.topics.events, key=b"store-1", value=e.to_json())
                for e in events
            ]
        )
        last = f"{services.redis_prefix}event:{events[-1].event_id}"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 150
        while not await redis.exists(last):
            if loop.time() > deadline:
                pytest.fail(f"the last event was not processed\n{procs.log('worker')[-3000:]}")
            await asyncio.sleep(0.1)
        marks = [k async for k in redis.scan_iter(f"{services.redis_prefix}event:*", count=5000)]
        assert len(marks) == EVENTS
    finally:
        await producer.stop()
    alerts = AIOKafkaConsumer(
        services.topics.alerts,
        bootstrap_servers=services.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await alerts.start()
    try:
        arrivals: dict[str, set[str]] = {}
        async with asyncio.timeout(30):
            while len(arrivals) < CUSTOMERS:
                for records in (await alerts.getmany(timeout_ms=500)).values():
                    for record in records:
                        alert = json.loads(record.value or b"{}")
                        if alert["kind"] == "arrival":
                            arrivals.setdefault(alert["customer_id"], set()).add(alert["alert_id"])
    finally:
        await alerts.stop()
        await redis.aclose()
        await drop_prefix(services.redis, services.redis_prefix)
    assert sorted(arrivals) == sorted(f"c{c}" for c in range(CUSTOMERS))
    assert all(len(ids) == 1 for ids in arrivals.values())
