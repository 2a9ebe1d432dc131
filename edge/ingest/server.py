"""The ingest's HTTP server: one route per endpoint, each request through the checks in order.

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
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

from aiohttp import web

from contracts.models import Event
from edge.devices import DeviceRegistry, open_registry
from edge.geofence import GeofenceEngine
from edge.ingest.admin import AdminEndpoints
from edge.ingest.auth import Auth, Authenticator
from edge.ingest.bodies import BeaconReport, GeofenceReport, LocationReport, Report, parse_report
from edge.ingest.events import EventSink, IngestEvents
from edge.ingest.exceptions import Rejection
from edge.ingest.metrics import IngestMetrics
from edge.ingest.nonces import NonceCache
from edge.ingest.quarantine import QUARANTINE_BODY_MAX, Quarantine
from edge.ingest.ratelimit import RateLimiter
from edge.ingest.settings import IngestSettings
from edge.ingest.signing import H_DEVICE
from edge.ingest.store import StoreIngestConfig, load_store_config
from transport.cancel import reraise_if_cancelled

log = logging.getLogger(__name__)

STORE_PATH = "/v1/stores/{store_id}"
ENDPOINTS = ("geofence-transitions", "beacon-regions", "locations")
R = TypeVar("R", bound=Report)
Accept = Callable[[Auth, R], Awaitable[list[Event]]]


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
        self.authenticator = Authenticator(registry, self.nonces, clock, settings.clock_skew_s)
        self.limiter = RateLimiter(settings.rate_per_s, settings.rate_burst, clock)
        self.engine = GeofenceEngine(
            store.build_geofences(),
            clock=clock,
            margin_m=settings.geofence_margin_m,
            dwell_s=settings.geofence_dwell_s,
            stale_s=settings.geofence_stale_s,
        )
        self.events = IngestEvents(store_id, store, self.engine, sink, self.metrics)
        self.admin = AdminEndpoints(settings.admin_token, self.quarantine, self.metrics)
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.Task[None] | None = None
        self.port: int | None = None
        self.scheme = "http"
        self.started = asyncio.Event()
        self.app = self._make_app()

    @property
    def store(self) -> StoreIngestConfig:
        """The store configuration in force (:meth:`update_store` replaces it)."""
        return self.events.store

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
        handlers = (self._geofence_transitions, self._beacon_regions, self._locations)
        for endpoint, handler in zip(ENDPOINTS, handlers, strict=True):
            app.router.add_post(f"{STORE_PATH}/{endpoint}", handler)
        # Registered last, so it matches only what the routes above do not.
        app.router.add_post(f"{STORE_PATH}/{{endpoint}}", self._unknown_endpoint)
        self.admin.add_routes(app.router)
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
        return await self.events.update_store(store)

    async def tick(self) -> list[Event]:
        """Emit due dwells and stale exits to the sink (the ticker calls this every second)."""
        return await self.events.tick()

    # -- HTTP: one handler per endpoint --
    async def _geofence_transitions(self, request: web.Request) -> web.Response:
        """OS geofence transitions: ``{"transitions": [{"geofence_id", "transition", "at"}]}``."""
        return await self._answer(request, GeofenceReport, self.events.geofence_transitions)

    async def _beacon_regions(self, request: web.Request) -> web.Response:
        """Store-beacon region enter/exit: ``{"events": [{"region", "transition", "at"}]}``."""
        return await self._answer(request, BeaconReport, self.events.beacon_regions)

    async def _locations(self, request: web.Request) -> web.Response:
        """Location fixes: ``{"fixes": [{"lat", "lon", "accuracy_m", "at"}]}``."""
        return await self._answer(request, LocationReport, self.events.locations)

    async def _unknown_endpoint(self, request: web.Request) -> web.Response:
        """Any other endpoint of a store: answered, counted and parked like any rejection."""
        return await self._answer(request, None, None)

    async def _answer(
        self, request: web.Request, report: type[R] | None, accept: Accept[R] | None
    ) -> web.Response:
        """One request through the checks in order (module doc), then ``accept`` its report."""
        self.metrics.requests += 1
        body = b""
        auth: Auth | None = None
        try:
            body = await self._read_body(request)
            self._check_store(request)
            report, accept = self._endpoint(request, report, accept)
            auth = await self.authenticator.authenticate(
                request.method, request.raw_path, request.headers, body
            )
            self._limit(auth)
            stored = await accept(auth, self._parse(report, body))
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

    def _check_store(self, request: web.Request) -> None:
        if request.match_info["store_id"] != self.store_id:
            raise Rejection(
                404,
                "unknown_store",
                f"store {request.match_info['store_id']!r} is not served here "
                f"(this gateway serves {self.store_id!r})",
            )

    def _endpoint(
        self, request: web.Request, report: type[R] | None, accept: Accept[R] | None
    ) -> tuple[type[R], Accept[R]]:
        if report is None or accept is None:
            raise Rejection(
                404,
                "unknown_endpoint",
                f"no endpoint {request.match_info['endpoint']!r}; "
                f"use one of {', '.join(ENDPOINTS)}",
            )
        return report, accept

    def _limit(self, auth: Auth) -> None:
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

    def _parse(self, report: type[R], body: bytes) -> R:
        return parse_report(
            report,
            body,
            max_items=self.settings.max_items,
            clock_skew_s=self.settings.clock_skew_s,
            max_report_age_s=self.settings.max_report_age_s,
            now=self.clock(),
        )

    def _reject(
        self, request: web.Request, rej: Rejection, body: bytes, auth: Auth | None
    ) -> web.Response:
        self.metrics.rejected[rej.cause] += 1
        log.info("ingest rejected %s %s: %s", request.method, request.path, rej)
        self.quarantine.park(
            {
                "at": datetime.fromtimestamp(self.clock(), tz=UTC).isoformat(),
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
