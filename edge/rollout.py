"""Live config for a fleet of gateways (``proxima gateways config get|set|rollout``).

A gateway's live config is the retained message on its config topic (edge.live): the
agent applies it at once, or rejects it and keeps the last good one, and says which in
its status (``config_version``, ``config_error``; signed, retained). A rollout pushes a
new config to one *canary* gateway first, waits for its status to show the new version
applied, then pushes it to the rest and waits for each. A gateway that rejects it, or
does not show it applied within the timeout, gets its previous retained config back (or
none, if it had none), and a canary that fails stops the rollout before anyone else.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from contracts.exceptions import ContractError
from contracts.models import GatewayStatus, parse_model
from contracts.topics import Topics
from edge.live import VERSION_KEY
from transport.mqtt import MqttClient

Outcome = Literal["applied", "rejected", "timeout", "rolled back", "skipped"]
RETAINED_WAIT_S = 1.0
"""How long a fresh subscription waits for the broker's retained message."""


@dataclass
class RolloutReport:
    version: str
    canary: str
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(o == "applied" for o in self.outcomes.values())


def with_version(config: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """``config`` with a ``config_version`` (given, or made from the time) and that version."""
    version = config.get(VERSION_KEY)
    if version is None:
        version = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return {**config, VERSION_KEY: str(version)}, str(version)


async def retained(client: MqttClient, topic: str) -> bytes | None:
    """The retained message on ``topic`` (None if there is none), on a client that has
    no other subscription."""
    await client.subscribe(topic, qos=1)
    try:
        async with asyncio.timeout(RETAINED_WAIT_S):
            while True:
                msg = await client.messages.get()
                if msg.topic == topic:
                    return msg.payload or None
    except TimeoutError:
        return None


async def get_config(mqtt_url: str, topics: Topics, store: str, gateway: str) -> bytes | None:
    async with MqttClient(mqtt_url) as client:
        return await retained(client, topics.gateway_config(store, gateway))


async def set_config(
    mqtt_url: str, topics: Topics, store: str, gateway: str, payload: bytes
) -> None:
    """Publish ``payload`` as the gateway's retained config (empty: clear it)."""
    async with MqttClient(mqtt_url) as client:
        await client.publish(topics.gateway_config(store, gateway), payload, qos=1, retain=True)


async def _outcome(
    statuses: asyncio.Queue[GatewayStatus], version: str, timeout: float, error_before: str | None
) -> tuple[Outcome, str]:
    """Wait for a status that shows ``version`` applied, or a rejection of it: an error
    other than the one the gateway reported before the push (a periodic status can still
    carry that one; the same error again ends in the timeout, rolled back all the same)."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                status = await statuses.get()
                if status.config_version == version:
                    return "applied", ""
                if status.config_error and status.config_error != error_before:
                    return "rejected", status.config_error
    except TimeoutError:
        return "timeout", f"no status showed config {version} applied within {timeout:g} s"


async def rollout(
    mqtt_url: str,
    topics: Topics,
    store: str,
    gateways: list[str],
    config: dict[str, Any],
    *,
    canary: str | None = None,
    timeout: float = 60.0,
) -> RolloutReport:
    """Push ``config`` to ``gateways`` of ``store``, canary first (see the module)."""
    if not gateways:
        raise ValueError("no gateways to roll out to")
    payload_dict, version = with_version(config)
    payload = json.dumps(payload_dict).encode()
    first = canary or gateways[0]
    if first not in gateways:
        raise ValueError(f"canary {first!r} is not one of the gateways {gateways}")
    order = [first] + [g for g in gateways if g != first]
    report = RolloutReport(version, first)
    queues: dict[str, asyncio.Queue[GatewayStatus]] = {g: asyncio.Queue() for g in gateways}
    by_topic = {topics.gateway_status(store, g): g for g in gateways}
    previous = {g: await get_config(mqtt_url, topics, store, g) for g in order}
    async with MqttClient(mqtt_url) as client:

        async def route() -> None:
            while True:
                msg = await client.messages.get()
                gateway = by_topic.get(msg.topic)
                if gateway is None or not msg.payload:
                    continue
                try:
                    queues[gateway].put_nowait(parse_model(GatewayStatus, msg.payload))
                except ContractError:
                    continue

        router = asyncio.create_task(route(), name="rollout-statuses")
        try:
            for topic in by_topic:
                await client.subscribe(topic, qos=1)
            await asyncio.sleep(RETAINED_WAIT_S)  # the retained statuses: the old versions
            for gateway in order:
                q = queues[gateway]
                error_before: str | None = None
                while not q.empty():  # what it said before this push
                    error_before = q.get_nowait().config_error
                config_topic = topics.gateway_config(store, gateway)
                await client.publish(config_topic, payload, qos=1, retain=True)
                outcome, reason = await _outcome(q, version, timeout, error_before)
                report.outcomes[gateway] = outcome
                if reason:
                    report.reasons[gateway] = reason
                if outcome != "applied":
                    await client.publish(config_topic, previous[gateway] or b"", qos=1, retain=True)
                    if gateway == first:
                        for rest in order[1:]:
                            report.outcomes[rest] = "skipped"
                        break
        finally:
            router.cancel()
            await asyncio.gather(router, return_exceptions=True)
    return report
