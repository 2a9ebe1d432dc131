"""``proxima bench stream``: events per second through one Faust worker, against a bare
aiokafka consume→produce loop on the same broker in the same run.

Both sides get the same protocol: the consumer is started and warmed up (a small batch it
must finish first, so group join and partition assignment are out of the figure), then
``events`` events are produced as fast as the producer goes, and the clock runs from the
first send until the consumer is done with the last event:

- **baseline**: an ``AIOKafkaConsumer`` reads the events topic and produces every value
  to a sink topic (``acks=all``), awaiting each batch's acks, nothing else;
- **worker**: ``proxima stream worker`` (a child process) does the whole chain —
  validate → resolve EID → consent → visit → rules → dedupe → alert — with its Redis
  round trips; it is done when its consumer group has committed the last offset.

The events: ``customers`` enrolled customers (arrival alerts and analytics consent) and as
many unknown phones, each seen ``events / (2 × customers)`` times in one store, with real
rotating EIDs.

Then, with the worker still running, a ``proxima bridge`` child joins it and ``probes``
signed one-event batches of customers never seen before (each an arrival) are published
over MQTT at 20 per second: ``latency_p50_ms``/``latency_p99_ms`` run from the MQTT
publish to the alert's arrival on ``proxima.alerts.v1`` (the notifier's hop is
``proxima bench notifier``'s).

The broker is the embedded Tansu unless ``PROXIMA_KAFKA`` names one; everything runs in a
scratch namespace that is removed afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer

from beacons.eid import compute_eid
from contracts.models import Event, EventKind, Subject, SubjectType
from contracts.services import ServiceSettings
from deploy.embedded_kafka import EmbeddedKafka
from stream.registry import CustomerProfile, Purpose, Registry
from stream.settings import StreamSettings
from transport.kafka import ensure_topics, make_producer
from transport.redis import connect_redis, drop_prefix

WARMUP = 200


def make_events(n: int, customers: int, start: datetime, seed: int = 7) -> list[bytes]:
    """``n`` zone events: half from enrolled customers, half from unknown phones."""
    import random

    rng = random.Random(seed)
    keys = [bytes.fromhex(f"{i:032x}") for i in range(1, 2 * customers + 1)]
    out = []
    for i in range(n):
        key = keys[rng.randrange(len(keys))]
        at = start + timedelta(milliseconds=50 * i)
        kind = EventKind.ZONE_ENTER if i % 3 == 0 else EventKind.ZONE_DWELL
        zone = rng.choice(["entrance", "floor", "fitting-rooms"])
        event = _zone_event(key, at, i + 1, kind, zone, rssi=-60.0, confidence=0.9)
        out.append(event.to_json())
    return out


async def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = make_producer(bootstrap, idempotent=False, client_id="bench-feeder")
    await producer.start()
    try:
        futures = [await producer.send(topic, key=b"bench-store", value=v) for v in values]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _baseline(bootstrap: str, src: str, sink: str, events: list[bytes]) -> float:
    """Seconds for a bare consume→produce loop to move ``events`` (after a warm-up)."""
    consumer = AIOKafkaConsumer(
        src,
        bootstrap_servers=bootstrap,
        group_id=f"{src}-baseline",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    producer = make_producer(bootstrap, idempotent=False, client_id="bench-baseline")
    await consumer.start()
    await producer.start()
    done = 0
    progressed = asyncio.Event()

    async def loop() -> None:
        nonlocal done
        while True:
            batch = await consumer.getmany(timeout_ms=100, max_records=2000)
            futures = []
            for tp, records in batch.items():
                for r in records:
                    futures.append(await producer.send(sink, key=r.key, value=r.value))
                if records:
                    await asyncio.gather(*futures)
                    await consumer.commit({tp: records[-1].offset + 1})
                    done += len(records)
                    futures = []
            progressed.set()

    task = asyncio.create_task(loop())
    try:
        await _produce(bootstrap, src, events[:WARMUP])
        await _until(lambda: done >= WARMUP, 120, "baseline warm-up")
        t0 = time.perf_counter()
        await _produce(bootstrap, src, events[WARMUP:])
        await _until(lambda: done >= len(events), 300, "baseline")
        return time.perf_counter() - t0
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await producer.stop()
        await consumer.stop()


async def _until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"bench: {what} did not finish within {timeout}s")
        await asyncio.sleep(0.005)


async def _worker(
    services: ServiceSettings,
    settings: StreamSettings,
    events: list[bytes],
    log: Path,
    probes: int,
) -> tuple[float, list[float]]:
    """Seconds for one ``proxima stream worker`` to process ``events`` (after a warm-up).

    Every event has the same key (one store), so one partition holds them in order: the
    worker is done when it has recorded the last event as processed (``event:{id}``).
    """
    env = dict(
        os.environ,
        PROXIMA_KAFKA=services.kafka,
        PROXIMA_NAMESPACE=services.namespace,
        PROXIMA_STREAM_DATA_DIR=str(settings.data_dir),
    )
    topic = services.topics.events
    redis = connect_redis(services.redis)
    fh = log.open("wb")
    proc = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-m", "deploy.cli", "stream", "worker", "--loglevel", "warn"],
        env=env,
        stdout=fh,
        stderr=subprocess.STDOUT,
    )

    async def wait(raw: bytes, timeout: float) -> None:
        key = f"{services.redis_prefix}event:{json.loads(raw)['event_id']}"
        deadline = time.perf_counter() + timeout
        while not await redis.exists(key):
            if proc.poll() is not None:
                raise RuntimeError(f"bench: the worker exited ({proc.returncode}); see {log}")
            if time.perf_counter() > deadline:
                raise TimeoutError(f"bench: the worker did not finish within {timeout}s")
            await asyncio.sleep(0.005)

    try:
        await _produce(services.kafka_bootstrap, topic, events[:WARMUP])
        await wait(events[WARMUP - 1], 180)
        t0 = time.perf_counter()
        await _produce(services.kafka_bootstrap, topic, events[WARMUP:])
        await wait(events[-1], 600)
        elapsed = time.perf_counter() - t0
        latencies = await _latency(services, env, log.with_name("bridge.log"), probes, 20.0)
        return elapsed, latencies
    finally:
        await _stop(proc)
        fh.close()
        await redis.aclose()


async def _latency(
    services: ServiceSettings, env: dict[str, str], log: Path, probes: int, rate: float
) -> list[float]:
    """Gateway publish → alert on ``proxima.alerts.v1``, in ms, for ``probes`` arrivals.

    A bridge child joins the running worker; each probe is a signed one-event batch from a
    customer never seen before (so it is an arrival), published at ``rate`` per second.
    """
    from contracts.signing import sign
    from stream.keyring import Keyring
    from transport.mqtt import MqttClient

    redis = connect_redis(services.redis)
    try:
        key = await Keyring(redis, services.redis_prefix).add("bench-store", "gw-door")
        registry = Registry(redis, services.redis_prefix)
        for i in range(probes + 1):
            await registry.enroll(
                CustomerProfile(
                    customer_id=f"probe-{i}",
                    identity_key=f"{0xABC00000 + i:032x}",
                    rotation_exponent=10,
                    name=f"Probe {i}",
                    visible_fields=["name"],
                ),
                [Purpose.ARRIVAL_ALERTS],
            )
    finally:
        await redis.aclose()
    topic = services.topics.gateway_events("bench-store", "gw-door")

    def batch(i: int) -> bytes:
        at = datetime.now(UTC)
        key = bytes.fromhex(f"{0xABC00000 + i:032x}")
        event = _zone_event(key, at, 1_000_000 + i, EventKind.ZONE_ENTER, "entrance")
        return b"[" + event.to_json() + b"]"

    consumer = AIOKafkaConsumer(
        bootstrap_servers=services.kafka_bootstrap, fetch_max_wait_ms=20, enable_auto_commit=False
    )
    await consumer.start()
    parts = consumer.partitions_for_topic(services.topics.alerts) or set()
    if not parts:
        await consumer.stop()
        raise RuntimeError("bench: no partitions for the alerts topic")
    from aiokafka import TopicPartition

    consumer.assign([TopicPartition(services.topics.alerts, p) for p in parts])
    await consumer.seek_to_end()
    seen: dict[str, float] = {}

    async def collect() -> None:
        while True:
            for records in (await consumer.getmany(timeout_ms=50)).values():
                now = time.perf_counter()
                for r in records:
                    seen.setdefault(json.loads(r.value or b"{}")["customer_id"], now)

    fh = log.open("wb")
    bridge = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-m", "deploy.cli", "bridge"],
        env=env,
        stdout=fh,
        stderr=subprocess.STDOUT,
    )
    collector = asyncio.create_task(collect())
    sent: dict[str, float] = {}
    try:
        async with MqttClient(services.mqtt) as mqtt:

            async def publish(i: int) -> None:
                payload = batch(i)
                sent[f"probe-{i}"] = time.perf_counter()
                props = sign(key.kid, bytes.fromhex(key.secret), topic, payload)
                await mqtt.publish(topic, payload, user_properties=props)

            # Until the bridge has subscribed nobody queues for it: repeat probe 0.
            deadline = time.perf_counter() + 120
            while "probe-0" not in seen:
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"bench: no alert through the bridge in 120 s; see {log}")
                await publish(0)
                await asyncio.sleep(0.5)
            for i in range(1, probes + 1):
                await publish(i)
                await asyncio.sleep(1 / rate)
            deadline = time.perf_counter() + 30
            while any(f"probe-{i}" not in seen for i in range(1, probes + 1)):
                if time.perf_counter() > deadline:
                    break
                await asyncio.sleep(0.05)
    finally:
        collector.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await collector
        await consumer.stop()
        await _stop(bridge)
        fh.close()
    lost = [c for c in sent if c != "probe-0" and c not in seen]
    if lost:
        raise RuntimeError(f"bench: {len(lost)} probe alerts never arrived, e.g. {lost[:3]}")
    return sorted((seen[c] - sent[c]) * 1000 for c in sent if c != "probe-0")


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


async def _enroll(services: ServiceSettings, customers: int) -> None:
    redis = connect_redis(services.redis)
    try:
        registry = Registry(redis, services.redis_prefix)
        for i in range(1, customers + 1):
            await registry.enroll(
                CustomerProfile(
                    customer_id=f"bench-{i}",
                    identity_key=f"{i:032x}",
                    rotation_exponent=10,
                    name=f"Customer {i}",
                    tier="gold" if i % 10 == 0 else None,
                    wishlist=["scarf"],
                    visible_fields=["name", "wishlist"],
                ),
                [Purpose.ARRIVAL_ALERTS, Purpose.ANALYTICS],
            )
    finally:
        await redis.aclose()


async def run_stream_bench(
    events: int = 20_000, customers: int = 500, probes: int = 200
) -> dict[str, float]:
    base = ServiceSettings()
    kafka: EmbeddedKafka | None = None
    tmp = Path(tempfile.mkdtemp(prefix="proxima-bench-stream-"))
    if not base.kafka:
        kafka = EmbeddedKafka(log_path=tmp / "kafka.log")
        await kafka.start()
    url = kafka.url if kafka else base.kafka
    services = ServiceSettings(kafka=url, namespace=f"bench{uuid.uuid4().hex[:8]}")
    settings = StreamSettings(data_dir=tmp / "stream-data")
    try:
        topics = (
            *services.topics.all_kafka,
            services.topics.kafka("bench.in"),
            services.topics.kafka("bench.out"),
        )
        await ensure_topics(services.kafka_bootstrap, topics, settings.partitions)
        values = make_events(events + WARMUP, customers, datetime(2026, 1, 5, 10, tzinfo=UTC))
        await _enroll(services, customers)
        baseline_s = await _baseline(
            services.kafka_bootstrap,
            services.topics.kafka("bench.in"),
            services.topics.kafka("bench.out"),
            values,
        )
        worker_s, latencies = await _worker(services, settings, values, tmp / "worker.log", probes)
    finally:
        await drop_prefix(services.redis, services.redis_prefix)
        if kafka is not None:
            kafka.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    baseline = events / baseline_s
    worker = events / worker_s
    return {
        "events": float(events),
        "events_per_s": round(worker, 1),
        "baseline_per_s": round(baseline, 1),
        "ratio": round(worker / baseline, 3),
        "latency_p50_ms": round(_pct(latencies, 0.50), 1),
        "latency_p99_ms": round(_pct(latencies, 0.99), 1),
        "latency_probes": float(len(latencies)),
        "partitions": float(settings.partitions),
    }


async def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM a child, give it 20 s to finish cleanly, then SIGKILL."""
    proc.terminate()
    try:
        await asyncio.to_thread(proc.wait, 20)
    except subprocess.TimeoutExpired:
        proc.kill()
        await asyncio.to_thread(proc.wait, 5)


def _zone_event(
    identity_key: bytes,
    at: datetime,
    seq: int,
    kind: EventKind,
    zone: str,
    **extra: float,
) -> Event:
    """One bench-store door-gateway event for the phone holding ``identity_key`` (K = 10)."""
    eid = compute_eid(identity_key, 10, int(at.timestamp()))
    return Event(
        schema_="proxima.zone.v1",
        event_id=uuid.uuid4(),
        store_id="bench-store",
        gateway_id="gw-door",
        observed_at=at,
        seq=seq,
        kind=kind,
        subject=Subject(type=SubjectType.EDDYSTONE_EID, id=eid.hex()),
        zone_id=zone,
        **extra,
    )
