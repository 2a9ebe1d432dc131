"""The console's application: its parts, its middleware and its routes."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

from aiohttp import web
from aiohttp.typedefs import Middleware

from notifier.bookings_client import BookingsClient
from notifier.channels import VapidKeys
from notifier.destinations import Destinations
from notifier.directory import Clock, Directory, utc_now
from notifier.lifecycle import Lifecycle
from notifier.metrics import Metrics
from notifier.room_desk import RoomDesk
from notifier.settings import NotifierSettings
from notifier.signin import SignInLimits
from notifier.web.auth import Auth
from notifier.web.errors import MAX_BODY, Handler, errors
from notifier.web.feed import CLOSE, FeedHub
from notifier.web.handlers import pages
from notifier.web.handlers.alerts import AlertHandlers
from notifier.web.handlers.bookings import BookingHandlers
from notifier.web.handlers.channels import ChannelHandlers
from notifier.web.handlers.events import EventHandlers
from notifier.web.handlers.gateways import GatewayHandlers
from notifier.web.handlers.messaging import MessagingHandlers
from notifier.web.handlers.operations import OperationHandlers
from notifier.web.handlers.rooms import RoomHandlers
from notifier.web.handlers.routing import RoutingHandlers
from notifier.web.handlers.session import SessionHandlers
from notifier.web.handlers.shifts import ShiftHandlers
from notifier.web.sessions import Sessions
from transport.redis import RedisClient

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


class Console:
    """The console and the API of one notifier instance: its parts, and the app serving them."""

    def __init__(
        self,
        *,
        redis: RedisClient,
        prefix: str,
        directory: Directory,
        lifecycle: Lifecycle,
        settings: NotifierSettings,
        metrics: Metrics,
        mqtt_connected: Callable[[], bool] = lambda: False,
        clock: Clock = utc_now,
        destinations: Destinations | None = None,
        vapid: VapidKeys | None = None,
        bookings: BookingsClient | None = None,
    ) -> None:
        self.destinations = destinations or Destinations(redis, prefix, directory)
        self.vapid = vapid or VapidKeys(redis, prefix, settings.vapid_private_key)
        self.metrics = metrics
        self.sessions = Sessions(redis, prefix, timedelta(seconds=settings.session_ttl_s))
        self.limits = SignInLimits(redis, prefix, settings)
        self.hub = FeedHub(redis, prefix)
        self.closing = asyncio.Event()
        metrics.gauge("proxima_notifier_sse_clients", lambda: float(self.hub.clients))
        auth = Auth(self.sessions, directory)
        self.operations = OperationHandlers(redis, metrics, mqtt_connected)
        self.session = SessionHandlers(
            auth, self.sessions, self.limits, directory, metrics, settings
        )
        self.alerts = AlertHandlers(auth, lifecycle, metrics, clock)
        desk = RoomDesk(lifecycle, metrics)
        self.events = EventHandlers(
            auth, self.hub, lifecycle, desk, clock, settings.session_recheck_s, self.closing
        )
        self.shifts = ShiftHandlers(auth, directory, lifecycle, redis)
        self.channels = ChannelHandlers(auth, self.destinations, self.vapid)
        self.routing = RoutingHandlers(auth, lifecycle)
        self.gateways = GatewayHandlers(auth, redis, prefix)
        self.rooms = RoomHandlers(auth, desk, metrics)
        self.messaging = MessagingHandlers(auth, lifecycle.messaging)
        secret = settings.bookings_api_secret
        if bookings is None and settings.bookings_api_url and secret is not None:
            bookings = BookingsClient(
                settings.bookings_api_url,
                secret.get_secret_value(),
                timeout_s=settings.bookings_api_timeout_s,
            )
        self.bookings_client = bookings
        self.bookings = BookingHandlers(auth, lifecycle, directory, bookings)

    def app(self, max_body: int = 64 * 1024) -> web.Application:
        app = web.Application(
            middlewares=[_count_requests(self.metrics), errors], client_max_size=max_body
        )
        app[MAX_BODY] = max_body
        app.cleanup_ctx.append(self._hub_ctx)
        app.on_shutdown.append(self._on_shutdown)
        app.on_response_prepare.append(_security_headers)
        app.add_routes(
            [
                web.get("/", pages.index),
                web.get("/static/console.js", pages.script),
                web.get("/static/console.css", pages.style),
                web.get("/static/icon.svg", pages.icon),
                web.get("/manifest.webmanifest", pages.manifest),
                web.get("/sw.js", pages.service_worker),
                web.get("/api/openapi.json", pages.openapi_doc),
                web.get("/healthz", self.operations.healthz),
                web.get("/readyz", self.operations.healthz),
                web.get("/livez", self.operations.livez),
                web.get("/metrics", self.operations.metrics_text),
                web.post("/api/session", self.session.login),
                web.delete("/api/session", self.session.logout),
                web.get("/api/me", self.session.me),
                web.get("/api/alerts", self.alerts.list),
                web.get("/api/alerts/{alert_id}", self.alerts.get),
                web.post("/api/alerts/{alert_id}/{action}", self.alerts.act),
                web.get("/api/alerts/{alert_id}/receipts", self.alerts.receipts),
                web.get("/api/summary", self.alerts.summary),
                web.get("/api/outcomes", self.alerts.outcomes),
                web.get("/api/outcomes.csv", self.alerts.outcomes_csv),
                web.get("/api/events", self.events.events),
                web.get("/api/shifts", self.shifts.list),
                web.post("/api/shifts/{associate_id}", self.shifts.set),
                web.get("/api/channels", self.channels.list),
                web.post("/api/channels/webhooks", self.channels.add_webhook),
                web.post("/api/channels/push", self.channels.add_push),
                web.delete("/api/channels/{destination_id}", self.channels.remove),
                web.get("/api/push/key", self.channels.push_key),
                web.get("/api/routing", self.routing.get),
                web.get("/api/gateways", self.gateways.list),
                web.put("/api/routing", self.routing.set),
                web.get("/api/rooms", self.rooms.list),
                web.put("/api/rooms", self.rooms.set),
                web.post("/api/rooms/{room_id}/{action}", self.rooms.act),
                web.get("/api/messaging", self.messaging.get),
                web.put("/api/messaging", self.messaging.set),
                web.delete("/api/messaging", self.messaging.remove),
                web.get("/api/bookings", self.bookings.list),
                web.post("/api/bookings", self.bookings.put),
                web.post("/api/bookings/cancel", self.bookings.cancel),
            ]
        )
        return app

    async def _hub_ctx(self, _app: web.Application) -> AsyncIterator[None]:
        await self.hub.start()
        yield
        await self.hub.stop()
        if self.bookings_client is not None:
            await self.bookings_client.close()

    async def _on_shutdown(self, _app: web.Application) -> None:
        # Live feeds never end on their own: tell them to, so shutdown need not wait.
        self.closing.set()
        self.hub.broadcast(CLOSE)


def _count_requests(metrics: Metrics) -> Middleware:
    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        status = 500
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            status = exc.status
            raise
        else:
            status = response.status
            return response
        finally:
            metrics.inc("proxima_notifier_http_requests_total", code=f"{status // 100}xx")

    return count


async def _security_headers(_request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers.setdefault("Cache-Control", "no-store")


async def serve(
    app: web.Application, host: str, port: int, ssl_context: ssl.SSLContext | None = None
) -> tuple[web.AppRunner, int]:
    """Start the console; returns the runner and the bound port (useful with port 0)."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    bound = port
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            bound = int(address[1])
            break
    return runner, bound
