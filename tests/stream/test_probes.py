"""/livez, /readyz and /metrics of the bridge and the stream worker (transport.probes):
scraped over HTTP and parsed with prometheus_client's own parser; readiness, not
liveness, follows Redis away and back. Real Mosquitto, Tansu and redis-server."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from contracts.services import ServiceSettings
from stream.batches import record_headers
from stream.bridge import Bridge
from stream.settings import StreamSettings
from tests.conftest import Procs
from tests.redis_server import RedisServer
from tests.stream.test_bridge import fresh
from tests.stream.test_bridge_poison import running, until
from transport.kafka import ensure_topics, make_producer
from transport.mqtt import MqttClient
from transport.net import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


async def _get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(url) as res:
        return res.status, await res.text()


def _samples(text: str) -> dict[str, tuple[str, float]]:
    """name → (type, value) of every sample, as Prometheus would read them."""
    return {
        s.name: (family.type, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_bridge_metrics_move_and_readiness_follows_redis(
    kafka_url: str, namespace: str, redis_server: RedisServer
) -> None:
    services = ServiceSettings(kafka=kafka_url, namespace=namespace, redis=redis_server.url)
    await ensure_topics(services.kafka_bootstrap, services.topics.all_kafka, 1)
    settings = StreamSettings(
        partitions=1, require_signatures=False, bridge_http_port=0, retry_backoff_max_s=0.5
    )
    topic = services.topics.gateway_events("store-1", "gw-door")
    async with running(Bridge(services, settings, client_id="probes-bridge")) as bridge:
        base = f"http://127.0.0.1:{bridge.http_port}"
        before = _samples((await _get(f"{base}/metrics"))[1])
        assert before["proxima_bridge_subscribed"] == ("gauge", 1.0)
        async with MqttClient(services.mqtt) as mqtt:
            await mqtt.publish(topic, json.dumps([fresh(seq=1), fresh(seq=2)]).encode(), qos=1)
        await until(lambda: bridge.counts["acked"] == 1, "the batch through")
        after = _samples((await _get(f"{base}/metrics"))[1])
        assert after["proxima_bridge_records_v2_total"] == ("counter", 1.0)
        assert (
            after["proxima_bridge_batches_total"][1]
            == before.get("proxima_bridge_batches_total", ("counter", 0.0))[1] + 1
        )

        status, body = await _get(f"{base}/readyz")
        assert (status, json.loads(body)["checks"]) == (200, {"mqtt": True, "redis": True})
        await asyncio.to_thread(redis_server.stop)
        status, body = await _get(f"{base}/readyz")
        assert (status, json.loads(body)["checks"]["redis"]) == (503, False)
        assert (await _get(f"{base}/livez"))[0] == 200  # unready, not dead: no restart
        await asyncio.to_thread(redis_server.start)
        async with asyncio.timeout(20):
            while (await _get(f"{base}/readyz"))[0] != 200:  # noqa: ASYNC110 - polled over HTTP
                await asyncio.sleep(0.2)


async def test_worker_serves_its_counters_and_probes(
    procs: Procs, proxima_env: dict[str, str]
) -> None:
    port = free_port()
    procs.env = dict(proxima_env, PROXIMA_STREAM_WORKER_HTTP_PORT=str(port))
    services = ServiceSettings(
        kafka=proxima_env["PROXIMA_KAFKA"], namespace=proxima_env["PROXIMA_NAMESPACE"]
    )
    await ensure_topics(services.kafka_bootstrap, services.topics.all_kafka, 1)
    procs.start("worker", "stream", "worker")
    base = f"http://127.0.0.1:{port}"
    async with asyncio.timeout(90):
        while True:
            try:
                status, _ = await _get(f"{base}/readyz")
            except aiohttp.ClientConnectionError:
                status = 0
            if status == 200:
                break
            assert not procs.dead(), procs.log("worker")[-3000:]
            await asyncio.sleep(0.3)
    assert (await _get(f"{base}/livez"))[0] == 200
    # One unsigned v2 batch: the worker counts it and refuses it (signatures are required).
    producer = make_producer(services.kafka_bootstrap, idempotent=False, client_id="probes")
    await producer.start()
    try:
        topic = services.topics.gateway_events("store-1", "gw-door")
        await producer.send_and_wait(
            services.topics.events_v2,
            key=b"store-1",
            value=json.dumps([fresh(seq=1)]).encode(),
            headers=record_headers(topic, []),
        )
    finally:
        await producer.stop()
    async with asyncio.timeout(60):
        while True:
            status, text = await _get(f"{base}/metrics")
            samples = _samples(text)
            # The refusal is counted while the batch is opened, the histogram once it is
            # decided: wait for the later of the two.
            if samples.get("proxima_stream_worker_batch_events_count", ("", 0.0))[1] >= 1:
                break
            await asyncio.sleep(0.3)
    assert status == 200
    assert samples["proxima_stream_worker_batches_total"] == ("counter", 1.0)
    assert samples["proxima_stream_worker_rejected_total"] == ("counter", 1.0)
    assert all(name.startswith("proxima_stream_worker_") for name in samples), samples
    # The batch-size histogram saw that batch; the lag of the v2 partition is back to 0.
    assert samples["proxima_stream_worker_batch_events_count"][1] == 1.0
    lags = {
        (s.labels["topic"], s.labels["partition"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "proxima_stream_worker_consumer_lag"
    }
    assert lags.get((services.topics.events_v2, "0")) == 0.0, lags
