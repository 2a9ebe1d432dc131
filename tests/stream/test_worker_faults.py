"""The worker killed with kill -9, or stopped with SIGTERM, in the middle of a stream, or
joined by a second worker (a rebalance): once a new worker is up, every event is processed and every consenting customer has exactly one
arrival alert (copies on Kafka carry the same alert id, which the notifier drops). Real
Tansu, Redis and Faust.

SIGTERM is the harder case for at-least-once: a graceful stop commits offsets, so an event
the stopping worker counted as handled without finishing it would never be seen again."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition

from beacons.eid import compute_eid
from contracts.models import Event, EventKind, Subject, SubjectType
from contracts.services import ServiceSettings
from stream.registry import Purpose, Registry
from stream.settings import StreamSettings
from stream.tables import app_id
from tests.conftest import Procs
from tests.kit.customers import make_customer
from tests.kit.kafka import read_topic
from transport.kafka import ensure_topics, make_producer
from transport.redis import drop_prefix

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CUSTOMERS = 40
EVENTS = 6000
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


async def _group_offsets(services: ServiceSettings) -> str:
    """The worker group's committed offset and the broker's ListOffsets end of each events
    partition, for a failure message (Tansu's end is the newest batch's first offset + 1,
    so it may read low; the unprocessed events are the firmer clue). Read through a
    consumer that never subscribes, so it joins no group (aiokafka's admin client cannot
    decode Tansu's OffsetFetch reply)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=services.kafka_bootstrap,
        group_id=app_id(services, StreamSettings()),
        enable_auto_commit=False,
    )
    try:
        await consumer.start()
        tps = [TopicPartition(services.topics.events, p) for p in range(4)]
        ends = await consumer.end_offsets(tps)
        return str({tp.partition: (await consumer.committed(tp), ends[tp]) for tp in tps})
    except Exception as exc:  # a diagnostic only: never hide the failure it explains
        return f"unknown ({exc!r})"
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()


@pytest.fixture
def services(proxima_env: dict[str, str]) -> ServiceSettings:
    return ServiceSettings(
        kafka=proxima_env["PROXIMA_KAFKA"], namespace=proxima_env["PROXIMA_NAMESPACE"]
    )


@pytest.fixture
async def redis(services: ServiceSettings) -> AsyncIterator[aioredis.Redis]:
    """The test's Redis client; its keys are dropped and it is closed however the test
    ends (a failed wait used to leave it open, and the next test failed on the warning)."""
    client = aioredis.from_url(services.redis)
    try:
        yield client
    finally:
        await drop_prefix(services.redis, services.redis_prefix)
        await client.aclose()


