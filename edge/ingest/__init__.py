"""App-event ingest: the customer's app reports to the gateway over HTTPS on the store network.

**Transport**: TLS with ``tls_cert_file``/``tls_key_file``. Without them the server binds a
loopback address only, unless ``tls_terminated_by_proxy`` says a TLS front end on this
host (a reverse proxy) terminates HTTPS for it; anything else is refused at start
(:meth:`IngestSettings.server_ssl_context`), so request bodies (location fixes) and
headers never cross the store network in clear.

Three endpoints, all ``POST`` with a JSON body, for this gateway's store only:

- ``/v1/stores/{store}/geofence-transitions``: OS geofence transitions
  ``{"transitions": [{"geofence_id", "transition": "enter"|"exit", "at"}]}``;
- ``/v1/stores/{store}/beacon-regions``: store-beacon region enter/exit
  ``{"events": [{"region": {"type", "id"}, "transition", "at", "rssi"?}]}``;
- ``/v1/stores/{store}/locations``: location fixes
  ``{"fixes": [{"lat", "lon", "accuracy_m", "at"}]}``, evaluated against the store's
  geofences (:mod:`edge.geofence`); only the resulting ``geofence_*`` events leave the
  gateway, never the fixes themselves (no location trails, DESIGN.md "Minimisation").

**Signature** (scheme ``v1``): each device holds an Ed25519 private key; its public key is
registered under its ``device_id`` (:mod:`edge.devices`). A request carries

- ``X-Proxima-Device``: the device id (16-64 lowercase hex digits);
- ``X-Proxima-Timestamp``: Unix time in whole seconds;
- ``X-Proxima-Nonce``: 16-64 characters of ``[A-Za-z0-9_-]``, fresh for every request;
- ``X-Proxima-Signature``: ``v1=`` + base64url (no padding) of the Ed25519 signature of

  ``proxima-app-v1\\n{METHOD}\\n{path}\\n{timestamp}\\n{nonce}\\n{device_id}\\n{hex sha256(body)}``

  where ``path`` is the request target exactly as sent (with any query string).

:func:`sign_request` computes these headers, as the app does.

**Checks, in order** (each rejection answers JSON ``{"status": "rejected", "reason",
"detail"}``, is counted by its cause in :class:`IngestMetrics` and parked in the
:class:`Quarantine`): ``body_too_large`` 413; ``unknown_store`` 404; ``missing_signature``
401; ``clock_skew`` 401 (timestamp more than ``clock_skew_s`` off); ``bad_signature`` 401
(also for a device that is not registered, or revoked, unless the request is signed with
its key: registration is told only to the key's holder; the cause ``unknown_device`` is
counted and parked); ``unknown_device`` 401 (revoked, correctly signed); ``replayed_nonce``
409; ``rate_limited``
429 with ``Retry-After`` (token bucket per device, after authentication so nobody can
exhaust another device's bucket); ``invalid_body`` 422 naming every bad field;
``unavailable`` 503 (registry unreachable, nonce cache full, outbox full or failing).
An accepted request answers 202 with the stored events' ``event_id``/``seq``.

**Replay protection**: nonces live in memory for ``2 × clock_skew_s`` (a timestamp is
acceptable for that long), per ``(device, nonce)``, bounded by ``nonce_cache_max``. One
process per gateway serves the ingest, so memory is enough; a farm of ingest servers
behind one address would need the cache in Redis (``SET NX EX``). A nonce is released
again when the request was refused for a reason the client may retry unchanged (429, 503),
and event ids derive from ``(device, nonce, index)``, so a retried request maps to the
same events (the pipeline deduplicates by ``event_id``).

**All or nothing**: a request's events go to the outbox in one ``put`` (one SQLite
transaction); if that fails, the geofence state is rolled back and the answer is 503.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import logging
import math
import re
import secrets
import ssl
import time
import tomllib
import uuid
from collections import Counter, OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, TypeVar

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.models import Event, EventKind, Identifier, Subject, SubjectType
from edge.devices import DEVICE_ID_RE, DeviceRegistry, RegistryUnavailable, open_registry
from edge.exceptions import EdgeError, EventRejected, OutboxError
from edge.geofence import Circle, Fix, Geofence, GeofenceEngine, GeofenceTransition, Polygon
from edge.outbox import EventDraft
from transport.cancel import reraise_if_cancelled
from transport.net import is_loopback

log = logging.getLogger(__name__)

SIG_VERSION = "v1"
_DOMAIN = "proxima-app-v1"
H_DEVICE = "X-Proxima-Device"
H_TIMESTAMP = "X-Proxima-Timestamp"
H_NONCE = "X-Proxima-Nonce"
H_SIGNATURE = "X-Proxima-Signature"
_NONCE_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_TS_RE = re.compile(r"^[0-9]{1,12}$")
_EVENT_NS = uuid.UUID("6f1b3c52-5d0a-4f7e-9a51-2f0c6c1e7d30")
# Verifies nothing (its private key is never kept): an unregistered device's request costs
# the same signature check as a registered one's.
_NOBODY = Ed25519PrivateKey.generate().public_key()
_NOT_VERIFIED = (
    "the signature does not verify for this device (wrong key, version, path, timestamp, "
    "nonce or body, or the device is not registered)"
)
QUARANTINE_BODY_MAX = 4096

ROUTES = {
    "geofence-transitions": "geofence_transitions",
    "beacon-regions": "beacon_regions",
    "locations": "locations",
}


# --- settings and store configuration ---------------------------------------------------
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


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CircleSpec(_Cfg):
    kind: Literal["circle"]
    id: Identifier
    lat: Annotated[float, Field(ge=-90, le=90)]
    lon: Annotated[float, Field(ge=-180, le=180)]
    radius_m: Annotated[float, Field(gt=0, le=50_000)]


class PolygonSpec(_Cfg):
    kind: Literal["polygon"]
    id: Identifier
    vertices: Annotated[
        list[
            tuple[Annotated[float, Field(ge=-90, le=90)], Annotated[float, Field(ge=-180, le=180)]]
        ],
        Field(min_length=3, max_length=1000, description="[lat, lon] pairs in order"),
    ]


class BeaconRegionSpec(_Cfg):
    """A store beacon region the app monitors, and the zone it stands for."""

    type: Literal["ibeacon", "altbeacon", "eddystone_uid"]
    id: Annotated[str, Field(pattern=r"^(?:[0-9a-f]{2}){1,64}$")]
    zone_id: Identifier


class StoreIngestConfig(_Cfg):
    """What the ingest needs to know about its store: geofences and beacon regions."""

    geofences: list[Annotated[CircleSpec | PolygonSpec, Field(discriminator="kind")]] = Field(
        default_factory=list
    )
    beacon_regions: list[BeaconRegionSpec] = Field(default_factory=list)

    def build_geofences(self) -> list[Geofence]:
        out: list[Geofence] = []
        for spec in self.geofences:
            if isinstance(spec, CircleSpec):
                out.append(Circle(spec.id, spec.lat, spec.lon, spec.radius_m))
            else:
                out.append(Polygon(spec.id, tuple(spec.vertices)))
        return out


class IngestConfigError(EdgeError):
    """A store ingest file is invalid; the message names each bad field."""


def load_store_config(path: str | Path) -> StoreIngestConfig:
    """Read a JSON or TOML store ingest file (geofences and beacon regions)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
        data: Any = tomllib.loads(raw.decode()) if p.suffix == ".toml" else json.loads(raw)
        return StoreIngestConfig.model_validate(data)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise IngestConfigError(f"{p}: {exc}") from exc
    except ValidationError as exc:
        raise IngestConfigError(f"{p}: {_describe(exc)}") from exc


