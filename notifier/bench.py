"""``proxima bench notifier``: alert on Kafka → console session (SSE) and handheld (MQTT).

A real notifier runs as a child process (``proxima notifier serve``) against the real
brokers, in a fresh namespace. The bench signs ``associates`` associates in (sessions
made directly in Redis: argon2 cost is not what is measured), holds one live feed (SSE)
open per associate, subscribes to every associate's MQTT topic, then produces alerts to
Kafka one after another, each routed to a different associate, and times:

* ``sse_target``: produce → the alert in the console session of the associate it was
  routed to;
* ``sse_all``: produce → the alert in the last of all the store's sessions;
* ``mqtt``: produce → the alert on the routed associate's MQTT topic.

Times are taken in this process only (send and receive), so no clock skew enters.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from argon2 import PasswordHasher

from contracts.models import Alert
from contracts.services import ServiceSettings
from notifier.directory import Directory
from notifier.web.sessions import SESSION_COOKIE, Sessions
from transport.kafka import ensure_topics, make_producer
from transport.mqtt import MqttClient
from transport.net import free_port
from transport.redis import RedisClient, connect_redis

STORE = "bench"


def _alert(target: str) -> Alert:
    now = time.time()
    return Alert.model_validate(
        {
            "alert_id": str(uuid.uuid4()),
            "store_id": STORE,
            "customer_id": "c-bench",
            "kind": "arrival",
            "title": "Bench customer arrived",
            "fields": {"preferred_name": "Bench"},
            "caused_by": [str(uuid.uuid4())],
            "created_at": datetime.fromtimestamp(now, UTC),
            "target": {"associate_id": target},
        }
    )


@dataclass
class Arrivals:
    sse: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))
    mqtt: dict[str, float] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    errors: list[str] = field(default_factory=list)


async def console_feed(
    http: aiohttp.ClientSession,
    url: str,
    token: str,
    who: str,
    got: Arrivals,
    ready: asyncio.Event,
) -> None:
    try:
        await _read_feed(http, url, token, who, got, ready)
    except (aiohttp.ClientError, RuntimeError) as exc:
        got.errors.append(f"{who}: {exc!r}")
        ready.set()  # counted as failed, not waited for


async def _read_feed(
    http: aiohttp.ClientSession,
    url: str,
    token: str,
    who: str,
    got: Arrivals,
    ready: asyncio.Event,
) -> None:
    # A Cookie header, not the jar: aiohttp's jar drops cookies of IP-address hosts.
    async with http.get(url, headers={"Cookie": f"{SESSION_COOKIE}={token}"}) as res:
        if res.status != 200:
            raise RuntimeError(f"live feed: HTTP {res.status}")
        event = ""
        async for raw in res.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "snapshot":
                ready.set()
            elif line.startswith("data: ") and event == "alert":
                alert_id = json.loads(line[6:])["alert_id"]
                got.sse[alert_id].setdefault(who, time.perf_counter())
                got.changed.set()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def sign_in(redis: RedisClient, prefix: str, store: str, associates: int) -> dict[str, str]:
    """Associates ``a000``, ``a001``, ... of ``store``, on shift, each with a console
    session: name → session token (a cheap password hash: a bench, not a deployment)."""
    directory = Directory(
        redis, prefix, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )
    sessions = Sessions(redis, prefix, timedelta(hours=1))
    tokens: dict[str, str] = {}
    for n in range(associates):
        name = f"a{n:03d}"
        associate = await directory.add(store, name, "bench-password", associate_id=name)
        await directory.set_on_shift(store, name, True)
        tokens[name], _ = await sessions.create(associate)
    return tokens


async def _bench(
    services: ServiceSettings, port: int, associates: int, alerts: int, interval_s: float
) -> dict[str, Any]:
    redis = connect_redis(services.redis, decode_responses=True)
    tokens = await sign_in(redis, services.redis_prefix, STORE, associates)
    names = list(tokens)
    got = Arrivals()
    base = f"http://127.0.0.1:{port}"
    producer = make_producer(services.kafka_bootstrap, idempotent=False, client_id="bench")
    connector = aiohttp.TCPConnector(limit=0)
    feeds: set[asyncio.Task[None]] = set()
    sent: dict[str, tuple[str, float]] = {}
    try:
        async with (
            aiohttp.ClientSession(connector=connector) as http,
            MqttClient(services.mqtt) as mqtt,
        ):
            await wait_healthy(http, base)
            flt = f"{services.topics.mqtt_root}/stores/{STORE}/associates/+/alerts"
            await mqtt.subscribe(flt, qos=1)
            mqtt_task = asyncio.create_task(mqtt_pump(mqtt, got), name="bench-mqtt")
            readies = []
            for name in names:
                ready = asyncio.Event()
                readies.append(ready)
                task = asyncio.create_task(
                    console_feed(http, f"{base}/api/events", tokens[name], name, got, ready),
                    name=f"bench-feed-{name}",
                )
                feeds.add(task)
                task.add_done_callback(feeds.discard)
            async with asyncio.timeout(60):
                await asyncio.gather(*(r.wait() for r in readies))
            if got.errors:
                raise RuntimeError(f"{len(got.errors)} console feeds failed: {got.errors[0]}")
            await producer.start()
            # Warm-up: the notifier's consumer joins its group; wait for one full round.
            async with asyncio.timeout(60):
                while True:
                    warm = _alert(names[0])
                    await producer.send_and_wait(
                        services.topics.alerts, warm.to_json(), key=STORE.encode()
                    )
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(2):
                            while str(warm.alert_id) not in got.mqtt:
                                got.changed.clear()
                                await got.changed.wait()
                            break
            for i in range(alerts):
                target = names[i % associates]
                alert = _alert(target)
                sent[str(alert.alert_id)] = (target, time.perf_counter())
                await producer.send_and_wait(
                    services.topics.alerts, alert.to_json(), key=STORE.encode()
                )
                await asyncio.sleep(interval_s)
            # Let the last ones land (bounded): a lost alert shows as "lost", not a hang.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    while any(
                        a not in got.mqtt or len(got.sse.get(a, {})) < associates for a in sent
                    ):
                        got.changed.clear()
                        await got.changed.wait()
            mqtt_task.cancel()
    finally:
        for task in list(feeds):
            task.cancel()
        await asyncio.gather(*feeds, return_exceptions=True)
        await producer.stop()
        keys = [k async for k in redis.scan_iter(f"{services.redis_prefix}*", count=10000)]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()
    target_ms, all_ms, mqtt_ms = [], [], []
    lost_sse = lost_mqtt = 0
    for alert_id, (target, t0) in sent.items():
        seen = got.sse.get(alert_id, {})
        if target in seen:
            target_ms.append((seen[target] - t0) * 1000)
        if len(seen) == associates:
            all_ms.append((max(seen.values()) - t0) * 1000)
        else:
            lost_sse += 1
        if alert_id in got.mqtt:
            mqtt_ms.append((got.mqtt[alert_id] - t0) * 1000)
        else:
            lost_mqtt += 1
    return {
        "associates_connected": associates,
        "alerts": len(sent),
        "alerts_per_s": round(1 / interval_s, 1) if interval_s else float("nan"),
        "sse_target_p50_ms": percentile(target_ms, 0.5),
        "sse_target_p90_ms": percentile(target_ms, 0.90),
        "sse_target_p99_ms": percentile(target_ms, 0.99),
        "sse_all_sessions_p50_ms": percentile(all_ms, 0.5),
        "sse_all_sessions_p99_ms": percentile(all_ms, 0.99),
        "mqtt_p50_ms": percentile(mqtt_ms, 0.5),
        "mqtt_p90_ms": percentile(mqtt_ms, 0.90),
        "mqtt_p99_ms": percentile(mqtt_ms, 0.99),
        "sse_target_max_ms": max(target_ms, default=float("nan")),
        "lost_sse": lost_sse,
        "lost_mqtt": lost_mqtt,
    }


async def mqtt_pump(mqtt: MqttClient, got: Arrivals) -> None:
    while True:
        message = await mqtt.messages.get()
        alert_id = json.loads(message.payload)["alert_id"]
        got.mqtt.setdefault(alert_id, time.perf_counter())
        got.changed.set()


async def wait_healthy(http: aiohttp.ClientSession, base: str) -> None:
    async with asyncio.timeout(30):
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{base}/healthz") as res:
                    if res.status == 200:
                        return
            await asyncio.sleep(0.1)


def run_notifier_bench(
    kafka_url: str, *, associates: int = 200, alerts: int = 200, rate: float = 20.0
) -> dict[str, Any]:
    """Start a notifier child process in a fresh namespace, measure, stop it."""
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    services = ServiceSettings(namespace=namespace, kafka=kafka_url)
    port = free_port()
    env = dict(os.environ)
    env.update(
        PROXIMA_NAMESPACE=namespace,
        PROXIMA_KAFKA=kafka_url,
        PROXIMA_NOTIFIER_HTTP_PORT=str(port),
        PROXIMA_NOTIFIER_HTTP_HOST="127.0.0.1",
    )
    asyncio.run(ensure_topics(services.kafka_bootstrap, services.topics.all_kafka, 1))
    log_path = Path(os.environ.get("PROXIMA_BENCH_LOG", "artifacts/bench-notifier.log"))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("wb")
    child = subprocess.Popen(
        [sys.executable, "-m", "deploy.cli", "notifier", "serve"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        return asyncio.run(_bench(services, port, associates, alerts, 1 / rate))
    finally:
        child.terminate()
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=5)
        log.close()
