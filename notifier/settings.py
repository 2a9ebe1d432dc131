"""Notifier settings, each declared once with its type, default and environment variable."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class NotifierSettings(BaseSettings):
    """``PROXIMA_NOTIFIER_*``: the console's address and the escalation ladder."""

    model_config = SettingsConfigDict(env_prefix="PROXIMA_NOTIFIER_", extra="ignore")

    http_host: str = Field(default="127.0.0.1", description="address the console listens on")
    http_port: int = Field(default=8080, ge=0, le=65535, description="console port (0 = any free)")
    escalate_after_s: float = Field(
        default=45.0, gt=0, description="unclaimed this long → the next routing tier"
    )
    manager_after_s: float = Field(
        default=120.0, gt=0, description="unclaimed this long → the store manager"
    )
    expire_after_s: float = Field(
        default=900.0, gt=0, description="unclaimed this long → expired (customer likely gone)"
    )
    max_shift_s: float = Field(
        default=12 * 3600.0,
        gt=0,
        description="an on-shift toggle older than this counts as off (forgotten toggles)",
    )
    session_ttl_s: int = Field(default=12 * 3600, gt=0, description="console session lifetime")
    tick_s: float = Field(default=1.0, gt=0, description="how often escalation is checked")
    retention_s: int = Field(
        default=7 * 86400, gt=0, description="how long alert state is kept in Redis"
    )
    cookie_secure: bool = Field(
        default=False, description="mark the session cookie Secure (set when served over HTTPS)"
    )
    login_attempts: int = Field(
        default=5, gt=0, description="failed sign-ins per account per window before 429"
    )
    login_window_s: int = Field(default=300, gt=0, description="sign-in rate-limit window")
    webhook_attempts: int = Field(
        default=5, ge=1, le=20, description="tries per webhook or push send before giving up"
    )
    webhook_backoff_s: float = Field(
        default=0.5, gt=0, description="first retry pause (doubles, full jitter)"
    )
    webhook_backoff_cap_s: float = Field(
        default=30.0, gt=0, description="longest pause between retries"
    )
    webhook_timeout_s: float = Field(
        default=10.0, gt=0, description="timeout of one webhook or push request"
    )
    vapid_private_key: str = Field(
        default="",
        description="VAPID private key (base64url, 32 bytes); empty = one shared through Redis",
    )
    vapid_subject: str = Field(
        default="mailto:ops@proxima.invalid",
        description="VAPID 'sub' claim: how a push service reaches the operator",
    )
    push_ttl_s: int = Field(
        default=300, ge=0, description="how long a push service keeps an undelivered push"
    )
    redis_connections: int = Field(
        default=64,
        ge=4,
        description="Redis connections per instance; requests beyond it wait their turn",
    )
    legacy_ack_topic: bool = Field(
        default=False,
        description="also take acks on the 0.1 topic .../stores/{store}/alerts/{id}/ack "
        "(deprecated: it cannot tell who sent an ack; removed in the next release)",
    )
    retry_backoff_s: float = Field(
        default=0.2, gt=0, description="first pause when Redis, Kafka or MQTT is away (doubles)"
    )
    retry_backoff_max_s: float = Field(
        default=10.0, gt=0, description="longest pause between tries while a service is away"
    )
    kafka_record_attempts: int = Field(
        default=5,
        ge=1,
        description="tries of a Kafka record failing for another reason before it is parked",
    )
    kafka_fetch_max_wait_ms: int = Field(
        default=50,
        ge=1,
        le=5000,
        description="longest a Kafka fetch waits for alerts (brokers without long-poll wake-up)",
    )
