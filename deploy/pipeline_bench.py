"""``proxima bench pipeline``: gateway publish → associate, the whole path, under a region's load.

DESIGN.md's latency target is for the whole path (gateway publish → associate receives,
p99 ≤ 100 ms at the nominal load of a 100-store region on one 2-core machine); ``bench
stream`` times its first half (to the alert on Kafka) and ``bench notifier`` its second
(from Kafka to the console and the handheld), each alone. This bench runs the services a
region runs, as child processes against the real brokers in a fresh namespace: ``proxima
bridge``, ``proxima stream worker`` and ``proxima notifier serve`` (an embedded Tansu unless
``PROXIMA_KAFKA`` names a broker; Mosquitto and Redis as configured). Then:

* **the region's load**: ``stores`` stores, each of whose door gateways publishes
  ``store_rate`` events/s as signed batches of one or two events (a simulated flagship's
  busy hour sends 0.05 Kafka events/s per store with the coordinator, 1.05 events per batch:
  the default 0.5/s is ten times that, for stores without a coordinator and the app path).
  Each store has five enrolled, consenting customers among fifty phones: they arrive once
  (an alert to a store with nobody signed in) and then move; the other phones are unknown.
* **the probes**: a probe store with ``associates`` associates on shift, each with a live
  console feed (SSE) open and their handheld topic subscribed; ``probes`` customers never
  seen before walk in, ``rate`` per second, each a signed one-event batch published to
  Mosquitto as the door gateway would, each an arrival alert.

Timed in this process (publish and receipt, so no clock skew): ``kafka`` (publish → the
alert on ``proxima.alerts.v1``: the bridge and the stream worker; the record's timestamp,
same host clock, not when this process's own consumer fetched it, so that each probe's
``kafka`` time comes before its console times), ``console_first``
(publish → the alert in the first of the store's consoles), ``console_all`` (→ in every
one of them), ``handheld`` (→ on the MQTT topic of the associate the notifier routed it to).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import subprocess
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition

from contracts.models import EventKind
from contracts.services import ServiceSettings
from contracts.signing import sign
from notifier.bench import (
    Arrivals,
    console_feed,
    mqtt_pump,
    percentile,
    sign_in,
    wait_healthy,
)
from stream.bench import (
    bench_broker,
    enroll_customers,
    enroll_probes,
    probe_event,
    spawn_cli,
    spawn_worker,
    stop_child,
    worker_env,
    zone_event,
)
from stream.keyring import Keyring
from stream.settings import StreamSettings
from transport.kafka import ensure_topics
from transport.mqtt import MqttClient
from transport.net import free_port
from transport.redis import connect_redis, drop_prefix, redis_for

PROBE_STORE = "probe-store"
CUSTOMERS_PER_STORE = 5
PHONES_PER_STORE = 50
TICK_S = 0.1


def _key(n: int) -> bytes:
    return bytes.fromhex(f"{n:032x}")


class _Gateways:
    """The door gateway of each store: its signing key and MQTT topic; signs batches."""

    def __init__(self, services: ServiceSettings) -> None:
        self.services = services
        self.keys: dict[str, tuple[str, bytes, str]] = {}

    async def add(self, keyring: Keyring, store: str) -> None:
        key = await keyring.add(store, "gw-door")
        topic = self.services.topics.gateway_events(store, "gw-door")
        self.keys[store] = (key.kid, bytes.fromhex(key.secret), topic)

    async def publish(self, mqtt: MqttClient, store: str, payload: bytes) -> None:
        kid, secret, topic = self.keys[store]
        await mqtt.publish(topic, payload, user_properties=sign(kid, secret, topic, payload))


async def _region_load(
    mqtt: MqttClient,
    gateways: _Gateways,
    stores: list[str],
    rate: float,
    published: list[int],
    seed: int = 11,
) -> None:
    """Publish ``rate`` events/s over ``stores`` until cancelled (see the module docstring),
    counting them in ``published[0]``."""
    rng = random.Random(seed)
    seq = 0
    owed = 0.0
    while True:
        owed += rate * TICK_S
        while owed >= 1.0:
            i = rng.randrange(len(stores))
            n = min(int(owed), 2 if rng.random() < 0.05 else 1)
            owed -= n
            events = []
            for _ in range(n):
                seq += 1
                phone = rng.randrange(PHONES_PER_STORE)
                # Phones 0-4 are the store's enrolled customers (bench-{5i+1}..), the rest unknown.
                key = (
                    _key(CUSTOMERS_PER_STORE * i + phone + 1)
                    if phone < CUSTOMERS_PER_STORE
                    else _key(10_000_000 + PHONES_PER_STORE * i + phone)
                )
                kind = EventKind.ZONE_ENTER if rng.random() < 0.4 else EventKind.ZONE_DWELL
                zone = rng.choice(["entrance", "floor", "fitting-rooms"])
                events.append(
                    zone_event(key, datetime.now(UTC), seq, kind, zone, store=stores[i]).to_json()
                )
            await gateways.publish(mqtt, stores[i], b"[" + b",".join(events) + b"]")
            published[0] += len(events)
        await asyncio.sleep(TICK_S)


async def _sign_in(services: ServiceSettings, associates: int) -> dict[str, str]:
    """The probe store's associates, on shift, each with a console session: name → token."""
    redis = connect_redis(services.redis, decode_responses=True)
    try:
        return await sign_in(redis, services.redis_prefix, PROBE_STORE, associates)
    finally:
        await redis.aclose()


