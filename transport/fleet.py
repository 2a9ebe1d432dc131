"""The fleet as the bridge sees it (here, beside transport.stats, because the stream's CLI
and the notifier's console both read it): every gateway's last status (signature-checked and
written to Redis by the bridge, ``{prefix}gateways``), its last batch on Kafka
(``{prefix}gateway-published``) and its beacons' health from Eddystone-TLM, with what
needs a person flagged (``proxima gateways status``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from contracts.exceptions import ContractError
from contracts.models import GatewayState, GatewayStatus, parse_model
from transport.redis import RedisClient, as_text

LOW_BATTERY_MV = 2_500
"""A beacon's battery below this (Eddystone-TLM, mV) is flagged: a CR2032 falls off quickly
under ~2.5 V, and a 2×AA pack is near empty there."""
SILENT_AFTER_S = 180.0
"""An online gateway whose last status is older than this is flagged as silent (agents
publish status every 30 s by default; the broker's last will marks a lost one offline)."""


@dataclass(frozen=True, slots=True)
class GatewayView:
    store_id: str
    gateway_id: str
    state: str
    since: datetime  # when the status was written by the gateway (or its last will)
    version: str | None
    config_version: str | None
    last_batch: datetime | None
    outbox_depth: int | None
    outbox_oldest_s: float | None
    beacons: list[dict[str, Any]]
    flags: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "store_id": self.store_id,
            "gateway_id": self.gateway_id,
            "state": self.state,
            "since": self.since.isoformat(),
            "version": self.version,
            "config_version": self.config_version,
            "last_batch": self.last_batch.isoformat() if self.last_batch else None,
            "outbox_depth": self.outbox_depth,
            "outbox_oldest_s": self.outbox_oldest_s,
            "beacons": self.beacons,
            "flags": self.flags,
        }


async def fleet_status(
    redis: RedisClient, prefix: str, *, store: str | None = None, now: datetime | None = None
) -> tuple[list[GatewayView], list[str]]:
    """Every gateway (of ``store``), sorted, and the entries that could not be read."""
    now = now or datetime.now(UTC)
    raw = await redis.hgetall(f"{prefix}gateways")
    published: list[Any] = await redis.zrange(f"{prefix}gateway-published", 0, -1, withscores=True)
    last_batch = {as_text(k): float(v) for k, v in published}
    views: list[GatewayView] = []
    problems: list[str] = []
    for key, value in sorted((as_text(k), v) for k, v in raw.items()):
        if store is not None and not key.startswith(f"{store}/"):
            continue
        try:
            status = parse_model(GatewayStatus, value)
        except ContractError as exc:
            problems.append(f"{key}: {exc}")
            continue
        views.append(_view(status, last_batch.get(key), now))
    return views, problems


def _view(status: GatewayStatus, last_batch_ms: float | None, now: datetime) -> GatewayView:
    flags: list[str] = []
    if status.state is GatewayState.OFFLINE:
        flags.append("offline")
    elif status.state is GatewayState.DEGRADED:
        flags.append("degraded: " + ("; ".join(status.warnings) or "no reason given"))
    elif (now - status.at).total_seconds() > SILENT_AFTER_S:
        flags.append(f"silent for {(now - status.at).total_seconds():.0f} s")
    if status.outbox_depth:
        flags.append(f"outbox backlog {status.outbox_depth}")
    beacons = []
    for beacon in status.beacons:
        low = beacon.battery_mv is not None and beacon.battery_mv < LOW_BATTERY_MV
        if low:
            flags.append(
                f"beacon {beacon.beacon_id or beacon.address} battery {beacon.battery_mv} mV"
            )
        beacons.append(
            {
                "address": beacon.address,
                "beacon_id": beacon.beacon_id,
                "battery_mv": beacon.battery_mv,
                "temperature_c": beacon.temperature_c,
                "last_seen": beacon.last_seen.isoformat(),
                "low_battery": low,
            }
        )
    return GatewayView(
        store_id=status.store_id,
        gateway_id=status.gateway_id,
        state=status.state.value,
        since=status.at,
        version=status.version,
        config_version=status.config_version,
        last_batch=None
        if last_batch_ms is None
        else datetime.fromtimestamp(last_batch_ms / 1000, UTC),
        outbox_depth=status.outbox_depth,
        outbox_oldest_s=status.outbox_oldest_s,
        beacons=beacons,
        flags=flags,
    )
