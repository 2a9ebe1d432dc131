"""Two bridges on one MQTT shared subscription, as the k8s StatefulSet runs them: each
replica has its own client id (its own persistent session), both take batches, and
each killed with kill -9 once while gateways keep publishing loses nothing. Real
Mosquitto, Tansu and Redis; the bridges are `proxima bridge` child processes."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from contracts.services import ServiceSettings
from deploy.children import Children
from tests.factories import event_dict
from tests.kit.kafka import read_topic
from transport.kafka import ensure_topics
from transport.mqtt import MqttClient
from transport.stats import read_all

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

BATCHES = 60
PER_BATCH = 5


async def _until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 30) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not await check():  # noqa: ASYNC110 - the bridges' counters in Redis
                await asyncio.sleep(0.2)
    except TimeoutError:
        pytest.fail(f"not reached in {timeout} s: {what}")


def _bridges(env: dict[str, str], log_dir: Path) -> dict[str, Children]:
    out = {}
    for replica in ("bridge-0", "bridge-1"):
        mine = dict(env, PROXIMA_STREAM_BRIDGE_CLIENT_ID=replica)
        out[replica] = Children(mine, log_dir / replica, append=True)
    return out


async def test_two_replicas_share_the_load_and_each_kill_loses_nothing(
    proxima_env: dict[str, str], tmp_path: Path
) -> None:
    env = dict(
        proxima_env,
        # Unsigned: this test is about sessions and load sharing (signatures: test_bridge_signatures).
        PROXIMA_STREAM_REQUIRE_SIGNATURES="false",
        PROXIMA_STREAM_PARTITIONS="1",
    )
    services = ServiceSettings(kafka=env["PROXIMA_KAFKA"], namespace=env["PROXIMA_NAMESPACE"])
    await ensure_topics(services.kafka_bootstrap, services.topics.all_kafka, 1)
    replicas = _bridges(env, tmp_path)
    redis = aioredis.from_url(services.redis)
    pids: dict[str, int] = {}

    def start(name: str) -> None:
        pids[name] = replicas[name].start(name, "bridge").pid

    async def subscribed(name: str) -> bool:
        stats = await read_all(redis, services.redis_prefix)
        return any(
            component == "bridge" and instance.endswith(f":{pids[name]}") and n["subscribed"]
            for (component, instance), (_, n) in stats.items()
        )

    async def forwarded() -> dict[str, int]:
        stats = await read_all(redis, services.redis_prefix)
        return {inst: n["records_v2"] for (c, inst), (_, n) in stats.items() if c == "bridge"}

    topic = services.topics.gateway_events("store-1", "gw-door")
    sent: list[str] = []
    try:
        for name in replicas:
            start(name)
        for name in replicas:
            await _until(lambda n=name: subscribed(n), f"{name} subscribed", timeout=60)  # type: ignore[misc]
        shares: dict[str, int] = {}
        async with MqttClient(services.mqtt) as mqtt:
            for b in range(BATCHES):
                if b == BATCHES // 3:
                    shares.update(await forwarded())  # before its counters die with it
                    replicas["bridge-0"].kill("bridge-0")
                    start("bridge-0")
                if b == 2 * BATCHES // 3:
                    shares.update(await forwarded())
                    replicas["bridge-1"].kill("bridge-1")
                    start("bridge-1")
                batch = [
                    event_dict(
                        event_id=str(uuid.uuid4()),
                        observed_at=datetime.now(UTC).isoformat(),
                        seq=b * PER_BATCH + i + 1,
                    )
                    for i in range(PER_BATCH)
                ]
                sent += [e["event_id"] for e in batch]
                await mqtt.publish(topic, json.dumps(batch).encode(), qos=1)
                await asyncio.sleep(0.05)
        records = await read_topic(  # one record per gateway batch (proxima.events.v2)
            services.kafka_bootstrap, services.topics.events_v2, BATCHES, idle_s=3, timeout=90
        )
        got = {e["event_id"] for r in records for e in json.loads(r)}
        assert set(sent) - got == set(), f"{len(set(sent) - got)} of {len(sent)} events lost"
        shares.update(await forwarded())
        assert sum(1 for n in shares.values() if n > 0) >= 2, f"one bridge took it all: {shares}"
        # Each replica kept its own connection: with one client id for both, the broker
        # hands the session to whichever connected last and the other reconnects, again
        # and again (what replicas: 2 did with the old fixed id).
        await asyncio.sleep(3)  # a counters interval and more: a takeover loop would show
        stats = await read_all(redis, services.redis_prefix)
        live = {
            inst: n["mqtt_reconnects"]
            for (c, inst), (_, n) in stats.items()
            if c == "bridge" and inst.rsplit(":", 1)[1] in {str(p) for p in pids.values()}
        }
        assert len(live) == 2, live
        assert set(live.values()) == {0}, live
    finally:
        for children in replicas.values():
            children.stop()
        await redis.aclose()