@pytest.mark.parametrize(
    "sig", [signal.SIGKILL, signal.SIGTERM, None], ids=["kill-9", "sigterm", "a-second-joins"]
)
async def test_worker_killed_mid_stream_processes_everything_and_alerts_once(
    procs: Procs, services: ServiceSettings, redis: aioredis.Redis, sig: signal.Signals | None
) -> None:
    """``sig`` None: the first worker keeps running and a second one joins the group (a
    rebalance mid-stream, the path on which Faust suspends flow control too)."""
    await ensure_topics(services.kafka_bootstrap, services.topics.all_kafka, 4)
    registry = Registry(redis, services.redis_prefix)
    for c in range(CUSTOMERS):
        await registry.enroll(
            make_customer(
                customer_id=f"c{c}",
                identity_key=f"{c + 1:032x}",
                name=f"C {c}",
                visible_fields=["name"],
            ),
            [Purpose.ARRIVAL_ALERTS] if c % 4 else [Purpose.ANALYTICS],  # a quarter: no alerts
        )
    events = _events()
    procs.start("worker", "stream", "worker")
    producer = make_producer(services.kafka_bootstrap, idempotent=False, client_id="test")
    await producer.start()

    async def processed() -> int:
        n = 0
        async for _ in redis.scan_iter(f"{services.redis_prefix}event:*", count=10000):
            n += 1
        return n

    async def unprocessed() -> str:
        """The events not marked processed, as runs of their indexes in the order sent: a
        worker that stalled leaves the tail, one that skipped records leaves a hole."""
        marks = await redis.mget([f"{services.redis_prefix}event:{e.event_id}" for e in events])
        runs: list[list[int]] = []
        for i, mark in enumerate(marks):
            if mark is None:
                if runs and runs[-1][1] == i - 1:
                    runs[-1][1] = i
                else:
                    runs.append([i, i])
        return ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in runs) or "none"

    async def wait(
        target: int, timeout: float, what: str, log: str = "worker", every_s: float = 0.1
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (n := await processed()) < target:
            if loop.time() > deadline:
                offsets = await _group_offsets(services)
                missing = await unprocessed()
                pytest.fail(
                    f"{what}: {n} of {target} events processed; not processed (in the"
                    f" order sent): {missing}; per partition of the events topic,"
                    f" (committed offset, ListOffsets end; Tansu's is low:"
                    f" docs/developers/stream.md) {offsets}\n{procs.log(log)[-3000:]}"
                )
            await asyncio.sleep(every_s)

    async def send(batch: list[Event]) -> None:
        await asyncio.gather(
            *[
                await producer.send(services.topics.events, key=b"store-1", value=e.to_json())
                for e in batch
            ]
        )

    try:
        head, tail = events[:200], events[200:]
        await send(head)
        await wait(200, 120, "worker start")
        if sig is None:
            # The stream keeps coming while the second worker joins (~5 s of rebalance).
            procs.start("worker-2", "stream", "worker")
            ready_at = None
            for i in range(0, len(tail), 100):
                await send(tail[i : i + 100])
                await asyncio.sleep(0.2)
                if ready_at is None and "Worker]: Ready" in procs.log("worker-2"):
                    ready_at = await processed()
            assert ready_at is not None, "the second worker never became ready"
            assert ready_at < EVENTS, "the rebalance did not happen mid-stream; nothing tested"
            await wait(EVENTS, 120, "after a rebalance")
        else:
            # Stopped while the stream is still being sent, as soon as the worker is well
            # under way: had the whole tail been on Kafka first (one `send` does not yield
            # until every record is queued), a fast worker could decide it all before the
            # first poll of `wait` and the stop would find nothing left (it did, 2026-12-05).
            async def send_tail() -> None:
                for i in range(0, len(tail), 100):
                    await send(tail[i : i + 100])

            sending = asyncio.create_task(send_tail())
            try:
                await wait(1200, 60, "worker under load", every_s=0.01)
                procs.kill("worker", sig)
                killed_at = await processed()
                await sending
            finally:
                sending.cancel()
            assert killed_at < EVENTS, "the worker finished before it was stopped; nothing tested"
            procs.start("worker-2", "stream", "worker")
            await wait(EVENTS, 120, "after restart", "worker-2")
    finally:
        await producer.stop()

    alerts: dict[str, set[str]] = defaultdict(set)
    for value in await read_topic(services.kafka_bootstrap, services.topics.alerts, idle_s=0.5):
        a = json.loads(value or b"{}")
        alerts[a["customer_id"]].add(f"{a['kind']}:{a['alert_id']}")
    consenting = {f"c{c}" for c in range(CUSTOMERS) if c % 4}
    assert set(alerts) == consenting  # nobody without arrival consent, nobody missed
    assert all(len(ids) == 1 for ids in alerts.values()), alerts  # one alert id each


async def test_a_stop_longer_than_the_stop_timeout_ends_the_worker_hard(
    procs: Procs, proxima_env: dict[str, str]
) -> None:
    """``PROXIMA_STREAM_STOP_TIMEOUT_S`` bounds a graceful stop (Faust 0.15's sometimes never
    ends). Set far below any real stop here: SIGTERM ends the worker with status 1 and
    every thread's stack on stderr, instead of a hang."""
    procs.env = dict(proxima_env, PROXIMA_STREAM_STOP_TIMEOUT_S="0.05")
    proc = procs.start("worker", "stream", "worker")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    # The app starts after mode's worker has installed its signal handlers.
    while "[^-WorkerApp]: Starting" not in procs.log("worker"):
        assert proc.poll() is None, procs.log("worker")
        assert loop.time() < deadline, procs.log("worker")
        await asyncio.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    status = await asyncio.to_thread(proc.wait, 30)
    log = procs.log("worker")
    assert status == 1, log
    assert "exiting at once if not stopped in 0 s" in log
    assert "Timeout (0:00:00" in log  # faulthandler's, then every thread's stack:
    assert 'File "' in log
