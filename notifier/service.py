"""The notifier (``proxima notifier serve``): alerts from Kafka to associates.

Consumes ``proxima.alerts.v1`` in a consumer group. Each new alert is stored and routed
(:mod:`notifier.lifecycle`, :mod:`notifier.routing`), then published, QoS 1, on the
store's topic and on the topic of every associate of its first routing tier. The Kafka
offset is committed only after the broker's PUBACKs, so a killed notifier re-delivers
rather than loses; an alert already published (same ``alert_id``) is not published twice.

Beside that loop the same process takes acks from handhelds on
``.../stores/{store}/associates/{associate}/acks/{alert_id}`` (a shared subscription, so
one instance handles each; a body naming another associate than the topic is refused),
follows ``proxima.consent.v1`` (a forget erases the customer's alerts, a revocation
withdraws the open ones), escalates and expires unclaimed alerts every ``tick_s``, and
serves the associate console. All state is in Redis, so several instances can run side by
side. Both Kafka loops wait out Redis, Kafka or MQTT being away (:meth:`Notifier.follow`).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import CommitFailedError, IllegalStateError
from pydantic import BaseModel, ConfigDict, StrictBool

from contracts.exceptions import ContractError
from contracts.models import (
    Alert,
    AlertAck,
    AlertWithdrawn,
    ConsentRecord,
    WithdrawReason,
    parse_alert,
    parse_model,
)
from contracts.services import ServiceSettings
from contracts.topics import CONSENT
from notifier import egress, messaging
from notifier.channels import (
    Backoff,
    Channels,
    ConsoleChannel,
    MqttChannel,
    VapidKeys,
    WebhookChannel,
    WebPushChannel,
)
from notifier.destinations import Destinations
from notifier.directory import Associate, Clock, Directory, utc_now
from notifier.dispatch import Dispatcher
from notifier.exceptions import (
    AckRefused,
    AlertConflict,
    AlertWithheld,
    NotifierError,
    UnknownAlert,
    UnknownAssociate,
)
from notifier.lifecycle import (
    ARRIVAL_ALERTS,
    AlertRecord,
    Delivery,
    Lifecycle,
    ack_outbox_key,
)
from notifier.metrics import Metrics
from notifier.outbox import Entry, Outbox
from notifier.routing import Ladder
from notifier.settings import NotifierSettings
from notifier.web.app import Console, serve
from transport.cancel import reraise_if_cancelled
from transport.kafka import kafka_security, make_producer
from transport.mqtt import Message, MqttClient, MqttError, service_tls
from transport.redis import RedisClient, connect_redis, is_cluster_url, text_map
from transport.redis import as_text as text
from transport.retry import backoff, retrying

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
        self.mqtt = MqttClient(services.mqtt, **service_tls(services))
        self.metrics = Metrics()
        self.redis: RedisClient
        if is_cluster_url(services.redis):
            # redis-py's cluster client has no blocking pool: ``redis_connections`` is per
            # node, and a command past it fails (MaxConnectionsError) instead of waiting.
            self.redis = connect_redis(
                services.redis,
                max_connections=self.settings.redis_connections,
                decode_responses=True,
            )
        else:
            # A blocking pool: 200 consoles connecting at once wait for a connection rather
            # than fail with "Too many connections".
            # from_pool: the client owns the pool, so aclose() closes its connections too.
            self.redis = aioredis.Redis.from_pool(
                aioredis.BlockingConnectionPool.from_url(
                    services.redis,
                    max_connections=self.settings.redis_connections,
                    timeout=10,
                    decode_responses=True,
                )
            )
        self.directory = Directory(
            self.redis,
            services.redis_prefix,
            clock=clock,
            hash_concurrency=self.settings.password_hash_concurrency,
        )
        prefix = services.redis_prefix
        # One consumer name per process: a dead instance's pending entries are claimed by
        # the others after ``claim_idle``.
        self.instance = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self.ack_outbox = Outbox(
            self.redis, ack_outbox_key(prefix), group="acks", consumer=self.instance
        )
        s = self.settings
        webhook_backoff = Backoff(s.webhook_attempts, s.webhook_backoff_s, s.webhook_backoff_cap_s)
        # Longer than one send's worst case, so a slow retry is not taken over.
        send_idle = timedelta(
            seconds=webhook_backoff.worst_case_s + s.webhook_attempts * s.webhook_timeout_s + 30
        )
        self.send_outbox = Outbox(
            self.redis,
            f"{prefix}notifier:outbox:sends",
            group="sends",
            consumer=self.instance,
            claim_idle=send_idle,
        )
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
            acks=self.ack_outbox,
        )
        self.lifecycle.on_delivery = self._deliver_escalation
        self.destinations = Destinations(self.redis, prefix, self.directory)
        self.vapid = VapidKeys(self.redis, prefix, s.vapid_private_key)
        self._http: aiohttp.ClientSession | None = None
        http = {"backoff": webhook_backoff, "timeout_s": s.webhook_timeout_s, "clock": clock}
        webhook = WebhookChannel(self.http_session, **http)  # type: ignore[arg-type]
        self.channels = Channels(
            MqttChannel(self.mqtt, self.topics, clock),
            ConsoleChannel(self.redis, self.lifecycle.channel, clock),
            webhook,
            WebPushChannel(
                self.http_session, self.vapid, s.vapid_subject, ttl_s=s.push_ttl_s, **http
            ),
        )
        self.dispatcher = Dispatcher(
            self.channels, self.destinations, self.lifecycle, self.send_outbox, self.metrics, clock
        )
        # "Your room is ready": the customer messages of stores that set a messaging webhook.
        self.message_outbox = Outbox(
            self.redis,
            messaging.outbox_key(prefix),
            group="room-messages",
            consumer=self.instance,
            claim_idle=send_idle,
        )
        self.messenger = messaging.RoomMessenger(
            self.lifecycle.messaging, self.message_outbox, webhook, self.metrics, clock
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
            destinations=self.destinations,
            vapid=self.vapid,
        )
        self.http_port: int | None = None

    def http_session(self) -> aiohttp.ClientSession:
        """One HTTP client per instance for webhooks and pushes, made on first use."""
        if self._http is None or self._http.closed:
            self._http = egress.client_session(
                egress.EgressPolicy(self.settings.webhook_networks),
                ca_file=self.settings.webhook_ca_file,
            )
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
        await self.redis.aclose()

    @property
    def ack_filters(self) -> list[str]:
        """Each associate's ack topics (``.../associates/{id}/acks/{alert_id}``), and the
        0.1 store-wide one only with ``legacy_ack_topic``; shared, so one instance takes
        each ack."""
        filters = [self.topics.all_associate_acks(self.group_id)]
        if self.settings.legacy_ack_topic:
            filters.append(self.topics.all_legacy_acks(self.group_id))
        return filters

    @property
    def shift_filter(self) -> str:
        """Handhelds set their shift on ``.../stores/{store}/associates/{id}/shift``."""
        flt = f"{self.topics.alerts_root}/stores/+/associates/+/shift"
        return f"$share/{self.group_id}/{flt}"

    async def run(self, ready: asyncio.Event | None = None) -> None:
        security = kafka_security(self.services)
        consumer = AIOKafkaConsumer(
            self.topics.alerts,
            **security,
            bootstrap_servers=self.services.kafka_bootstrap,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self.settings.kafka_fetch_max_wait_ms,
        )
        # Its own group: consent changes are followed from where this group left off, so
        # a forget or revocation made while every notifier was down still arrives.
        consent = AIOKafkaConsumer(
            self.topics.kafka(CONSENT),
            **security,
            bootstrap_servers=self.services.kafka_bootstrap,
            group_id=f"{self.group_id}-consent",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self.settings.kafka_fetch_max_wait_ms,
        )
        producer = make_producer(
            self.services.kafka_bootstrap,
            idempotent=False,
            client_id="proxima-notifier",
            security=security,
        )
        await consumer.start()
        await consent.start()
        await producer.start()
        try:
            async with self.mqtt, self.serving():
                for ack_filter in self.ack_filters:
                    await self.mqtt.subscribe(ack_filter, qos=1)
                await self.mqtt.subscribe(self.shift_filter, qos=1)
                if ready is not None:
                    ready.set()
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(self._consume(consumer), name="notifier-kafka")
                    tasks.create_task(
                        self.follow(consent, "consent", self.handle_consent),
                        name="notifier-consent",
                    )
                    tasks.create_task(self.ack_loop(), name="notifier-acks")
                    tasks.create_task(self.tick_loop(), name="notifier-escalation")
                    tasks.create_task(
                        self.ack_outbox.run(lambda e: self.produce_acks(producer, e)),
                        name="notifier-acks-to-kafka",
                    )
                    tasks.create_task(self.dispatcher.run_external(), name="notifier-sends")
                    tasks.create_task(self.messenger.run(), name="notifier-room-messages")
        finally:
            await consumer.stop()
            await consent.stop()
            await producer.stop()
            await self.close()

    async def produce_acks(self, producer: AIOKafkaProducer, entries: Sequence[Entry]) -> None:
        """Lifecycle transitions to ``proxima.acks.v1``, keyed by store; raises to retry."""
        futures = [
            await producer.send(
                self.topics.acks, fields["ack"].encode(), key=fields["store"].encode()
            )
            for _id, fields in entries
        ]
        for future in futures:
            await future
        self.metrics.inc("proxima_notifier_acks_produced_total", len(futures))

    def serving(self) -> _Serving:
        """The console for the lifetime of the block (``async with notifier.serving()``)."""
        return _Serving(self)

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        await self.follow(consumer, "alerts", lambda record: self.handle(record.value or b""))

    async def follow(
        self,
        consumer: AIOKafkaConsumer,
        what: str,
        handle: Callable[[ConsumerRecord[bytes, bytes]], Awaitable[object]],
    ) -> None:
        """Hand every record to ``handle`` and commit after each batch, for ever.

        Redis, Kafka or the MQTT broker being away is waited out with backoff (the same
        record is tried again, nothing is committed past it); a record that fails for any
        other reason ``kafka_record_attempts`` times is parked with the error, so no record
        can stop the loop.
        """
        while True:
            reraise_if_cancelled()
            batches = await retrying(
                f"fetching {what}",
                lambda: consumer.getmany(timeout_ms=500, max_records=200),
                **self._retry(what, "fetch"),
            )
            for _tp, records in batches.items():
                for record in records:
                    await self._handle_record(what, handle, record)
                    # redis-py can swallow a cancellation that lands mid-command (it
                    # retries the command): the loop must still end.
                    reraise_if_cancelled()
            if batches:
                await retrying(
                    f"committing {what}",
                    lambda: self._commit(consumer, what),
                    **self._retry(what, "commit"),
                )

    def _retry(self, loop: str, step: str) -> dict[str, Any]:
        """``retrying``'s pacing and a counter of its retries, for one step of one loop."""
        s = self.settings

        def count(_exc: Exception) -> None:
            self.metrics.inc("proxima_notifier_retries_total", loop=loop, step=step)

        return {"first_s": s.retry_backoff_s, "cap_s": s.retry_backoff_max_s, "on_retry": count}

    async def _handle_record(
        self,
        what: str,
        handle: Callable[[ConsumerRecord[bytes, bytes]], Awaitable[object]],
        record: ConsumerRecord[bytes, bytes],
    ) -> None:
        where = f"{what} at {record.topic}[{record.partition}]@{record.offset}"
        s = self.settings
        error: Exception | None = None
        for attempt in range(1, s.kafka_record_attempts + 1):
            try:
                await retrying(where, lambda: handle(record), **self._retry(what, "handle"))
            except Exception as exc:
                reraise_if_cancelled()
                error = exc
                log.exception("%s failed (try %d of %d)", where, attempt, s.kafka_record_attempts)
                if attempt < s.kafka_record_attempts:
                    await asyncio.sleep(backoff(attempt, s.retry_backoff_s, s.retry_backoff_max_s))
            else:
                return
        self.metrics.inc("proxima_notifier_records_parked_total", loop=what)
        reason = f"{where}: {type(error).__name__}: {error}"
        await retrying(
            f"parking {where}",
            lambda: self._park(what, reason, record.value or b""),
            **self._retry(what, "park"),
        )

    @staticmethod
    async def _commit(consumer: AIOKafkaConsumer, what: str) -> None:
        try:
            await consumer.commit()
        except (CommitFailedError, IllegalStateError) as exc:
            # Not transient: the group moved these partitions while we waited for a
            # service. Their new owner reads the batch again; handling is idempotent.
            log.warning("%s offsets not committed (%s): the group rebalanced", what, exc)

    # alerts ------------------------------------------------------------------------
    async def handle(self, raw: bytes) -> None:
        try:
            alert = parse_alert(raw)
        except ContractError as exc:
            self.metrics.inc("proxima_notifier_alerts_total", outcome="rejected")
            await self._park("alert", str(exc), raw)
            return
        try:
            created = await self.lifecycle.create(alert)
        except AlertWithheld as exc:
            # Produced before the customer left or revoked; read after we learnt it.
            log.info("%s", exc)
            self.metrics.inc("proxima_notifier_alerts_total", outcome="withheld")
            return
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
        """The store's topic and store destinations, then the first tier on every channel."""
        if isinstance(created, Delivery):
            record, recipients = created.record, created.step.associate_ids
            tier = created.step.tier.label
        else:
            record, recipients = created, created.notified
            tier = created.tier_label or "none"
        await self.dispatcher.deliver(record, recipients, tier, to_store=True)

    # consent -----------------------------------------------------------------------
    async def handle_consent(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """One record of ``proxima.consent.v1``: a tombstone erases the customer's alerts,
        a state without arrival alerts in a store withdraws the open ones there."""
        if record.key is None:
            self.metrics.inc("proxima_notifier_consent_total", change="rejected")
            await self._park("consent", f"offset {record.offset}: no key", record.value or b"")
            return
        customer_id = record.key.decode(errors="replace")
        lifecycle = self.lifecycle
        if record.value is None:
            await lifecycle.mark_erased(customer_id)
            await lifecycle.withdraw_customer(customer_id, WithdrawReason.ERASED)
            # Every alert withdrawn for this erasure, also by a try that failed after it
            # withdrew them (the records are deleted only below): tried again, told again.
            records = await lifecycle.customer_alerts(customer_id)
            await self._announce_withdrawn(
                [r for r in records if r.withdrawn_reason is WithdrawReason.ERASED],
                WithdrawReason.ERASED,
            )
            await lifecycle.delete_customer(customer_id)
            await self._forget_pending(customer_id, records)
            self.metrics.inc("proxima_notifier_consent_total", change="erased")
            return
        try:
            consent = parse_model(ConsentRecord, record.value)
        except ContractError as exc:
            why = str(exc)
        else:
            why = (
                ""
                if consent.customer_id == customer_id
                else f"key {customer_id!r} but customer_id {consent.customer_id!r}"
            )
        if why:
            self.metrics.inc("proxima_notifier_consent_total", change="rejected")
            await self._park("consent", f"offset {record.offset}: {why}", record.value)
            return
        await lifecycle.follow_consent(consent)
        revoked = WithdrawReason.CONSENT_REVOKED
        await self._announce_withdrawn(
            [
                r
                for r in await lifecycle.customer_alerts(customer_id)
                if r.withdrawn_reason is revoked
                and not consent.allows(ARRIVAL_ALERTS, r.alert.store_id)
            ],
            revoked,
        )
        self.metrics.inc("proxima_notifier_consent_total", change="changed")

    async def _announce_withdrawn(
        self, records: Sequence[AlertRecord], reason: WithdrawReason
    ) -> None:
        """Tell the store's screens and every handheld that had it: drop this alert.

        A broker away is waited for here, not by trying the whole record again: by then
        the alerts are withdrawn and a new try would find nothing left to announce.
        """
        for record in records:
            store = record.alert.store_id
            message = AlertWithdrawn(
                alert_id=record.alert.alert_id, store_id=store, reason=reason, at=self.clock()
            ).to_json()
            told = [*record.notified, *([record.claimed_by] if record.claimed_by else [])]
            topics = [
                self.topics.store_alerts(store),
                *(self.topics.associate_alerts(store, a) for a in dict.fromkeys(told)),
            ]
            for topic in topics:
                await retrying(
                    f"announcing withdrawn alert {record.alert.alert_id}",
                    functools.partial(self.mqtt.publish, topic, message, qos=1),
                    retry=(MqttError,),
                    **self._retry("consent", "announce"),
                )
            self.metrics.inc("proxima_notifier_alerts_withdrawn_total", reason=reason.value)

    async def _forget_pending(self, customer_id: str, records: Sequence[AlertRecord]) -> None:
        """A forgotten customer's alerts leave the sends outbox and the rejected stream too."""
        gone = {str(r.alert.alert_id) for r in records}
        quoted = json.dumps(customer_id)

        def pending_send(fields: dict[str, str]) -> bool:
            try:
                alert = json.loads(fields.get("alert", "{}"))
            except ValueError:
                return False
            return bool(alert.get("customer_id") == customer_id or alert.get("alert_id") in gone)

        for key, about in (
            (self.send_outbox.key, pending_send),
            (self._rejected, lambda fields: quoted in fields.get("raw", "")),
        ):
            drop = [
                text(entry_id)
                for entry_id, fields in await self.redis.xrange(key) or []
                if entry_id is not None and about(text_map(fields or {}))
            ]
            if drop:
                await self.redis.xdel(key, *drop)

    # escalation --------------------------------------------------------------------
    async def _deliver_escalation(self, delivery: Delivery) -> None:
        tier = delivery.step.tier.label
        self.metrics.inc("proxima_notifier_escalations_total", tier=tier)
        await self.dispatcher.deliver(
            delivery.record, delivery.step.associate_ids, tier, reason="escalated"
        )

    async def tick(self) -> None:
        for delivery in await self.lifecycle.tick():
            await self._deliver_escalation(delivery)

    async def tick_loop(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                reraise_if_cancelled()
                # A Redis or broker hiccup must not stop escalation for good.
                log.exception("escalation tick failed; trying again")
            await asyncio.sleep(self.settings.tick_s)

    # acks from handhelds -------------------------------------------------------------
    async def ack_loop(self) -> None:
        while True:
            message = await self.mqtt.messages.get()
            try:
                if message.topic.endswith("/shift"):
                    await self.handle_shift(message)
                else:
                    await self.handle_ack(message)
            except Exception:
                reraise_if_cancelled()
                log.exception("message on %s failed", message.topic)
            # A cancellation swallowed inside a handler (seen with redis-py mid-command)
            # must still end the loop.
            reraise_if_cancelled()

    async def handle_shift(self, message: Message) -> Associate | None:
        """A handheld starts or ends its associate's shift; bad ones are parked."""
        try:
            store, associate_id, update = _parse_shift(message)
            associate = await self.directory.set_on_shift(store, associate_id, update.on_shift)
        except (ContractError, NotifierError) as exc:
            self.metrics.inc("proxima_notifier_shifts_total", source="mqtt", result="rejected")
            await self._park("shift", f"{message.topic}: {exc}", message.payload)
            return None
        await self.redis.publish(
            self.lifecycle.channel(store),
            json.dumps({"type": "shift", "associate": associate.public()}),
        )
        self.metrics.inc(
            "proxima_notifier_shifts_total",
            source="mqtt",
            result="on" if update.on_shift else "off",
        )
        return associate

    async def handle_ack(self, message: Message) -> AlertRecord | None:
        """Apply one ack; a bad or refused one is counted, logged and parked, never fatal."""
        try:
            ack, legacy = self._parse_ack(message)
            record = await self.lifecycle.apply_ack(ack)
        except (ContractError, NotifierError) as exc:
            self.metrics.inc("proxima_notifier_acks_total", source="mqtt", result="rejected")
            reason = (
                exc.reason if isinstance(exc, AckRefused) else _REFUSAL.get(type(exc), "invalid")
            )
            self.metrics.inc("proxima_notifier_acks_refused_total", reason=reason)
            await self._park("ack", f"{message.topic}: {reason}: {exc}", message.payload)
            return None
        source = "mqtt-legacy" if legacy else "mqtt"
        self.metrics.inc("proxima_notifier_acks_total", source=source, result=ack.status.value)
        if record is not None and ack.status.value == "claimed":
            self.metrics.claimed(record.delivered_at, record.claimed_at)
        return record

    def _parse_ack(self, message: Message) -> tuple[AlertAck, bool]:
        """The ack, if its payload agrees with the topic it came on; and if that topic was
        the legacy store-wide one.

        On ``.../stores/{store}/associates/{associate}/acks/{alert_id}`` the body must name
        that store, alert and associate: the broker's ACL lets a handheld write only its own
        associate's topic, so the topic is who sent it, whatever the body says.
        """
        try:
            store, associate, alert_id = self.topics.parse_ack_topic(message.topic)
        except ValueError as exc:
            raise AckRefused("topic", str(exc)) from None
        if associate is None and not self.settings.legacy_ack_topic:
            raise AckRefused(
                "legacy_topic",
                "the store-wide ack topic is off (PROXIMA_NOTIFIER_LEGACY_ACK_TOPIC)",
            )
        ack = parse_model(AlertAck, message.payload)
        if ack.store_id != store or str(ack.alert_id) != alert_id:
            raise AckRefused(
                "topic_mismatch",
                f"ack for store {ack.store_id!r}, alert {ack.alert_id} "
                f"sent on the topic of store {store!r}, alert {alert_id!r}",
            )
        if associate is not None and ack.associate_id != associate:
            raise AckRefused(
                "associate_mismatch",
                f"ack naming associate {ack.associate_id!r} sent on the topic of "
                f"associate {associate!r}",
            )
        return ack, associate is None

    @property
    def _rejected(self) -> str:
        return f"{self.services.redis_prefix}notifier:rejected"

    async def _park(self, what: str, reason: str, raw: bytes) -> None:
        log.warning("%s rejected: %s", what, reason)
        # As text (bad bytes escaped): the stream is read with decoded responses.
        shown = raw.decode("utf-8", "backslashreplace")
        await self.redis.xadd(
            self._rejected,
            {"what": what, "reason": reason, "raw": shown, "at": datetime.now(UTC).isoformat()},
            maxlen=10_000,
        )


class ShiftUpdate(BaseModel):
    """The payload on an associate's shift topic: ``{"on_shift": true}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    on_shift: StrictBool


def _parse_shift(message: Message) -> tuple[str, str, ShiftUpdate]:
    """``.../stores/{store}/associates/{id}/shift`` and its payload."""
    parts = message.topic.split("/")
    if len(parts) < 5 or parts[-1] != "shift" or parts[-3] != "associates":
        raise ContractError(f"topic {message.topic!r} is not a shift topic")
    return parts[-4], parts[-2], parse_model(ShiftUpdate, message.payload)


_REFUSAL: dict[type[Exception], str] = {
    ContractError: "payload",
    UnknownAssociate: "unknown_associate",
    UnknownAlert: "unknown_alert",
    AlertConflict: "conflict",
}
"""Metric reasons of the errors an ack can meet after its topic checked out."""


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
