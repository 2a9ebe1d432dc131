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
