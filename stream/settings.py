"""The stream worker's and the bridge's settings, declared once with environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.models import DLQ_RECORD_MAX
from transport.gc import DEFAULT_THRESHOLD0

STORE_SCHEMES = frozenset({"memory", "rocksdb"})
"""Faust table stores the worker supports (faust/stores/__init__.py has more)."""


class StreamSettings(BaseSettings):
    """Decisions of the Faust app and the bridge."""

    model_config = SettingsConfigDict(env_prefix="PROXIMA_STREAM_", extra="forbid")

    app_id: str = Field(default="proxima-stream", description="Faust app id (consumer group)")
    partitions: int = Field(default=4, ge=1, description="partitions of every Proxima topic")
    revisit_gap_s: float = Field(
        default=4 * 3600, gt=0, description="time away after which an entry is a new visit"
    )
    exit_timeout_s: float = Field(
        default=300, gt=0, description="event time without any signal after which a visit departs"
    )
    departure_check_s: float = Field(
        default=5.0, gt=0, description="how often the worker looks for due departures"
    )
    rules_dir: Path | None = Field(
        default=None,
        description="directory of rules files ({store}.yaml, chain.yaml); none = stream/default_rules.yaml",
    )
    batch_max: int = Field(
        # 5,000 (was 2,000): a backlog's step waits once for its Kafka acks and its Redis
        # write, idle meanwhile; `bench stream` drain +6-10 % (docs/developers/benchmarks.md).
        default=5000,
        ge=1,
        description="most events the worker decides in one step (its Redis writes in one script call per 5,000 keys); a gateway batch is never split",
    )
    batch_max_records: int = Field(
        default=256,
        ge=1,
        description="most gateway batches (proxima.events.v2 records) the worker takes from Faust at a time",
    )
    batch_within_s: float = Field(
        default=0.005, gt=0, description="longest the worker waits to fill a batch"
    )
    gc_threshold0: int = Field(
        default=DEFAULT_THRESHOLD0,
        ge=0,
        description="net new objects between the worker's young-generation garbage collections (CPython: 700), what it built before its first record frozen out of every collection; 0 leaves the collector as CPython sets it (no freeze)",
    )
    retry_backoff_s: float = Field(
        default=0.1,
        gt=0,
        description="first wait before the worker or the bridge retries after a Redis or Kafka error (doubles, jittered)",
    )
    retry_backoff_max_s: float = Field(
        default=5.0,
        gt=0,
        description="longest wait between retries of the worker and the bridge (jittered)",
    )
    session_timeout_s: float = Field(
        default=10.0,
        ge=6,
        description="Kafka group session timeout: how soon a dead worker's partitions move",
    )
    stop_timeout_s: float = Field(
        default=15.0,
        gt=0,
        description="longest a worker's graceful stop (SIGTERM, SIGINT) may take before it exits hard, printing every thread's stack",
    )
    fetch_max_wait_ms: int = Field(
        default=50,
        ge=1,
        le=1500,
        description="longest a worker's Kafka fetch waits for data (Faust alone uses 1500)",
    )
    consent_publish_s: float = Field(
        default=2.0,
        gt=0,
        description="how often the worker drains the consent outbox to proxima.consent.v1",
    )
    drift_windows: int = Field(
        default=1, ge=0, le=8, description="EID rotation windows of clock drift tolerated each side"
    )
    kafka_retention_s: int = Field(
        default=7 * 86400,
        gt=0,
        description="how long proxima.alerts.v1 and proxima.visits.v1 keep records (they name "
        "customers) and the consent topic keeps a forgotten customer's tombstone; set on "
        "the topics by `proxima topics ensure`; keep it >= PROXIMA_NOTIFIER_RETENTION_S",
    )
    dedupe_ttl_s: int = Field(
        default=2 * 86400, gt=0, description="how long alert dedupe keys live"
    )
    identity_seal_keys: SecretStr = Field(
        default=SecretStr(""),
        description="AES-256 keys (64 hex digits, comma-separated) sealing customers' identity "
        "keys in Redis: the first seals, all open; '' = stored in plain text",
    )
    identity_seal_keys_file: Path | None = Field(
        default=None, description="a file of more seal keys (same form), e.g. a mounted secret"
    )
    data_dir: Path = Field(
        default=Path(".proxima/stream-data"),
        description="the worker's local state (rocksdb:// table files) under {data_dir}/{app id}",
    )
    store_url: str = Field(
        default="memory://",
        description="Faust table store: memory:// (rebuilt from the changelog at start) or rocksdb:// (on disk, needs the rocksdb extra)",
    )
    stats_interval_s: float = Field(
        default=10.0,
        gt=0,
        description="how often the worker and the bridge write their counters to Redis (proxima stats)",
    )
    rules_check_s: float = Field(
        default=1.0,
        ge=0,
        description="how often the worker looks for changed rules files (hot reload)",
    )
    table_purge_s: float = Field(
        default=600.0,
        gt=0,
        description="how often the worker deletes expired entries from its tables (changelog tombstones)",
    )
    bridge_client_id: str = Field(
        default="proxima-bridge-1",
        pattern=r"^[A-Za-z0-9._-]{1,64}$",
        description="MQTT client id of this bridge replica, unique per replica and stable across its restarts: it names the persistent session the broker keeps the replica's share of the gateways' batches in while it is down (deploy/k8s/bridge.yaml sets it from the StatefulSet's pod name)",
    )
    http_host: str = Field(
        default="127.0.0.1",
        description="bind address of the bridge's and the worker's /livez, /readyz and /metrics (0.0.0.0 in a pod)",
    )
    bridge_http_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="the bridge's probes and metrics port; unset = off",
    )
    worker_http_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="the stream worker's probes and metrics port; unset = off",
    )
    bridge_events_version: Literal["v1", "v2"] = Field(
        default="v2",
        description="what the bridge writes: v2 = one record per signed gateway batch on proxima.events.v2 (the worker verifies and checks it); v1 = one record per event on proxima.events.v1, checked by the bridge (deprecated, kept for one release for consumers of v1; the worker reads both)",
    )
    bridge_share_group: str = Field(
        default="proxima-bridge", description="MQTT shared subscription group"
    )
    bridge_max_payload: int = Field(
        default=512 * 1024,
        gt=0,
        description="largest accepted MQTT batch (bytes); at most half of kafka_max_request_size",
    )
    kafka_max_request_size: int = Field(
        default=1024 * 1024,
        ge=2 * DLQ_RECORD_MAX,
        description="largest Kafka request the bridge's producer sends (bytes); keep it at most the broker's message.max.bytes",
    )
    require_signatures: bool = Field(
        default=True,
        description="bridge rejects event batches without a valid gateway signature (contracts.signing)",
    )
    event_max_age_s: float = Field(
        default=86400.0,
        gt=0,
        description="the bridge parks events observed, and signed batches published, longer ago than this (a clock far off, or an old batch replayed); shorter than dedupe_ttl_s",
    )
    event_max_skew_s: float = Field(
        default=300.0,
        ge=0,
        description="the bridge parks events observed, and signed batches published, further ahead of its clock than this",
    )
    batch_reorder_s: float = Field(
        default=600.0,
        ge=0,
        description="a signed batch published this much earlier than its gateway's latest is refused as a replay (the high-water mark's allowance for batches out of order)",
    )
    require_signed_time: bool = Field(
        default=False,
        description="bridge refuses v1 signatures (no signed publish time); turn on once every gateway signs v2",
    )
    key_cache_ttl_s: float = Field(
        default=30.0,
        gt=0,
        description="how long the bridge trusts a cached gateway key (revocation delay)",
    )
    kafka_idempotent: bool = Field(
        default=False,
        description="idempotent Kafka producer (needs InitProducerId: real Kafka/Redpanda, not Tansu)",
    )

    @field_validator("identity_seal_keys")
    @classmethod
    def _seal_keys_shape(cls, value: SecretStr) -> SecretStr:
        from stream.sealing import parse_seal_keys

        parse_seal_keys(value.get_secret_value())
        return value

    @field_validator("store_url")
    @classmethod
    def _known_store(cls, url: str) -> str:
        scheme = url.partition("://")[0]
        if "://" not in url or scheme not in STORE_SCHEMES:
            raise ValueError(
                f"store_url {url!r}: the scheme must be one of {sorted(STORE_SCHEMES)}"
            )
        return url

    @model_validator(mode="after")
    def _fits_kafka(self) -> StreamSettings:
        # A batch's largest event is nearly the whole batch: with room to spare for the
        # record's overhead, every event the bridge accepts is writable to Kafka.
        if self.bridge_max_payload * 2 > self.kafka_max_request_size:
            raise ValueError(
                f"bridge_max_payload ({self.bridge_max_payload}) must be at most half of "
                f"kafka_max_request_size ({self.kafka_max_request_size})"
            )
        return self

    @model_validator(mode="after")
    def _replays_are_deduped(self) -> StreamSettings:
        # An event the bridge lets through is at most event_max_age_s old, so a copy of it
        # arrives while its dedupe marks (dedupe_ttl_s) still stand.
        if self.event_max_age_s >= self.dedupe_ttl_s:
            raise ValueError(
                f"event_max_age_s ({self.event_max_age_s}) must be shorter than dedupe_ttl_s "
                f"({self.dedupe_ttl_s}): an older event could be decided twice"
            )
        return self
