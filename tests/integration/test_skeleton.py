"""The walking skeleton over real Mosquitto, Redis and the embedded Kafka broker.

Simulated traffic → real edge agent → MQTT → bridge → Kafka → Faust worker (Redis
registry) → Kafka → notifier → MQTT. Ana (consenting) gets exactly one arrival alert;
Bruno (enrolled, no consent) and the unknown phone get none.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from contracts.models import AlertView, parse_model
from contracts.services import ServiceSettings
from stream.settings import StreamSettings
from tests.conftest import Procs
from transport.kafka import ensure_topics
from transport.mqtt import MqttClient

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


async def _wait_for(predicate, timeout: float, what: str, procs: Procs) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.25)
    logs = "\n".join(f"--- {n}\n{procs.log(n)[-3000:]}" for n in ("bridge", "worker", "notifier"))
    pytest.fail(f"timed out after {timeout}s waiting for {what}\n{logs}")


async def test_consenting_customer_gets_exactly_one_arrival_alert(
    procs: Procs, proxima_env: dict[str, str], tmp_path: Path
) -> None:
    services = ServiceSettings(
        kafka=proxima_env["PROXIMA_KAFKA"], namespace=proxima_env["PROXIMA_NAMESPACE"]
    )
    topics = services.topics
    await ensure_topics(services.kafka_bootstrap, topics.all_kafka, StreamSettings().partitions)
    procs.start("bridge", "bridge")
    procs.start("worker", "stream", "worker")
    procs.start("notifier", "notifier", "serve")

    received: dict[str, list[AlertView]] = {"store": [], "associate": []}
    async with MqttClient(services.mqtt) as mqtt:
        await mqtt.subscribe(topics.all_store_alerts(), qos=1)
        await mqtt.subscribe(f"{topics.mqtt_root}/stores/+/associates/+/alerts", qos=1)

        async def collect() -> None:
            while True:
                msg = await mqtt.messages.get()
                kind = "associate" if "/associates/" in msg.topic else "store"
                assert b"cust-ana" not in msg.payload  # the associates' view: no customer id
                alert = parse_model(AlertView, msg.payload)
                if kind == "associate":
                    assert msg.topic.endswith(f"/associates/{alert.target.associate_id}/alerts")
                received[kind].append(alert)

        collector = asyncio.create_task(collect())
        trace = tmp_path / "skeleton.jsonl"
        procs.run("simulate", "simulate", "--scenario", "skeleton", "--enroll", "--out", str(trace))
        output = procs.run("replay", "replay", str(trace), "--speed", "max")
        published = sum(int(n) for n in re.findall(r"(\d+) events published", output))
        assert published >= 3, output  # at least one zone_enter per person

        redis = aioredis.from_url(services.redis)
        try:

            async def all_processed() -> bool:
                keys = [
                    k async for k in redis.scan_iter(f"{services.redis_prefix}event:*", count=10000)
                ]
                return len(keys) >= published

            await _wait_for(all_processed, 150, f"the worker to process {published} events", procs)

            async def delivered() -> bool:
                return len(received["store"]) >= 1 and len(received["associate"]) >= 1

            await _wait_for(delivered, 60, "the alert to reach MQTT", procs)
            await asyncio.sleep(2.0)  # any duplicate would be right behind
        finally:
            collector.cancel()
            await redis.aclose()

    store_alerts = received["store"]
    (alert,) = store_alerts  # Ana's only (Bruno did not consent), once
    assert alert.kind == "arrival"
    assert alert.store_id == "demo-store"
    assert alert.title == "Ana is at the entrance"
    # Only the fields Ana made visible, never her identity key or assigned associate.
    assert set(alert.fields) <= {"name", "tier", "sizes", "wishlist"}
    assert alert.fields["sizes"] == {"dress": "38"}
    assert "identity_key" not in json.dumps(alert.model_dump(mode="json"))
    assert [a.alert_id for a in received["associate"]] == [alert.alert_id]
    assert alert.target.associate_id == "assoc-maria"

    # The operator's view: both services' counters (`proxima stats`, written every 1 s here).
    stats: list[dict[str, Any]] = []
    for _ in range(40):
        stats = json.loads(procs.run("stats", "stats", "--json"))
        done = {row["component"]: row["counts"] for row in stats}
        if done.get("stream-worker", {}).get("events", 0) >= published:
            break
        await asyncio.sleep(0.5)
    counts = {row["component"]: row["counts"] for row in stats}
    assert counts["stream-worker"]["events"] >= published, stats
    # The bridge moves whole gateway batches (proxima.events.v2): it counts records.
    assert counts["bridge"]["records_v2"] >= 1, stats
    assert counts["bridge"]["records_v2"] <= published, stats
