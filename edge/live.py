"""Live configuration from the retained config topic (``.../gateways/{gw}/config``).

The payload is a JSON object of settings, by name, e.g.
``{"config_version": "2026-03-01a", "enter_rssi": -68, "dwell_s": 45}``. Only the
settings in :data:`LIVE_SETTINGS` may change without a restart; the rest (identity,
broker, keys, outbox) are refused with that reason. The merged settings are validated
as a whole (so ``exit_rssi`` must still be below ``enter_rssi``); a rejected config
changes nothing, the last good one stays, and the agent reports the reason on its
status topic. An empty payload (a cleared retained message) changes nothing either.

Presence thresholds and the zone apply to subjects first heard after the change: a
shopper already in the zone finishes the visit under the thresholds that saw them enter,
so a config push never produces a spurious exit or a second enter.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from contracts.validation import validation_errors
from edge.exceptions import ConfigError
from edge.settings import EdgeSettings

LIVE_SETTINGS = frozenset(
    {
        "zone_id",
        "enter_rssi",
        "exit_rssi",
        "enter_min_s",
        "enter_min_sightings",
        "exit_min_s",
        "exit_timeout_s",
        "dwell_s",
        "rssi_offset_db",
        "fusion_sighting_q",
        "tick_s",
        "batch_max_events",
        "batch_max_bytes",
        "batch_max_latency_s",
        "status_interval_s",
        "watchdog_s",
        "outbox_warn_fraction",
    }
)
VERSION_KEY = "config_version"
SOURCE = "config topic"


def merge_live_config(current: EdgeSettings, payload: bytes) -> tuple[EdgeSettings, str | None]:
    """The settings with ``payload`` applied and its version, or :class:`ConfigError`."""
    try:
        data = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(SOURCE, [("(payload)", f"not JSON: {exc}")]) from exc
    if not isinstance(data, dict):
        raise ConfigError(SOURCE, [("(payload)", "must be a JSON object of settings")])
    version = data.pop(VERSION_KEY, None)
    if version is not None and not isinstance(version, str | int):
        raise ConfigError(SOURCE, [(VERSION_KEY, "must be a string or a number")])
    errors = []
    for key in data:
        if key not in EdgeSettings.model_fields:
            errors.append((key, "unknown setting"))
        elif key not in LIVE_SETTINGS:
            errors.append((key, "cannot change live; edit the config file and restart"))
    if errors:
        raise ConfigError(SOURCE, errors)
    merged: dict[str, Any] = {name: getattr(current, name) for name in EdgeSettings.model_fields}
    merged.update(data)
    try:
        updated = EdgeSettings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(SOURCE, validation_errors(exc, "(settings)")) from exc
    return updated, None if version is None else str(version)
