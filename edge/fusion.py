"""The store's presence coordinator: the gateways' evidence in, one zone per subject out.

Gateways of a fused store (``EdgeSettings.fused``) publish *evidence* on the store's MQTT
(``.../gateways/{gw}/evidence``, never bridged to Kafka): their own zone machine's
transitions and, each tick, every subject's strongest level (``sighting``; on a door
pair's gateways from a filter faster than the machine's, ``edge.pipeline``). The
coordinator feeds it to :class:`beacons.fusion.StorePresence` and publishes the fused zone
decisions as ordinary events under its own gateway id, each with its ``evidence``. See
docs/presence.md for why the fusion runs here and what it costs.

This module holds what the coordinator and ``proxima bench detection`` share, so that the
bench predicts the pipeline: the roles of a layout's gateways, and evidence made of an
event (or of what would become one) with the event's own rounding.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from beacons.fusion import Evidence, FusionConfig, GatewayRole, RoleKind
from beacons.presence import Transition
from contracts.models import Event, EventKind
from edge.calibration import calibrated_thresholds, calibrations
from edge.exceptions import EdgeError
from edge.settings import EdgeSettings

FUSION_GATEWAY_ID = "fusion"
"""The gateway id a store's coordinator publishes under unless configured otherwise."""

ROLE_OF_ZONE_KIND: dict[str, RoleKind] = {
    "entrance": "entrance",
    "floor": "interior",
    "fitting_room": "small",
    "checkout": "small",
}
EVIDENCE_KINDS = frozenset(
    {EventKind.ZONE_ENTER, EventKind.ZONE_DWELL, EventKind.ZONE_EXIT, EventKind.SIGHTING}
)


PAIR_SIGHTING_Q = 20.0
"""The process noise (dB²/s) of a door pair's gateways' sightings (``fusion_sighting_q``)."""


def gateway_settings(
    layout: Mapping[str, Any], defaults: EdgeSettings | None = None
) -> dict[str, dict[str, Any]]:
    """Per gateway of a store plan: the settings that differ from ``defaults``.

    Zone, calibration offset and the thresholds :mod:`edge.calibration` derives, and for a
    door pair's two gateways their sightings' faster filter (:data:`PAIR_SIGHTING_Q`, unless
    ``defaults`` sets one for every gateway); what ``proxima replay``, ``proxima edge run
    --source replay:...`` and ``proxima bench detection`` give each gateway's agent.
    """
    defaults = defaults or EdgeSettings()
    out = _placed_settings(layout, defaults)
    if defaults.fusion_sighting_q is None:
        roles = _roles(layout, defaults, out)
        for door in roles:
            if door.pair is not None:
                out[door.gateway_id]["fusion_sighting_q"] = PAIR_SIGHTING_Q
                out[door.pair]["fusion_sighting_q"] = PAIR_SIGHTING_Q
    return out


def _placed_settings(
    layout: Mapping[str, Any], defaults: EdgeSettings
) -> dict[str, dict[str, Any]]:
    """Each gateway's zone, calibration offset and calibrated thresholds."""
    tuned = calibrated_thresholds(
        layout, defaults.enter_rssi, defaults.exit_rssi, linger_db=defaults.linger_db
    )
    out: dict[str, dict[str, Any]] = {}
    for gw in layout.get("gateways") or []:
        if not isinstance(gw, Mapping) or "id" not in gw:
            continue
        gid = str(gw["id"])
        out[gid] = {
            "gateway_id": gid,
            "zone_id": str(gw.get("zone_id", defaults.zone_id)),
            "rssi_offset_db": float(gw.get("rssi_offset_db", 0.0)),
            **tuned.get(gid, {}),
        }
    return out


DOOR_PAIR_M = 6.0
"""A street gateway this close to an entrance gateway (same floor) is its door pair."""


def fusion_roles(
    layout: Mapping[str, Any], defaults: EdgeSettings | None = None
) -> list[GatewayRole]:
    """The role of each gateway of a store plan.

    A zone of an unknown kind counts as a small zone (its own gateway must enter it). A
    gateway in an ``outside`` zone is a ``street`` gateway: it never places anyone inside,
    but an entrance gateway with one within :data:`DOOR_PAIR_M` on its floor (the nearest)
    has a door pair, and the door heard well above the street is inside
    (``door_over_street``, docs/presence.md).
    """
    defaults = defaults or EdgeSettings()
    return _roles(layout, defaults, _placed_settings(layout, defaults))


