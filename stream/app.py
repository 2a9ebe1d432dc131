"""The Faust app: ``proxima.events.v1`` → decisions → ``proxima.alerts.v1``.

Processing guarantee is at-least-once (Faust commits an offset after the agent has
handled the event); exactly-once is not used because Tansu's transactions are incomplete
and because every step downstream is idempotent anyway (see stream.processor).

State: the alert dedupe table (:mod:`stream.tables`) is a Faust table with a changelog,
in the store ``PROXIMA_STREAM_STORE_URL`` names; customers, consent, the EID index and
visit state live in Redis.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, cast

import faust
import uvloop
from aiokafka.errors import KafkaError
from faust.types import EventT
from redis.exceptions import RedisClusterException, RedisError

from contracts.exceptions import ContractError
from contracts.models import Alert, DlqRecord, Event, VisitUpdate, parse_model
from contracts.services import ServiceSettings
from contracts.topics import CONSENT, VISITS
from stream.consent_log import pump_outbox
from stream.processor import EventProcessor
from stream.rules import RuleBook
from stream.settings import StreamSettings
from stream.tables import DEDUPE_TABLE, AlertDedupe, app_id, ensure_changelogs
from transport.redis import connect_redis
from transport.stats import publish as publish_stats

log = logging.getLogger(__name__)


def _fetch_wait(ms: int) -> None:
    """Make Faust's Kafka consumer ask for at most ``ms`` of fetch wait.

    Faust 0.15 hard-codes ``fetch_max_wait_ms=1500`` for the worker's consumer; against a
    broker that holds a fetch until its wait runs out (Tansu does, see README: the
    notifier's measurements) that is up to 1.5 s of added latency per fetch. The setting is
    applied to the consumer before it starts (aiokafka reads it in ``start()``).
    """
    from faust.transport.drivers import aiokafka as driver

    cls = driver.AIOKafkaConsumerThread
    original = cls.__dict__["_create_worker_consumer"]
    original = getattr(original, "__wrapped__", original)

    def create(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        consumer._fetch_max_wait_ms = ms
        return consumer

    create.__wrapped__ = original  # type: ignore[attr-defined]
    cls._create_worker_consumer = create  # type: ignore[method-assign]


RawSend = Callable[[str, bytes | None, bytes | None], Awaitable[Awaitable[Any]]]
"""Hand one record (topic name, key, value) to a producer; returns the future of its ack."""


def create_app(
    services: ServiceSettings,
    settings: StreamSettings,
    *,
    raw_send: RawSend | None = None,
    processor: EventProcessor | None = None,
) -> faust.App:
    """Build the Faust app for one namespace; topics must already exist (see ensure_topics).

    ``raw_send`` replaces the app's Kafka producer for every record the worker writes
    (alerts, visits, DLQ, consent): the agent's unit tests record them instead.
    ``processor`` is the decision chain the agent uses (default: one built from the
    settings on a Redis client of its own, which lives as long as the worker); the app
    attaches its dedupe table to it as :attr:`EventProcessor.sent_log`.
    """
    _fetch_wait(settings.fetch_max_wait_ms)
    topics = services.topics
    name = app_id(services, settings)
    datadir = settings.data_dir / name
    datadir.parent.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    app = faust.App(
        name,
        broker=f"kafka://{services.kafka_bootstrap}",
        store=settings.store_url,
        datadir=str(datadir),
        processing_guarantee="at_least_once",
        topic_partitions=settings.partitions,
        topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        autodiscover=False,
        broker_commit_every=10_000,  # commit on the interval, not every 100 events
        broker_commit_interval=0.5,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.session_timeout_s / 5,
    )

    # Bytes in, bytes out: the contracts package validates, so a bad payload reaches our
    # code (and the DLQ) instead of failing inside Faust's deserialiser.
    def raw_topic(name: str) -> faust.TopicT:
        return app.topic(
            name, key_type=bytes, value_type=bytes, value_serializer="raw", key_serializer="raw"
        )

    events_topic = raw_topic(topics.events)
    alerts_topic = raw_topic(topics.alerts)
    dlq_topic = raw_topic(topics.events_dlq)

    visits_topic = raw_topic(topics.kafka(VISITS))
    rules = RuleBook(settings.rules_dir, check_every_s=settings.rules_check_s)
    rules.check_all()  # a broken rules file stops the worker at start, naming the field
    dedupe = AlertDedupe(
        app.Table(
            DEDUPE_TABLE,
            key_type=str,  # values: JSON objects (value_type=dict would not decode)
            help="alert dedupe key (customer:store:visit:kind) -> the alert sent for it",
        ),
        ttl_s=settings.dedupe_ttl_s,
    )
    state: dict[str, Any] = {} if processor is None else {"processor": processor}

    async def producer_send(topic: str, key: bytes | None, value: bytes | None) -> Any:
        return await app.producer.send(
            topic, key, value, partition=None, timestamp=None, headers=None
        )

    to_kafka: RawSend = raw_send or producer_send

    async def send(topic: faust.TopicT, key: bytes | None, value: bytes) -> Any:
        """Hand one record to the producer; returns the future of its Kafka ack.

        Straight to the app's producer rather than ``topic.send()``: Faust's channel layer
        (FutureMessage, callbacks, a debug log line per message) cost as much CPU as
        aiokafka's own send, and the worker is CPU-bound (README: bench stream).
        """
        return await to_kafka(topic.get_topic_name(), key, value)

    async def send_visits(visits: list[VisitUpdate]) -> None:
        for visit in visits:
            await (await send(visits_topic, visit.customer_id.encode(), visit.to_json()))

    async def get_processor() -> EventProcessor:
        if "processor" not in state:
            state["processor"] = EventProcessor(
                connect_redis(services.redis),
                services.redis_prefix,
                drift_windows=settings.drift_windows,
                revisit_gap_s=settings.revisit_gap_s,
                exit_timeout_s=settings.exit_timeout_s,
                dedupe_ttl_s=settings.dedupe_ttl_s,
                rules=rules,
            )
        proc: EventProcessor = state["processor"]
        proc.sent_log = dedupe
        return proc

    # How Faust 0.15 feeds this agent (read from its source; measured by `proxima bench
    # stream`, README): aiokafka runs in a thread of its own and its fetches are not the
    # limit (that thread is ~95% idle; `broker_max_poll_records`, `consumer_max_fetch_size`
    # do not bind). Records then go through the main loop one at a time: `_drain_messages`
    # awaits `wait_first(callback(message), suspend_flow.wait())` per message (tasks and
    # futures per record), the conductor decodes it onto the stream's queue (at most
    # `stream_buffer_maxsize`), the stream's passive drainer runs `take()`'s processor.
    # `take()` yields when `batch_max` events are in or `within` has passed since it began
    # waiting (not since the first event); while we process a batch its drainer holds one
    # event and the queue fills. So batches are what the drainer moves in `within` (~115
    # events at 5 ms, ~350 at 20 ms, same throughput): the worker is CPU-bound, and a
    # do-nothing agent on this path tops out at 10-12k events/s on the 2-core machine.
    @app.agent(events_topic)
    async def decide(stream: faust.StreamT[bytes]) -> None:
        proc = await get_processor()
        purge_at = 0.0
        # Batches: the Kafka acks of a batch's alerts and visits are awaited together and
        # its events are marked processed in one Redis round trip, after they are on Kafka.
        # Events rather than values: a table write needs the Faust event that caused it.
        # (StreamT does not declare take_events; the Stream every agent gets has it)
        batches = cast(faust.Stream[bytes], stream).take_events(
            settings.batch_max, within=settings.batch_within_s
        )
        async for batch in batches:
            done: list[Event] = []
            sources: list[EventT[bytes]] = []  # the Faust event of each of `done`
            pending: list[Any] = []
            sent: list[tuple[Alert, EventT[bytes]]] = []
            for source in batch:
                raw = source.value
                try:
                    done.append(parse_model(Event, raw))
                    sources.append(source)
                except ContractError as exc:
                    proc.stats.counts["rejected"] += 1
                    log.warning("event rejected to DLQ: %s", exc)
                    record = DlqRecord(
                        reason=str(exc),
                        source="stream.worker",
                        received_at=datetime.now(UTC),
                        original_b64=base64.b64encode(raw).decode(),
                    )
                    pending.append(
                        await send(dlq_topic, None, record.model_dump_json(by_alias=True).encode())
                    )
            decisions = await proc.decide_batch(done)
            for decision, source in zip(decisions, sources, strict=True):
                for visit in decision.visits:
                    pending.append(
                        await send(visits_topic, visit.customer_id.encode(), visit.to_json())
                    )
                for alert in decision.alerts:
                    pending.append(
                        await send(alerts_topic, alert.store_id.encode(), alert.to_json())
                    )
                    sent.append((alert, source))
            # Wait for Kafka's acks before recording anything as sent or processed.
            await asyncio.gather(*pending)
            for alert, _ in sent:
                log.info("alert %s: %s", alert.alert_id, alert.title)
            await proc.mark_done([alert for alert, _ in sent], done)
            now = proc.now().timestamp()
            for alert, source in sent:
                # The source's partition is the store's: the entry's changelog partition.
                dedupe.record(
                    proc.dedupe_id(alert), str(alert.alert_id), alert.customer_id, source, now
                )
            # `proxima customers forget` reaches the table here: the identity index sees
            # the customer leave the registry (checked at most every 0.5 s).
            await proc.identity.refresh()
            if erased := dedupe.forget(proc.identity.take_forgotten()):
                log.info("erased %d alert dedupe entries of forgotten customers", erased)
            if now >= purge_at:
                if purged := dedupe.purge(now):
                    log.info("purged %d expired alert dedupe entries", purged)
                purge_at = now + settings.table_purge_s

    @app.timer(interval=settings.departure_check_s)  # type: ignore[untyped-decorator]
    async def departures() -> None:
        await send_visits(await (await get_processor()).tick())

    @app.timer(interval=settings.consent_publish_s)  # type: ignore[untyped-decorator]
    async def consent_outbox() -> None:
        """Publish consent changes any writer left in the outbox (stream.consent_log)."""
        proc = await get_processor()
        try:
            published = await pump_outbox(
                proc.r, services.redis_prefix, to_kafka, topics.kafka(CONSENT)
            )
        except (KafkaError, RedisError, RedisClusterException, OSError) as exc:
            # The entries stay in the outbox; the next tick publishes them.
            log.warning("consent outbox not drained (retrying): %r", exc)
            return
        if published:
            log.info("published %d consent record(s)", published)

    @app.timer(interval=settings.stats_interval_s)  # type: ignore[untyped-decorator]
    async def publish_counters() -> None:
        """The worker's counters for ``proxima stats`` (transport.stats)."""
        proc = await get_processor()
        try:
            await publish_stats(
                proc.r,
                services.redis_prefix,
                "stream-worker",
                proc.stats.counts,
                ttl_s=int(settings.stats_interval_s * 3) + 1,
            )
        except (RedisError, RedisClusterException, OSError) as exc:
            log.warning("counters not published (retrying): %r", exc)

    return app


class _Worker(faust.Worker):
    """Faust's worker without its terminal spinner.

    To spin on every log record, Faust's ``on_setup_root_logger`` sets the *root* logger
    to DEBUG whatever ``--loglevel`` says, so every debug line of aiokafka and Faust (a few
    per message) is formatted into a record and then dropped by the handler: ~4% of the
    worker's CPU in ``proxima bench stream``. Without the spinner the root keeps the level.
    """

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        self.spinner = None


def run_worker(loglevel: str = "warn") -> None:
    """Run one worker until SIGINT/SIGTERM (``proxima stream worker``)."""
    # The worker is CPU-bound in asyncio machinery (Faust's per-message tasks, futures and
    # queues, aiokafka, redis-py): uvloop's loop makes it ~13% faster (README: bench stream).
    # Set before the app exists, so the main loop and Faust's consumer thread both get it.
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    services = ServiceSettings()
    settings = StreamSettings()
    # Faust may not declare topics (a broker's auto-created topic has the wrong partition
    # count): create the tables' changelogs before it starts, like the contract topics.
    # A loop of its own, not asyncio.run(): that would leave the main thread with "no current
    # loop" set, which the worker's own get_event_loop() would then refuse.
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(ensure_changelogs(services, settings))
    finally:
        loop.close()
    app = create_app(services, settings)
    worker = _Worker(app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()
