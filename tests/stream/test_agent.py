"""The worker's Faust agent driven through ``agent.test_context()``: no Kafka broker, the
app's producer replaced by a recorder of what the worker would write, real Redis (the
agent's identity, consent and dedupe state live there), the real Faust dedupe table
(memory:// and rocksdb://); its changelog records stay in Faust's producer buffer, which
never starts here, so the tests read them there."""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import faust
import pytest
import redis.asyncio as aioredis
from aiokafka.errors import KafkaConnectionError
from faust.assignor.client_assignment import ClientAssignment
from faust.stores.rocksdb import Store as RocksStore
from faust.types import TP
from redis.exceptions import ConnectionError as RedisConnectionError

from beacons.eid import compute_eid
from contracts.models import Alert, Event, VisitUpdate
from contracts.services import ServiceSettings
from contracts.topics import VISITS
from stream.app import create_app
from stream.processor import Decision, EventProcessor, Step
from stream.registry import Purpose, Registry
from stream.settings import StreamSettings
from stream.tables import DEDUPE_TABLE, AlertDedupe
from tests.factories import event_dict
from tests.kit.clock import FakeUtcClock
from tests.kit.customers import make_customer
from transport.redis import drop_prefix

pytestmark = pytest.mark.integration  # Redis
KEY = bytes.fromhex("0102030405060708090a111213141516")
T0 = datetime(2026, 3, 14, 10, 0, 0, tzinfo=UTC)


