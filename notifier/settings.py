"""Notifier settings, each declared once with its type, default and environment variable."""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from transport.net import is_loopback
from transport.standard_webhooks import secret_key

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


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
    session_recheck_s: float = Field(
        default=5.0,
        gt=0,
        description="how often a live feed re-checks its session (expiry), whatever the traffic",
    )
    tick_s: float = Field(default=1.0, gt=0, description="how often escalation is checked")
    retention_s: int = Field(
        default=7 * 86400, gt=0, description="how long alert state is kept in Redis"
    )
    cookie_secure: bool = Field(
        default=False,
        description="mark the session cookie Secure (browsers then send it over HTTPS and to "
        "localhost only); unset = on unless http_host is loopback",
    )
    login_attempts: int = Field(
        default=5,
        gt=0,
        description="sign-in tries per account from one client address per window before 429",
    )
    login_client_attempts: int = Field(
        default=30,
        gt=0,
        description="failed sign-ins from one client address per window, over all accounts",
    )
    login_window_s: int = Field(default=300, gt=0, description="sign-in rate-limit window")
    login_backoff_s: float = Field(
        default=1.0,
        gt=0,
        description="past login_attempts tries on an account from all addresses: first pause",
    )
    login_backoff_cap_s: float = Field(
        default=60.0,
        gt=0,
        description="longest pause an account's sign-ins back off to (doubling per failure)",
    )
    password_hash_concurrency: int = Field(
        default=2,
        ge=1,
        le=64,
        description="argon2 hashes running at once per instance (each takes ~64 MiB)",
    )
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
    webhook_allow_networks: str = Field(
        default="",
        description=(
            "comma-separated networks (CIDR) webhooks and pushes may reach although not public,"
            " e.g. an internal relay; empty = public addresses only"
        ),
    )
    webhook_ca_file: str = Field(
        default="",
        description="extra CA certificates (PEM) trusted for webhook TLS, e.g. an internal CA",
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

    bookings_api_url: str = Field(
        default="",
        description="the bookings API (proxima stream bookings-api) the manager's console books "
        "through, e.g. http://127.0.0.1:8473; empty = the console's bookings are not connected",
    )
    bookings_api_secret: SecretStr | None = Field(
        default=None,
        description="the bookings API's signing secret (PROXIMA_BOOKINGS_API_SECRET, "
        "whsec_<base64>): the console signs its requests with it",
    )
    bookings_api_timeout_s: float = Field(
        default=5.0, gt=0, le=60, description="timeout of one request to the bookings API"
    )

    @field_validator("bookings_api_url")
    @classmethod
    def _bookings_url(cls, value: str) -> str:
        if value and urlsplit(value).scheme not in {"http", "https"}:
            raise ValueError(f"{value!r} is not an http(s) URL such as http://127.0.0.1:8473")
        return value

    @field_validator("bookings_api_secret")
    @classmethod
    def _bookings_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            return None  # set but empty, as a compose file's ${VAR:-} gives it: unset
        if value is not None:
            secret_key(value.get_secret_value())  # ValueError naming what is wrong
        return value

    @model_validator(mode="after")
    def _bookings_both(self) -> NotifierSettings:
        if bool(self.bookings_api_url) != (self.bookings_api_secret is not None):
            raise ValueError(
                "set both PROXIMA_NOTIFIER_BOOKINGS_API_URL and "
                "PROXIMA_NOTIFIER_BOOKINGS_API_SECRET, or neither"
            )
        return self

    @field_validator("webhook_allow_networks")
    @classmethod
    def _networks(cls, value: str) -> str:
        parse_networks(value)
        return value

    @property
    def webhook_networks(self) -> tuple[Network, ...]:
        return parse_networks(self.webhook_allow_networks)

    @model_validator(mode="before")
    @classmethod
    def _secure_cookie_beyond_loopback(cls, data: Any) -> Any:
        # A console reachable beyond this machine is served through TLS (directly or by a
        # proxy): its session cookie must never travel in clear, so Secure unless told.
        if isinstance(data, dict) and data.get("cookie_secure") is None:
            host = data.get("http_host")
            host = str(cls.model_fields["http_host"].default if host is None else host)
            return {**data, "cookie_secure": not is_loopback(host)}
        return data


def parse_networks(value: str) -> tuple[Network, ...]:
    """``10.0.0.0/8, 192.0.2.7`` → networks; a bad entry raises ValueError naming it."""
    out = []
    for raw in value.split(","):
        item = raw.strip()
        if not item:
            continue
        try:
            out.append(ipaddress.ip_network(item, strict=True))
        except ValueError as exc:
            raise ValueError(f"{item!r} is not a network such as 10.20.0.0/16: {exc}") from None
    return tuple(out)
