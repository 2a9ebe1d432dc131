"""The MQTT → Kafka bridge (``proxima bridge``).

Subscribes to every gateway's events through a shared subscription (several bridges split
the load), checks each batch's gateway signature (:mod:`contracts.signing`, keys from
:mod:`stream.keyring`; required when ``PROXIMA_STREAM_REQUIRE_SIGNATURES`` is true, and a
signed batch is always verified), validates it event by event, produces good events to
``proxima.events.v1`` keyed by store, and parks bad ones in ``proxima.events.dlq.v1`` with
the reason and the original bytes. The MQTT message is acknowledged (paho ``manual_ack``)
only after Kafka has acknowledged every write it caused, so a bridge killed at any moment
loses nothing: the broker redelivers to the persistent session.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
from collections import Counter
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from redis.exceptions import RedisClusterException, RedisError

from contracts.exceptions import ContractError
from contracts.models import DlqRecord, GatewayStatus, parse_model, split_batch
from contracts.services import ServiceSettings
from contracts.signing import KID_PROPERTY, SIG_PROPERTY, SignatureError, verify
from stream.keyring import KeyCache, Keyring
from stream.settings import StreamSettings
from transport.cancel import reraise_if_cancelled
from transport.kafka import make_producer
from transport.mqtt import Message, MqttClient
from transport.redis import RedisClient, connect_redis
from transport.stats import publish as publish_stats

log = logging.getLogger(__name__)
_KID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class Bridge:
    """One bridge instance. ``run()`` until cancelled."""

    def __init__(
        self,
        services: ServiceSettings,
        settings: StreamSettings,
        client_id: str = "proxima-bridge-1",
    ) -> None:
        self.services = services
        self.settings = settings
        self.topics = services.topics
        ns = f"{services.namespace}-" if services.namespace else ""
        self.mqtt = MqttClient(
            services.mqtt, client_id=f"{ns}{client_id}", manual_ack=True, clean_session=False
        )
        self.counts: Counter[str] = Counter()
        self._producer: AIOKafkaProducer | None = None
        self._redis: RedisClient | None = None
        self._keys: KeyCache | None = None

    async def run(self, ready: asyncio.Event | None = None) -> None:
        producer = make_producer(
            self.services.kafka_bootstrap,
            idempotent=self.settings.kafka_idempotent,
            client_id="proxima-bridge",
        )
        self._producer = producer
        self._redis = connect_redis(self.services.redis)
        self._keys = KeyCache(
            Keyring(self._redis, self.services.redis_prefix), ttl_s=self.settings.key_cache_ttl_s
        )
        await producer.start()
        counters = asyncio.create_task(self._publish_counters(), name="bridge-counters")
        try:
            async with self.mqtt:
                await self.mqtt.subscribe(
                    self.topics.all_gateway_events(self.settings.bridge_share_group), qos=1
                )
                await self.mqtt.subscribe(
                    f"{self.topics.mqtt_root}/stores/+/gateways/+/status", qos=1
                )
                if ready is not None:
                    ready.set()
                while True:
                    message = await self.mqtt.messages.get()
                    try:
                        await self.handle(message)
                    except Exception:
                        reraise_if_cancelled()
                        # Not acked: the broker redelivers it. Log loudly, keep the loop alive.
                        self.counts["errors"] += 1
                        log.exception(
                            "bridge failed on a message from %s; left unacked", message.topic
                        )
                        await asyncio.sleep(1.0)
                        continue
                    self.mqtt.ack(message)
        finally:
            # Stop the counters task and wait for it, without letting its end (or an error in
            # it) replace the exception this block is unwinding with.
            counters.cancel()
            await asyncio.wait([counters])
            await producer.stop()
            await self._redis.aclose()

    async def _publish_counters(self) -> None:
        """Every ``stats_interval_s``: this bridge's counters for ``proxima stats``."""
        interval = self.settings.stats_interval_s
        while True:
            assert self._redis is not None
            try:
                await publish_stats(
                    self._redis,
                    self.services.redis_prefix,
                    "bridge",
                    self.counts,
                    ttl_s=int(interval * 3) + 1,
                )
            except (RedisError, RedisClusterException, OSError) as exc:
                reraise_if_cancelled()
                log.warning("bridge counters not published (retrying): %r", exc)
            await asyncio.sleep(interval)

    async def handle(self, message: Message) -> None:
        """Move one MQTT message to Kafka; returns once Kafka has acknowledged it all."""
        assert self._producer is not None
        try:
            store, gateway, leaf = self.topics.parse_gateway_topic(message.topic)
        except ValueError as exc:
            await self._dlq(str(exc), message.payload, None, None)
            return
        if leaf == "status":
            await self._status(store, gateway, message.payload)
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
        if not await self._signature_ok(message, store, gateway):
            return
        events, rejected = split_batch(message.payload)
        futures = []
        for event in events:
            if event.store_id != store or event.gateway_id != gateway:
                rejected_reason = (
                    f"event {event.event_id} says store {event.store_id!r}/gateway {event.gateway_id!r} "
                    f"but was published on {store!r}/{gateway!r}"
                )
                await self._dlq(rejected_reason, event.to_json(), store, gateway)
                continue
            futures.append(
                await self._producer.send(
                    self.topics.events, key=store.encode(), value=event.to_json()
                )
            )
        for item in rejected:
            await self._dlq(item.reason, item.raw, store, gateway)
        if futures:
            await asyncio.gather(*futures)
        self.counts["events"] += len(futures)

    async def _signature_ok(self, message: Message, store: str, gateway: str) -> bool:
        """Verify a signed batch always, an unsigned one only when signatures are required."""
        assert self._keys is not None
        signed = any(n in (KID_PROPERTY, SIG_PROPERTY) for n, _ in message.user_properties)
        if not signed and not self.settings.require_signatures:
            self.counts["unsigned_accepted"] += 1
            return True
        kid = message.user_property(KID_PROPERTY)
        # Only well-formed kids reach Redis; verify() names the malformed ones.
        key = await self._keys.get(kid) if kid and _KID.fullmatch(kid) else None
        try:
            verify(
                message.topic,
                message.payload,
                message.user_properties,
                lambda _kid: key,
                store_id=store,
                gateway_id=gateway,
            )
        except SignatureError as exc:
            self.counts["bad_signature"] += 1
            await self._dlq(str(exc), message.payload, store, gateway)
            return False
        self.counts["signed"] += 1
        return True

    async def _dlq(self, reason: str, raw: bytes, store: str | None, gateway: str | None) -> None:
        assert self._producer is not None
        self.counts["rejected"] += 1
        log.warning("rejected to DLQ (store=%s gateway=%s): %s", store, gateway, reason)
        record = DlqRecord(
            reason=reason,
            source="bridge",
            received_at=datetime.now(UTC),
            original_b64=base64.b64encode(raw).decode(),
            store_id=store,
            gateway_id=gateway,
        )
        key = (store or "-").encode()
        await self._producer.send_and_wait(
            self.topics.events_dlq, key=key, value=record.model_dump_json(by_alias=True).encode()
        )

    async def _status(self, store: str, gateway: str, payload: bytes) -> None:
        assert self._redis is not None
        try:
            status = parse_model(GatewayStatus, payload)
        except ContractError as exc:
            await self._dlq(f"gateway status: {exc}", payload, store, gateway)
            return
        await self._redis.hset(
            f"{self.services.redis_prefix}gateways",
            f"{store}/{gateway}",
            status.model_dump_json(by_alias=True),
        )
