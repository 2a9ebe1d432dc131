"""The gateway agent: source → decode → presence → events → batches → MQTT (QoS 1).

The agent runs on its source's clock, so a replay at max speed takes the same decisions
as the same trace heard live. A batch is dropped from memory only after the broker's
PUBACK; until then it is retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from beacons.exceptions import BeaconError
from beacons.frames import decode_fields
from contracts.models import Event, EventKind, GatewayState, GatewayStatus, Subject, SubjectType
from contracts.topics import Topics
from edge.presence import PresenceTracker, Transition
from edge.settings import EdgeSettings
from edge.sources import Advertisement, ScannerSource
from transport.mqtt import MqttClient, MqttError, Will

log = logging.getLogger(__name__)

VERSION = "0.1.0"
TICK_S = 1.0


@dataclass(slots=True)
class AgentStats:
    adverts: int = 0
    decode_errors: int = 0
    eid_frames: int = 0
    events: int = 0
    events_published: int = 0
    batches_published: int = 0
    publish_retries: int = 0
    started: float = field(default_factory=time.monotonic)


def _ts(t: float) -> datetime:
    return datetime.fromtimestamp(t, tz=UTC)


class EdgeAgent:
    """One gateway's agent. ``run()`` returns when a finite source is drained."""

    def __init__(
        self, settings: EdgeSettings, source: ScannerSource, mqtt_url: str, topics: Topics
    ) -> None:
        self.settings = settings
        self.source = source
        self.topics = topics
        self.stats = AgentStats()
        self.tracker = PresenceTracker(
            settings.zone_id,
            enter_rssi=settings.enter_rssi,
            exit_rssi=settings.exit_rssi,
            enter_min_s=settings.enter_min_s,
            exit_timeout_s=settings.exit_timeout_s,
            dwell_s=settings.dwell_s,
        )
        self._seq = 0
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self._next_tick = 0.0
        status_topic = topics.gateway_status(settings.store_id, settings.gateway_id)
        self._status_topic = status_topic
        self.mqtt = MqttClient(
            mqtt_url,
            client_id=f"proxima-gw-{settings.store_id}-{settings.gateway_id}-{uuid.uuid4().hex[:6]}",
            will=Will(
                status_topic,
                self._status(GatewayState.OFFLINE).model_dump_json(by_alias=True).encode(),
            ),
        )

    def _status(self, state: GatewayState) -> GatewayStatus:
        return GatewayStatus(
            store_id=self.settings.store_id,
            gateway_id=self.settings.gateway_id,
            state=state,
            at=datetime.now(UTC),
            version=VERSION,
            uptime_s=round(time.monotonic() - self.stats.started, 3),
            events_published=self.stats.events_published,
            outbox_depth=self._queue.qsize(),
            scanner=self.source.name,
        )

    async def run(self) -> None:
        async with self.mqtt:
            await self._publish_status(GatewayState.ONLINE)
            publisher = asyncio.create_task(self._publish_loop(), name="edge-publisher")
            try:
                await self._consume()
                # Flush presence: a drained trace ends with everyone's exit.
                self._emit(self.tracker.tick(self.source.now() + self.settings.exit_timeout_s))
                await self._queue.join()
            finally:
                publisher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await publisher
            await self._publish_status(GatewayState.OFFLINE)

    async def _publish_status(self, state: GatewayState) -> None:
        payload = self._status(state).model_dump_json(by_alias=True, exclude_none=True).encode()
        try:
            await self.mqtt.publish(self._status_topic, payload, qos=1, retain=True)
        except MqttError as exc:
            log.warning("status publish failed: %s", exc)

    async def _consume(self) -> None:
        async for advert in self.source.adverts():
            self.handle(advert)
            now = self.source.now()
            if now >= self._next_tick:
                self._next_tick = now + TICK_S
                self._emit(self.tracker.tick(now))

    def handle(self, advert: Advertisement) -> None:
        """Decode one advertisement and feed its rotating identifiers to presence."""
        self.stats.adverts += 1
        try:
            frames = decode_fields(advert.manufacturer_data, advert.service_data)
        except BeaconError as exc:
            self.stats.decode_errors += 1
            log.debug("undecodable advert from %s: %s", advert.address, exc)
            return
        rssi = advert.rssi + self.settings.rssi_offset_db
        for frame in frames:
            if frame.type == "eddystone_eid":
                self.stats.eid_frames += 1
                self._emit(self.tracker.observe(frame.eid.hex(), rssi, advert.at))

    def _emit(self, transitions: list[Transition]) -> None:
        for tr in transitions:
            self._seq += 1
            self.stats.events += 1
            event = Event(
                schema_="proxima.zone.v1",
                event_id=uuid.uuid4(),
                store_id=self.settings.store_id,
                gateway_id=self.settings.gateway_id,
                observed_at=_ts(tr.at),
                seq=self._seq,
                kind=EventKind(tr.kind),
                subject=Subject(type=SubjectType.EDDYSTONE_EID, id=tr.subject),
                zone_id=tr.zone_id,
                rssi=tr.rssi,
                confidence=tr.confidence,
            )
            self._queue.put_nowait(event)

    async def _publish_loop(self) -> None:
        topic = self.topics.gateway_events(self.settings.store_id, self.settings.gateway_id)
        max_n = self.settings.batch_max_events
        while True:
            batch = [await self._queue.get()]
            deadline = asyncio.get_running_loop().time() + self.settings.batch_max_latency_s
            while len(batch) < max_n:
                timeout = deadline - asyncio.get_running_loop().time()
                if timeout <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), timeout))
                except TimeoutError:
                    break
            payload = json.dumps(
                [e.model_dump(mode="json", by_alias=True, exclude_none=True) for e in batch],
                separators=(",", ":"),
            ).encode()
            delay = 0.5
            while True:
                try:
                    await self.mqtt.publish(topic, payload, qos=1)
                    break
                except MqttError as exc:
                    self.stats.publish_retries += 1
                    log.warning("batch of %d not acknowledged (%s); retrying", len(batch), exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
            self.stats.events_published += len(batch)
            self.stats.batches_published += 1
            for _ in batch:
                self._queue.task_done()
