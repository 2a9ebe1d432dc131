"""/healthz and /metrics of a running agent, and store-beacon TLM in its retained status."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from contracts.models import GatewayStatus, parse_model
from contracts.services import ServiceSettings
from contracts.topics import Topics
from edge.agent import EdgeAgent
from edge.settings import EdgeSettings
from edge.sources import TraceSource
from tests.edge.support import GATEWAY, STORE, write_trace
from transport.mqtt import MqttClient

pytestmark = pytest.mark.integration


async def test_metrics_healthz_and_beacon_health(namespace: str, tmp_path: Path) -> None:
    mqtt = ServiceSettings().mqtt
    topics = Topics(namespace)
    trace = write_trace(tmp_path / "t.jsonl", 200, every_s=0.05, tlm_battery_mv=2875)
    settings = EdgeSettings(
        store_id=STORE,
        gateway_id=GATEWAY,
        zone_id="entrance",
        http_port=0,
        status_interval_s=0.2,
        enter_min_s=0.2,  # the trace's visitors are heard twice, 0.3 s apart: they enter
    )
    agent = EdgeAgent(
        settings,
        TraceSource.from_file(trace, GATEWAY, speed=2.0),
        topics,
        mqtt_url=mqtt,
        outbox_path=tmp_path / "outbox.sqlite",
    )
    run = asyncio.create_task(agent.run())
    try:
        async with MqttClient(mqtt) as watcher:
            await watcher.subscribe(topics.gateway_status(STORE, GATEWAY))
            async with asyncio.timeout(15):
                while True:
                    status = parse_model(GatewayStatus, (await watcher.messages.get()).payload)
                    if status.beacons:
                        break
        assert status.beacons[0].address == "D0:00:00:00:00:01"
        assert status.beacons[0].battery_mv == 2875
        assert status.beacons[0].temperature_c == 20.0

        while agent.http_bound is None:  # noqa: ASYNC110 - set by run() right away
            await asyncio.sleep(0.01)
        async with asyncio.timeout(15):
            while agent.stats.batches_published == 0:  # noqa: ASYNC110 - the agent's counter
                await asyncio.sleep(0.05)
        port = await agent.http_bound
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                assert resp.status == 200
                assert await resp.text() == "ok\n"
            for probe in ("/livez", "/readyz"):
                async with http.get(f"http://127.0.0.1:{port}{probe}") as resp:
                    assert resp.status == 200, probe
            async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                assert resp.status == 200
                text = await resp.text()
    finally:
        agent.stop()
        await run
    # As Prometheus reads it (prometheus_client's own parser).
    from prometheus_client.parser import text_string_to_metric_families

    families = {f.name: f for f in text_string_to_metric_families(text)}
    values = {s.name: s.value for f in families.values() for s in f.samples}
    labels = {s.name: s.labels for f in families.values() for s in f.samples}
    assert values["proxima_edge_adverts_total"] > 0
    assert values["proxima_edge_outbox_near_cap"] == 0
    assert families["proxima_edge_events_published"].type == "counter"
    assert labels["proxima_edge_adverts_total"] == {"store": STORE, "gateway": GATEWAY}
    assert "proxima_edge_outbox_oldest_seconds" in values
    # Observed as the broker acked each batch: sizes, and time in the outbox.
    assert families["proxima_edge_batch_events"].type == "histogram"
    assert families["proxima_edge_outbox_age_seconds"].type == "histogram"
    published = values["proxima_edge_batches_published_total"]
    assert published > 0
    assert values["proxima_edge_batch_events_count"] == published
    assert values["proxima_edge_outbox_age_seconds_count"] == published


def test_healthz_reports_waiting_events_without_a_broker(tmp_path: Path) -> None:
    from edge.health import health_problems

    trace = write_trace(tmp_path / "t.jsonl", 1)
    agent = EdgeAgent(
        EdgeSettings(store_id=STORE, gateway_id=GATEWAY),
        TraceSource.from_file(trace, GATEWAY),
        Topics("unit"),
        mqtt_url="mqtt://127.0.0.1:9",
        outbox_path=tmp_path / "outbox.sqlite",
    )
    assert health_problems(agent) == []
    agent.outbox.stats.depth = 3  # events waiting, and never connected
    assert health_problems(agent) == ["not connected to the MQTT broker and events are waiting"]
    agent.source.state = "failed"
    assert "scanner failed" in health_problems(agent)
    agent.source.close()