def _roles(
    layout: Mapping[str, Any], defaults: EdgeSettings, settings_of: dict[str, dict[str, Any]]
) -> list[GatewayRole]:
    kinds = {
        z.get("id"): str(z.get("kind")) for z in layout.get("zones") or [] if isinstance(z, Mapping)
    }
    where = {
        str(g["id"]): (float(g.get("x", 0.0)), float(g.get("y", 0.0)), g.get("floor", 0))
        for g in layout.get("gateways") or []
        if isinstance(g, Mapping) and "id" in g
    }
    streets = [g for g, st in settings_of.items() if kinds.get(st["zone_id"]) == "outside"]
    calibrated = calibrations(layout)
    roles = []
    for gid, settings in settings_of.items():
        zone_kind = kinds.get(settings["zone_id"], "")
        kind: RoleKind = (
            "street" if zone_kind == "outside" else ROLE_OF_ZONE_KIND.get(zone_kind, "small")
        )
        roles.append(
            GatewayRole(
                gateway_id=gid,
                zone_id=settings["zone_id"],
                kind=kind,
                enter_rssi=float(settings.get("enter_rssi", defaults.enter_rssi)),
                street_rssi=calibrated[gid].street_rssi() if gid in calibrated else None,
                pair=_door_pair(gid, where, streets) if kind == "entrance" else None,
            )
        )
    return roles


def _door_pair(
    door: str, where: Mapping[str, tuple[float, float, Any]], streets: list[str]
) -> str | None:
    """The street gateway nearest ``door`` on its floor, if within :data:`DOOR_PAIR_M`."""
    if door not in where:
        return None
    x, y, floor = where[door]
    near = [
        (math.hypot(where[s][0] - x, where[s][1] - y), s)
        for s in streets
        if s in where and where[s][2] == floor
    ]
    best = min(near, default=None)
    return best[1] if best is not None and best[0] <= DOOR_PAIR_M else None


def load_layout(path: Path) -> tuple[dict[str, Any], str | None]:
    """A store plan from a layout JSON file or a trace's header; and its store id, if said.

    Raises :class:`~edge.exceptions.EdgeError` naming what is wrong.
    """
    try:
        with path.open(encoding="utf-8") as fh:
            first = fh.readline()
            data = json.loads(first if first.strip().startswith('{"format"') else first + fh.read())
    except OSError as exc:
        raise EdgeError(f"{path}: cannot read: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise EdgeError(f"{path}: not JSON: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise EdgeError(f"{path}: a layout must be a JSON object")
    layout = data.get("layout") if data.get("format") == "proxima-trace" else data
    if not isinstance(layout, dict) or not isinstance(layout.get("gateways"), list):
        raise EdgeError(f"{path}: no layout with a 'gateways' list")
    store = data.get("store_id")
    return layout, store if isinstance(store, str) else None


def fusable(roles: list[GatewayRole]) -> bool:
    """Whether a store plan can be fused: a calibrated entrance gateway and one more.

    Without the entrance's calibration (its ``rssi_1m``, path-loss exponent and the street
    on the plan) nothing says what the street can produce at the door; such a store (a
    trace written by hand, say) is decided gateway by gateway, as before fusion.
    """
    door = any(r.kind == "entrance" and r.street_rssi is not None for r in roles)
    return door and sum(1 for r in roles if r.kind != "street") > 1


def _ms(at: datetime) -> float:
    """A timestamp as the contract carries it (UTC, whole milliseconds)."""
    at = at.astimezone(UTC)
    return at.replace(microsecond=at.microsecond // 1000 * 1000).timestamp()


def evidence_of_event(event: Event) -> Evidence | None:
    """A gateway's event as fusion evidence; None for kinds that are not evidence."""
    if event.kind not in EVIDENCE_KINDS or event.rssi is None:
        return None
    return Evidence(
        gateway_id=event.gateway_id,
        subject=event.subject.id,
        kind=event.kind.value,  # type: ignore[arg-type]
        at=_ms(event.observed_at),
        rssi=event.rssi,
        confidence=event.confidence,
    )


def evidence_of_transition(gateway_id: str, tr: Transition) -> Evidence:
    """What the coordinator will make of ``tr`` once the gateway has published it as an event.

    The same rounding as :func:`edge.pipeline.to_draft` and the contract's timestamps, so
    the offline bench decides on the very numbers the coordinator receives.
    """
    from edge.pipeline import to_draft

    draft = to_draft(tr)
    assert draft.rssi is not None
    return Evidence(
        gateway_id=gateway_id,
        subject=tr.subject,
        kind=tr.kind,
        at=_ms(draft.observed_at),
        rssi=draft.rssi,
        confidence=draft.confidence,
    )


def fusion_config(settings: EdgeSettings) -> FusionConfig:
    """The coordinator's thresholds: :class:`FusionConfig`'s, with the ones a store sets."""
    return FusionConfig(
        strong_margin_db=settings.fusion_door_strong_margin_db,
        strong_s=settings.fusion_door_strong_s,
        pair_margin_db=settings.fusion_door_pair_margin_db,
        pair_window_s=settings.fusion_door_pair_window_s,
    )