@dataclass
class Recorder:
    """What the worker hands to Kafka: (topic, key, value), acknowledged at once.

    ``refuse`` maps a topic to how many of its next records the broker refuses (the ack
    fails with a KafkaError, as when a broker goes away); refused records are not kept."""

    records: list[tuple[str, bytes | None, bytes | None]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    refuse: dict[str, int] = field(default_factory=dict)
    commits: list[dict[TP, int]] = field(default_factory=list)

    async def commit(self, offsets: Mapping[TP, int]) -> bool:
        self.commits.append(dict(offsets))
        return True

    async def send(self, topic: str, key: bytes | None, value: bytes | None) -> Awaitable[Any]:
        ack: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.refuse.get(topic, 0) > 0:
            self.refuse[topic] -= 1
            ack.set_exception(KafkaConnectionError("broker away"))
            return ack
        self.records.append((topic, key, value))
        self.changed.set()
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
    processor: FailingProcessor

    @property
    def dedupe(self) -> AlertDedupe:
        sent_log = self.processor.sent_log
        assert isinstance(sent_log, AlertDedupe)  # attached when the agent starts
        return sent_log

    def changelog(self) -> list[tuple[int | None, Any, Any]]:
        """(partition, key, value) of the table changes sent since the last call."""
        return _changelog(self.app)


def _changelog(app: faust.App) -> list[tuple[int | None, Any, Any]]:
    """(partition, key, value) of the app's table changes sent since the last call."""
    pending = app.producer.buffer.pending
    out = []
    while not pending.empty():
        message = pending.get_nowait().message
        assert message.channel.get_topic_name().endswith(f"-{DEDUPE_TABLE}-changelog")
        # serialised already (the table asks for eager partitioning): JSON, or None
        value = None if message.value is None else json.loads(message.value)
        out.append((message.partition, json.loads(message.key), value))
    return out


async def _assign(app: faust.App, partitions: set[int]) -> None:
    """Assign the dedupe table's partitions to the app, as a rebalance would: the store's
    scans (``items()``) walk only assigned partitions, and RocksDB opens their databases."""
    table = app.tables[DEDUPE_TABLE]
    changelog = table.changelog_topic_name  # type: ignore[attr-defined]
    app.assignor._assignment = ClientAssignment(  # type: ignore[attr-defined]
        actives={changelog: sorted(partitions)}, standbys={}
    )
    if isinstance(table.data, RocksStore):
        await table.data.assign_partitions(table, {TP(changelog, p) for p in partitions})


class FailingProcessor(EventProcessor):
    """Our processor with faults injected at its interface to the agent: each name in
    ``failures`` (a method) raises the paired error at its next calls, one per entry, as
    Redis does while it restarts; ``poisoned`` event ids make ``decide_batch`` fail (a bug
    that a particular input triggers) whatever batch they are in."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failures: dict[str, list[Exception]] = {}
        self.poisoned: set[str] = set()
        self.calls: Counter[str] = Counter()

    def _fault(self, method: str) -> None:
        self.calls[method] += 1
        if self.failures.get(method):
            raise self.failures[method].pop(0)

    async def decide_batch(self, events: list[Event], step: Step | None = None) -> list[Decision]:
        self._fault("decide_batch")
        if any(str(e.event_id) in self.poisoned for e in events):
            raise ValueError("a rule cannot handle this event")
        return await super().decide_batch(events, step)

    async def mark_done(
        self, alerts: list[Alert], events: list[Event], step: Step | None = None
    ) -> None:
        self._fault("mark_done")
        await super().mark_done(alerts, events, step)

    async def depart(self, publish: Callable[[list[VisitUpdate]], Awaitable[None]]) -> None:
        self._fault("depart")
        await super().depart(publish)


@asynccontextmanager
async def _harness(
    namespace: str,
    data_dir: Path,
    *,
    now: Callable[[], datetime] | None = None,
    **settings: Any,
) -> AsyncIterator[Harness]:
    # The bootstrap address is only a string here: nothing connects to it.
    services = ServiceSettings(namespace=namespace, kafka="kafka://127.0.0.1:9")
    recorder = Recorder()
    r = aioredis.from_url(services.redis)
    processor = FailingProcessor(r, services.redis_prefix, **({"now": now} if now else {}))
    settings.setdefault("retry_backoff_s", 0.001)
    settings.setdefault("departure_check_s", 3600)
    settings.setdefault("consent_publish_s", 3600)
    app = create_app(
        services,
        StreamSettings(data_dir=data_dir, **settings),
        raw_send=recorder.send,
        processor=processor,
        commit=recorder.commit,
    )
    app.finalize()
    registry = processor.registry
    profile = make_customer(
        identity_key=KEY.hex(), name="Ana Lima", tier="gold", visible_fields=["name"]
    )
    await registry.enroll(profile, [Purpose.ARRIVAL_ALERTS])
    try:
        yield Harness(app, services, recorder, registry, processor)
    finally:
        # The agent's stream asks for app.consumer (to track offsets), which builds Faust's
        # Kafka consumer thread object with an event loop of its own; it never starts here.
        consumer: Any = app._consumer
        if consumer is not None:
            consumer._thread.thread_loop.close()
        await drop_prefix(services.redis, services.redis_prefix)
        await r.aclose()


@pytest.fixture
async def harness(namespace: str, tmp_path: Path) -> AsyncIterator[Harness]:
    async with _harness(namespace, tmp_path) as h:
        yield h


def _agent(app: faust.App) -> Any:
    (agent,) = [a for name, a in app.agents.items() if name.endswith(".decide")]
    return agent


def _ana_event(event_id: str | None = None, key: bytes = KEY, **overrides: Any) -> bytes:
    """An arrival of Ana (or of whoever has identity ``key``) at store-1."""
    eid = compute_eid(key, 10, int(T0.timestamp()))
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


def _dedupe_key(alert: dict[str, Any]) -> str:
    return f"{alert['customer_id']}:{alert['store_id']}:{alert['visit_id']}:{alert['kind']}"


async def test_a_sent_alert_is_recorded_in_the_dedupe_table_on_its_events_partition(
    harness: Harness,
) -> None:
    topics = harness.services.topics
    event = _ana_event()
    stranger = json.dumps(event_dict(store_id="store-9")).encode()
    async with _agent(harness.app).test_context() as agent:
        # One batch, two partitions: the entry must go to the partition of Ana's store.
        await agent.put(stranger, key=b"store-9", partition=1, wait=False)
        await agent.put(event, key=b"store-1", partition=2, wait=False)
        (alert,) = await harness.recorder.wait_for(topics.alerts, 1)
        await _processed(harness, event)
    key = _dedupe_key(alert)
    now = datetime.now(UTC).timestamp()
    assert harness.dedupe.sent(key, now) == alert["alert_id"]
    (change,) = harness.changelog()
    partition, changed_key, value = change
    assert (partition, changed_key) == (2, key)
    assert value["alert_id"] == alert["alert_id"]
    assert value["partition"] == 2


async def test_a_replay_the_dedupe_table_knows_stays_silent_without_asking_redis(
    harness: Harness,
) -> None:
    topics = harness.services.topics
    r = harness.processor.r
    prefix = harness.services.redis_prefix
    event = _ana_event()
    async with _agent(harness.app).test_context() as agent:
        await agent.put(event, key=b"store-1", wait=False)
        (alert,) = await harness.recorder.wait_for(topics.alerts, 1)
        await _processed(harness, event)
        # Redis forgets that the event was processed and that its alert was sent (a Redis
        # restart without persistence, an eviction): only the table still knows.
        alerted = f"{prefix}alerted:{_dedupe_key(alert)}"
        assert await r.get(alerted) == f"sent:{alert['alert_id']}".encode()
        await r.delete(alerted, f"{prefix}event:{json.loads(event)['event_id']}")
        await agent.put(event, key=b"store-1", wait=False)
        await _processed(harness, event)
    assert len(harness.recorder.on(topics.alerts)) == 1
    counts = harness.processor.stats.counts
    assert (counts["dedupe_table_hits"], counts["deduped"]) == (1, 1)
    assert not await r.exists(alerted)  # the table answered: no claim was made in Redis


STORES = pytest.mark.parametrize("store_url", ["memory://", "rocksdb://"])
"""The table's deletions scan the store, and RocksDB's scan walks only assigned partitions
(test_context() assigns none): tests that delete assign the table's partitions first."""


@STORES
async def test_expired_dedupe_entries_are_purged_with_a_tombstone_on_their_partition(
    namespace: str, tmp_path: Path, store_url: str
) -> None:
    clock = FakeUtcClock(T0)
    async with _harness(
        namespace,
        tmp_path,
        now=clock,
        dedupe_ttl_s=3600,
        event_max_age_s=1800,  # shorter than the dedupe TTL (settings check it)
        table_purge_s=60,
        store_url=store_url,
    ) as harness:
        await _assign(harness.app, {3})
        event = _ana_event()
        sentinel = json.dumps(event_dict()).encode()
        async with _agent(harness.app).test_context() as agent:
            await agent.put(event, key=b"store-1", partition=3, wait=False)
            (alert,) = await harness.recorder.wait_for(harness.services.topics.alerts, 1)
            await _processed(harness, event)
            key = _dedupe_key(alert)
            assert [(p, k) for p, k, _ in harness.changelog()] == [(3, key)]
            clock.now = T0 + timedelta(seconds=3601)
            assert harness.dedupe.sent(key, clock.now.timestamp()) is None  # expired
            await agent.put(sentinel, key=b"store-1", wait=False)  # a batch runs the purge
            await _processed(harness, sentinel)
        assert key not in harness.dedupe.table
        assert harness.changelog() == [(3, key, None)]


async def test_the_rocksdb_store_keeps_the_dedupe_table_on_disk_across_apps(
    namespace: str, tmp_path: Path
) -> None:
    """rocksdb:// through the real rocksdict: the entry is in the partition's database, which
    a new app on the same data directory opens when the partition is assigned to it."""
    async with _harness(namespace, tmp_path, store_url="rocksdb://") as harness:
        event = _ana_event()
        async with _agent(harness.app).test_context() as agent:
            await agent.put(event, key=b"store-1", partition=1, wait=False)
            (alert,) = await harness.recorder.wait_for(harness.services.topics.alerts, 1)
            await _processed(harness, event)
        table = harness.dedupe.table
        changelog = table.changelog_topic_name
        db_path = table.data.partition_path(1)  # type: ignore[attr-defined]
        assert db_path.is_dir(), db_path
        await table.data.stop()  # closes the databases (releases RocksDB's lock)
        again = create_app(
            harness.services, StreamSettings(data_dir=tmp_path, store_url="rocksdb://")
        )
        again.finalize()
        table_again = again.tables[DEDUPE_TABLE]
        assert isinstance(table_again.data, RocksStore)
        assert table_again.data.use_rocksdict  # the rocksdict driver, not python-rocksdb
        await table_again.data.assign_partitions(table_again, {TP(changelog, 1)})
        reread = AlertDedupe(table_again, ttl_s=3600)
        assert reread.sent(_dedupe_key(alert), datetime.now(UTC).timestamp()) == alert["alert_id"]


@STORES
async def test_a_forgotten_customers_dedupe_entries_are_erased_with_tombstones(
    namespace: str, tmp_path: Path, store_url: str
) -> None:
    async with _harness(namespace, tmp_path, store_url=store_url) as harness:
        await _assign(harness.app, {2})
        event = _ana_event()
        sentinel = json.dumps(event_dict()).encode()
        harness.processor.identity.check_every_s = 0  # see the registry change at once
        async with _agent(harness.app).test_context() as agent:
            await agent.put(event, key=b"store-1", partition=2, wait=False)
            (alert,) = await harness.recorder.wait_for(harness.services.topics.alerts, 1)
            await _processed(harness, event)
            key = _dedupe_key(alert)
            assert [(p, k) for p, k, _ in harness.changelog()] == [(2, key)]
            assert key in harness.dedupe.table
            assert await harness.registry.forget("ana")
            await agent.put(sentinel, key=b"store-1", wait=False)  # the next batch erases
            await _processed(harness, sentinel)
        assert key not in harness.dedupe.table
        assert harness.changelog() == [(2, key, None)]


@pytest.mark.parametrize("method", ["decide_batch", "mark_done"])
async def test_a_redis_error_in_a_batch_is_retried_and_the_next_event_is_processed_too(
    harness: Harness, method: str
) -> None:
    topics = harness.services.topics
    harness.processor.failures[method] = [RedisConnectionError("Redis is restarting")]
    event = _ana_event()
    sentinel = json.dumps(event_dict()).encode()  # nobody's: processed after the retry
    async with _agent(harness.app).test_context() as agent:
        await agent.put(event, key=b"store-1", wait=False)
        await _processed(harness, event)
        await agent.put(sentinel, key=b"store-1", wait=False)
        await _processed(harness, sentinel)
    alerts = harness.recorder.on(topics.alerts)
    # A retry after Kafka had the alert sends it again: the same id, which the notifier drops.
    assert {(a["customer_id"], a["alert_id"]) for a in alerts} == {("ana", alerts[0]["alert_id"])}
    assert harness.processor.calls[method] >= 3  # the failed try, its retry, the sentinel
    counts = harness.processor.stats.counts
    assert counts["batch_retries"] == 1
    assert counts["events"] == 2  # the failed try's count is not kept


async def test_an_alert_kafka_refused_is_sent_on_the_retry_despite_the_claim_already_made(
    harness: Harness,
) -> None:
    """The failed try claimed the alert's dedupe key; the retry must not take that claim
    for another's and stay silent: the alert never reached Kafka."""
    topics = harness.services.topics
    harness.recorder.refuse[topics.alerts] = 1
    event = _ana_event()
    async with _agent(harness.app).test_context() as agent:
        await agent.put(event, key=b"store-1", wait=False)
        await _processed(harness, event)
    (alert,) = harness.recorder.on(topics.alerts)
    assert alert["customer_id"] == "ana"
    counts = harness.processor.stats.counts
    assert (counts["batch_retries"], counts["deduped"]) == (1, 0)


async def test_a_poisoned_event_goes_to_the_dlq_with_the_error_and_its_neighbour_alerts(
    harness: Harness,
) -> None:
    topics = harness.services.topics
    poisoned = json.dumps(event_dict(store_id="store-1")).encode()
    harness.processor.poisoned.add(json.loads(poisoned)["event_id"])
    event = _ana_event()
    sentinel = json.dumps(event_dict()).encode()
    async with _agent(harness.app).test_context() as agent:
        await agent.put(poisoned, key=b"store-1", wait=False)
        await agent.put(event, key=b"store-1", wait=False)
        (dlq,) = await harness.recorder.wait_for(topics.events_dlq, 1)
        (alert,) = await harness.recorder.wait_for(topics.alerts, 1)
        await _processed(harness, event)
        await agent.put(sentinel, key=b"store-1", wait=False)  # the loop goes on
        await _processed(harness, sentinel)
    assert dlq["source"] == "stream.worker"
    assert "ValueError" in dlq["reason"]
    assert "a rule cannot handle this event" in dlq["reason"]
    assert base64.b64decode(dlq["original_b64"]) == poisoned
    assert alert["customer_id"] == "ana"
    assert not await harness.processor.r.exists(
        f"{harness.services.redis_prefix}event:{json.loads(poisoned)['event_id']}"
    )  # parked, not marked processed
    assert harness.processor.stats.counts["failed_events"] == 1


async def test_a_cancellation_redis_py_turns_into_a_connection_error_stops_the_agent(
    harness: Harness,
) -> None:
    """redis-py raises ConnectionError when a cancellation lands mid-command; the retry
    loop must let the worker stop instead of retrying (a hang would hit the timeout)."""
    started = asyncio.Event()
    calls = 0

    async def hang(events: list[Event], step: Step | None = None) -> list[Decision]:
        nonlocal calls
        calls += 1
        if calls > 1:  # a retry: should not happen, and must not hang the test either
            return [Decision() for _ in events]
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise RedisConnectionError("Connection closed by server.") from None
        raise AssertionError("unreachable")

    harness.processor.decide_batch = hang  # type: ignore[method-assign]
    async with asyncio.timeout(30):
        async with _agent(harness.app).test_context() as agent:
            await agent.put(_ana_event(), key=b"store-1", wait=False)
            await started.wait()
        # leaving the context stops the agent: its task is cancelled mid-"command"
    assert calls == 1
    assert harness.processor.stats.counts["batch_retries"] == 0


BOB_KEY = bytes.fromhex("a1a2a3a4a5a6a7a8a9aab1b2b3b4b5b6")


@STORES
@pytest.mark.parametrize("meanwhile", ["forgotten", "forgotten and enrolled again"])
async def test_a_fresh_worker_erases_the_entries_of_a_customer_forgotten_while_it_was_away(
    namespace: str, tmp_path: Path, store_url: str, meanwhile: str
) -> None:
    """A restarted worker reads the table back (changelog, or RocksDB on disk); its identity
    index never saw the customer leave, so only the sweep after recovery can erase them."""
    async with _harness(namespace, tmp_path, store_url=store_url) as harness:
        bob = make_customer(customer_id="bob", identity_key=BOB_KEY.hex(), name="Bob")
        await harness.registry.enroll(bob, [Purpose.ARRIVAL_ALERTS])
        ana, bobs = _ana_event(), _ana_event(key=BOB_KEY)
        async with _agent(harness.app).test_context() as agent:
            await agent.put(ana, key=b"store-1", partition=2, wait=False)
            await agent.put(bobs, key=b"store-1", partition=2, wait=False)
            alerts = await harness.recorder.wait_for(harness.services.topics.alerts, 2)
            await _processed(harness, bobs)
        keys = {a["customer_id"]: _dedupe_key(a) for a in alerts}
        written = {key: value for _, key, value in harness.changelog()}
        assert set(written) == set(keys.values())
        # While no worker runs:
        ana_profile = await harness.registry.get("ana")
        assert ana_profile is not None
        assert await harness.registry.forget("ana")
        if meanwhile == "forgotten and enrolled again":
            again = ana_profile.model_copy(update={"enrolled_at": datetime.now(UTC)})
            await harness.registry.enroll(again, [Purpose.ARRIVAL_ALERTS])
        if store_url == "rocksdb://":
            await harness.dedupe.table.data.stop()  # releases RocksDB's lock for the new app

        processor = EventProcessor(harness.processor.r, harness.services.redis_prefix)
        fresh = create_app(
            harness.services,
            StreamSettings(data_dir=tmp_path, store_url=store_url, consent_publish_s=3600),
            raw_send=harness.recorder.send,
            processor=processor,
        )
        fresh.finalize()
        await _assign(fresh, {2})
        table = fresh.tables[DEDUPE_TABLE]
        if store_url == "memory://":
            for key, value in written.items():  # what recovery from the changelog does
                table.data[key] = value
        assert set(table.data.keys()) == set(keys.values())  # read back
        await table.call_recover_callbacks()  # recovery done: the sweep starts
        async with asyncio.timeout(30):
            while keys["ana"] in table.data:  # noqa: ASYNC110 - erased by the sweep task
                await asyncio.sleep(0.01)
        assert set(table.data.keys()) == {keys["bob"]}  # enrolled all along: kept
        assert _changelog(fresh) == [(2, keys["ana"], None)]


@STORES
async def test_the_sweep_leaves_entries_written_after_it_read_the_registry(
    namespace: str, tmp_path: Path, store_url: str
) -> None:
    """The customer may have enrolled after the sweep's read: the next sweep decides."""
    async with _harness(namespace, tmp_path, store_url=store_url) as harness:
        await _assign(harness.app, {1})
        event = _ana_event()
        async with _agent(harness.app).test_context() as agent:
            await agent.put(event, key=b"store-1", partition=1, wait=False)
            (alert,) = await harness.recorder.wait_for(harness.services.topics.alerts, 1)
            await _processed(harness, event)
        key = _dedupe_key(alert)
        ((_, _, entry),) = harness.changelog()
        assert harness.dedupe.customers() == {"ana"}
        assert harness.dedupe.erase_unenrolled({"ana": None}, as_of=entry["at"] - 1) == 0
        assert key in harness.dedupe.table
        assert harness.dedupe.erase_unenrolled({"ana": None}, as_of=entry["at"]) == 1
        assert key not in harness.dedupe.table
        assert harness.changelog() == [(1, key, None)]


def _timer(app: faust.App, name: str) -> Callable[[], Awaitable[None]]:
    """The function behind one of the app's timers (it does not run under test_context)."""
    (task,) = [t for t in app._app_tasks if t.__name__ == name]
    fun: Callable[[], Awaitable[None]] = inspect.unwrap(task)
    return fun


@pytest.mark.parametrize("finished", [True, False], ids=["finished", "cut-off"])
async def test_an_events_offset_is_committed_only_once_its_batch_is_done(
    harness: Harness, finished: bool
) -> None:
    """A worker stopped mid-batch (SIGTERM) must not commit the batch's offsets: a
    committed event is never delivered again. Faust's own acks would (its take_events
    acks a batch in a ``finally`` that runs when the stream stops under the agent); the
    worker commits the offsets of finished batches itself. (The real worker, through
    Tansu: test_worker_faults' SIGTERM case.)"""
    started = asyncio.Event()
    decide = harness.processor.decide_batch

    async def hang(events: list[Event], step: Step | None = None) -> list[Decision]:
        started.set()
        if not finished:
            await asyncio.Event().wait()  # cancelled when the agent stops
        return await decide(events, step)

    harness.processor.decide_batch = hang  # type: ignore[method-assign]
    commit_offsets = _timer(harness.app, "commit_offsets")
    raw = _ana_event()
    async with asyncio.timeout(30):
        async with _agent(harness.app).test_context() as agent:
            event = await agent.put(raw, key=b"store-1", wait=False)
            await started.wait()
            if finished:
                while not harness.recorder.commits:
                    await commit_offsets()
                    await asyncio.sleep(0.01)
            await commit_offsets()
        await commit_offsets()  # the agent has stopped; the stream's generators are closed
    tp = event.message.tp
    assert harness.recorder.commits == ([{tp: event.message.offset + 1}] if finished else [])
    assert event.message.acked  # Faust's ack: what the worker no longer commits by


async def test_a_departure_kafka_refused_is_published_on_the_retry(harness: Harness) -> None:
    """A departure is recorded as done only once its visit record is on Kafka: after Kafka
    refused the record, the store's next departure check finds it still due. (Before, it
    was taken off the departing set when it was decided: lost for good.)"""
    topics = harness.services.topics
    visits = topics.kafka(VISITS)
    await harness.registry.set_consent("ana", Purpose.ANALYTICS, granted=True)
    enter = _ana_event()
    leave = _ana_event(kind="zone_exit", observed_at=(T0 + timedelta(seconds=10)).isoformat())
    # Bob's later event moves the store's event clock past Ana's exit timeout (300 s).
    bob = make_customer(customer_id="bob", identity_key=BOB_KEY.hex(), name="Bob")
    await harness.registry.enroll(bob, [Purpose.ARRIVAL_ALERTS])
    later = T0 + timedelta(seconds=10 + 300 + 60)
    sentinel = _ana_event(key=BOB_KEY, observed_at=later.isoformat())
    async with _agent(harness.app).test_context() as agent:
        for raw in (enter, leave):
            await agent.put(raw, key=b"store-1", wait=False)
            await _processed(harness, raw)
        harness.recorder.refuse[visits] = 1  # the departure's record, the first time
        await agent.put(sentinel, key=b"store-1", wait=False)
        await _processed(harness, sentinel)
        # The store's next departure check (a second of event time on) finds it still due.
        again = _ana_event(key=BOB_KEY, observed_at=(later + timedelta(seconds=2)).isoformat())
        await agent.put(again, key=b"store-1", wait=False)
        await _processed(harness, again)
    changes = [(v["customer_id"], v["change"]) for v in harness.recorder.on(visits)]
    assert changes == [("ana", "arrival"), ("ana", "departure")]
    # The step that made it due was done (on Kafka, marked): it is not run again.
    assert harness.processor.stats.counts["batch_retries"] == 0
    assert harness.processor.stats.counts["duplicate_events"] == 0
    assert await harness.processor.tick() == []  # settled: published once


# proxima.events.v2: one record per signed gateway batch, verified by the worker itself.


def _batches_agent(app: faust.App) -> Any:
    (agent,) = [a for name, a in app.agents.items() if name.endswith(".decide_batches")]
    return agent


async def _signed_batch(
    harness: Harness, events: list[bytes], *, label: str | None = "replay"
) -> tuple[bytes, list[tuple[str, bytes]]]:
    """A batch of ``events`` from store-1/gw-door as its gateway signs it, and the record
    headers the bridge gives it. ``label="replay"``: a replay tool's key, whose events keep
    their trace's time (T0 is long ago)."""
    from contracts.signing import sign
    from stream.batches import record_headers
    from stream.keyring import Keyring

    ring = Keyring(harness.processor.r, harness.services.redis_prefix)
    if label:
        key = await ring.labelled("store-1", "gw-door", label)
    else:
        key = await ring.add("store-1", "gw-door")
    topic = harness.services.topics.gateway_events("store-1", "gw-door")
    payload = b"[" + b",".join(events) + b"]"
    props = sign(key.kid, bytes.fromhex(key.secret), topic, payload)
    return payload, record_headers(topic, props.items())


async def test_a_v2_batch_is_verified_and_each_event_checked_with_good_neighbours_alerting(
    harness: Harness,
) -> None:
    topics = harness.services.topics
    bad_kind = _ana_event(kind="geofence_enter")
    other_store = _ana_event(store_id="store-2")
    payload, headers = await _signed_batch(harness, [bad_kind, other_store, _ana_event()])
    async with _batches_agent(harness.app).test_context() as agent:
        await agent.put(payload, key=b"store-1", headers=headers, wait=False)
        dlq = await harness.recorder.wait_for(topics.events_dlq, 2)
        alerts = await harness.recorder.wait_for(topics.alerts, 1)
    reasons = sorted(d["reason"] for d in dlq)
    assert any("event 0: " in r and "geofence_enter" in r for r in reasons), reasons
    assert any("says store 'store-2'" in r for r in reasons), reasons
    assert all(d["source"] == "stream.worker" for d in dlq)
    assert [a["customer_id"] for a in alerts] == ["ana"]


async def test_a_v2_batch_with_a_bad_signature_is_parked_whole(harness: Harness) -> None:
    topics = harness.services.topics
    payload, headers = await _signed_batch(harness, [_ana_event()])
    tampered = payload + b" "  # one byte more than was signed
    async with _batches_agent(harness.app).test_context() as agent:
        await agent.put(tampered, key=b"store-1", headers=headers, wait=False)
        # A second, good batch behind it: the refusal does not stop the loop.
        good, good_headers = await _signed_batch(harness, [_ana_event()])
        await agent.put(good, key=b"store-1", headers=good_headers, wait=False)
        (parked,) = await harness.recorder.wait_for(topics.events_dlq, 1)
        await harness.recorder.wait_for(topics.alerts, 1)
    assert "signature does not match" in parked["reason"]
    assert base64.b64decode(parked["original_b64"]) == tampered
    assert harness.processor.stats.counts["bad_signature"] == 1


async def test_an_unsigned_v2_batch_is_refused_while_signatures_are_required(
    harness: Harness,
) -> None:
    topics = harness.services.topics
    topic = topics.gateway_events("store-1", "gw-door")
    from stream.batches import record_headers

    async with _batches_agent(harness.app).test_context() as agent:
        await agent.put(
            b"[" + _ana_event() + b"]",
            key=b"store-1",
            headers=record_headers(topic, []),
            wait=False,
        )
        (parked,) = await harness.recorder.wait_for(topics.events_dlq, 1)
    assert "unsigned message" in parked["reason"]
    assert harness.recorder.on(topics.alerts) == []


async def test_v2_events_far_from_the_workers_clock_are_parked_unless_a_replay_key_signed(
    harness: Harness,
) -> None:
    topics = harness.services.topics
    # A gateway's own key: its events are held to the clock; T0 is months ago.
    payload, headers = await _signed_batch(harness, [_ana_event()], label=None)
    async with _batches_agent(harness.app).test_context() as agent:
        await agent.put(payload, key=b"store-1", headers=headers, wait=False)
        (parked,) = await harness.recorder.wait_for(topics.events_dlq, 1)
        assert harness.recorder.on(topics.alerts) == []
        # The same event signed with a replay key: its trace's time is taken as it is.
        replayed, replay_headers = await _signed_batch(harness, [_ana_event()])
        await agent.put(replayed, key=b"store-1", headers=replay_headers, wait=False)
        await harness.recorder.wait_for(topics.alerts, 1)
    assert (
        "s before the worker's clock, more than PROXIMA_STREAM_EVENT_MAX_AGE_S" in parked["reason"]
    )
    assert harness.processor.stats.counts["clock_off"] == 1