# --- request bodies ----------------------------------------------------------------------
class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


B = TypeVar("B", bound=_Body)


class GeofenceTransitionIn(_Body):
    geofence_id: Identifier
    transition: Literal["enter", "exit"]
    at: AwareDatetime


class RegionRef(_Body):
    type: Literal["ibeacon", "altbeacon", "eddystone_uid"]
    id: Annotated[str, Field(pattern=r"^(?:[0-9a-f]{2}){1,64}$")]


class BeaconRegionIn(_Body):
    region: RegionRef
    transition: Literal["enter", "exit"]
    at: AwareDatetime
    rssi: Annotated[float, Field(ge=-127, le=20)] | None = None


class FixIn(_Body):
    lat: Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
    lon: Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)]
    accuracy_m: Annotated[float, Field(ge=0, le=10_000, allow_inf_nan=False)]
    at: AwareDatetime


class GeofenceReport(_Body):
    transitions: Annotated[list[GeofenceTransitionIn], Field(min_length=1, max_length=500)]


class BeaconReport(_Body):
    events: Annotated[list[BeaconRegionIn], Field(min_length=1, max_length=500)]


class LocationReport(_Body):
    fixes: Annotated[list[FixIn], Field(min_length=1, max_length=500)]


def _describe(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(body)'}: {e['msg']}"
        for e in exc.errors(include_url=False)
    )


