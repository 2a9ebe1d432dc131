"""`proxima gateways config rollout`: a canary first, the rest once its status shows the
config applied; a rejected config rolled back and the rollout stopped. Two real agents on
real Mosquitto."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from contracts.services import ServiceSettings
from contracts.topics import Topics
from edge.agent import EdgeAgent
from edge.rollout import get_config, rollout, set_config
from edge.settings import EdgeSettings
from edge.sources import TraceSource
from tests.edge.support import STORE, write_trace
from tests.kit.cli import proxima

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]
GATEWAYS = ["gw-a", "gw-b"]


@asynccontextmanager
async def agents(topics: Topics, tmp_path: Path) -> AsyncIterator[dict[str, EdgeAgent]]:
    mqtt = ServiceSettings().mqtt
    running: dict[str, EdgeAgent] = {}
    tasks = []
    for gw in GATEWAYS:
        trace = write_trace(tmp_path / f"{gw}.jsonl", 2000, every_s=0.05, gateway=gw)
        agent = EdgeAgent(
            EdgeSettings(store_id=STORE, gateway_id=gw, zone_id="entrance", status_interval_s=0.5),
            TraceSource.from_file(trace, gw, speed=1.0),
            topics,
            mqtt_url=mqtt,
            outbox_path=tmp_path / f"{gw}.sqlite",
        )
        running[gw] = agent
        tasks.append(asyncio.create_task(agent.run()))
    try:
        await asyncio.sleep(1.0)  # connected, subscribed to their config topics
        yield running
    finally:
        for agent in running.values():
            agent.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        for gw in GATEWAYS:  # clear the retained configs
            await set_config(mqtt, topics, STORE, gw, b"")


async def test_a_good_config_reaches_the_canary_then_the_rest(
    namespace: str, tmp_path: Path
) -> None:
    topics = Topics(namespace)
    mqtt = ServiceSettings().mqtt
    async with agents(topics, tmp_path) as running:
        report = await rollout(
            mqtt, topics, STORE, GATEWAYS, {"config_version": "v7", "dwell_s": 12}, canary="gw-b",
            timeout=20,
        )  # fmt: skip
        assert report.outcomes == {"gw-b": "applied", "gw-a": "applied"}
        assert list(report.outcomes) == ["gw-b", "gw-a"]  # the canary first
        assert all(a.config_version == "v7" for a in running.values())
        assert all(a.settings.dwell_s == 12.0 for a in running.values())
        env = dict(os.environ, PROXIMA_NAMESPACE=namespace)
        got = proxima("gateways", "config", "get", STORE, "gw-a", env=env)
        assert json.loads(got.stdout) == {"config_version": "v7", "dwell_s": 12}


async def test_a_rejected_config_is_rolled_back_on_the_canary_and_goes_no_further(
    namespace: str, tmp_path: Path
) -> None:
    topics = Topics(namespace)
    mqtt = ServiceSettings().mqtt
    async with agents(topics, tmp_path) as running:
        good = await rollout(mqtt, topics, STORE, GATEWAYS, {"config_version": "v1"}, timeout=20)
        assert good.ok
        # exit_rssi above enter_rssi: the agent refuses it and keeps the last good one.
        bad = await rollout(
            mqtt, topics, STORE, GATEWAYS, {"config_version": "v2", "exit_rssi": -50},
            canary="gw-a", timeout=20,
        )  # fmt: skip
        assert bad.outcomes == {"gw-a": "rejected", "gw-b": "skipped"}
        assert "exit_rssi" in bad.reasons["gw-a"] or "hysteresis" in bad.reasons["gw-a"]
        assert not bad.ok
        assert running["gw-b"].config_version == "v1"  # never offered v2
        restored = await get_config(mqtt, topics, STORE, "gw-a")
        assert restored is not None
        assert json.loads(restored)["config_version"] == "v1"  # the canary's previous config
