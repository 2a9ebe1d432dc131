"""The Faust app: ``proxima.events.v1`` → decisions → ``proxima.alerts.v1``.

Processing guarantee is at-least-once (Faust commits an offset after the agent has
handled the event); exactly-once is not used because Tansu's transactions are incomplete
and because every step downstream is idempotent anyway (see stream.processor).
"""

from __future__ import annotations

import asyncio
import base64
import logging
from datetime import UTC, datetime
from typing import Any

import faust
import redis.asyncio as aioredis

from contracts.exceptions import ContractError
from contracts.models import DlqRecord, Event, VisitUpdate, parse_model
from contracts.services import ServiceSettings
from contracts.topics import VISITS
from stream.processor import EventProcessor
from stream.rules import RuleBook
from stream.settings import StreamSettings

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


def create_app(services: ServiceSettings, settings: StreamSettings) -> faust.App:
    """Build the Faust app for one namespace; topics must already exist (see ensure_topics)."""
    _fetch_wait(settings.fetch_max_wait_ms)
    topics = services.topics
    app_id = f"{services.namespace}-{settings.app_id}" if services.namespace else settings.app_id
    datadir = settings.data_dir / app_id
    datadir.parent.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    app = faust.App(
        app_id,
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
    rules = RuleBook(settings.rules_dir)
    rules.check_all()  # a broken rules file stops the worker at start, naming the field
    state: dict[str, Any] = {}

    async def send_visits(visits: list[VisitUpdate]) -> None:
        for visit in visits:
            await (await visits_topic.send(key=visit.customer_id.encode(), value=visit.to_json()))

    async def processor() -> EventProcessor:
        if "processor" not in state:
            redis = aioredis.from_url(services.redis)
            state["processor"] = EventProcessor(
                redis,
                services.redis_prefix,
                drift_windows=settings.drift_windows,
                revisit_gap_s=settings.revisit_gap_s,
                exit_timeout_s=settings.exit_timeout_s,
                dedupe_ttl_s=settings.dedupe_ttl_s,
                rules=rules,
            )
        proc: EventProcessor = state["processor"]
        return proc

    @app.agent(events_topic)
    async def decide(stream: faust.StreamT[bytes]) -> None:
        proc = await processor()
        # Batches: the Kafka acks of a batch's alerts and visits are awaited together and
        # its events are marked processed in one Redis round trip, after they are on Kafka.
        async for batch in stream.take(settings.batch_max, within=settings.batch_within_s):
            done: list[Event] = []
            pending: list[Any] = []
            alerts = []
            for raw in batch:
                try:
                    done.append(parse_model(Event, raw))
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
                        await dlq_topic.send(value=record.model_dump_json(by_alias=True).encode())
                    )
            for decision in await proc.decide_batch(done):
                for visit in decision.visits:
                    pending.append(
                        await visits_topic.send(
                            key=visit.customer_id.encode(), value=visit.to_json()
                        )
                    )
                for alert in decision.alerts:
                    pending.append(
                        await alerts_topic.send(key=alert.store_id.encode(), value=alert.to_json())
                    )
                    alerts.append(alert)
            # Wait for Kafka's acks before recording anything as sent or processed.
            await asyncio.gather(*pending)
            for alert in alerts:
                log.info("alert %s: %s", alert.alert_id, alert.title)
            await proc.mark_sent_many(alerts)
            await proc.mark_processed_many(done)

    @app.timer(interval=settings.departure_check_s)  # type: ignore[untyped-decorator]
    async def departures() -> None:
        await send_visits(await (await processor()).tick())

    return app


def run_worker(loglevel: str = "warn") -> None:
    """Run one worker until SIGINT/SIGTERM (``proxima stream worker``)."""
    services = ServiceSettings()
    settings = StreamSettings()
    app = create_app(services, settings)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()