# --- signing -----------------------------------------------------------------------------
def canonical_string(
    method: str, path: str, timestamp: str, nonce: str, device_id: str, body: bytes
) -> bytes:
    """The bytes a device signs (see the module doc)."""
    digest = hashlib.sha256(body).hexdigest()
    return "\n".join((_DOMAIN, method.upper(), path, timestamp, nonce, device_id, digest)).encode()


def sign_request(
    private_key: Ed25519PrivateKey,
    device_id: str,
    method: str,
    path: str,
    body: bytes,
    *,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The headers the app sends with one request (for simulators, tests and the bench)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    nonce = secrets.token_urlsafe(18) if nonce is None else nonce
    sig = private_key.sign(canonical_string(method, path, ts, nonce, device_id, body))
    return {
        H_DEVICE: device_id,
        H_TIMESTAMP: ts,
        H_NONCE: nonce,
        H_SIGNATURE: f"{SIG_VERSION}=" + base64.urlsafe_b64encode(sig).rstrip(b"=").decode(),
        "Content-Type": "application/json",
    }


def verify_signature(
    public_key: Ed25519PublicKey,
    method: str,
    path: str,
    timestamp: str,
    nonce: str,
    device_id: str,
    body: bytes,
    signature_header: str,
) -> None:
    """Check an ``X-Proxima-Signature`` value; raise a 401 ``bad_signature`` :class:`Rejection`."""
    if not signature_header.startswith(f"{SIG_VERSION}="):
        raise Rejection(
            401, "bad_signature", f"unsupported signature version {signature_header[:6]!r}"
        )
    raw = signature_header[len(SIG_VERSION) + 1 :]
    try:
        signature = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except (binascii.Error, ValueError) as exc:
        raise Rejection(401, "bad_signature", "signature is not base64url") from exc
    try:
        public_key.verify(
            signature, canonical_string(method, path, timestamp, nonce, device_id, body)
        )
    except InvalidSignature as exc:
        raise Rejection(
            401,
            "bad_signature",
            "signature does not match the method, path, timestamp, nonce and body",
        ) from exc


# --- the pieces: metrics, quarantine, nonces, rate limit ----------------------------------
class IngestMetrics:
    """Counters for health and /metrics: requests, acceptances and rejections by reason."""

    def __init__(self) -> None:
        self.requests = 0
        self.accepted = 0
        self.events = 0
        self.tick_events = 0
        self.tick_events_lost = 0
        self.rejected: Counter[str] = Counter()

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "accepted": self.accepted,
            "events": self.events,
            "tick_events": self.tick_events,
            "tick_events_lost": self.tick_events_lost,
            "rejected": dict(sorted(self.rejected.items())),
            "rejected_total": sum(self.rejected.values()),
        }

    def prometheus(self, labels: str = "") -> str:
        """The counters in Prometheus text format; ``labels`` like ``store="s",gateway="g"``."""
        base = f"{{{labels}}}" if labels else ""
        sep = "," if labels else ""
        counters = [
            ("proxima_ingest_requests_total", "app-event requests received", self.requests),
            ("proxima_ingest_accepted_total", "app-event requests accepted", self.accepted),
            (
                "proxima_ingest_events_total",
                "events the ingest stored in the outbox (requests and geofence ticks)",
                self.events + self.tick_events,
            ),
            (
                "proxima_ingest_tick_events_lost_total",
                "geofence dwell/stale-exit events the outbox refused",
                self.tick_events_lost,
            ),
        ]
        lines: list[str] = []
        for name, doc, value in counters:
            lines += [f"# HELP {name} {doc}", f"# TYPE {name} counter", f"{name}{base} {value}"]
        name = "proxima_ingest_rejected_total"
        lines += [f"# HELP {name} app-event requests rejected, by reason", f"# TYPE {name} counter"]
        lines += [
            f'{name}{{{labels}{sep}reason="{r}"}} {n}' for r, n in sorted(self.rejected.items())
        ]
        return "\n".join(lines) + "\n"


