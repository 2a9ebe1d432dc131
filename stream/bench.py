"""``proxima bench stream``: events per second through one Faust worker, against a bare
aiokafka consume→produce loop on the same broker in the same run, with gateway batches on
``proxima.events.v2`` (one record per signed batch; docs/developers/events-v2.md).

Two batch-size profiles, each measured on both sides:

- **busy-hour**: sizes drawn from the batches a simulated flagship busy hour gives its
  gateways' agents (``flagship-hour``, seed 3, fused: 274 batches of 1 event, 14 of 2;
  an agent flushes within ``batch_max_latency_s`` = 100 ms of its first event, and a
  store's zone events are far sparser than that). Live traffic is one event per record
  in practice, whatever the record format.
- **drain**: full batches of 100 events (``batch_max_events``), what an agent's outbox
  sends after an outage or a broker away: the backlog is where batching pays.

Both sides get the same protocol: the consumer is started and warmed up (a small batch it
must finish first, so group join and partition assignment are out of the figure), then
``events`` events are produced as fast as the producer goes, and the clock runs from the
first send until the consumer is done with the last event:

- **baseline**: an ``AIOKafkaConsumer`` reads the same v2 records, parses every event of
  each with the contract model, and produces one record per batch to a sink topic
  (``acks=all``), awaiting each poll's acks, nothing else (:func:`bare_loop`, a child
  process, as the worker is); :data:`BASELINE_RUNS` runs, each on topics of its own, and
  the ratio is to their median (``*_baseline_min_per_s`` and ``*_max_per_s`` give the
  spread);
- **worker**: ``proxima stream worker`` (a child process) does the whole chain —
  verify the batch's signature → validate → resolve EID → consent → visit → rules →
  dedupe → alert — with its Redis round trips; it is done when it has marked the last
  event processed. Its CPU seconds (user + system, /proc) per 1,000 events are reported,
  and the share of them its check of each record's signature takes
  (``*_verify_cpu_share``: the check, timed in this process on the same records, over the
  worker's CPU).

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
from collections.abc import AsyncIterator, Iterable
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
from transport.redis import RedisClient, connect_redis, drop_prefix, redis_for

WARMUP = 200

BUSY_HOUR_SIZES = (1,) * 274 + (2,) * 14
"""Gateway batch sizes of a simulated flagship busy hour (see the module docstring)."""
DRAIN_SIZES = (100,)
"""An outbox draining a backlog: full batches (``EdgeSettings.batch_max_events``)."""
PROFILES = {"busy_hour": BUSY_HOUR_SIZES, "drain": DRAIN_SIZES}

Record = tuple[bytes, list[tuple[str, bytes]], int]
"""A v2 record as the bridge writes it: value, headers, and how many events it holds."""


def make_records(
    values: list[bytes], sizes: tuple[int, ...], mqtt_topic: str, kid: str, secret: bytes, seed: int
) -> list[Record]:
    """``values`` (events) cut into gateway batches of sizes drawn from ``sizes``, each
    signed as its gateway would sign it, with the headers the bridge gives its record."""
    import random

    from contracts.signing import sign
    from stream.batches import record_headers

    rng = random.Random(seed)
    out: list[Record] = []
    i = 0
    while i < len(values):
        n = min(rng.choice(sizes), len(values) - i)
        payload = b"[" + b",".join(values[i : i + n]) + b"]"
        props = sign(kid, secret, mqtt_topic, payload)
        out.append((payload, record_headers(mqtt_topic, props.items()), n))
        i += n
    return out


def make_events(
    n: int, customers: int, start: datetime, seed: int = 7, store: str = "bench-store"
) -> list[bytes]:
    """``n`` zone events in ``store``: half from enrolled customers, half from unknown phones."""
    import random

    rng = random.Random(seed)
    keys = [bytes.fromhex(f"{i:032x}") for i in range(1, 2 * customers + 1)]
    out = []
    for i in range(n):
        key = keys[rng.randrange(len(keys))]
        at = start + timedelta(milliseconds=50 * i)
        kind = EventKind.ZONE_ENTER if i % 3 == 0 else EventKind.ZONE_DWELL
        zone = rng.choice(["entrance", "floor", "fitting-rooms"])
        event = zone_event(key, at, i + 1, kind, zone, store=store, rssi=-60.0, confidence=0.9)
        out.append(event.to_json())
    return out


def verify_us_per_record(records: list[Record], kid: str, secret: bytes, mqtt_topic: str) -> float:
    """What the worker's end-to-end check of a record's signature costs, in µs of this
    process's CPU per record: :func:`contracts.signing.verify_message` on each record's
    headers as the worker reads them (``BatchRecord.of``), with the key at hand (the
    worker's key cache answers from memory after the first record of a gateway)."""
    from contracts.signing import GatewayKey, verify_message
    from stream.batches import BatchRecord

    store, gateway = "bench-store", "gw-door"
    key = GatewayKey(kid, store, gateway, secret, trace_time=True)

    def lookup(_kid: str) -> GatewayKey:
        return key

    opened = [(value, BatchRecord.of(headers).properties) for value, headers, _ in records]
    t0 = time.process_time()
    for value, props in opened:
        verify_message(mqtt_topic, value, props, lookup, store_id=store, gateway_id=gateway)
    return 1e6 * (time.process_time() - t0) / max(len(opened), 1)


async def _produce(
    bootstrap: str,
    topic: str,
    records: list[Record],
    key: bytes = b"bench-store",
    partition: int | None = None,
) -> None:
    producer = make_producer(bootstrap, idempotent=False, client_id="bench-feeder")
    await producer.start()
    try:
        futures = [
            await producer.send(topic, key=key, value=v, headers=h, partition=partition)
            for v, h, _ in records
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def _warmup(records: list[Record]) -> int:
    """How many of the first records hold :data:`WARMUP` events."""
    n = total = 0
    while total < WARMUP:
        total += records[n][2]
        n += 1
    return n


async def bare_loop(bootstrap: str, src: str, sink: str, warm_events: int, total: int) -> None:
    """The baseline's loop, in a process of its own as the worker is (:func:`_baseline`):
    consume ``src``, parse every event with the contract model, produce one record per
    batch to ``sink`` and await each poll's acks; prints ``started`` once it consumes,
    ``warm`` after ``warm_events`` events and ``done`` after ``total``, then returns."""
    from contracts.models import split_batch

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
    print("started", flush=True)
    done = 0
    try:
        while done < total:
            batch = await consumer.getmany(timeout_ms=100, max_records=2000)
            futures = []
            for tp, got in batch.items():
                for r in got:
                    events, _ = split_batch(r.value or b"")
                    futures.append(await producer.send(sink, key=r.key, value=r.value))
                    if done < warm_events <= done + len(events):
                        print("warm", flush=True)
                    done += len(events)
                if got:
                    await asyncio.gather(*futures)
                    await consumer.commit({tp: got[-1].offset + 1})
                    futures = []
        print("done", flush=True)
    finally:
        await producer.stop()
        await consumer.stop()


def bare_loop_main(argv: list[str]) -> None:
    """``python -c`` entry of :func:`bare_loop`: BOOTSTRAP SRC SINK WARM_EVENTS TOTAL."""
    bootstrap, src, sink, warm, total = argv
    asyncio.run(bare_loop(bootstrap, src, sink, int(warm), int(total)))


async def _baseline(bootstrap: str, src: str, sink: str, records: list[Record]) -> float:
    """Events per second a bare consume→parse→produce loop moves ``records`` at, after a
    warm-up: :func:`bare_loop` in a child process, fed from this one as the worker is
    (in this process it had shared the event loop with its own producer)."""
    warm = _warmup(records)
    total = sum(n for _, _, n in records)
    warm_events = sum(n for _, _, n in records[:warm])
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from stream.bench import bare_loop_main; bare_loop_main(sys.argv[1:])",
        bootstrap,
        src,
        sink,
        str(warm_events),
        str(total),
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    stdout = child.stdout

    async def said(word: str, timeout: float) -> None:
        line = await asyncio.wait_for(stdout.readline(), timeout)
        if line.strip() != word.encode():
            raise RuntimeError(f"bench: the bare loop said {line!r}, not {word!r}")

    try:
        await said("started", 60)
        await _produce(bootstrap, src, records[:warm])
        await said("warm", 120)
        t0 = time.perf_counter()
        await _produce(bootstrap, src, records[warm:])
        await said("done", 300)
        seconds = time.perf_counter() - t0
        await asyncio.wait_for(child.wait(), 30)
        return (total - warm_events) / seconds
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _worker(
    services: ServiceSettings,
    settings: StreamSettings,
    phases: dict[str, list[Record]],
    log: Path,
    probes: int,
) -> tuple[dict[str, tuple[float, float]], list[float]]:
    """For each phase, the seconds and CPU seconds one ``proxima stream worker`` takes to
    process its records (after a warm-up on the first phase's), then the latency probes.

    Every record has the same key (one store), so one partition holds them in order: a
    phase is done when the worker has recorded its last event as processed (``event:{id}``).
    """
    env = worker_env(services, settings)
    topic = services.topics.events_v2
    redis = connect_redis(services.redis)
    fh = log.open("wb")
    proc = await spawn_worker(env, fh)

    async def wait(record: Record, timeout: float) -> None:
        await _until_processed(redis, [_last_event_key(services, record)], [proc], timeout, log)

    try:
        figures: dict[str, tuple[float, float]] = {}
        for i, (name, records) in enumerate(phases.items()):
            warm = _warmup(records) if i == 0 else 0
            if warm:
                await _produce(services.kafka_bootstrap, topic, records[:warm])
                await wait(records[warm - 1], 180)
            cpu0, t0 = _cpu_s(proc.pid), time.perf_counter()
            await _produce(services.kafka_bootstrap, topic, records[warm:])
            await wait(records[-1], 600)
            figures[name] = (time.perf_counter() - t0, _cpu_s(proc.pid) - cpu0)
        latencies = await _latency(services, env, log.with_name("bridge.log"), probes, 20.0)
        return figures, latencies
    finally:
        await stop_child(proc)
        fh.close()
        await redis.aclose()


@contextlib.asynccontextmanager
async def bench_broker(prefix: str) -> AsyncIterator[tuple[str, Path]]:
    """The broker's URL (``PROXIMA_KAFKA``, else an embedded Tansu started here) and a
    scratch folder; the broker is stopped and the folder removed afterwards."""
    base = ServiceSettings()
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    kafka = None if base.kafka else EmbeddedKafka(log_path=tmp / "kafka.log")
    try:
        if kafka is not None:
            await kafka.start()
        yield (kafka.url if kafka else base.kafka), tmp
    finally:
        if kafka is not None:
            kafka.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _last_event_key(services: ServiceSettings, record: Record) -> str:
    """The Redis key the worker sets once it has decided the last event of ``record``."""
    return f"{services.redis_prefix}event:{json.loads(record[0])[-1]['event_id']}"


async def _until_processed(
    redis: RedisClient,
    keys: list[str],
    procs: list[subprocess.Popen[bytes]],
    timeout: float,
    log: Path,
) -> None:
    """Wait until the worker(s) have set every one of ``keys``; fail if one exits first."""
    deadline = time.perf_counter() + timeout
    while await redis.exists(*keys) < len(keys):
        if dead := [p.returncode for p in procs if p.poll() is not None]:
            raise RuntimeError(f"bench: a worker exited ({dead}); see {log}")
        if time.perf_counter() > deadline:
            raise TimeoutError(f"bench: the worker did not finish within {timeout}s")
        await asyncio.sleep(0.005)


def worker_env(services: ServiceSettings, settings: StreamSettings) -> dict[str, str]:
    return dict(
        os.environ,
        PROXIMA_KAFKA=services.kafka,
        PROXIMA_NAMESPACE=services.namespace,
        PROXIMA_STREAM_DATA_DIR=str(settings.data_dir),
    )


async def spawn_worker(env: dict[str, str], out: Any) -> subprocess.Popen[bytes]:
    """A ``proxima stream worker`` child, logging warnings and worse to ``out``."""
    return await spawn_cli(["stream", "worker", "--loglevel", "warn"], env, out)


async def spawn_cli(argv: list[str], env: dict[str, str], out: Any) -> subprocess.Popen[bytes]:
    """A ``proxima ARGV...`` child, its output (and errors) to ``out``."""
    return await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-m", "deploy.cli", *argv],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )


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

    async with redis_for(services) as redis:
        key = await Keyring(redis, services.redis_prefix).add("bench-store", "gw-door")
    await enroll_probes(services, probes)
    topic = services.topics.gateway_events("bench-store", "gw-door")

    def batch(i: int) -> bytes:
        return b"[" + probe_event(i).to_json() + b"]"

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
        await stop_child(bridge)
        fh.close()
    lost = [c for c in sent if c != "probe-0" and c not in seen]
    if lost:
        raise RuntimeError(f"bench: {len(lost)} probe alerts never arrived, e.g. {lost[:3]}")
    return sorted((seen[c] - sent[c]) * 1000 for c in sent if c != "probe-0")


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


def probe_event(i: int, store: str = "bench-store") -> Event:
    """Probe ``i`` walking in now: the door gateway's zone enter for a customer never seen
    before (an arrival), as the latency benches publish it."""
    key = bytes.fromhex(f"{0xABC00000 + i:032x}")
    return zone_event(
        key, datetime.now(UTC), 1_000_000 + i, EventKind.ZONE_ENTER, "entrance", store=store
    )


async def enroll_probes(services: ServiceSettings, probes: int) -> None:
    """Customers ``probe-0`` .. ``probe-{probes}`` (:func:`probe_event`'s), consenting to
    arrival alerts, their name visible."""
    profiles = (
        CustomerProfile(
            customer_id=f"probe-{i}",
            identity_key=f"{0xABC00000 + i:032x}",
            rotation_exponent=10,
            name=f"Probe {i}",
            visible_fields=["name"],
        )
        for i in range(probes + 1)
    )
    await _enroll(services, profiles, [Purpose.ARRIVAL_ALERTS])


async def enroll_customers(services: ServiceSettings, customers: int) -> None:
    profiles = (
        CustomerProfile(
            customer_id=f"bench-{i}",
            identity_key=f"{i:032x}",
            rotation_exponent=10,
            name=f"Customer {i}",
            tier="gold" if i % 10 == 0 else None,
            wishlist=["scarf"],
            visible_fields=["name", "wishlist"],
        )
        for i in range(1, customers + 1)
    )
    await _enroll(services, profiles, [Purpose.ARRIVAL_ALERTS, Purpose.ANALYTICS])


async def _enroll(
    services: ServiceSettings, profiles: Iterable[CustomerProfile], consent: list[Purpose]
) -> None:
    async with redis_for(services) as redis:
        registry = Registry(redis, services.redis_prefix)
        for profile in profiles:
            await registry.enroll(profile, consent)


BASELINE_RUNS = 3
"""Runs of the bare loop per profile, each on topics of its own; the ratio is to their
median. One run, in this process beside its producer, swung 2× between runs of the same
bench (drain 52,111-113,670 events/s, 2026-12-05, twelfth session; alone in a quiet
process, 5 runs gave 69,870-74,745), and the ratio swung with it (0.27-0.59) while the
worker moved 27,000-31,000. In a child process of its own (:func:`bare_loop`) its runs
within a bench agree to ~10 % (drain 98,054-112,509 in three benches)."""

STREAM_EVENTS = 100_000
"""Events per profile of a ``bench stream`` run. At 20,000 (the default until 2026-12-05)
the baseline drained its backlog in ~0.45 s, of which the first fetches and the producer's
start are a fixed part: that flattered the drain ratio (0.49-0.52 at 20,000 against
0.42-0.46 at 100,000-300,000, same machine, same hour) and cost the worker's busy hour
(0.44 against 0.47-0.60). At 100,000 a run takes ~90 s (the bare loop runs
:data:`BASELINE_RUNS` times per profile) and the figures are the steady state's."""


async def run_stream_bench(
    events: int = STREAM_EVENTS, customers: int = 500, probes: int = 200
) -> dict[str, float]:
    """``events`` events per profile (:data:`PROFILES`), through the baseline and the worker."""
    out: dict[str, float] = {"events": float(events)}
    async with bench_broker("proxima-bench-stream-") as (url, tmp):
        services = ServiceSettings(kafka=url, namespace=f"bench{uuid.uuid4().hex[:8]}")
        settings = StreamSettings(data_dir=tmp / "stream-data")
        try:
            topics = (
                *services.topics.all_kafka,
                *(
                    services.topics.kafka(f"bench.{d}.{p}.{i}")
                    for p in PROFILES
                    for d in ("in", "out")
                    for i in range(BASELINE_RUNS)
                ),
            )
            await ensure_topics(services.kafka_bootstrap, topics, settings.partitions)
            await enroll_customers(services, customers)
            key = await bench_key(services)
            mqtt_topic = services.topics.gateway_events("bench-store", "gw-door")
            phases: dict[str, list[Record]] = {}
            for i, (name, sizes) in enumerate(PROFILES.items()):
                # Distinct events per phase (the worker would skip ones it has seen), an hour apart.
                start = datetime(2026, 1, 5, 10 + i, tzinfo=UTC)
                values = make_events(
                    events + (WARMUP if i == 0 else 0), customers, start, seed=7 + i
                )
                phases[name] = make_records(
                    values, sizes, mqtt_topic, key.kid, bytes.fromhex(key.secret), seed=i
                )
            baselines = {
                name: sorted(
                    [
                        await _baseline(
                            services.kafka_bootstrap,
                            services.topics.kafka(f"bench.in.{name}.{i}"),
                            services.topics.kafka(f"bench.out.{name}.{i}"),
                            records,
                        )
                        for i in range(BASELINE_RUNS)
                    ]
                )
                for name, records in phases.items()
            }
            figures, latencies = await _worker(
                services, settings, phases, tmp / "worker.log", probes
            )
        finally:
            await drop_prefix(services.redis, services.redis_prefix)
    for name, records in phases.items():
        timed = records[_warmup(records) :] if name == next(iter(phases)) else records
        n_events = sum(n for _, _, n in timed)
        seconds, cpu = figures[name]
        worker = n_events / seconds
        runs = baselines[name]
        baseline = runs[len(runs) // 2]  # the median run
        verify_us = verify_us_per_record(timed, key.kid, bytes.fromhex(key.secret), mqtt_topic)
        out |= {
            f"{name}_events_per_batch": round(n_events / len(timed), 2),
            f"{name}_events_per_s": round(worker, 1),
            f"{name}_records_per_s": round(len(timed) / seconds, 1),
            f"{name}_baseline_per_s": round(baseline, 1),
            f"{name}_baseline_min_per_s": round(runs[0], 1),
            f"{name}_baseline_max_per_s": round(runs[-1], 1),
            f"{name}_ratio": round(worker / baseline, 3),
            f"{name}_cpu_s_per_1000": round(1000 * cpu / n_events, 3),
            # The signature check's share of the worker's CPU: on by default (v2 records are
            # verified end to end, the bridge is not trusted to have checked them).
            f"{name}_verify_us_per_record": round(verify_us, 2),
            f"{name}_verify_cpu_share": round(verify_us * len(timed) / 1e6 / cpu, 4),
        }
    return out | {
        "latency_p50_ms": round(_pct(latencies, 0.50), 1),
        "latency_p99_ms": round(_pct(latencies, 0.99), 1),
        "latency_probes": float(len(latencies)),
        "partitions": float(settings.partitions),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


SCALE_STORES = 4
"""Stores of the scale-out run, one per partition of the events topic."""
SCALE_EVENTS = 80_000
"""Events of a scale-out run: at 20,000 a run took ~1.3-1.8 s, of which producing the
records and the first fetches are a fixed part that hid part of the second worker's gain
(ratio 1.43-1.51 at 20,000, 1.45-1.57 at 80,000 on the same machine, 2026-12-04)."""


async def _scale_run(
    kafka_url: str, workers: int, events: int, customers: int, tmp: Path
) -> dict[str, float]:
    """One scale-out measurement in a namespace of its own: ``workers`` workers over
    :data:`SCALE_STORES` partitions, one store each, drain-sized batches."""
    services = ServiceSettings(kafka=kafka_url, namespace=f"bench{uuid.uuid4().hex[:8]}")
    settings = StreamSettings(data_dir=tmp / f"stream-data-{workers}")
    topic = services.topics.events_v2
    redis = connect_redis(services.redis)
    env = worker_env(services, settings)
    logs = [(tmp / f"worker-{workers}-{i}.log").open("wb") for i in range(workers)]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        await ensure_topics(services.kafka_bootstrap, services.topics.all_kafka, SCALE_STORES)
        await enroll_customers(services, customers)
        stores = [f"bench-store-{p}" for p in range(SCALE_STORES)]
        per_store = events // SCALE_STORES
        rounds: list[dict[int, list[Record]]] = [{}, {}, {}]  # two warm-ups, then the timed run
        for p, store in enumerate(stores):
            key = await bench_key(services, store)
            mqtt_topic = services.topics.gateway_events(store, "gw-door")
            for r, n in enumerate((WARMUP, WARMUP, per_store)):
                start = datetime(2026, 1, 5, 10 + r, tzinfo=UTC)  # distinct events per round
                values = make_events(n, customers, start, seed=100 * r + p, store=store)
                rounds[r][p] = make_records(
                    values, DRAIN_SIZES, mqtt_topic, key.kid, bytes.fromhex(key.secret), p
                )
        procs = [await spawn_worker(env, log) for log in logs]

        async def run(batches: dict[int, list[Record]], timeout: float) -> float:
            """Produce every store's records to its partition; seconds until all are done."""
            t0 = time.perf_counter()
            await asyncio.gather(
                *(
                    _produce(services.kafka_bootstrap, topic, recs, stores[p].encode(), p)
                    for p, recs in batches.items()
                )
            )
            last = [_last_event_key(services, recs[-1]) for recs in batches.values()]
            await _until_processed(redis, last, procs, timeout, tmp)
            return time.perf_counter() - t0

        # Tansu's group coordinator takes 10-20 s to settle; the second warm-up runs once
        # every worker has had its partitions for a while, so no rebalance lands in the timing.
        await run(rounds[0], 180)
        await asyncio.sleep(settings.session_timeout_s)
        await run(rounds[1], 180)
        cpu0 = [_cpu_s(p.pid) for p in procs]
        seconds = await run(rounds[2], 600)
        cpu = [_cpu_s(p.pid) - c for p, c in zip(procs, cpu0, strict=True)]
    finally:
        for proc in procs:
            await stop_child(proc)
        for log in logs:
            log.close()
        await redis.aclose()
        await drop_prefix(services.redis, services.redis_prefix)
    n = per_store * SCALE_STORES
    return {
        f"workers_{workers}_events_per_s": round(n / seconds, 1),
        f"workers_{workers}_cpu_s_per_1000": round(1000 * sum(cpu) / n, 3),
        # a worker that got no partition would show ~0 here
        f"workers_{workers}_busiest_cpu_share": round(max(cpu) / sum(cpu), 2),
    }


async def run_scale_out_bench(
    events: int = SCALE_EVENTS, customers: int = 500, workers: int = 2
) -> dict[str, float]:
    """``proxima bench stream-scale``: the drain profile over :data:`SCALE_STORES` stores
    (one partition each) through one worker, then through ``workers`` workers in one group;
    ``scale_ratio`` is their events/s over one worker's."""
    out: dict[str, float] = {"events": float(events), "partitions": float(SCALE_STORES)}
    async with bench_broker("proxima-bench-scale-") as (url, tmp):
        out |= await _scale_run(url, 1, events, customers, tmp)
        out |= await _scale_run(url, workers, events, customers, tmp)
    one = out["workers_1_events_per_s"]
    return out | {
        "scale_ratio": round(out[f"workers_{workers}_events_per_s"] / one, 2),
        "cores": float(os.cpu_count() or 1),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


async def bench_key(services: ServiceSettings, store: str = "bench-store") -> Any:
    """The bench store's door gateway's key, labelled as a replay tool's: the bench's
    events carry a fixed date, which the worker holds to its clock otherwise."""
    from stream.keyring import REPLAY_LABEL, Keyring

    async with redis_for(services) as redis:
        return await Keyring(redis, services.redis_prefix).labelled(store, "gw-door", REPLAY_LABEL)


async def stop_child(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM a child, give it 20 s to finish cleanly, then SIGKILL."""
    proc.terminate()
    try:
        await asyncio.to_thread(proc.wait, 20)
    except subprocess.TimeoutExpired:
        proc.kill()
        await asyncio.to_thread(proc.wait, 5)


def zone_event(
    identity_key: bytes,
    at: datetime,
    seq: int,
    kind: EventKind,
    zone: str,
    store: str = "bench-store",
    **extra: float,
) -> Event:
    """One door-gateway event of ``store`` for the phone holding ``identity_key`` (K = 10)."""
    eid = compute_eid(identity_key, 10, int(at.timestamp()))
    return Event(
        schema_="proxima.zone.v1",
        event_id=uuid.uuid4(),
        store_id=store,
        gateway_id="gw-door",
        observed_at=at,
        seq=seq,
        kind=kind,
        subject=Subject(type=SubjectType.EDDYSTONE_EID, id=eid.hex()),
        zone_id=zone,
        **extra,
    )
