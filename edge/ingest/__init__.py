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
import contextlib
import hmac
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from contracts.models import Event, EventKind, Subject, SubjectType
from edge.devices import DEVICE_ID_RE, DeviceRegistry, RegistryUnavailable, open_registry
from edge.exceptions import EventRejected, OutboxError
from edge.geofence import Fix, GeofenceEngine, GeofenceTransition
from edge.ingest.bodies import (
    BeaconRegionIn,
    BeaconReport,
    FixIn,
    GeofenceReport,
    GeofenceTransitionIn,
    LocationReport,
    RegionRef,
    Report,
)
from edge.ingest.exceptions import IngestConfigError, Rejection, describe
from edge.ingest.metrics import IngestMetrics
from edge.ingest.nonces import NonceCache
from edge.ingest.quarantine import QUARANTINE_BODY_MAX, Quarantine
from edge.ingest.ratelimit import RateLimiter
from edge.ingest.settings import IngestSettings
from edge.ingest.signing import (
    H_DEVICE,
    H_NONCE,
    H_SIGNATURE,
    H_TIMESTAMP,
    NONCE_RE,
    SIG_VERSION,
    TIMESTAMP_RE,
    canonical_string,
    sign_request,
    verify_signature,
)
from edge.ingest.store import (
    BeaconRegionSpec,
    CircleSpec,
    PolygonSpec,
    StoreIngestConfig,
    load_store_config,
)
from edge.outbox import EventDraft
from transport.cancel import reraise_if_cancelled

__all__ = [
    "H_DEVICE",
    "H_NONCE",
    "H_SIGNATURE",
    "H_TIMESTAMP",
    "QUARANTINE_BODY_MAX",
    "ROUTES",
    "SIG_VERSION",
    "BeaconRegionIn",
    "BeaconRegionSpec",
    "BeaconReport",
    "CircleSpec",
    "EventSink",
    "FixIn",
    "GeofenceReport",
    "GeofenceTransitionIn",
    "IngestConfigError",
    "IngestMetrics",
    "IngestServer",
    "IngestSettings",
    "LocationReport",
    "NonceCache",
    "PolygonSpec",
    "Quarantine",
    "RateLimiter",
    "RegionRef",
    "Rejection",
    "Report",
    "StoreIngestConfig",
    "canonical_string",
    "load_store_config",
    "sign_request",
    "verify_signature",
]

log = logging.getLogger(__name__)

B = TypeVar("B", bound=Report)

_EVENT_NS = uuid.UUID("6f1b3c52-5d0a-4f7e-9a51-2f0c6c1e7d30")
# Verifies nothing (its private key is never kept): an unregistered device's request costs
# the same signature check as a registered one's.
_NOBODY = Ed25519PrivateKey.generate().public_key()
_NOT_VERIFIED = (
    "the signature does not verify for this device (wrong key, version, path, timestamp, "
    "nonce or body, or the device is not registered)"
)

ROUTES = {
    "geofence-transitions": "geofence_transitions",
    "beacon-regions": "beacon_regions",
    "locations": "locations",
}


# --- the server --------------------------------------------------------------------------
class EventSink(Protocol):
    """Where accepted events go: :class:`edge.outbox.Outbox` (all or nothing per call)."""

    async def put(self, drafts: Sequence[EventDraft]) -> list[Event]: ...


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
        if not TIMESTAMP_RE.match(ts):
            raise Rejection(401, "clock_skew", f"{H_TIMESTAMP} must be Unix time in whole seconds")
        off = int(ts) - self.clock()
        if abs(off) > self.settings.clock_skew_s:
            raise Rejection(
                401,
                "clock_skew",
                f"timestamp is {off:+.0f} s from the gateway's clock "
                f"(allowed ±{self.settings.clock_skew_s:g} s)",
            )
        if not NONCE_RE.match(nonce):
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
            raise Rejection(422, "invalid_body", describe(exc)) from exc
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
