"""The notifier (``proxima notifier serve``): alerts from Kafka to associates.

Consumes ``proxima.alerts.v1`` in a consumer group and publishes each alert, QoS 1, on
the store's topic and on the target associate's topic. The Kafka offset is committed only
after the broker's PUBACKs, so a killed notifier re-delivers rather than loses; an alert
already delivered (same ``alert_id``) is not published twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from datetime import UTC, datetime

import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer

from contracts.exceptions import ContractError
from contracts.models import Alert, parse_alert
from contracts.services import ServiceSettings
from transport.mqtt import MqttClient

log = logging.getLogger(__name__)


class Notifier:
    """One notifier instance; all state is in Redis, so several can run."""

    def __init__(self, services: ServiceSettings, group_id: str = "proxima-notifier") -> None:
        self.services = services
        self.topics = services.topics
        self.group_id = f"{services.namespace}-{group_id}" if services.namespace else group_id
        self.mqtt = MqttClient(services.mqtt)
        self.counts: Counter[str] = Counter()
        self._redis: aioredis.Redis | None = None

    async def run(self, ready: asyncio.Event | None = None) -> None:
        consumer = AIOKafkaConsumer(
            self.topics.alerts,
            bootstrap_servers=self.services.kafka_bootstrap,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        self._redis = aioredis.from_url(self.services.redis)
        await consumer.start()
        try:
            async with self.mqtt:
                if ready is not None:
                    ready.set()
                while True:
                    batches = await consumer.getmany(timeout_ms=500, max_records=200)
                    for _tp, records in batches.items():
                        for record in records:
                            await self.handle(record.value or b"")
                    if batches:
                        await consumer.commit()
        finally:
            await consumer.stop()
            await self._redis.aclose()

    async def handle(self, raw: bytes) -> None:
        assert self._redis is not None
        try:
            alert = parse_alert(raw)
        except ContractError as exc:
            self.counts["rejected"] += 1
            log.warning("alert rejected: %s", exc)
            await self._redis.xadd(
                f"{self.services.redis_prefix}notifier:rejected",
                {"reason": str(exc), "raw": raw, "at": datetime.now(UTC).isoformat()},
                maxlen=10_000,
            )
            return
        delivered_key = f"{self.services.redis_prefix}alert:{alert.alert_id}:delivered"
        if await self._redis.exists(delivered_key):
            self.counts["duplicates"] += 1
            return
        await self.deliver(alert)
        await self._redis.set(delivered_key, datetime.now(UTC).isoformat(), ex=7 * 86400)
        self.counts["delivered"] += 1

    async def deliver(self, alert: Alert) -> None:
        payload = alert.to_json()
        await self.mqtt.publish(self.topics.store_alerts(alert.store_id), payload, qos=1)
        if alert.target.associate_id:
            await self.mqtt.publish(
                self.topics.associate_alerts(alert.store_id, alert.target.associate_id),
                payload,
                qos=1,
            )