class _Probes:
    """Times of each probe: published, its alert on Kafka (and the alert's id)."""

    def __init__(self) -> None:
        self.sent: dict[str, float] = {}
        self.on_kafka: dict[str, tuple[str, float]] = {}  # customer → (alert id, time)

    async def watch_kafka(self, services: ServiceSettings) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=services.kafka_bootstrap,
            fetch_max_wait_ms=20,
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            topic = services.topics.alerts
            parts = consumer.partitions_for_topic(topic) or set()
            consumer.assign([TopicPartition(topic, p) for p in parts])
            await consumer.seek_to_end()
            while True:
                for records in (await consumer.getmany(timeout_ms=50)).values():
                    now, wall = time.perf_counter(), time.time()
                    for r in records:
                        alert = json.loads(r.value or b"{}")
                        if alert.get("store_id") == PROBE_STORE:
                            # The record's own time (the worker's producer stamps it; a
                            # broker may stamp its append), moved onto perf_counter's
                            # clock: this watcher's fetch wait is not the pipeline's.
                            at = (
                                now - max(0.0, wall - r.timestamp / 1000)
                                if r.timestamp > 0
                                else now
                            )
                            self.on_kafka.setdefault(alert["customer_id"], (alert["alert_id"], at))
        finally:
            await consumer.stop()


async def _measure(
    services: ServiceSettings,
    port: int,
    *,
    stores: int,
    store_rate: float,
    associates: int,
    probes: int,
    rate: float,
) -> dict[str, Any]:
    region = [f"region-{i:03d}" for i in range(stores)]
    gateways = _Gateways(services)
    async with redis_for(services) as redis:
        keyring = Keyring(redis, services.redis_prefix)
        for store in [PROBE_STORE, *region]:
            await gateways.add(keyring, store)
    tokens = await _sign_in(services, associates)
    got = Arrivals()
    probe = _Probes()
    base = f"http://127.0.0.1:{port}"
    tasks: list[asyncio.Task[None]] = []
    published = [0]
    load_began = 0.0
    try:
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http,
            MqttClient(services.mqtt) as mqtt,
        ):
            await wait_healthy(http, base)
            flt = f"{services.topics.mqtt_root}/stores/{PROBE_STORE}/associates/+/alerts"
            await mqtt.subscribe(flt, qos=1)
            tasks.append(asyncio.create_task(mqtt_pump(mqtt, got), name="bench-mqtt"))
            tasks.append(asyncio.create_task(probe.watch_kafka(services), name="bench-kafka"))
            readies = []
            for name, token in tokens.items():
                ready = asyncio.Event()
                readies.append(ready)
                url = f"{base}/api/events"
                tasks.append(asyncio.create_task(console_feed(http, url, token, name, got, ready)))
            async with asyncio.timeout(60):
                await asyncio.gather(*(r.wait() for r in readies))
            if got.errors:
                raise RuntimeError(f"{len(got.errors)} console feeds failed: {got.errors[0]}")
            load_began = time.perf_counter()
            tasks.append(
                asyncio.create_task(
                    _region_load(mqtt, gateways, region, stores * store_rate, published),
                    name="bench-load",
                )
            )

            async def publish(i: int) -> None:
                event = probe_event(i, PROBE_STORE)
                probe.sent[f"probe-{i}"] = time.perf_counter()
                await gateways.publish(mqtt, PROBE_STORE, b"[" + event.to_json() + b"]")

            # Warm-up: until the bridge has subscribed and the worker's and the notifier's
            # consumers have joined their groups, repeat probe 0 (one customer: one visit, one alert).
            async with asyncio.timeout(180):
                while not _delivered(probe, got, "probe-0", associates):
                    await publish(0)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(1.0):
                            got.changed.clear()
                            await got.changed.wait()
            for i in range(1, probes + 1):
                await publish(i)
                await asyncio.sleep(1 / rate)
            # Let the last ones land (bounded): a lost alert shows as lost, not a hang.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(15):
                    while not all(
                        _delivered(probe, got, f"probe-{i}", associates)
                        for i in range(1, probes + 1)
                    ):
                        got.changed.clear()
                        await got.changed.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return _figures(probe, got, probes, associates) | {
        "region_stores": float(stores),
        "region_events_per_s": round(published[0] / (time.perf_counter() - load_began), 1),
        "consoles": float(associates),
        "probes_per_s": rate,
    }