class Quarantine:
    """The last ``max_items`` rejected requests in memory, optionally also a rotated JSONL file.

    Bodies are kept up to 4 KiB (base64). They may hold a location fix: the ring is bounded
    and memory-only unless a file is configured, which rotates to one ``.1`` backup.
    """

    def __init__(
        self, max_items: int = 1000, path: str | Path | None = None, max_file_bytes: int = 10 << 20
    ) -> None:
        self.records: deque[dict[str, Any]] = deque(maxlen=max_items)
        self.path = Path(path) if path else None
        self.max_file_bytes = max_file_bytes
        self.write_errors = 0

    def park(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        if self.path is None:
            return
        line = json.dumps(record, separators=(",", ":")) + "\n"
        try:
            if self.path.exists() and self.path.stat().st_size + len(line) > self.max_file_bytes:
                self.path.replace(self.path.with_name(self.path.name + ".1"))
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(line)
        except OSError as exc:
            self.write_errors += 1
            log.error("quarantine file %s not written: %s", self.path, exc)

    def recent(self, limit: int = 100) -> list[dict[str, Any]]:
        return list(self.records)[-limit:]


class NonceCache:
    """``(device, nonce)`` pairs seen in the last ``ttl_s`` (clock injected), at most ``max_items``."""

    def __init__(self, ttl_s: float, max_items: int, clock: Callable[[], float]) -> None:
        self.ttl_s = ttl_s
        self.max_items = max_items
        self.clock = clock
        self._expiry: dict[tuple[str, str], float] = {}
        self._order: deque[tuple[float, tuple[str, str]]] = deque()

    def __len__(self) -> int:
        return len(self._expiry)

    def _purge(self, now: float) -> None:
        while self._order and self._order[0][0] <= now:
            exp, key = self._order.popleft()
            if self._expiry.get(key) == exp:
                del self._expiry[key]

    def claim(self, device_id: str, nonce: str) -> Literal["ok", "replayed", "full"]:
        now = self.clock()
        self._purge(now)
        key = (device_id, nonce)
        if key in self._expiry:
            return "replayed"
        if len(self._expiry) >= self.max_items:
            return "full"
        exp = now + self.ttl_s
        self._expiry[key] = exp
        self._order.append((exp, key))
        return "ok"

    def release(self, device_id: str, nonce: str) -> None:
        self._expiry.pop((device_id, nonce), None)


class RateLimiter:
    """A token bucket per device (clock injected); idle full buckets are forgotten."""

    def __init__(
        self, rate_per_s: float, burst: int, clock: Callable[[], float], max_keys: int = 100_000
    ) -> None:
        self.rate = rate_per_s
        self.burst = float(burst)
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str) -> float:
        """Take one token: 0.0 if allowed, else the seconds until one is available."""
        now = self.clock()
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens - 1.0, now)
        self._buckets.move_to_end(key)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)  # least recently allowed: worst case a fresh bucket
        return 0.0

    def refund(self, key: str) -> None:
        if key in self._buckets:
            tokens, last = self._buckets[key]
            self._buckets[key] = (min(self.burst, tokens + 1.0), last)


# --- the server --------------------------------------------------------------------------
class EventSink(Protocol):
    """Where accepted events go: :class:`edge.outbox.Outbox` (all or nothing per call)."""

    async def put(self, drafts: Sequence[EventDraft]) -> list[Event]: ...


class Rejection(EdgeError):
    """One rejected request: HTTP status, reason code, detail (and Retry-After for 429).

    ``cause`` and ``note`` are what operators see (metrics, quarantine, log) when the
    client must be told less: an unregistered device answers like a bad signature.
    """

    def __init__(
        self,
        status: int,
        reason: str,
        detail: str,
        *,
        retry_after: float | None = None,
        cause: str | None = None,
        note: str | None = None,
    ) -> None:
        self.status = status
        self.reason = reason
        self.detail = detail
        self.retry_after = retry_after
        self.cause = cause or reason
        self.note = note or detail
        super().__init__(f"{status} {self.cause}: {self.note}")


@dataclass(frozen=True, slots=True)
class _Auth:
    device_id: str
    nonce: str


def _dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, tz=UTC)


def _subject(device_id: str) -> Subject:
    return Subject(type=SubjectType.DEVICE, id=device_id)


