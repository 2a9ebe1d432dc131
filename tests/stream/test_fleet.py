"""`proxima gateways status`: the gateways' statuses the bridge recorded, read back with
what needs attention flagged. Real Redis; the command as a user runs it."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis

from contracts.models import BeaconHealth, GatewayState, GatewayStatus
from contracts.services import ServiceSettings
from tests.kit.cli import proxima

pytestmark = pytest.mark.integration


async def _record(services: ServiceSettings, *statuses: GatewayStatus) -> None:
    """As the bridge records a verified status (stream/bridge.py, _status)."""
    r = aioredis.from_url(services.redis)
    try:
        for status in statuses:
            await r.hset(
                f"{services.redis_prefix}gateways",
                f"{status.store_id}/{status.gateway_id}",
                status.model_dump_json(by_alias=True),
            )
        await r.zadd(
            f"{services.redis_prefix}gateway-published",
            {"s1/gw-door": datetime.now(UTC).timestamp() * 1000},
        )
    finally:
        await r.aclose()


async def test_status_shows_online_offline_and_a_low_beacon_battery(namespace: str) -> None:
    services = ServiceSettings(namespace=namespace)
    now = datetime.now(UTC)
    await _record(
        services,
        GatewayStatus(
            store_id="s1",
            gateway_id="gw-door",
            state=GatewayState.ONLINE,
            at=now,
            version="0.3.0",
            outbox_depth=0,
            beacons=[
                BeaconHealth(
                    address="AA:BB",
                    beacon_id="door",
                    battery_mv=3000,
                    last_seen=now,
                    temperature_c=20.0,
                )
            ],
        ),
        GatewayStatus(
            store_id="s1",
            gateway_id="gw-floor",
            state=GatewayState.OFFLINE,
            at=now - timedelta(minutes=7),
        ),
        GatewayStatus(
            store_id="s1",
            gateway_id="gw-fitting",
            state=GatewayState.ONLINE,
            at=now,
            outbox_depth=42,
            beacons=[
                BeaconHealth(
                    address="CC:DD",
                    beacon_id="fr-2",
                    battery_mv=2100,
                    last_seen=now,
                    temperature_c=21.5,
                )
            ],
        ),
        GatewayStatus(store_id="s2", gateway_id="gw-1", state=GatewayState.ONLINE, at=now),
    )
    env = dict(os.environ, PROXIMA_NAMESPACE=namespace)
    done = proxima("gateways", "status", "--store", "s1", "--json", env=env)
    assert done.returncode == 0, done.stderr
    rows = {r["gateway_id"]: r for r in map(json.loads, done.stdout.splitlines())}
    assert set(rows) == {"gw-door", "gw-floor", "gw-fitting"}  # s2 left out
    assert rows["gw-door"]["flags"] == []
    assert rows["gw-door"]["last_batch"] is not None
    assert rows["gw-door"]["version"] == "0.3.0"
    assert rows["gw-floor"]["state"] == "offline"
    assert rows["gw-floor"]["flags"] == ["offline"]
    assert rows["gw-fitting"]["flags"] == ["outbox backlog 42", "beacon fr-2 battery 2100 mV"]
    (beacon,) = rows["gw-fitting"]["beacons"]
    assert (beacon["low_battery"], beacon["temperature_c"]) == (True, 21.5)
    table = proxima("gateways", "status", env=env)
    assert table.returncode == 0, table.stderr
    assert "s2/gw-1" in table.stdout
    assert "offline" in table.stdout
