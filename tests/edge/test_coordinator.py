"""The store's presence coordinator over real Mosquitto: evidence in, fused zone events out."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from beacons.fusion import GatewayRole
from contracts.models import Event, EventKind, Subject, SubjectType
from contracts.services import ServiceSettings
from contracts.topics import Topics
from edge.agent import EdgeAgent
from edge.coordinator import Coordinator, coordinator_agent
from edge.settings import EdgeSettings
from tests.edge.support import Collector
from transport.mqtt import MqttClient

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

STORE = "store-f"
ROLES = [
    GatewayRole("gw-door", "entrance", "entrance", enter_rssi=-72.0, street_rssi=-67.4),
    GatewayRole("gw-floor", "floor", "interior", enter_rssi=-78.0),
]
EID = "0102030405060708"


def evidence(gateway: str, seq: int, at: float, rssi: float, kind: str = "sighting") -> Event:
    zone = "entrance" if gateway == "gw-door" else "floor"
    return Event(
        schema_="proxima.sighting.v1" if kind == "sighting" else "proxima.zone.v1",
        event_id=uuid.uuid4(),
        store_id=STORE,
        gateway_id=gateway,
        observed_at=datetime.fromtimestamp(at, UTC),
        seq=seq,
        kind=EventKind(kind),
        subject=Subject(type=SubjectType.EDDYSTONE_EID, id=EID),
        zone_id=zone,
        rssi=rssi,
    )


def walk_in(t0: float) -> dict[str, list[Event]]:
    """A bagged phone: the door peaks at -70 dBm, then the floor gains on it."""
    door = [-84, -80, -76, -73, -70, -70, -71, -75, -80, -84]
    floor = [-95, -94, -93, -93, -92, -91, -88, -85, -82, -80]
    return {
        "gw-door": [evidence("gw-door", i + 1, t0 + i, r) for i, r in enumerate(door)],
        "gw-floor": [evidence("gw-floor", i + 1, t0 + i + 0.1, r) for i, r in enumerate(floor)],
    }


def batch(events: list[Event]) -> bytes:
    return b"[" + b",".join(e.to_json() for e in events) + b"]"


@contextlib.asynccontextmanager
async def running(
    tmp_path: Path, topics: Topics, name: str = "a"
) -> AsyncIterator[tuple[EdgeAgent, Coordinator]]:
    services = ServiceSettings()
    settings = EdgeSettings(
        store_id=STORE, gateway_id="fusion", zone_id="entrance", batch_max_latency_s=0.01
    )
    agent, coordinator = coordinator_agent(
        settings,
        ROLES,
        topics,
        mqtt_url=services.mqtt,
        outbox_path=tmp_path / f"outbox-{name}.sqlite",
    )
    task = asyncio.create_task(agent.run(), name=f"coordinator-{name}")
    try:
        async with asyncio.timeout(10):
            await coordinator.ready.wait()
        yield agent, coordinator
    finally:
        agent.stop()
        await task


async def publish(topics: Topics, gateway: str, payload: bytes) -> None:
    async with MqttClient(ServiceSettings().mqtt) as client:
        await client.publish(topics.gateway_evidence(STORE, gateway), payload, qos=1)


async def test_a_walk_in_heard_by_two_gateways_becomes_one_zone_event_that_says_why(
    tmp_path: Path, namespace: str
) -> None:
    topics = Topics(namespace)
    services = ServiceSettings()
    async with (
        Collector(services.mqtt, topics.gateway_events(STORE, "fusion")) as out,
        running(tmp_path, topics) as (_agent, coordinator),
    ):
        walk = walk_in(time.time() - 10)
        for gw in ("gw-door", "gw-floor"):
            await publish(topics, gw, batch(walk[gw]))
        (enter,) = await out.wait_for(1, timeout=20)
    assert (enter.kind, enter.zone_id, enter.gateway_id) == (
        EventKind.ZONE_ENTER,
        "floor",
        "fusion",
    )
    assert enter.subject.id == EID
    assert enter.evidence is not None
    assert enter.evidence.rule == "door_then_interior"
    assert [r.gateway_id for r in enter.evidence.readings] == ["gw-door", "gw-floor"]
    assert enter.confidence is not None
    assert coordinator.stats.evidence == 20
    assert coordinator.stats.rejected == 0


async def test_bad_evidence_is_counted_and_parked_and_its_good_neighbours_count(
    tmp_path: Path, namespace: str
) -> None:
    topics = Topics(namespace)
    services = ServiceSettings()
    async with (
        Collector(services.mqtt, topics.gateway_events(STORE, "fusion")) as out,
        running(tmp_path, topics) as (agent, coordinator),
    ):
        walk = walk_in(time.time() - 10)
        await publish(topics, "gw-door", b"not json")
        # One event of the floor's batch is out of contract (rssi 999): the rest counts.
        floor = batch(walk["gw-floor"]).replace(b'"rssi":-80.0', b'"rssi":999')
        await publish(topics, "gw-door", batch(walk["gw-door"]))
        await publish(topics, "gw-floor", floor)
        (enter,) = await out.wait_for(1, timeout=20)
        warnings = agent.warnings()
    assert enter.zone_id == "floor"
    assert coordinator.stats.rejected == 2
    reasons = [q["reason"] for q in coordinator.quarantine]
    assert any("not JSON" in r for r in reasons), reasons
    assert any("rssi" in r for r in reasons), reasons
    assert any("2 evidence items rejected" in w for w in warnings), warnings


async def test_evidence_published_while_the_coordinator_is_away_is_fused_when_it_is_back(
    tmp_path: Path, namespace: str
) -> None:
    # Its session persists: the broker keeps the store's evidence for it meanwhile.
    topics = Topics(namespace)
    services = ServiceSettings()
    async with running(tmp_path, topics, "first"):
        pass
    walk = walk_in(time.time() - 10)
    for gw in ("gw-door", "gw-floor"):
        await publish(topics, gw, batch(walk[gw]))
    async with (
        Collector(services.mqtt, topics.gateway_events(STORE, "fusion")) as out,
        running(tmp_path, topics, "second") as (_, coordinator),
    ):
        (enter,) = await out.wait_for(1, timeout=20)
    assert enter.zone_id == "floor"
    assert coordinator.stats.evidence == 20
