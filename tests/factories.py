"""Factories that fill in defaults: make_event(**overrides) and friends."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from contracts.models import Event


def event_dict(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "schema": "proxima.zone.v1",
        "event_id": str(uuid.uuid4()),
        "store_id": "store-1",
        "gateway_id": "gw-door",
        "observed_at": "2026-01-01T10:00:00.000Z",
        "seq": 1,
        "kind": "zone_enter",
        "subject": {"type": "eddystone_eid", "id": "a9b76a71c5f89290"},
        "zone_id": "entrance",
        "rssi": -62.0,
        "confidence": 0.9,
    }
    data.update(overrides)
    return data


def eid_event(key: bytes, at: datetime, zone: str = "entrance", **overrides: Any) -> Event:
    """A zone event of the phone whose identity key is ``key``, heard at ``at`` (its EID of
    that moment, rotation exponent 10)."""
    from beacons.eid import compute_eid

    eid = compute_eid(key, 10, int(at.timestamp()))
    return Event.model_validate(
        event_dict(
            observed_at=at.isoformat(),
            subject={"type": "eddystone_eid", "id": eid.hex()},
            zone_id=zone,
            **overrides,
        )
    )


def alert_dict(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "alert_id": str(uuid.uuid4()),
        "store_id": "store-1",
        "customer_id": "cust-ana",
        "kind": "arrival",
        "title": "Ana is at the entrance",
        "fields": {"name": "Ana"},
        "zone_id": "entrance",
        "caused_by": [str(uuid.uuid4())],
        "created_at": datetime(2026, 1, 1, 10, 0, 1, tzinfo=UTC).isoformat(),
    }
    data.update(overrides)
    return data