class IngestServer:
    """The app-event ingest for one gateway's store. ``async with`` serves it on a socket."""

    def __init__(
        self,
        settings: IngestSettings,
        *,
        store_id: str,
        store: StoreIngestConfig,
        registry: DeviceRegistry,
        sink: EventSink,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store_id = store_id
        self.store = store
        self.registry = registry
        self.sink = sink
        self.clock = clock
        self.metrics = IngestMetrics()
        self.quarantine = Quarantine(
            settings.quarantine_max,
            settings.quarantine_path or None,
            settings.quarantine_file_max_bytes,
        )
        self.nonces = NonceCache(2 * settings.clock_skew_s, settings.nonce_cache_max, clock)
        self.limiter = RateLimiter(settings.rate_per_s, settings.rate_burst, clock)
        self.engine = GeofenceEngine(
            store.build_geofences(),
            clock=clock,
            margin_m=settings.geofence_margin_m,
            dwell_s=settings.geofence_dwell_s,
            stale_s=settings.geofence_stale_s,
        )
        self._regions = {(r.type, r.id): r.zone_id for r in store.beacon_regions}
        # Geofence state and the outbox write change together, one request at a time.
        self._engine_lock = asyncio.Lock()
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.Task[None] | None = None
        self.port: int | None = None
        self.scheme = "http"
        self.started = asyncio.Event()
        self.app = self._make_app()

    # -- lifecycle --
    @classmethod
    def from_settings(
        cls,
        settings: IngestSettings,
        *,
        store_id: str,
        sink: EventSink,
        redis_prefix: str = "proxima:",
        clock: Callable[[], float] = time.time,
    ) -> IngestServer:
        """The server as the agent runs it: store file and device registry from settings."""
        store = load_store_config(settings.store_file) if settings.store_file else None
        registry = open_registry(
            settings.devices, redis_prefix=redis_prefix, cache_s=settings.registry_cache_s
        )
        return cls(
            settings,
            store_id=store_id,
            store=store or StoreIngestConfig(),
            registry=registry,
            sink=sink,
            clock=clock,
        )

    async def serve(self) -> None:
        """Serve until cancelled (the agent runs this as one task of its TaskGroup)."""
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()
            aclose = getattr(self.registry, "aclose", None)
            if aclose is not None:
                await aclose()

    def _make_app(self) -> web.Application:
        app = web.Application(client_max_size=self.settings.max_body_bytes)
        app.router.add_post("/v1/stores/{store_id}/{kind}", self._handle)
        app.router.add_get("/admin/quarantine", self._admin_quarantine)
        app.router.add_get("/admin/metrics", self._admin_metrics)
        return app

    async def __aenter__(self) -> IngestServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self, *, tick_s: float | None = 1.0) -> None:
        """Listen on ``host:port`` and tick the geofence engine every ``tick_s`` seconds.

        ``tick_s=None`` leaves ticking to the caller (:meth:`tick`), as tests on a fake clock do.
        """
        ssl_context = self.settings.server_ssl_context()  # refuses before binding anything
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self.settings.host, self.settings.port, ssl_context=ssl_context
        )
        try:
            await site.start()
        except BaseException:
            await self._runner.cleanup()
            self._runner = None
            raise
        addresses = self._runner.addresses  # the bound port, when port 0 asked for any
        self.port = int(addresses[0][1]) if addresses else self.settings.port
        self.scheme = "https" if ssl_context is not None else "http"
        log.info(
            "app-event ingest on %s://%s:%s%s",
            self.scheme,
            self.settings.host,
            self.port,
            " (TLS terminated by a front end)"
            if ssl_context is None and self.settings.tls_terminated_by_proxy
            else "",
        )
        self.started.set()
        if tick_s is not None:
            self._ticker = asyncio.create_task(self._tick_loop(tick_s), name="ingest-geofence-tick")

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.started.clear()

    async def _tick_loop(self, tick_s: float) -> None:
        while True:
            await asyncio.sleep(tick_s)
            try:
                await self.tick()
            except Exception:
                reraise_if_cancelled()
                log.exception("geofence tick failed; going on")

    async def update_store(self, store: StoreIngestConfig) -> list[Event]:
        """Apply a new store configuration live (geofences, beacon regions); see
        :meth:`GeofenceEngine.replace_geofences` for what happens to devices inside."""
        geofences = store.build_geofences()
        async with self._engine_lock:
            transitions = self.engine.replace_geofences(geofences)
            self.store = store
            self._regions = {(r.type, r.id): r.zone_id for r in store.beacon_regions}
            return await self._put_unrequested(transitions, "configuration change")

    async def _put_unrequested(
        self, transitions: list[GeofenceTransition], why: str
    ) -> list[Event]:
        if not transitions:
            return []
        drafts = [self._geofence_draft(tr, None, i) for i, tr in enumerate(transitions)]
        try:
            stored = await self.sink.put(drafts)
        except OutboxError as exc:
            self.metrics.tick_events_lost += len(drafts)
            log.error("%d geofence event(s) from a %s not stored: %s", len(drafts), why, exc)
            return []
        self.metrics.tick_events += len(stored)
        return stored

    async def tick(self) -> list[Event]:
        """Emit due dwells and stale exits to the sink (the ticker calls this every second)."""
        async with self._engine_lock:
            return await self._put_unrequested(self.engine.tick(), "tick")

    # -- HTTP --
    async def _handle(self, request: web.Request) -> web.Response:
        self.metrics.requests += 1
        body = b""
        auth: _Auth | None = None
        try:
            body = await self._read_body(request)
            kind = self._route(request)
            auth = await self._authenticate(request, body)
            self._limit(auth)
            stored = await self._dispatch(kind, auth, body)
        except Rejection as rej:
            if auth is not None and rej.status in (429, 503):
                self.nonces.release(auth.device_id, auth.nonce)
                if rej.status == 503:
                    self.limiter.refund(auth.device_id)
            return self._reject(request, rej, body, auth)
        except Exception as exc:  # a bug must cost one request, never the server
            log.exception("ingest failed on %s %s", request.method, request.path)
            if auth is not None:
                self.nonces.release(auth.device_id, auth.nonce)
            return self._reject(
                request, Rejection(500, "internal_error", type(exc).__name__), body, auth
            )
        self.metrics.accepted += 1
        self.metrics.events += len(stored)
        return web.json_response(
            {
                "status": "accepted",
                "events": [
                    {"event_id": str(e.event_id), "seq": e.seq, "kind": e.kind.value}
                    for e in stored
                ],
            },
            status=202,
        )

    def _route(self, request: web.Request) -> str:
        if request.match_info["store_id"] != self.store_id:
            raise Rejection(
                404,
                "unknown_store",
                f"store {request.match_info['store_id']!r} is not served here "
                f"(this gateway serves {self.store_id!r})",
            )
        kind = ROUTES.get(request.match_info["kind"])
        if kind is None:
            raise Rejection(
                404,
                "unknown_endpoint",
                f"no endpoint {request.match_info['kind']!r}; use one of {', '.join(ROUTES)}",
            )
        return kind

    def _limit(self, auth: _Auth) -> None:
        wait = self.limiter.take(auth.device_id)
        if wait > 0:
            raise Rejection(
                429,
                "rate_limited",
                f"device {auth.device_id} is over {self.settings.rate_per_s:g} requests/s",
                retry_after=wait,
            )

    async def _read_body(self, request: web.Request) -> bytes:
        limit = self.settings.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise Rejection(
                413,
                "body_too_large",
                f"body of {request.content_length} bytes is over the {limit}-byte limit",
            )
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_chunked(65536):
            size += len(chunk)
            if size > limit:
                raise Rejection(413, "body_too_large", f"body is over the {limit}-byte limit")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _authenticate(self, request: web.Request, body: bytes) -> _Auth:
        h = request.headers
        missing = [n for n in (H_DEVICE, H_TIMESTAMP, H_NONCE, H_SIGNATURE) if not h.get(n)]
        if missing:
            raise Rejection(401, "missing_signature", f"missing header(s): {', '.join(missing)}")
        device_id, ts, nonce, sig = h[H_DEVICE], h[H_TIMESTAMP], h[H_NONCE], h[H_SIGNATURE]
        if not DEVICE_ID_RE.match(device_id):
            raise Rejection(401, "unknown_device", f"{H_DEVICE} must be 16-64 lowercase hex digits")
        if not _TS_RE.match(ts):
            raise Rejection(401, "clock_skew", f"{H_TIMESTAMP} must be Unix time in whole seconds")
        off = int(ts) - self.clock()
        if abs(off) > self.settings.clock_skew_s:
            raise Rejection(
                401,
                "clock_skew",
                f"timestamp is {off:+.0f} s from the gateway's clock "
                f"(allowed ±{self.settings.clock_skew_s:g} s)",
            )
        if not _NONCE_RE.match(nonce):
            raise Rejection(401, "bad_signature", f"{H_NONCE} must be 16-64 of [A-Za-z0-9_-]")
        try:
            key = await self.registry.get(device_id)
        except RegistryUnavailable as exc:
            raise Rejection(503, "unavailable", f"device registry unreachable: {exc}") from exc
        # Whether a device is registered or revoked is told only to whoever holds its key:
        # anyone else gets the one answer of a wrong signature, after the same work.
        try:
            verify_signature(
                key.public_key if key is not None else _NOBODY,
                request.method,
                request.raw_path,
                ts,
                nonce,
                device_id,
                body,
                sig,
            )
        except Rejection as rej:
            if key is None:
                cause, note = "unknown_device", f"device {device_id} is not registered"
            elif key.revoked:
                cause, note = "unknown_device", f"device {device_id} is revoked ({rej.detail})"
            else:
                cause, note = rej.reason, rej.detail
            raise Rejection(401, "bad_signature", _NOT_VERIFIED, cause=cause, note=note) from rej
        if key is None:  # unreachable: nothing verifies against _NOBODY
            raise Rejection(401, "bad_signature", _NOT_VERIFIED, cause="unknown_device")
        if key.revoked:
            raise Rejection(
                401, "unknown_device", f"device {device_id} is revoked: enroll the app again"
            )
        claimed = self.nonces.claim(device_id, nonce)
        if claimed == "replayed":
            raise Rejection(409, "replayed_nonce", f"nonce {nonce} was already used")
        if claimed == "full":
            raise Rejection(503, "unavailable", "nonce cache is full; retry shortly")
        return _Auth(device_id, nonce)

    def _parse(self, model: type[B], name: str, body: bytes) -> B:
        """Validate a body; its list field ``name`` is checked for size and times."""
        try:
            parsed = model.model_validate_json(body)
        except ValidationError as exc:
            raise Rejection(422, "invalid_body", _describe(exc)) from exc
        items: list[Any] = getattr(parsed, name)
        if len(items) > self.settings.max_items:
            raise Rejection(
                422,
                "invalid_body",
                f"{name}: {len(items)} items, more than the limit {self.settings.max_items}",
            )
        now = self.clock()
        for i, item in enumerate(items):
            t = item.at.timestamp()
            if t - now > self.settings.clock_skew_s:
                raise Rejection(
                    422, "invalid_body", f"{name}.{i}.at: {t - now:.0f} s in the future"
                )
            if now - t > self.settings.max_report_age_s:
                raise Rejection(
                    422,
                    "invalid_body",
                    f"{name}.{i}.at: {now - t:.0f} s old, older than "
                    f"{self.settings.max_report_age_s:g} s",
                )
        return parsed

    def _event_id(self, auth: _Auth | None, index: int) -> uuid.UUID | None:
        if auth is None:
            return None
        return uuid.uuid5(_EVENT_NS, f"{auth.device_id}/{auth.nonce}/{index}")

    def _geofence_draft(self, tr: GeofenceTransition, auth: _Auth | None, index: int) -> EventDraft:
        distance = None if tr.distance_m is None else min(10_000.0, round(tr.distance_m, 2))
        return EventDraft(
            kind=EventKind(tr.kind),
            subject=_subject(tr.device_id),
            observed_at=_dt(tr.at),
            zone_id=tr.geofence_id,
            distance_m=distance,
            confidence=tr.confidence,
            event_id=self._event_id(auth, index),
        )

    async def _dispatch(self, kind: str, auth: _Auth, body: bytes) -> list[Event]:
        handler: Callable[[_Auth, bytes], Awaitable[list[Event]]] = getattr(self, f"_{kind}")
        return await handler(auth, body)

    async def _store(self, drafts: list[EventDraft]) -> list[Event]:
        if not drafts:
            return []
        try:
            return await self.sink.put(drafts)
        except EventRejected as exc:
            if exc.index is None:  # an event id of this request is already in the outbox
                raise Rejection(
                    409, "replayed_nonce", f"this request's events are already stored: {exc.reason}"
                ) from exc
            raise Rejection(422, "invalid_body", f"event not valid: {exc.reason}") from exc
        except OutboxError as exc:
            raise Rejection(503, "unavailable", f"events not stored: {exc}") from exc

    async def _with_engine(
        self, device_id: str, step: Callable[[], list[GeofenceTransition]], auth: _Auth
    ) -> list[Event]:
        async with self._engine_lock:
            before = self.engine.snapshot(device_id)
            try:
                transitions = step()
                drafts = [self._geofence_draft(tr, auth, i) for i, tr in enumerate(transitions)]
                return await self._store(drafts)
            except BaseException:
                self.engine.restore(device_id, before)
                raise

    async def _geofence_transitions(self, auth: _Auth, body: bytes) -> list[Event]:
        report = self._parse(GeofenceReport, "transitions", body)
        for i, t in enumerate(report.transitions):
            if t.geofence_id not in self.engine.geofences:
                raise Rejection(
                    422,
                    "invalid_body",
                    f"transitions.{i}.geofence_id: {t.geofence_id!r} is not a geofence of "
                    f"store {self.store_id!r}",
                )

        def step() -> list[GeofenceTransition]:
            out: list[GeofenceTransition] = []
            for t in sorted(report.transitions, key=lambda t: t.at):
                out += self.engine.report(
                    auth.device_id, t.geofence_id, t.transition == "enter", t.at.timestamp()
                )
            return out

        return await self._with_engine(auth.device_id, step, auth)

    async def _locations(self, auth: _Auth, body: bytes) -> list[Event]:
        report = self._parse(LocationReport, "fixes", body)
        fixes = sorted(
            (
                Fix(auth.device_id, f.lat, f.lon, f.accuracy_m, f.at.timestamp())
                for f in report.fixes
            ),
            key=lambda f: f.at,
        )

        def step() -> list[GeofenceTransition]:
            out: list[GeofenceTransition] = []
            for fix in fixes:
                out += self.engine.observe(fix)
            return out

        return await self._with_engine(auth.device_id, step, auth)

    async def _beacon_regions(self, auth: _Auth, body: bytes) -> list[Event]:
        report = self._parse(BeaconReport, "events", body)
        drafts: list[EventDraft] = []
        for i, ev in enumerate(report.events):
            zone = self._regions.get((ev.region.type, ev.region.id))
            if zone is None:
                raise Rejection(
                    422,
                    "invalid_body",
                    f"events.{i}.region: {ev.region.type} {ev.region.id} is not a beacon "
                    f"region of store {self.store_id!r}",
                )
            drafts.append(
                EventDraft(
                    kind=EventKind.ZONE_ENTER if ev.transition == "enter" else EventKind.ZONE_EXIT,
                    subject=_subject(auth.device_id),
                    observed_at=ev.at,
                    zone_id=zone,
                    rssi=ev.rssi,
                    event_id=self._event_id(auth, i),
                )
            )
        return await self._store(drafts)

    def _reject(
        self, request: web.Request, rej: Rejection, body: bytes, auth: _Auth | None
    ) -> web.Response:
        self.metrics.rejected[rej.cause] += 1
        log.info("ingest rejected %s %s: %s", request.method, request.path, rej)
        self.quarantine.park(
            {
                "at": _dt(self.clock()).isoformat(),
                "status": rej.status,
                "reason": rej.cause,
                "answered": rej.reason,
                "detail": rej.note,
                "method": request.method,
                "path": request.path,
                "device_id": auth.device_id if auth else request.headers.get(H_DEVICE, "")[:64],
                "authenticated": auth is not None,
                "remote": request.remote,
                "body_bytes": len(body),
                "body_b64": base64.b64encode(body[:QUARANTINE_BODY_MAX]).decode(),
                "truncated": len(body) > QUARANTINE_BODY_MAX,
            }
        )
        headers = {}
        if rej.retry_after is not None:
            headers["Retry-After"] = str(max(1, math.ceil(rej.retry_after)))
        return web.json_response(
            {"status": "rejected", "reason": rej.reason, "detail": rej.detail},
            status=rej.status,
            headers=headers,
        )

    def _admin_ok(self, request: web.Request) -> None:
        token = self.settings.admin_token.get_secret_value()
        if not token:
            raise web.HTTPNotFound(
                text="admin endpoints are disabled: set PROXIMA_INGEST_ADMIN_TOKEN"
            )
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise web.HTTPUnauthorized(text="admin endpoints need 'Authorization: Bearer TOKEN'")

    async def _admin_quarantine(self, request: web.Request) -> web.Response:
        self._admin_ok(request)
        try:
            limit = max(1, min(1000, int(request.query.get("limit", "100"))))
        except ValueError:
            limit = 100
        return web.json_response({"rejected": self.quarantine.recent(limit)})

    async def _admin_metrics(self, request: web.Request) -> web.Response:
        self._admin_ok(request)
        return web.json_response(self.metrics.snapshot())
