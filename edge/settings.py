"""The gateway agent's settings: declared once, with environment variables and docs.

Every setting is a field here: its type, default, environment variable
(``PROXIMA_EDGE_`` + the upper-cased name) and a one-line doc. A TOML file (flat keys,
the field names) and command-line overrides feed the same model; see
:func:`edge.config.load_settings` for precedence and error reporting.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.signing import KID_RE, MIN_SECRET_BYTES

_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


def default_state_dir() -> Path:
    """Where the outbox lives unless configured.

    systemd's ``StateDirectory=`` (``$STATE_DIRECTORY``, e.g. /var/lib/proxima-edge) first,
    then ``$XDG_STATE_HOME/proxima``, then ``~/.local/state/proxima``.
    """
    systemd = os.environ.get("STATE_DIRECTORY")
    if systemd:
        return Path(systemd.split(":")[0])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "proxima"


class EdgeSettings(BaseSettings):
    """One gateway: where it is, how it decides presence, how it stores and sends events."""

    model_config = SettingsConfigDict(env_prefix="PROXIMA_EDGE_", extra="forbid")

    # --- identity and place ---------------------------------------------------------
    store_id: str = Field(default="demo-store", pattern=_ID, description="store this gateway is in")
    gateway_id: str = Field(
        default="gw-door", pattern=_ID, description="this gateway's id in the store layout"
    )
    zone_id: str = Field(default="entrance", pattern=_ID, description="zone this gateway watches")

    # --- scanner source -------------------------------------------------------------
    source: str = Field(
        default="bleak", description="advertisement source: bleak | replay:PATH | sim:NAME"
    )
    speed: float | None = Field(
        default=None, gt=0, description="replay pace in × real time; unset = as fast as possible"
    )
    bleak_adapter: str | None = Field(
        default=None, description="BlueZ adapter (e.g. hci0); unset = the default adapter"
    )
    bleak_scanning_mode: Literal["auto", "passive", "active"] = Field(
        default="auto",
        description="passive needs BlueZ --experimental; auto tries passive, falls back to active",
    )
    watchdog_s: float = Field(
        default=60.0,
        gt=0,
        description="restart scanning when no advertisement arrives for this long (s)",
    )

    # --- presence (beacons.presence) ------------------------------------------------
    enter_rssi: float = Field(default=-72.0, description="filtered RSSI (dBm) to enter the zone")
    exit_rssi: float = Field(default=-80.0, description="filtered RSSI (dBm) below which to leave")
    enter_min_s: float = Field(default=1.5, ge=0, description="seconds above enter_rssi to enter")
    enter_min_sightings: int = Field(
        default=2, ge=1, description="sightings above enter_rssi needed to enter"
    )
    exit_min_s: float = Field(
        default=3.0, ge=0, description="seconds below exit_rssi before a zone_exit"
    )
    exit_timeout_s: float = Field(
        default=15.0, gt=0, description="silence (s) after which a subject left"
    )
    dwell_s: float = Field(default=60.0, ge=0, description="seconds in zone before a zone_dwell")
    linger_db: float | None = Field(
        default=10.0,
        ge=0,
        description='also enter when a slow average stays this many dB under enter_rssi for linger_min_s (a phone in a bag); unset or "off" = off (a small zone\'s calibration turns it off)',
    )
    linger_min_s: float = Field(
        default=60.0,
        gt=0,
        description="seconds the slow average must stay there to enter by lingering",
    )
    rssi_offset_db: float = Field(default=0.0, description="calibration offset added to every RSSI")
    max_subjects: int = Field(
        default=50_000, ge=1, description="subjects tracked at once (oldest silent are shed)"
    )
    tick_s: float = Field(default=1.0, gt=0, description="how often presence timers fire (s)")
    fused: bool = Field(
        default=False,
        description="a store with a presence coordinator: publish evidence (zone decisions and"
        " per-tick levels) on the store-local evidence topic instead of events (docs/presence.md)",
    )
    fusion_door_strong_margin_db: float | None = Field(
        default=2.0,
        ge=-10.0,
        le=20.0,
        description="the coordinator's door_strong rule: a door level this many dB above the"
        " street's median at the door line (the plan's calibration), held"
        " fusion_door_strong_s, is inside without interior evidence. Lower is faster for"
        " phones in bags and pockets at the door (bench detection: -2 dB took the advertising"
        " phones' p50 from 12-18 s to 3-11 s) but takes a held phone standing in the doorway"
        " outside as inside; unset turns the rule off (docs/presence.md)",
    )
    fusion_door_strong_s: float = Field(
        default=1.0,
        gt=0,
        le=30.0,
        description="how long the door_strong level must hold (seconds)",
    )
    fusion_door_pair_margin_db: float = Field(
        default=6.0,
        ge=0.0,
        le=30.0,
        description="the coordinator's door_over_street rule, for a door with a pair (a street"
        " gateway on the shop front within 6 m of the entrance gateway): the door this many dB"
        " louder than the street gateway, held 1 s, is inside (docs/presence.md)",
    )
    fusion_door_pair_window_s: float = Field(
        default=3.0,
        gt=0.0,
        le=30.0,
        description="door_over_street: how long the street gateway's latest level of a phone"
        " stands for it while the street gateway hears it no more (seconds). Each gateway"
        " sends one level a second, and its losses come in bursts: about someone still"
        " outside that level is up to ~2 s old by the cadence alone and now and then 3-7 s"
        " (bench detection: pair_street_age_*), so a shorter window is faster for phones"
        " walking in and takes more people standing at the door inside (docs/presence.md)",
    )
    fusion_sighting_q: float | None = Field(
        default=None,
        gt=0,
        le=1000.0,
        description="a fused gateway's sightings (the levels the coordinator compares): unset,"
        " they carry its zone machine's filtered level (Kalman, 2 dB² per second); set, the"
        " level of a filter of their own with this process noise. A door pair's two gateways"
        " want 20, both or neither (replay, edge run --source replay: and bench detection"
        " give them that from the plan): the machine's filter lags someone walking through"
        " the door by up to 10 dB; on rush 21-27 this took the advertising phones' door →"
        " alert p50 from 6.9 to 5.9 s (with the street's latest level: 7.6 → 5.9); on a door"
        " without a pair it took a window shopper inside (docs/presence.md)",
    )

    # --- MQTT -----------------------------------------------------------------------
    mqtt_url: str | None = Field(
        default=None, description="mqtt:// or mqtts:// broker URL; unset = PROXIMA_MQTT"
    )
    mqtt_username: str | None = Field(default=None, description="MQTT user (overrides the URL's)")
    mqtt_password: SecretStr | None = Field(default=None, description="MQTT password")
    mqtt_ca_file: Path | None = Field(default=None, description="CA bundle for mqtts://")
    mqtt_cert_file: Path | None = Field(default=None, description="client certificate (mqtts://)")
    mqtt_key_file: Path | None = Field(default=None, description="client certificate's key")
    mqtt_publish_timeout_s: float = Field(
        default=10.0, gt=0, description="wait this long for a PUBACK before reconnecting"
    )
    reconnect_min_s: float = Field(
        default=0.5, gt=0, description="first reconnect backoff (s), full jitter"
    )
    reconnect_max_s: float = Field(default=30.0, gt=0, description="reconnect backoff cap (s)")
    status_interval_s: float = Field(
        default=10.0, gt=0, description="retained status (health) every this many seconds"
    )

    # --- signing (contracts.signing) ------------------------------------------------
    signing_kid: str | None = Field(
        default=None, description="key id of the gateway's batch signing key"
    )
    signing_key: SecretStr | None = Field(
        default=None, description="the signing secret, hex (at least 16 bytes)"
    )

    # --- outbox and batches ---------------------------------------------------------
    outbox_path: Path | None = Field(
        default=None,
        description="SQLite outbox file; unset = <state dir>/outbox-<store>-<gateway>.sqlite",
    )
    outbox_max_rows: int = Field(
        default=1_000_000, ge=1, description="outbox cap in events (then drop dwell/sightings)"
    )
    outbox_max_bytes: int = Field(
        default=512 * 1024 * 1024, ge=1024, description="outbox cap in bytes of event JSON"
    )
    outbox_warn_fraction: float = Field(
        default=0.8, gt=0, le=1, description="status warns from this fraction of either cap"
    )
    batch_max_events: int = Field(default=100, ge=1, le=500, description="events per MQTT batch")
    batch_max_bytes: int = Field(
        default=128 * 1024, ge=1024, le=1024 * 1024, description="bytes per MQTT batch"
    )
    batch_max_latency_s: float = Field(
        default=0.1, gt=0, description="longest wait to fill a batch (s)"
    )

    # --- health endpoint ------------------------------------------------------------
    http_host: str = Field(default="127.0.0.1", description="bind address of /metrics, /healthz")
    http_port: int | None = Field(
        default=None, ge=0, le=65535, description="port of /metrics and /healthz; unset = off"
    )

    @field_validator("linger_db", mode="before")
    @classmethod
    def _linger_off(cls, value: object) -> object:
        # TOML has no null: "off" (or an empty environment variable) says unset.
        return None if isinstance(value, str) and value.strip().lower() in ("off", "") else value

    @field_validator("signing_kid")
    @classmethod
    def _kid_shape(cls, value: str | None) -> str | None:
        if value is not None and not KID_RE.fullmatch(value):
            raise ValueError(f"must match {KID_RE.pattern}")
        return value

    @field_validator("signing_key")
    @classmethod
    def _key_hex(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        raw = value.get_secret_value().strip()
        try:
            secret = bytes.fromhex(raw)
        except ValueError:
            raise ValueError("must be hex (e.g. 64 hex digits for 32 bytes)") from None
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(
                f"must be at least {MIN_SECRET_BYTES} bytes ({2 * MIN_SECRET_BYTES} hex)"
            )
        return SecretStr(raw.lower())

    @field_validator("source")
    @classmethod
    def _source_shape(cls, value: str) -> str:
        from edge.source_registry import check_source  # it imports the sources, they not us

        return check_source(value)

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("mqtt://", "mqtts://")):
            raise ValueError("must start with mqtt:// or mqtts://")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> EdgeSettings:
        if self.exit_rssi >= self.enter_rssi:
            raise ValueError("exit_rssi must be below enter_rssi (the gap is the hysteresis)")
        if (self.signing_kid is None) != (self.signing_key is None):
            raise ValueError("signing_kid and signing_key must be set together")
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s must not exceed reconnect_max_s")
        if (self.mqtt_cert_file is None) != (self.mqtt_key_file is None):
            raise ValueError("mqtt_cert_file and mqtt_key_file must be set together")
        return self

    @property
    def signing_secret(self) -> bytes | None:
        """The signing key as bytes, or None when batches are not signed."""
        return (
            None if self.signing_key is None else bytes.fromhex(self.signing_key.get_secret_value())
        )

    def resolved_outbox_path(self) -> Path:
        return self.outbox_path or (
            default_state_dir() / f"outbox-{self.store_id}-{self.gateway_id}.sqlite"
        )
