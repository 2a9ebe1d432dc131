"""The gateway agent's settings: declared once, with environment variables and docs."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class EdgeSettings(BaseSettings):
    """One gateway: where it is, how it decides presence, how it batches."""

    model_config = SettingsConfigDict(env_prefix="PROXIMA_EDGE_", extra="forbid")

    store_id: str = Field(default="demo-store", description="store this gateway is in")
    gateway_id: str = Field(default="gw-door", description="this gateway's id in the store layout")
    zone_id: str = Field(default="entrance", description="zone this gateway watches")
    enter_rssi: float = Field(default=-72.0, description="filtered RSSI (dBm) to enter the zone")
    exit_rssi: float = Field(default=-80.0, description="filtered RSSI (dBm) below which to leave")
    enter_min_s: float = Field(default=1.5, description="seconds above enter_rssi before enter")
    exit_timeout_s: float = Field(
        default=15.0, description="silence (s) after which a subject left"
    )
    dwell_s: float = Field(default=60.0, description="seconds in zone before a zone_dwell event")
    rssi_offset_db: float = Field(default=0.0, description="calibration offset added to every RSSI")
    batch_max_events: int = Field(default=100, ge=1, le=500, description="events per MQTT batch")
    batch_max_latency_s: float = Field(
        default=0.1, gt=0, description="longest wait to fill a batch"
    )