def _delivered(probe: _Probes, got: Arrivals, customer: str, associates: int) -> bool:
    hit = probe.on_kafka.get(customer)
    if hit is None:
        return False
    return hit[0] in got.mqtt and len(got.sse.get(hit[0], {})) >= associates


def _figures(probe: _Probes, got: Arrivals, probes: int, associates: int) -> dict[str, Any]:
    kafka, first, every, handheld = [], [], [], []
    lost = {"kafka": 0, "console": 0, "handheld": 0}
    for i in range(1, probes + 1):
        customer = f"probe-{i}"
        t0 = probe.sent[customer]
        hit = probe.on_kafka.get(customer)
        if hit is None:
            lost["kafka"] += 1
            continue
        alert_id, at = hit
        kafka.append((at - t0) * 1000)
        seen = got.sse.get(alert_id, {})
        if seen:
            first.append((min(seen.values()) - t0) * 1000)
        if len(seen) == associates:
            every.append((max(seen.values()) - t0) * 1000)
        else:
            lost["console"] += 1
        if alert_id in got.mqtt:
            handheld.append((got.mqtt[alert_id] - t0) * 1000)
        else:
            lost["handheld"] += 1
    out: dict[str, Any] = {"probes": probes}
    for name, values in (
        ("kafka", kafka),
        ("console_first", first),
        ("console_all", every),
        ("handheld", handheld),
    ):
        out |= {
            f"{name}_p50_ms": round(percentile(values, 0.50), 1),
            f"{name}_p99_ms": round(percentile(values, 0.99), 1),
        }
    out["console_all_max_ms"] = round(max(every, default=float("nan")), 1)
    return out | {f"lost_{k}": v for k, v in lost.items()}


def _log_dir() -> Path:
    """Where the children log (kept after the run): ``PROXIMA_BENCH_LOG`` or artifacts/."""
    path = Path(os.environ.get("PROXIMA_BENCH_LOG", "artifacts/bench-pipeline"))
    path.mkdir(parents=True, exist_ok=True)
    return path


async def run_pipeline_bench(
    *,
    stores: int = 100,
    store_rate: float = 0.5,
    associates: int = 20,
    probes: int = 200,
    rate: float = 5.0,
) -> dict[str, Any]:
    """Start the region's services, load them, time the probes, stop them."""
    async with bench_broker("proxima-bench-pipeline-") as (url, tmp):
        services = ServiceSettings(kafka=url, namespace=f"bench{uuid.uuid4().hex[:8]}")
        settings = StreamSettings(data_dir=tmp / "stream-data")
        port = free_port()
        env = worker_env(services, settings) | {
            "PROXIMA_NOTIFIER_HTTP_PORT": str(port),
            "PROXIMA_NOTIFIER_HTTP_HOST": "127.0.0.1",
        }
        children: list[subprocess.Popen[bytes]] = []
        logs_at = _log_dir()
        logs = []
        try:
            await ensure_topics(services.kafka_bootstrap, services.topics.all_kafka, 4)
            await enroll_customers(services, CUSTOMERS_PER_STORE * stores)
            await enroll_probes(services, probes)
            for name, argv in (
                ("worker", None),
                ("bridge", ["bridge"]),
                ("notifier", ["notifier", "serve"]),
            ):
                log = (logs_at / f"{name}.log").open("wb")
                logs.append(log)
                children.append(
                    await (spawn_worker(env, log) if argv is None else spawn_cli(argv, env, log))
                )
            return await _measure(
                services,
                port,
                stores=stores,
                store_rate=store_rate,
                associates=associates,
                probes=probes,
                rate=rate,
            ) | {"loadavg_1m": round(os.getloadavg()[0], 2)}
        except TimeoutError as exc:
            raise RuntimeError(
                f"bench pipeline: the probes' alerts did not come through; see {logs_at}"
            ) from exc
        finally:
            for child in children:
                await stop_child(child)
            for log in logs:
                log.close()
            await drop_prefix(services.redis, services.redis_prefix)
