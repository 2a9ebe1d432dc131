"""The gateway agent: source → pipeline → outbox (SQLite) → signed MQTT batches, plus health.

Tasks, all owned by one ``asyncio.TaskGroup``:

- **consume**: advertisements from the source through :class:`edge.pipeline.Pipeline`;
  transitions go to an in-memory buffer;
- **writer**: the buffer into :meth:`Outbox.put` (one durable transaction per wake-up, so
  a burst costs one fsync); events get their ``event_id`` and ``seq`` there;
- **ticker**: presence timers on the source's clock, so exits fire during silence;
- **uplink**: connect with full-jitter capped backoff, then publish the outbox's batches
  one at a time, each signed when a key is configured; a batch leaves the outbox only
  after PUBACK. A publish that fails drops the connection (and paho's queue with it) and
  reconnects, so a batch is never queued twice inside paho;
- **status**: the retained ``online`` status with health every ``status_interval_s``;
  the retained last will is ``offline``.

The agent runs on its source's clock: a replay at max speed decides as the same trace
heard live. Presence state is in memory: after a crash a subject still in the zone is
entered again; events already in the outbox are never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from prometheus_client import Histogram

from beacons.presence import Transition
from contracts.models import BeaconHealth as BeaconHealthModel
from contracts.models import Event, GatewayState, GatewayStatus
from contracts.signing import sign
from contracts.topics import Topics
from contracts.version import installed_version
from edge.backoff import backoff_delay
from edge.exceptions import ConfigError, EventRejected, OutboxError, OutboxFull
from edge.live import merge_live_config
from edge.outbox import EventDraft, Outbox
from edge.pipeline import Pipeline, to_draft
from edge.settings import EdgeSettings
from edge.sources import ScannerSource, WatchdogSource
from transport.mqtt import MqttClient, MqttError, MqttTls, MqttUrl, Will, tls_files

log = logging.getLogger(__name__)

VERSION = installed_version()
FLUSH_AT = 4096  # buffered transitions before the consumer waits for the writer


@dataclass(slots=True)
class AgentStats:
    adverts: int = 0
    events: int = 0
    events_published: int = 0
    batches_published: int = 0
    publish_failures: int = 0
    reconnects: int = 0
    connect_failures: int = 0
    refused: int = 0
    rejected: int = 0
    started: float = field(default_factory=time.monotonic)


class EdgeAgent:
    """One gateway's agent. ``run()`` returns on :meth:`stop`, or when drained if asked."""

    def __init__(
        self,
        settings: EdgeSettings,
        source: ScannerSource,
        topics: Topics,
        *,
        mqtt_url: str,
        outbox_path: Path | None = None,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
        services: Sequence[Callable[[Outbox], Coroutine[Any, Any, None]]] = (),
        service_warnings: Sequence[Callable[[], list[str]]] = (),
    ) -> None:
        """``services`` are more producers run beside the scanner while the outbox is open
        (the app-event ingest, a store's presence coordinator): each is called with the
        outbox and runs until cancelled; ``service_warnings`` add to the status warnings."""
        self.settings = settings
        self.services = tuple(services)
        self.service_warnings = tuple(service_warnings)
        self.collectors: list[Any] = []  # more metrics for /metrics (the ingest's)
        # Histograms for /metrics (edge.health), observed as the broker acks each batch.
        self.batch_events = Histogram(
            "proxima_edge_batch_events",
            "events per batch the broker acknowledged",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
            registry=None,
        )
        self.outbox_age = Histogram(
            "proxima_edge_outbox_age_seconds",
            "age of a batch's oldest event when the broker acknowledged it (time in the outbox)",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600),
            registry=None,
        )
        if not source.finite and not source.supervised:
            source = WatchdogSource(source, settings.watchdog_s)
        self.source = source
        # A max-speed replay's clock decides when this agent's timers fire and when its
        # events go to the outbox, so all the gateways of a trace publish in trace order.
        self._clocked = source.bind(self)
        self.topics = topics
        self.clock = clock
        self.rng = rng
        self.stats = AgentStats()
        self.pipeline = Pipeline(settings)
        self._temp_dir: tempfile.TemporaryDirectory[str] | None = None
        self.outbox_path = outbox_path or settings.resolved_outbox_path()
        self.outbox = Outbox(
            self.outbox_path,
            store_id=settings.store_id,
            gateway_id=settings.gateway_id,
            max_rows=settings.outbox_max_rows,
            max_bytes=settings.outbox_max_bytes,
            warn_fraction=settings.outbox_warn_fraction,
            clock=clock,
        )
        self.mqtt_url = with_credentials(mqtt_url, settings)
        # A fused store's gateway sends its evidence to the store's coordinator, which alone
        # publishes the store's zone events (edge.coordinator, docs/presence.md).
        self.events_topic = (
            topics.gateway_evidence(settings.store_id, settings.gateway_id)
            if settings.fused
            else topics.gateway_events(settings.store_id, settings.gateway_id)
        )
        self.status_topic = topics.gateway_status(settings.store_id, settings.gateway_id)
        self.config_topic = topics.gateway_config(settings.store_id, settings.gateway_id)
        self.config_version: str | None = None
        self.config_error: str | None = None
        self.configs_applied = 0
        self.configs_rejected = 0
        self._secret = settings.signing_secret
        self._buffer: list[Transition] = []
        self._wake_writer = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._mqtt: MqttClient | None = None
        self._stop = asyncio.Event()
        self._source_done = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()
        self.http_bound: asyncio.Future[int | None] | None = None  # set when /metrics is up
        self._rate_mark = (time.monotonic(), 0, 0)
        self.rates = (0.0, 0.0)  # adverts/s, events/s over the last status interval

    # --- lifecycle ------------------------------------------------------------------
    def stop(self) -> None:
        """Ask ``run()`` to finish: flush the buffer to the outbox, publish ``offline``."""
        self._stop.set()

    async def run(self, *, until_drained: bool = False) -> None:
        """Run until :meth:`stop`; with ``until_drained`` also until a finite source is
        exhausted and the outbox is empty."""
        async with self.outbox:
            try:
                async with asyncio.TaskGroup() as tg:
                    consumer = tg.create_task(self._consume(), name="edge-consume")
                    tasks = [
                        consumer,
                        tg.create_task(self._writer(), name="edge-writer"),
                        tg.create_task(self._ticker(), name="edge-ticker"),
                        tg.create_task(self._uplink(), name="edge-uplink"),
                        tg.create_task(self._status_loop(), name="edge-status"),
                    ]
                    for i, service in enumerate(self.services):
                        tasks.append(tg.create_task(service(self.outbox), name=f"edge-service-{i}"))
                    if self.settings.http_port is not None:
                        from edge.health import serve_health

                        self.http_bound = asyncio.get_running_loop().create_future()
                        tasks.append(
                            tg.create_task(serve_health(self, self._stop), name="edge-http")
                        )
                    await self._until_done(until_drained)
                    consumer.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await consumer
                    await self._flush()
                    await self._publish_status(GatewayState.OFFLINE)
                    for task in tasks:
                        task.cancel()
            finally:
                self.source.close()
                for task in list(self._background):
                    task.cancel()
                if self._mqtt is not None:
                    with contextlib.suppress(MqttError):
                        await self._mqtt.disconnect()
                    self._mqtt = None

    async def _until_done(self, until_drained: bool) -> None:
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            if until_drained:
                done = asyncio.ensure_future(self._drained())
                await asyncio.wait({stop, done}, return_when=asyncio.FIRST_COMPLETED)
                done.cancel()
            else:
                await stop
        finally:
            stop.cancel()

    async def _drained(self) -> None:
        await self._source_done.wait()
        await self._flush()
        await self.outbox.wait_empty()

    # --- source → pipeline → buffer ---------------------------------------------------
    async def _consume(self) -> None:
        pipeline = self.pipeline
        buffer = self._buffer
        next_tick = 0.0
        source = self.source
        try:
            async for advert in source.adverts():
                pipeline.handle(advert, buffer)
                if self._clocked:
                    continue  # the clock ticks and publishes (see edge.trace_clock)
                now = source.now()
                if now >= next_tick:
                    next_tick = now + self.settings.tick_s
                    pipeline.tick(now, buffer)
                if buffer:
                    self._wake_writer.set()
                    if len(buffer) >= FLUSH_AT:
                        await self._flush()
        finally:
            self.stats.adverts = pipeline.stats.adverts
        # A finite source ends with everyone's exit: nothing more will be heard.
        s = self.settings
        pipeline.tick(source.now() + s.exit_timeout_s + s.exit_min_s + s.dwell_s, buffer)
        await self._flush()
        self._source_done.set()

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.settings.tick_s)
            if not self._source_done.is_set() and not self._clocked:
                self.pipeline.tick(self.source.now(), self._buffer)
                if self._buffer:
                    self._wake_writer.set()

    # --- buffer → outbox --------------------------------------------------------------
    async def _writer(self) -> None:
        while True:
            await self._wake_writer.wait()
            self._wake_writer.clear()
            await self._flush()

    async def _flush(self) -> None:
        async with self._flush_lock:
            while self._buffer:
                items = self._buffer[:]
                del self._buffer[:]  # the consumer holds a reference to this list
                await self._store([to_draft(tr) for tr in items])

    async def _store(self, drafts: list[EventDraft]) -> list[Event]:
        try:
            events = await self.outbox.put(drafts)
        except OutboxFull as exc:
            self.stats.refused += len(drafts)
            log.error("%s", exc)
            return []
        except EventRejected as exc:
            if len(drafts) == 1:
                self.stats.rejected += 1
                log.error("pipeline produced an invalid event, not stored: %s", exc)
                return []
            stored = []
            for draft in drafts:  # keep the good ones next to the bad one
                stored += await self._store([draft])
            return stored
        self.stats.events += len(events)
        return events

    # --- driven by a replay's TraceClock (edge.trace_clock.ClockedAgent) ---------------
    def fire_timers(self, now: float) -> None:
        """Fire presence timers due by ``now`` (trace time) into the pending transitions."""
        self.pipeline.tick(now, self._buffer)

    def take_transitions(self) -> list[Transition]:
        """The transitions decided since the last call, in decision order."""
        items = self._buffer[:]
        del self._buffer[:]  # the consumer holds a reference to this list
        return items

    async def publish_transitions(self, transitions: list[Transition]) -> list[uuid.UUID]:
        """Store ``transitions`` as events and wait until the broker has acked all of them."""
        async with self._flush_lock:
            events = await self._store([to_draft(tr) for tr in transitions])
        await self.outbox.wait_empty()
        return [e.event_id for e in events]

    # --- outbox → MQTT ----------------------------------------------------------------
    def _client(self) -> MqttClient:
        s = self.settings
        offline = self._status(GatewayState.OFFLINE).model_dump_json(by_alias=True).encode()
        client = MqttClient(
            self.mqtt_url,
            client_id=f"proxima-gw-{s.store_id}-{s.gateway_id}-{uuid.uuid4().hex[:6]}",
            will=Will(
                self.status_topic, offline, user_properties=self._sign(self.status_topic, offline)
            ),
            **gateway_tls(s),
            publish_timeout=s.mqtt_publish_timeout_s,
        )
        client.on_connect_hooks.append(self._on_connected)
        return client

    def _on_connected(self) -> None:
        # After paho reconnects on its own, the broker has published our will: say online.
        self._spawn(self._publish_status(GatewayState.ONLINE), "edge-status-online")

    async def _uplink(self) -> None:
        s = self.settings
        attempt = 0
        while True:
            client = self._client()
            try:
                await client.connect(timeout=s.mqtt_publish_timeout_s)
            except MqttError as exc:
                self.stats.connect_failures += 1
                delay = backoff_delay(attempt, s.reconnect_min_s, s.reconnect_max_s, self.rng)
                attempt += 1
                log.warning("MQTT connect failed (%s); next attempt in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                continue
            attempt = 0
            self._mqtt = client
            try:
                async with asyncio.TaskGroup() as session:
                    session.create_task(self._read_config(client), name="edge-config")
                    session.create_task(self._watch_connection(client), name="edge-link")
                    await client.subscribe(self.config_topic, qos=1)
                    await self._publish_batches(client)
            except* MqttError as group:
                self.stats.publish_failures += 1
                self.stats.reconnects += 1
                log.warning("MQTT session failed (%s); reconnecting", group.exceptions[0])
            finally:
                self._mqtt = None
                with contextlib.suppress(MqttError):
                    await client.disconnect()
            await asyncio.sleep(backoff_delay(0, s.reconnect_min_s, s.reconnect_max_s, self.rng))

    async def _watch_connection(self, client: MqttClient) -> None:
        """End the session when the link stays down for the publish timeout.

        paho reconnects on its own without jitter; past that grace the agent drops the
        client and reconnects with its own full-jitter backoff, also when idle.
        """
        lost_since: float | None = None
        while True:
            await asyncio.sleep(0.25)
            if client.is_connected:
                lost_since = None
                continue
            now = time.monotonic()
            if lost_since is None:
                lost_since = now
            elif now - lost_since >= self.settings.mqtt_publish_timeout_s:
                raise MqttError(f"connection down for {now - lost_since:.1f} s")

    async def _read_config(self, client: MqttClient) -> None:
        while True:
            msg = await client.messages.get()
            if msg.topic == self.config_topic and msg.payload:
                self.apply_config(msg.payload)
                self._spawn(self._publish_status(GatewayState.ONLINE), "edge-status-config")

    def apply_config(self, payload: bytes) -> bool:
        """Apply a live config (edge.live); a bad one is reported and the last good one stays."""
        try:
            updated, version = merge_live_config(self.settings, payload)
        except ConfigError as exc:
            self.configs_rejected += 1
            self.config_error = "; ".join(f"{path}: {reason}" for path, reason in exc.errors)
            log.error("live config rejected, keeping the last good one: %s", self.config_error)
            return False
        self.settings = updated
        self.pipeline.reconfigure(updated)
        self.source.set_stall_timeout(updated.watchdog_s)
        self.outbox.warn_fraction = updated.outbox_warn_fraction
        self.config_version = version
        self.config_error = None
        self.configs_applied += 1
        log.info("live config %s applied", version or "(no version)")
        return True

    def _sign(self, topic: str, payload: bytes) -> dict[str, str] | None:
        """The signature properties of a message (contracts.signing), or None without a key."""
        s = self.settings
        if self._secret is None or s.signing_kid is None:
            return None
        return sign(s.signing_kid, self._secret, topic, payload, published_at=self.clock())

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _publish_batches(self, client: MqttClient) -> None:
        s = self.settings
        outbox = self.outbox
        while True:
            batch = await outbox.next_batch(
                max_events=s.batch_max_events,
                max_bytes=s.batch_max_bytes,
                max_latency_s=s.batch_max_latency_s,
            )
            props = self._sign(self.events_topic, batch.payload)
            try:
                await client.publish(self.events_topic, batch.payload, qos=1, user_properties=props)
            except BaseException:
                outbox.release(batch)
                raise
            await outbox.ack(batch)
            self.stats.events_published += batch.count
            self.stats.batches_published += 1
            self.batch_events.observe(batch.count)
            self.outbox_age.observe(max(0.0, outbox.clock() - batch.oldest_created))

    @property
    def connected(self) -> bool:
        client = self._mqtt
        return client is not None and client.is_connected

    # --- status -----------------------------------------------------------------------
    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.status_interval_s)
            self._update_rates()
            await self._publish_status(GatewayState.ONLINE)

    def _update_rates(self) -> None:
        now = time.monotonic()
        t0, adverts0, events0 = self._rate_mark
        adverts, events = self.pipeline.stats.adverts, self.stats.events
        dt = max(now - t0, 1e-6)
        self.rates = ((adverts - adverts0) / dt, (events - events0) / dt)
        self._rate_mark = (now, adverts, events)

    def warnings(self) -> list[str]:
        """What an operator should look at, worst first."""
        out = []
        ob = self.outbox.stats
        if ob.near_cap:
            out.append(
                f"outbox near its cap: {ob.depth}/{self.outbox.max_rows} events,"
                f" {ob.bytes}/{self.outbox.max_bytes} bytes"
            )
        if ob.dropped_total or self.stats.refused:
            out.append(
                f"outbox cap hit: dropped {ob.dropped} and refused {self.stats.refused} events"
            )
        if self.config_error is not None:
            out.append(f"live config rejected, keeping the last good one: {self.config_error}")
        if self.source.state == "failed":
            out.append("scanner failed to start")
        if self.source.restarts:
            out.append(f"scanner restarted {self.source.restarts} times by the watchdog")
        for warnings in self.service_warnings:
            out += warnings()
        return out

    def _status(self, state: GatewayState) -> GatewayStatus:
        s = self.settings
        ob = self.outbox.stats
        warnings = self.warnings() if state != GatewayState.OFFLINE else []
        if state == GatewayState.ONLINE and warnings:
            state = GatewayState.DEGRADED
        beacons = [
            BeaconHealthModel(
                address=b.address,
                beacon_id=b.beacon_id,
                last_seen=datetime.fromtimestamp(b.last_seen, tz=UTC),
                battery_mv=b.battery_mv,
                temperature_c=b.temperature_c,
                adv_count=b.adv_count,
                uptime_s=b.uptime_s,
            )
            for b in self.pipeline.beacons.values()
        ]
        return GatewayStatus(
            store_id=s.store_id,
            gateway_id=s.gateway_id,
            state=state,
            at=datetime.fromtimestamp(self.clock(), tz=UTC),
            version=VERSION,
            uptime_s=round(time.monotonic() - self.stats.started, 3),
            adverts_per_s=round(self.rates[0], 2),
            events_per_s=round(self.rates[1], 3),
            events_published=self.stats.events_published,
            outbox_depth=ob.depth,
            outbox_bytes=ob.bytes,
            outbox_oldest_s=round(self.outbox.oldest_age_s(), 3),
            dropped=ob.dropped_total + self.stats.refused,
            decode_errors=self.pipeline.stats.decode_errors,
            scanner=self.source.name,
            scanner_state=self.source.state,
            reconnects=self.stats.reconnects,
            warnings=warnings,
            beacons=beacons,
            config_version=self.config_version,
            config_error=self.config_error,
        )

    async def _publish_status(self, state: GatewayState) -> None:
        client = self._mqtt
        if client is None:
            return
        try:
            payload = self._status(state).model_dump_json(by_alias=True, exclude_none=True)
        except OutboxError:
            return
        try:
            body = payload.encode()
            props = self._sign(self.status_topic, body)
            await client.publish(self.status_topic, body, qos=1, retain=True, user_properties=props)
        except MqttError as exc:
            log.warning("status publish failed: %s", exc)


def gateway_tls(settings: EdgeSettings) -> MqttTls:
    """The TLS files of the gateway's MQTT connections (``MqttClient``'s keywords)."""
    return tls_files(settings.mqtt_ca_file, settings.mqtt_cert_file, settings.mqtt_key_file)


def with_credentials(url: str, settings: EdgeSettings) -> str:
    """The broker URL with the configured username/password (they win over the URL's)."""
    if settings.mqtt_username is None and settings.mqtt_password is None:
        return url
    parsed = MqttUrl.parse(url)
    user = settings.mqtt_username or parsed.username or ""
    password = (
        settings.mqtt_password.get_secret_value() if settings.mqtt_password else parsed.password
    )
    auth = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "")
    scheme = "mqtts" if parsed.tls else "mqtt"
    return f"{scheme}://{auth}@{parsed.host}:{parsed.port}"
