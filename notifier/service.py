"""The notifier (``proxima notifier serve``): alerts from Kafka to associates.

Consumes ``proxima.alerts.v1`` in a consumer group. Each new alert is stored and routed
(:mod:`notifier.lifecycle`, :mod:`notifier.routing`), then published, QoS 1, on the
store's topic and on the topic of every associate of its first routing tier. The Kafka
offset is committed only after the broker's PUBACKs, so a killed notifier re-delivers
rather than loses; an alert already published (same ``alert_id``) is not published twice.

Beside that loop the same process takes acks from handhelds on
``.../stores/{store}/alerts/{alert_id}/ack`` (a shared subscription, so one instance
handles each), escalates and expires unclaimed alerts every ``tick_s``, and serves the
associate console. All state is in Redis, so several instances can run side by side.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import redis.asyncio as aioredis
from aiohttp import web
from aiokafka import AIOKafkaConsumer

from contracts.exceptions import ContractError
from contracts.models import Alert, AlertAck, parse_alert, parse_model
from contracts.services import ServiceSettings
from notifier.directory import Clock, Directory, utc_now
from notifier.exceptions import NotifierError
from notifier.lifecycle import AlertRecord, Delivery, Lifecycle
from notifier.metrics import Metrics
from notifier.routing import Ladder
from notifier.settings import NotifierSettings
from notifier.web import Console, serve
from transport.mqtt import Message, MqttClient

log = logging.getLogger(__name__)


class Notifier:
    """One notifier instance; all state is in Redis, so several can run."""

    def __init__(
        self,
        services: ServiceSettings,
        group_id: str = "proxima-notifier",
        *,
        settings: NotifierSettings | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.services = services
        self.settings = settings or NotifierSettings()
        self.topics = services.topics
        self.group_id = f"{services.namespace}-{group_id}" if services.namespace else group_id
        self.clock = clock
        self.mqtt = MqttClient(services.mqtt)
        self.metrics = Metrics()
        self.redis: aioredis.Redis = aioredis.from_url(services.redis, decode_responses=True)
        self.directory = Directory(self.redis, services.redis_prefix, clock=clock)
        self.lifecycle = Lifecycle(
            self.redis,
            services.redis_prefix,
            self.directory,
            clock=clock,
            ladder=Ladder(
                escalate_after=timedelta(seconds=self.settings.escalate_after_s),
                manager_after=timedelta(seconds=self.settings.manager_after_s),
                max_shift=timedelta(seconds=self.settings.max_shift_s),
            ),
            expire_after=timedelta(seconds=self.settings.expire_after_s),
            retention=timedelta(seconds=self.settings.retention_s),
        )
        self.console = Console(
            redis=self.redis,
            prefix=services.redis_prefix,
            directory=self.directory,
            lifecycle=self.lifecycle,
            settings=self.settings,
            metrics=self.metrics,
            mqtt_connected=lambda: self.mqtt.is_connected,
            clock=clock,
        )
        self.http_port: int | None = None

    @property
    def ack_filter(self) -> str:
        flt = f"{self.topics.mqtt_root}/stores/+/alerts/+/ack"
        return f"$share/{self.group_id}/{flt}"

    async def run(self, ready: asyncio.Event | None = None) -> None:
        consumer = AIOKafkaConsumer(
            self.topics.alerts,
            bootstrap_servers=self.services.kafka_bootstrap,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            async with self.mqtt, self.serving():
                await self.mqtt.subscribe(self.ack_filter, qos=1)
                if ready is not None:
                    ready.set()
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(self._consume(consumer), name="notifier-kafka")
                    tasks.create_task(self.ack_loop(), name="notifier-acks")
                    tasks.create_task(self.tick_loop(), name="notifier-escalation")
        finally:
            await consumer.stop()
            await self.redis.aclose()

    def serving(self) -> _Serving:
        """The console for the lifetime of the block (``async with notifier.serving()``)."""
        return _Serving(self)

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=500, max_records=200)
            for _tp, records in batches.items():
                for record in records:
                    await self.handle(record.value or b"")
            if batches:
                await consumer.commit()

    # alerts ------------------------------------------------------------------------
    async def handle(self, raw: bytes) -> None:
        try:
            alert = parse_alert(raw)
        except ContractError as exc:
            self.metrics.inc("proxima_notifier_alerts_total", outcome="rejected")
            await self._park("alert", str(exc), raw)
            return
        created = await self.lifecycle.create(alert)
        if created is None:
            existing = await self.lifecycle.get(str(alert.alert_id))
            if existing is None or existing.published:
                self.metrics.inc("proxima_notifier_alerts_total", outcome="duplicate")
                return
            # Stored but never published: the last instance died in between.
            created = existing
        await self.deliver(alert, created)
        await self.lifecycle.mark_published(str(alert.alert_id))
        self.metrics.inc("proxima_notifier_alerts_total", outcome="delivered")

    async def deliver(self, alert: Alert, created: Delivery | AlertRecord) -> None:
        payload = alert.to_json()
        await self.mqtt.publish(self.topics.store_alerts(alert.store_id), payload, qos=1)
        if isinstance(created, Delivery):
            recipients = created.step.associate_ids
            tier = created.step.tier.label
        else:
            recipients = created.notified
            tier = created.tier_label or "none"
        for associate_id in recipients:
            await self.mqtt.publish(
                self.topics.associate_alerts(alert.store_id, associate_id), payload, qos=1
            )
            self.metrics.inc("proxima_notifier_deliveries_total", tier=tier)

    # escalation --------------------------------------------------------------------
    async def tick(self) -> None:
        for delivery in await self.lifecycle.tick():
            alert = delivery.record.alert
            tier = delivery.step.tier.label
            self.metrics.inc("proxima_notifier_escalations_total", tier=tier)
            for associate_id in delivery.step.associate_ids:
                await self.mqtt.publish(
                    self.topics.associate_alerts(alert.store_id, associate_id),
                    alert.to_json(),
                    qos=1,
                )
                self.metrics.inc("proxima_notifier_deliveries_total", tier=tier)

    async def tick_loop(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                # A Redis or broker hiccup must not stop escalation for good.
                log.exception("escalation tick failed; trying again")
            await asyncio.sleep(self.settings.tick_s)

    # acks from handhelds -------------------------------------------------------------
    async def ack_loop(self) -> None:
        while True:
            message = await self.mqtt.messages.get()
            try:
                await self.handle_ack(message)
            except Exception:
                log.exception("ack on %s failed", message.topic)

    async def handle_ack(self, message: Message) -> AlertRecord | None:
        """Apply one ack; a bad one is counted, logged and parked, never fatal."""
        try:
            ack = _parse_ack(message)
            record = await self.lifecycle.apply_ack(ack)
        except (ContractError, NotifierError) as exc:
            self.metrics.inc("proxima_notifier_acks_total", source="mqtt", result="rejected")
            await self._park("ack", f"{message.topic}: {exc}", message.payload)
            return None
        self.metrics.inc("proxima_notifier_acks_total", source="mqtt", result=ack.status.value)
        return record

    async def _park(self, what: str, reason: str, raw: bytes) -> None:
        log.warning("%s rejected: %s", what, reason)
        await self.redis.xadd(
            f"{self.services.redis_prefix}notifier:rejected",
            {"what": what, "reason": reason, "raw": raw, "at": datetime.now(UTC).isoformat()},
            maxlen=10_000,
        )


def _parse_ack(message: Message) -> AlertAck:
    """The ack, if its payload agrees with the topic it came on (``.../{store}/alerts/{id}/ack``)."""
    parts = message.topic.split("/")
    if len(parts) < 5 or parts[-1] != "ack" or parts[-3] != "alerts":
        raise ContractError(f"topic {message.topic!r} is not an ack topic")
    store, alert_id = parts[-4], parts[-2]
    ack = parse_model(AlertAck, message.payload)
    if ack.store_id != store or str(ack.alert_id) != alert_id:
        raise ContractError(
            f"ack for store {ack.store_id!r}, alert {ack.alert_id} "
            f"sent on the topic of store {store!r}, alert {alert_id!r}"
        )
    return ack


class _Serving:
    """Runs the console while the block runs; a port in use is logged, not fatal.

    Delivery matters more than the console: a second instance on the same host, or a
    port taken by something else, still delivers alerts and escalates.
    """

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier
        self.runner: web.AppRunner | None = None

    async def __aenter__(self) -> _Serving:
        settings = self.notifier.settings
        try:
            self.runner, port = await serve(
                self.notifier.console.app(), settings.http_host, settings.http_port
            )
        except OSError as exc:
            log.error(
                "console not started: cannot listen on %s:%d (%s); alerts are still delivered",
                settings.http_host,
                settings.http_port,
                exc,
            )
            return self
        self.notifier.http_port = port
        log.info("associate console on http://%s:%d", settings.http_host, port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
