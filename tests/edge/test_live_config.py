"""Live configuration: the retained config topic changes thresholds; a bad one is refused."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from contracts.models import GatewayState, GatewayStatus, parse_model
from contracts.services import ServiceSettings
from contracts.topics import Topics
from edge.agent import EdgeAgent
from edge.exceptions import ConfigError
from edge.live import merge_live_config
from edge.settings import EdgeSettings
from edge.sources import TraceSource
from tests.edge.support import GATEWAY, STORE, write_trace
from transport.mqtt import MqttClient


def test_live_settings_merge_and_validate_as_a_whole() -> None:
    current = EdgeSettings(enter_rssi=-72, exit_rssi=-80)
    updated, version = merge_live_config(
        current, b'{"config_version": "v7", "enter_rssi": -65, "dwell_s": 20}'
    )
    assert (updated.enter_rssi, updated.exit_rssi, updated.dwell_s) == (-65, -80, 20)
    assert version == "v7"
    assert current.enter_rssi == -72  # the running settings are not mutated

    with pytest.raises(ConfigError) as caught:
        merge_live_config(current, b'{"exit_rssi": -60}')
    assert "hysteresis" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        merge_live_config(current, b'{"gateway_id": "gw-x", "volume": 3}')
    assert dict(caught.value.errors) == {
        "gateway_id": "cannot change live; edit the config file and restart",
        "volume": "unknown setting",
    }
    with pytest.raises(ConfigError, match="not JSON"):
        merge_live_config(current, b"enter_rssi=-60")
    with pytest.raises(ConfigError, match="JSON object"):
        merge_live_config(current, b"[1, 2]")


@pytest.mark.integration
async def test_config_topic_changes_thresholds_and_a_bad_config_is_reported(
    namespace: str, tmp_path: Path
) -> None:
    mqtt = ServiceSettings().mqtt
    topics = Topics(namespace)
    trace = write_trace(tmp_path / "t.jsonl", 400, every_s=0.05)
    settings = EdgeSettings(
        store_id=STORE, gateway_id=GATEWAY, zone_id="entrance", status_interval_s=0.2
    )
    agent = EdgeAgent(
        settings,
        TraceSource.from_file(trace, GATEWAY, speed=1.0),
        topics,
        mqtt_url=mqtt,
        outbox_path=tmp_path / "outbox.sqlite",
    )
    config_topic = topics.gateway_config(STORE, GATEWAY)
    run = asyncio.create_task(agent.run())
    try:
        async with MqttClient(mqtt) as admin:
            await admin.subscribe(topics.gateway_status(STORE, GATEWAY))
            bad = json.dumps({"config_version": "v2", "exit_rssi": -50}).encode()
            await admin.publish(config_topic, bad, qos=1, retain=True)
            async with asyncio.timeout(15):
                while True:
                    status = parse_model(GatewayStatus, (await admin.messages.get()).payload)
                    if status.warnings:
                        break
            assert status.state is GatewayState.DEGRADED
            assert "live config rejected" in status.warnings[0]
            assert "exit_rssi" in status.warnings[0] or "hysteresis" in status.warnings[0]
            assert agent.settings.exit_rssi == -80.0  # the last good one stays

            good = json.dumps({"config_version": "v3", "enter_rssi": -66, "dwell_s": 12})
            await admin.publish(config_topic, good.encode(), qos=1, retain=True)
            async with asyncio.timeout(15):
                while True:
                    status = parse_model(GatewayStatus, (await admin.messages.get()).payload)
                    if not status.warnings:
                        break
            assert status.state is GatewayState.ONLINE
            assert agent.config_version == "v3"
            assert (agent.settings.enter_rssi, agent.settings.dwell_s) == (-66.0, 12.0)
            assert agent.pipeline.tracker.config.enter_rssi == -66.0
            assert (agent.configs_applied, agent.configs_rejected) == (1, 1)
            await admin.publish(config_topic, b"", qos=1, retain=True)  # clear the retained
    finally:
        agent.stop()
        await run
