"""The MQTT → Kafka bridge (``proxima bridge``).

Subscribes to every gateway's events through a shared subscription (several bridges split
the load), checks each batch's gateway signature (:mod:`contracts.signing`, keys from
:mod:`stream.keyring`; required when ``PROXIMA_STREAM_REQUIRE_SIGNATURES`` is true, and a
signed batch is always verified), validates it event by event, produces good events to
``proxima.events.v1`` keyed by store, and parks bad ones in ``proxima.events.dlq.v1`` with
the reason and the original bytes (bounded: :meth:`contracts.models.DlqRecord.of`).
Events observed far from this bridge's clock, and signed batches published far from it or
well before their gateway's latest (a replay), are parked too; gateway status messages are
signature-checked like batches (README: the bridge).

Every message is acknowledged (paho ``manual_ack``), and only after Kafka has acknowledged
every write it caused, so a bridge killed at any moment loses nothing: the broker
redelivers what was not acked when the persistent session resumes. It does so *only* then:
an unacked message is not sent again while the connection lasts, and once the broker's
in-flight window is full of them it sends nothing more. So no message is ever left unacked
to go on with the next one: a transient failure (Kafka or Redis away) retries the same
message with backoff until it goes through, and anything else parks it on the DLQ.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial

from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from contracts.exceptions import ContractError
from contracts.models import DlqRecord, GatewayStatus, parse_model, split_batch
from contracts.services import ServiceSettings
from contracts.signing import (
    KID_PROPERTY,
    SIG_PROPERTY,
    SignatureError,
    Verified,
)
from stream.batches import off_clock, record_headers, screen
from stream.keyring import KeyCache, Keyring
from stream.settings import StreamSettings
from transport.cancel import reraise_if_cancelled
from transport.kafka import kafka_security, make_producer
from transport.mqtt import Message, MqttClient, service_tls
from transport.probes import CountsCollector, serving
from transport.redis import RedisClient, connect_redis, warn_if_not_persistent
from transport.retry import counted_once, retry_transient, run_guarded
from transport.stats import publish as publish_stats

log = logging.getLogger(__name__)

BRIDGE_GAUGES = ("unacked", "subscribed", "mqtt_reconnects")
"""Counters of the bridge that are levels, not totals (``/metrics`` types them as gauges)."""


class Bridge:
    """One bridge instance. ``run()`` until cancelled."""

    def __init__(
        self,
        services: ServiceSettings,
        settings: StreamSettings,
        client_id: str | None = None,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.services = services
        self.settings = settings
        self.sleep = sleep
        self.rng = rng
        self.clock = clock
        # Per gateway ("store/gw"), the latest signed publish time (Unix ms) of a batch
        # on Kafka: one sorted set, raised with ZADD GT (never lowered by a late batch).
        self._published_key = f"{services.redis_prefix}gateway-published"
        self.topics = services.topics
        ns = f"{services.namespace}-" if services.namespace else ""
        self.mqtt = MqttClient(
            services.mqtt,
            **service_tls(services),
            client_id=f"{ns}{client_id or settings.bridge_client_id}",
            manual_ack=True,
            clean_session=False,
        )
        self.counts: Counter[str] = Counter()
        self._producer: AIOKafkaProducer | None = None
        self._redis: RedisClient | None = None
        self._keys: KeyCache | None = None
        self._in_hand = 0  # messages taken from the queue and not acked yet (0 or 1)
        self.http_port: int | None = None  # where /livez, /readyz, /metrics are served
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(CountsCollector("bridge", self.counts, gauges=BRIDGE_GAUGES))

    async def run(self, ready: asyncio.Event | None = None) -> None:
        producer = make_producer(
            self.services.kafka_bootstrap,
            idempotent=self.settings.kafka_idempotent,
            client_id="proxima-bridge",
            max_request_size=self.settings.kafka_max_request_size,
            security=kafka_security(self.services),
        )
        self._producer = producer
        self._redis = connect_redis(self.services.redis)
        self._keys = KeyCache(
            Keyring(self._redis, self.services.redis_prefix), ttl_s=self.settings.key_cache_ttl_s
        )
        await producer.start()
        await warn_if_not_persistent(self._redis, "bridge", self.counts)
        counters = asyncio.create_task(self._publish_counters(), name="bridge-counters")
        s = self.settings
        checks = {"mqtt": self._mqtt_up, "redis": self._redis_up}
        try:
            async with (
                serving(s.http_host, s.bridge_http_port, self.registry, checks) as port,
                self.mqtt,
            ):
                self.http_port = port
                await self.mqtt.subscribe(
                    self.topics.all_gateway_events(self.settings.bridge_share_group), qos=1
                )
                await self.mqtt.subscribe(
                    f"{self.topics.mqtt_root}/stores/+/gateways/+/status", qos=1
                )
                # A gauge for `proxima stats` and for tests: this replica is taking batches.
                self.counts["subscribed"] = 1
                if ready is not None:
                    ready.set()
                while True:
                    message = await self.mqtt.messages.get()
                    self._in_hand = 1
                    await self.deliver(message)
                    self.mqtt.ack(message)
                    self._in_hand = 0
                    self.counts["acked"] += 1
        finally:
            # Stop the counters task and wait for it, without letting its end (or an error in
            # it) replace the exception this block is unwinding with.
            counters.cancel()
            await asyncio.wait([counters])
            await producer.stop()
            await self._redis.aclose()

    async def _mqtt_up(self) -> bool:
        return self.mqtt.is_connected

    async def _redis_up(self) -> bool:
        return self._redis is not None and bool(await self._redis.ping())

    async def _publish_counters(self) -> None:
        """Every ``stats_interval_s``: this bridge's counters for ``proxima stats``."""
        interval = self.settings.stats_interval_s
        redis = self._redis
        assert redis is not None

        async def publish() -> None:
            # A gauge beside the totals: messages the broker has given this bridge that it
            # has not acked yet (its in-flight window; stuck high = the bridge is retrying).
            self.counts["unacked"] = self.mqtt.messages.qsize() + self._in_hand
            # Connections lost since start: climbing steadily = another client with this
            # replica's id keeps taking its session over (two replicas, one client id).
            self.counts["mqtt_reconnects"] = self.mqtt.reconnects
            await publish_stats(
                redis,
                self.services.redis_prefix,
                "bridge",
                self.counts,
                ttl_s=int(interval * 3) + 1,
            )

        while True:
            await run_guarded(
                publish,
                what="bridge counters",
                base_s=self.settings.retry_backoff_s,
                cap_s=self.settings.retry_backoff_max_s,
                counts=self.counts,
            )
            await asyncio.sleep(interval)

    async def deliver(self, message: Message) -> None:
        """Move one message to Kafka or park it on the DLQ; returns once it may be acked.

        Transient errors retry the same message (counted as ``retries``), never skip it;
        any other error parks it with the error as its reason (``failed``). A try that
        fails is run again whole, so its counts are taken back first.
        """
        s = self.settings

        async def attempt() -> None:
            with counted_once(self.counts):
                await self.handle(message)

        try:
            await retry_transient(
                attempt,
                what=f"message from {message.topic}",
                base_s=s.retry_backoff_s,
                cap_s=s.retry_backoff_max_s,
                on_retry=lambda _exc: self.counts.update(retries=1),
                sleep=self.sleep,
                rng=self.rng,
            )
        except Exception as exc:
            reraise_if_cancelled()
            self.counts["failed"] += 1
            log.exception("bridge failed on a message from %s: parking it", message.topic)
            await self._park_failed(message, exc)

    async def _park_failed(self, message: Message, exc: Exception) -> None:
        """Park a message that :meth:`handle` failed on; if even that fails for a reason
        other than a service away, say so loudly and let it be acked (the last resort:
        only a bug gets here, and holding the message would stop the bridge)."""
        store: str | None = None
        gateway: str | None = None
        with contextlib.suppress(ValueError):  # else parked without: the reason names the topic
            store, gateway, _ = self.topics.parse_gateway_topic(message.topic)
        reason = (
            f"the bridge failed on this message from {message.topic}: {type(exc).__name__}: {exc}"
        )
        s = self.settings
        try:
            await retry_transient(
                partial(self._dlq, reason, message.payload, store, gateway),
                what="DLQ write",
                base_s=s.retry_backoff_s,
                cap_s=s.retry_backoff_max_s,
                on_retry=lambda _exc: self.counts.update(retries=1),
                sleep=self.sleep,
                rng=self.rng,
            )
        except Exception:
            reraise_if_cancelled()
            self.counts["unparked"] += 1
            log.critical(
                "message from %s (%d bytes) could not be parked either; acked and dropped",
                message.topic,
                len(message.payload),
                exc_info=True,
            )

    async def handle(self, message: Message) -> None:
        """Move one MQTT message to Kafka; returns once Kafka has acknowledged it all."""
        assert self._producer is not None
        try:
            store, gateway, leaf = self.topics.parse_gateway_topic(message.topic)
        except ValueError as exc:
            await self._dlq(str(exc), message.payload, None, None)
            return
        if leaf == "status":
            await self._status(message, store, gateway)
            return
        self.counts["batches"] += 1
        if len(message.payload) > self.settings.bridge_max_payload:
            await self._dlq(
                f"batch of {len(message.payload)} bytes exceeds the limit of {self.settings.bridge_max_payload}",
                message.payload,
                store,
                gateway,
            )
            return
        ok, verified = await self._signature_ok(message, store, gateway)
        if not ok or not await self._time_ok(message, verified, store, gateway):
            return
        # A tool's replay carries the trace's recorded time; everything else is held to
        # this bridge's clock (DESIGN: "clock far off" is parked).
        trace_time = verified is not None and verified.key.trace_time
        if self.settings.bridge_events_version == "v2":
            # The batch as its gateway signed it, one record: the worker checks its events
            # (and its signature again) itself (stream.batches).
            headers = record_headers(message.topic, message.user_properties)
            await self._producer.send_and_wait(
                self.topics.events_v2, key=store.encode(), value=message.payload, headers=headers
            )
            self.counts["records_v2"] += 1
        else:
            events, rejected = split_batch(message.payload)
            good, refused = screen(
                events,
                store,
                gateway,
                now=self.clock(),
                settings=self.settings,
                trace_time=trace_time,
                clock="the bridge's clock",
            )
            for item in refused:
                self.counts["clock_off"] += item.clock_off
                await self._dlq(item.reason, item.raw, store, gateway)
            futures = [
                await self._producer.send(
                    self.topics.events, key=store.encode(), value=event.to_json()
                )
                for event in good
            ]
            for bad in rejected:
                await self._dlq(bad.reason, bad.raw, store, gateway)
            if futures:
                await asyncio.gather(*futures)
            self.counts["events"] += len(futures)
        if verified is not None and verified.published_at_ms is not None:
            # Only now: a batch that failed half-way is tried again, and must not be
            # refused as a replay of itself.
            assert self._redis is not None
            await self._redis.zadd(
                self._published_key, {f"{store}/{gateway}": verified.published_at_ms}, gt=True
            )

    async def _time_ok(
        self, message: Message, verified: Verified | None, store: str, gateway: str
    ) -> bool:
        """A signed publish time must be near this bridge's clock and not older than the
        gateway's latest batch by more than ``batch_reorder_s`` (a high-water mark in
        Redis, kept per gateway): an old signed batch replayed is refused here, whatever
        its events' times say. A v1 signature has no time; it is refused only when
        ``require_signed_time`` is on."""
        s = self.settings
        if verified is None:
            return True
        if verified.published_at_ms is None:
            if not s.require_signed_time:
                self.counts["signed_v1"] += 1
                return True
            self.counts["bad_signature"] += 1
            reason = "v1 signature (no signed publish time), refused: PROXIMA_STREAM_REQUIRE_SIGNED_TIME is on"
            await self._dlq(reason, message.payload, store, gateway)
            return False
        published = verified.published_at_ms / 1000
        if off := off_clock(published, self.clock(), s, "the bridge's clock"):
            self.counts["clock_off"] += 1
            at = datetime.fromtimestamp(published, UTC).isoformat(timespec="milliseconds")
            await self._dlq(f"batch published at {at}, {off}", message.payload, store, gateway)
            return False
        assert self._redis is not None
        latest = await self._redis.zscore(self._published_key, f"{store}/{gateway}")
        if latest is not None and verified.published_at_ms < latest - s.batch_reorder_s * 1000:
            self.counts["replayed"] += 1
            at = datetime.fromtimestamp(published, UTC).isoformat(timespec="milliseconds")
            high = datetime.fromtimestamp(latest / 1000, UTC).isoformat(timespec="milliseconds")
            reason = (
                f"replayed batch: published at {at}, more than PROXIMA_STREAM_BATCH_REORDER_S="
                f"{s.batch_reorder_s:g} s before this gateway's latest batch ({high})"
            )
            await self._dlq(reason, message.payload, store, gateway)
            return False
        return True

    async def _signature_ok(
        self, message: Message, store: str, gateway: str, what: str = ""
    ) -> tuple[bool, Verified | None]:
        """Verify a signed message always, an unsigned one only when signatures are
        required: (accepted, its verified signature or None if unsigned). A refused message
        is parked here. ``what`` prefixes the counters and the reason (``status``)."""
        assert self._keys is not None
        prefix = f"{what}_" if what else ""
        signed = any(n in (KID_PROPERTY, SIG_PROPERTY) for n, _ in message.user_properties)
        if not signed and not self.settings.require_signatures:
            self.counts[f"{prefix}unsigned_accepted"] += 1
            return True, None
        try:
            verified = await self._keys.verify(
                message.topic,
                message.payload,
                message.user_properties,
                store_id=store,
                gateway_id=gateway,
            )
        except SignatureError as exc:
            self.counts[f"{prefix}bad_signature"] += 1
            reason = f"gateway {what}: {exc}" if what else str(exc)
            await self._dlq(reason, message.payload, store, gateway)
            return False, None
        self.counts[f"{prefix}signed"] += 1
        return True, verified

    async def _dlq(self, reason: str, raw: bytes, store: str | None, gateway: str | None) -> None:
        assert self._producer is not None
        self.counts["rejected"] += 1
        log.warning("rejected to DLQ (store=%s gateway=%s): %s", store, gateway, reason)
        record = DlqRecord.of(reason, raw, source="bridge", store_id=store, gateway_id=gateway)
        key = (store or "-").encode()[:200]
        await self._producer.send_and_wait(self.topics.events_dlq, key=key, value=record.to_json())

    async def _status(self, message: Message, store: str, gateway: str) -> None:
        """Record a gateway's status, signature-checked like a batch. Not held to the clock:
        a retained status, or the last will, is as old as the gateway's last word."""
        assert self._redis is not None
        payload = message.payload
        ok, _ = await self._signature_ok(message, store, gateway, what="status")
        if not ok:
            return
        try:
            status = parse_model(GatewayStatus, payload)
        except ContractError as exc:
            await self._dlq(f"gateway status: {exc}", payload, store, gateway)
            return
        if (status.store_id, status.gateway_id) != (store, gateway):
            reason = (
                f"gateway status says {status.store_id}/{status.gateway_id} "
                f"but was published on {store}/{gateway}"
            )
            await self._dlq(reason, payload, store, gateway)
            return
        await self._redis.hset(
            f"{self.services.redis_prefix}gateways",
            f"{store}/{gateway}",
            status.model_dump_json(by_alias=True),
        )
