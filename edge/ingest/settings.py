"""Settings of the app-event ingest (``PROXIMA_INGEST_*``), declared once.

**Transport**: TLS with ``tls_cert_file``/``tls_key_file``. Without them the server binds a
loopback address only, unless ``tls_terminated_by_proxy`` says a TLS front end on this
host (a reverse proxy) terminates HTTPS for it; anything else is refused at start
(:meth:`IngestSettings.server_ssl_context`), so request bodies (location fixes) and
headers never cross the store network in clear.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from edge.ingest.exceptions import IngestConfigError
from transport.net import is_loopback


class IngestSettings(BaseSettings):
    """The app-event ingest server: where it listens, what it accepts, how hard it limits."""

    model_config = SettingsConfigDict(env_prefix="PROXIMA_INGEST_", extra="forbid")

    enabled: bool = Field(
        default=False, description="serve the app-event ingest beside the scanner"
    )
    host: str = Field(default="0.0.0.0", description="address to listen on (the store network)")
    port: int = Field(default=8471, ge=0, le=65535, description="TCP port (0 = any free port)")
    tls_cert_file: Path | None = Field(
        default=None, description="PEM certificate (chain) served over HTTPS; unset = plain HTTP"
    )
    tls_key_file: Path | None = Field(default=None, description="PEM private key of tls_cert_file")
    tls_terminated_by_proxy: bool = Field(
        default=False,
        description="a TLS front end terminates HTTPS for this port: plain HTTP may then listen "
        "beyond loopback (bind it where only the proxy reaches it)",
    )
    devices: str = Field(
        default="file:devices.json",
        description="device registry: file:PATH (JSON/TOML synced by store IT) or a Redis URL "
        "(redis://..., redis+cluster://...)",
    )
    store_file: str = Field(
        default="", description="JSON/TOML file with the store's geofences and beacon regions"
    )
    max_body_bytes: int = Field(default=16_384, ge=256, description="largest request body (413)")
    max_items: int = Field(default=100, ge=1, le=500, description="items per request body")
    clock_skew_s: float = Field(
        default=300.0, gt=0, description="how far X-Proxima-Timestamp may be from our clock"
    )
    max_report_age_s: float = Field(
        default=6 * 3600.0, gt=0, description="oldest 'at' accepted in a body (app buffering)"
    )
    rate_per_s: float = Field(default=2.0, gt=0, description="requests/s per device, sustained")
    rate_burst: int = Field(default=20, ge=1, description="requests per device in a burst")
    nonce_cache_max: int = Field(
        default=200_000, ge=100, description="nonces remembered at most (503 when full)"
    )
    quarantine_max: int = Field(
        default=1000, ge=1, description="rejected requests kept in memory for operators"
    )
    quarantine_path: str = Field(
        default="", description="also append rejections to this JSON-lines file ('' = memory only)"
    )
    quarantine_file_max_bytes: int = Field(
        default=10 * 1024 * 1024, ge=4096, description="rotate the quarantine file at this size"
    )
    admin_token: SecretStr = Field(
        default=SecretStr(""), description="bearer token for /admin/* ('' disables them)"
    )
    geofence_margin_m: float = Field(
        default=5.0, ge=0, description="hysteresis margin beyond a fix's accuracy radius"
    )
    geofence_dwell_s: float = Field(
        default=120.0, gt=0, description="time inside a geofence before geofence_dwell"
    )
    geofence_stale_s: float = Field(
        default=3600.0, gt=0, description="forget (and exit) a device not heard for this long"
    )
    registry_cache_s: float = Field(
        default=30.0, ge=0, description="Redis registry: how long an answer is cached"
    )

    @model_validator(mode="after")
    def _tls_pair(self) -> IngestSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file must be set together")
        return self

    def server_ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context to serve with, or None for plain HTTP where that is allowed.

        Raises :class:`IngestConfigError` for plain HTTP beyond loopback without
        ``tls_terminated_by_proxy``, or a certificate/key that does not load.
        """
        if self.tls_cert_file is None or self.tls_key_file is None:
            if not is_loopback(self.host) and not self.tls_terminated_by_proxy:
                raise IngestConfigError(
                    f"refusing to serve the app-event ingest over plain HTTP on {self.host!r} "
                    "(beyond loopback): set PROXIMA_INGEST_TLS_CERT_FILE and "
                    "PROXIMA_INGEST_TLS_KEY_FILE, or PROXIMA_INGEST_TLS_TERMINATED_BY_PROXY=true "
                    "if a TLS front end terminates HTTPS for it, or bind 127.0.0.1"
                )
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(self.tls_cert_file, self.tls_key_file)
        except (OSError, ssl.SSLError) as exc:
            raise IngestConfigError(
                f"TLS certificate {self.tls_cert_file} / key {self.tls_key_file} do not load: {exc}"
            ) from exc
        return ctx
