"""The associate console and its JSON API, served by every notifier instance (aiohttp).

Sign-in is per associate (argon2 hashes in the directory); a session is a random token in
an HttpOnly, SameSite=Strict cookie, stored in Redis only as its SHA-256, with its own
CSRF token that every state-changing request must echo in ``X-CSRF-Token``. Everything a
session can see or do is scoped to its store: another store's alert answers 404, exactly
like an alert that does not exist, so ids cannot be probed.

Live updates: each instance holds one Redis pattern subscription to every store's feed
channel (:class:`FeedHub`) and fans the messages out to the server-sent-event streams of
the consoles connected to it, so a claim made through any instance shows everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import ssl
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError
from redis.exceptions import RedisClusterException, RedisError

from notifier import assets, openapi
from notifier.channels import VapidKeys
from notifier.destinations import Destinations
from notifier.directory import (
    Associate,
    Clock,
    Directory,
    revocations_channel,
    sessions_key,
    text,
    text_map,
    utc_now,
)
from notifier.exceptions import (
    AlertConflict,
    InvalidInput,
    NotifierError,
    SignInThrottled,
    TooManyDestinations,
    UnknownAlert,
    UnknownAssociate,
    UnknownDestination,
    UnknownScheme,
)
from notifier.lifecycle import AlertState, Lifecycle
from notifier.metrics import Metrics
from notifier.settings import NotifierSettings
from notifier.signin import SignInLimits
from transport.cancel import reraise_if_cancelled
from transport.redis import RedisClient

log = logging.getLogger(__name__)

SESSION_COOKIE = "proxima_session"
CSRF_HEADER = "X-CSRF-Token"
KEEPALIVE_S = 15.0
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_IDENT = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
B = TypeVar("B", bound=BaseModel)

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


# --- request bodies ----------------------------------------------------------------
class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LoginBody(_Body):
    store: Annotated[str, Field(pattern=_IDENT)]
    associate: Annotated[str, Field(pattern=_IDENT)]
    password: Annotated[str, Field(min_length=1, max_length=1024)]


class ShiftBody(_Body):
    on_shift: StrictBool


class WebhookBody(_Body):
    url: Annotated[str, Field(min_length=1, max_length=2048)]
    secret: Annotated[str, Field(min_length=16, max_length=256)] | None = None
    key_id: Annotated[str, Field(pattern=_IDENT)] | None = None
    scope: Literal["me", "store"] = "me"


class RoutingBody(_Body):
    escalate_after_s: float | None = None
    manager_after_s: float | None = None
    expire_after_s: float | None = None
    tiers: Annotated[list[str], Field(min_length=1, max_length=4)] | None = None


class PushKeys(_Body):
    p256dh: Annotated[str, Field(min_length=1, max_length=200)]
    auth: Annotated[str, Field(min_length=1, max_length=100)]


class PushSubscriptionBody(BaseModel):
    # The browser's PushSubscription.toJSON(); it may grow fields, so extras are ignored.
    model_config = ConfigDict(extra="ignore", frozen=True)

    endpoint: Annotated[str, Field(min_length=1, max_length=2048)]
    keys: PushKeys
    expirationTime: int | None = None


# --- sessions ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Session:
    store_id: str
    associate_id: str
    csrf: str
    sid: str = ""  # names the session in revocation messages (never the token or its hash)
    incarnation: str = ""  # the associate's when signed in: a re-created id does not fit


class Sessions:
    """Console sessions in Redis, keyed by the token's hash so a dump of Redis holds none.

    Each associate's session keys are also listed in a set, so that removing the
    associate ends them all; a sign-out or removal is published so that live feeds on
    every instance close at once.
    """

    def __init__(self, redis: RedisClient, prefix: str, ttl: timedelta) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl = ttl

    def _key(self, token: str) -> str:
        digest = hashlib.sha256(token.encode()).hexdigest()
        return f"{self.prefix}notifier:session:{digest}"

    async def create(self, associate: Associate) -> tuple[str, Session]:
        token = secrets.token_urlsafe(32)
        session = Session(
            associate.store_id,
            associate.associate_id,
            secrets.token_urlsafe(32),
            sid=secrets.token_urlsafe(12),
            incarnation=associate.incarnation,
        )
        key = self._key(token)
        # One transaction, so a session can never be left behind without its expiry.
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(
            key,
            mapping={
                "store": session.store_id,
                "associate": session.associate_id,
                "csrf": session.csrf,
                "sid": session.sid,
                "incarnation": session.incarnation,
            },
        )
        pipe.expire(key, self.ttl)
        await pipe.execute()
        index = sessions_key(self.prefix, session.store_id, session.associate_id)
        # Listed after it exists: a removal that misses it still leaves a session whose
        # incarnation no longer fits, refused by every request.
        pipe = self.redis.pipeline(transaction=False)
        pipe.sadd(index, key)
        pipe.expire(index, self.ttl)
        await pipe.execute()
        return token, session

    async def get(self, token: str) -> Session | None:
        if not token or len(token) > 200:
            return None
        data = text_map(await self.redis.hgetall(self._key(token)))
        if not {"store", "associate", "csrf"} <= data.keys():
            return None
        return Session(
            data["store"],
            data["associate"],
            data["csrf"],
            sid=data.get("sid", ""),
            incarnation=data.get("incarnation", ""),
        )

    async def delete(self, token: str) -> None:
        """End a session and close its live feeds on every instance."""
        session = await self.get(token)
        key = self._key(token)
        await self.redis.delete(key)
        if session is None:
            return
        await self.redis.srem(
            sessions_key(self.prefix, session.store_id, session.associate_id), key
        )
        if session.sid:
            await self.redis.publish(
                revocations_channel(self.prefix, session.store_id),
                json.dumps({"type": "revoke", "sid": session.sid}),
            )


# --- live feed fan-out -------------------------------------------------------------
RESYNC: dict[str, Any] = {"type": "resync"}
CLOSE: dict[str, Any] = {"type": "close"}


class FeedHub:
    """One Redis pattern subscription per instance, fanned out to local SSE streams."""

    def __init__(self, redis: RedisClient, prefix: str, queue_size: int = 1000) -> None:
        self.redis = redis
        self.prefix = prefix
        self.queue_size = queue_size
        self._queues: dict[str, set[asyncio.Queue[dict[str, Any]]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    @property
    def clients(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def _store_of(self, channel: str) -> str | None:
        head = f"{self.prefix}notifier:store:"
        if not channel.startswith(head):
            return None
        for tail in (":feed", ":revoked"):
            if channel.endswith(tail):
                return channel[len(head) : -len(tail)]
        return None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._pump(), name="notifier-feed-hub")
        await self._ready.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _pump(self) -> None:
        feeds = f"{self.prefix}notifier:store:*:feed"
        revocations = revocations_channel(self.prefix, "*")
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.psubscribe(feeds, revocations)
                self._ready.set()
                async for message in pubsub.listen():
                    if message.get("type") == "pmessage":
                        self._dispatch(text(message["channel"]), text(message["data"]))
            except (RedisError, RedisClusterException, OSError) as exc:
                reraise_if_cancelled()
                log.error("feed subscription to Redis lost (%r); resubscribing in 1 s", exc)
                self.broadcast(RESYNC)
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(RedisError, RedisClusterException, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _dispatch(self, channel: str, data: str) -> None:
        store = self._store_of(channel)
        if store is None:
            return
        try:
            message = json.loads(data)
        except json.JSONDecodeError:
            log.error("bad message on %s: %.200s", channel, data)
            return
        for queue in self._queues.get(store, ()):
            _offer(queue, message)

    def broadcast(self, message: dict[str, Any]) -> None:
        for queues in self._queues.values():
            for queue in queues:
                _offer(queue, message)

    @contextlib.contextmanager
    def listen(self, store: str) -> Iterator[asyncio.Queue[dict[str, Any]]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self.queue_size)
        self._queues.setdefault(store, set()).add(queue)
        try:
            yield queue
        finally:
            queues = self._queues.get(store, set())
            queues.discard(queue)
            if not queues:
                self._queues.pop(store, None)


def _offer(queue: asyncio.Queue[dict[str, Any]], message: dict[str, Any]) -> None:
    """Queue a message; a console too slow to keep up is told to reload its snapshot."""
    try:
        queue.put_nowait(message)
    except asyncio.QueueFull:
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(RESYNC)


# --- errors ------------------------------------------------------------------------
class ApiError(Exception):
    """An HTTP error with a JSON body that says what is wrong."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": message, **extra}


def _describe(exc: ValidationError) -> tuple[str, str]:
    parts = []
    first = ""
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "(body)"
        first = first or where
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts), first


@web.middleware
async def _errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return web.json_response(exc.body, status=exc.status)
    except InvalidInput as exc:
        return web.json_response({"error": str(exc), "field": exc.field}, status=400)
    except (UnknownAlert, UnknownAssociate, UnknownDestination) as exc:
        return web.json_response({"error": str(exc)}, status=404)
    except TooManyDestinations as exc:
        return web.json_response({"error": str(exc)}, status=409)
    except SignInThrottled as exc:
        return web.json_response(
            {"error": str(exc), "retry_after_s": exc.retry_after_s},
            status=429,
            headers={"Retry-After": str(exc.retry_after_s)},
        )
    except UnknownScheme as exc:
        return web.json_response({"error": str(exc), "field": "url"}, status=400)
    except AlertConflict as exc:
        return web.json_response(
            {"error": str(exc), "state": exc.state, "claimed_by": exc.claimed_by}, status=409
        )
    except NotifierError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    except (RedisError, RedisClusterException) as exc:
        log.error("%s %s: storage unavailable: %r", request.method, request.path, exc)
        return web.json_response(
            {"error": "storage unavailable: try again shortly"},
            status=503,
            headers={"Retry-After": "1"},
        )
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        # aiohttp's own 404/405/413 come as plain text; the API answers JSON throughout.
        message = f"{exc.reason}: {request.method} {request.path}"
        if exc.status == 413:
            message = f"{exc.reason}: body larger than {request.app[MAX_BODY]} bytes"
        return web.json_response({"error": message}, status=exc.status)


MAX_BODY: web.AppKey[int] = web.AppKey("max_body", int)


# --- the console -------------------------------------------------------------------
class Console:
    """Handlers of the console and the API; one per notifier instance."""

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
    ) -> None:
        self.destinations = destinations or Destinations(redis, prefix, directory)
        self.vapid = vapid or VapidKeys(redis, prefix, settings.vapid_private_key)
        self.redis = redis
        self.prefix = prefix
        self.directory = directory
        self.lifecycle = lifecycle
        self.settings = settings
        self.metrics = metrics
        self.mqtt_connected = mqtt_connected
        self.clock = clock
        self.sessions = Sessions(redis, prefix, timedelta(seconds=settings.session_ttl_s))
        self.limits = SignInLimits(redis, prefix, settings)
        self.hub = FeedHub(redis, prefix)
        self.closing = asyncio.Event()
        metrics.gauge("proxima_notifier_sse_clients", lambda: float(self.hub.clients))

    def app(self, max_body: int = 64 * 1024) -> web.Application:
        app = web.Application(middlewares=[self._count, _errors], client_max_size=max_body)
        app[MAX_BODY] = max_body
        app.cleanup_ctx.append(self._hub_ctx)
        app.on_shutdown.append(self._on_shutdown)
        app.on_response_prepare.append(_security_headers)
        app.add_routes(
            [
                web.get("/", self.index),
                web.get("/static/console.js", self.script),
                web.get("/static/console.css", self.style),
                web.get("/healthz", self.healthz),
                web.get("/metrics", self.metrics_text),
                web.post("/api/session", self.login),
                web.delete("/api/session", self.logout),
                web.get("/api/me", self.me),
                web.get("/api/alerts", self.list_alerts),
                web.get("/api/alerts/{alert_id}", self.get_alert),
                web.post("/api/alerts/{alert_id}/{action}", self.act),
                web.get("/api/events", self.events),
                web.get("/api/shifts", self.shifts),
                web.post("/api/shifts/{associate_id}", self.set_shift),
                web.get("/api/summary", self.summary),
                web.get("/api/alerts/{alert_id}/receipts", self.receipts),
                web.get("/api/channels", self.list_channels),
                web.post("/api/channels/webhooks", self.add_webhook),
                web.post("/api/channels/push", self.add_push),
                web.delete("/api/channels/{destination_id}", self.remove_channel),
                web.get("/api/push/key", self.push_key),
                web.get("/api/openapi.json", self.openapi_doc),
                web.get("/api/routing", self.get_routing),
                web.put("/api/routing", self.set_routing),
                web.get("/manifest.webmanifest", self.manifest),
                web.get("/sw.js", self.service_worker),
                web.get("/static/icon.svg", self.icon),
            ]
        )
        return app

    async def _hub_ctx(self, _app: web.Application) -> AsyncIterator[None]:
        await self.hub.start()
        yield
        await self.hub.stop()

    async def _on_shutdown(self, _app: web.Application) -> None:
        # Live feeds never end on their own: tell them to, so shutdown need not wait.
        self.closing.set()
        self.hub.broadcast(CLOSE)

    @web.middleware
    async def _count(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
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
            self.metrics.inc("proxima_notifier_http_requests_total", code=f"{status // 100}xx")

    # helpers -------------------------------------------------------------------
    def _check_origin(self, request: web.Request) -> None:
        """Refuse a state change sent from another site (belt to the CSRF token's braces)."""
        origin = request.headers.get("Origin")
        if origin and urlsplit(origin).netloc != request.host:
            raise ApiError(403, f"cross-origin request from {origin} refused")

    async def _auth(self, request: web.Request) -> tuple[Session, Associate]:
        token = request.cookies.get(SESSION_COOKIE, "")
        if not token:
            raise ApiError(401, "not signed in")
        session = await self.sessions.get(token)
        if session is None:
            raise ApiError(401, "session expired or signed out: sign in again")
        associate = await self._associate_of(session)
        if associate is None:
            await self.sessions.delete(token)
            raise ApiError(401, "this account no longer exists")
        if request.method not in _SAFE_METHODS:
            self._check_origin(request)
            sent = request.headers.get(CSRF_HEADER, "")
            if not sent:
                raise ApiError(403, f"missing {CSRF_HEADER} header")
            if not hmac.compare_digest(sent.encode(), session.csrf.encode()):
                raise ApiError(403, f"wrong {CSRF_HEADER} header")
        return session, associate

    async def _associate_of(self, session: Session) -> Associate | None:
        """The session's associate, unless removed (or removed and re-created since)."""
        associate = await self.directory.get(session.store_id, session.associate_id)
        if associate is None or associate.incarnation != session.incarnation:
            return None
        return associate

    async def _still_signed_in(self, token: str) -> bool:
        session = await self.sessions.get(token)
        return session is not None and await self._associate_of(session) is not None

    async def _body(self, request: web.Request, model: type[B]) -> B:
        if request.content_type != "application/json":
            raise ApiError(
                415, f"Content-Type must be application/json, not {request.content_type}"
            )
        raw = await request.read()
        try:
            return model.model_validate_json(raw)
        except ValidationError as exc:
            message, field = _describe(exc)
            raise ApiError(400, message, field=field) from exc

    @staticmethod
    def _alert_id(request: web.Request) -> str:
        raw = request.match_info["alert_id"]
        try:
            return str(uuid.UUID(raw))
        except ValueError:
            raise ApiError(400, f"alert_id: {raw[:80]!r} is not a UUID", field="alert_id") from None

    # pages ---------------------------------------------------------------------
    async def index(self, _request: web.Request) -> web.Response:
        return web.Response(
            text=assets.INDEX_HTML, content_type="text/html", headers={"Cache-Control": "no-cache"}
        )

    async def script(self, _request: web.Request) -> web.Response:
        return web.Response(
            text=assets.CONSOLE_JS,
            content_type="text/javascript",
            headers={"Cache-Control": "no-cache"},
        )

    async def style(self, _request: web.Request) -> web.Response:
        return web.Response(
            text=assets.CONSOLE_CSS, content_type="text/css", headers={"Cache-Control": "no-cache"}
        )

    # operations ----------------------------------------------------------------
    async def healthz(self, _request: web.Request) -> web.Response:
        try:
            async with asyncio.timeout(1.0):
                redis_ok = bool(await self.redis.ping())
        except (RedisError, RedisClusterException, OSError, TimeoutError):
            redis_ok = False
        body = {
            "status": "ok" if redis_ok else "unavailable",
            "redis": redis_ok,
            "mqtt": self.mqtt_connected(),
        }
        return web.json_response(body, status=200 if redis_ok else 503)

    async def metrics_text(self, _request: web.Request) -> web.Response:
        return web.Response(
            text=self.metrics.render(),
            content_type="text/plain",
            charset="utf-8",
            headers={"Cache-Control": "no-store"},
        )

    # sessions ------------------------------------------------------------------
    async def login(self, request: web.Request) -> web.Response:
        self._check_origin(request)
        body = await self._body(request, LoginBody)
        try:
            attempt = await self.limits.admit(
                body.store, body.associate, request.remote or "unknown"
            )
        except SignInThrottled:
            self.metrics.inc("proxima_notifier_logins_total", result="throttled")
            raise
        associate = await self.directory.authenticate(body.store, body.associate, body.password)
        if associate is None:
            self.metrics.inc("proxima_notifier_logins_total", result="failed")
            # One message for a wrong store, name or password: no account probing.
            raise ApiError(401, "wrong store, associate or password")
        await self.limits.succeeded(attempt)
        token, session = await self.sessions.create(associate)
        self.metrics.inc("proxima_notifier_logins_total", result="ok")
        response = web.json_response({"associate": associate.public(), "csrf": session.csrf})
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=self.settings.session_ttl_s,
            httponly=True,
            samesite="Strict",
            secure=self.settings.cookie_secure,
            path="/",
        )
        return response

    async def logout(self, request: web.Request) -> web.Response:
        await self._auth(request)
        await self.sessions.delete(request.cookies.get(SESSION_COOKIE, ""))
        response = web.json_response({"signed_out": True})
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    async def me(self, request: web.Request) -> web.Response:
        session, associate = await self._auth(request)
        return web.json_response({"associate": associate.public(), "csrf": session.csrf})

    # alerts --------------------------------------------------------------------
    def _since(self, request: web.Request) -> datetime:
        raw = request.query.get("since")
        if raw is None:
            return self.clock() - timedelta(hours=12)
        try:
            since = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise ApiError(
                400, f"since: {raw[:60]!r} is not an ISO 8601 time", field="since"
            ) from None
        if since.tzinfo is None:
            raise ApiError(400, "since: give a timezone, e.g. 2026-01-01T10:00:00Z", field="since")
        return since.astimezone(UTC)

    async def _views(
        self, store: str, since: datetime, state: str | None = None
    ) -> list[dict[str, Any]]:
        records = await self.lifecycle.list_store(store, since)
        names = await self.lifecycle.names(store)
        return [r.view(names) for r in records if state is None or r.state.value == state]

    async def list_alerts(self, request: web.Request) -> web.Response:
        session, _ = await self._auth(request)
        state = request.query.get("state")
        if state is not None and state not in {s.value for s in AlertState}:
            allowed = ", ".join(s.value for s in AlertState)
            raise ApiError(400, f"state: {state[:40]!r} is not one of {allowed}", field="state")
        views = await self._views(session.store_id, self._since(request), state)
        return web.json_response({"alerts": views})

    async def get_alert(self, request: web.Request) -> web.Response:
        session, _ = await self._auth(request)
        record = await self.lifecycle.get_in_store(self._alert_id(request), session.store_id)
        names = await self.lifecycle.names(session.store_id)
        return web.json_response({"alert": record.view(names)})

    async def act(self, request: web.Request) -> web.Response:
        action = request.match_info["action"]
        if action not in ("claim", "done", "decline"):
            raise ApiError(404, f"no action {action[:40]!r}: use claim, done or decline")
        session, associate = await self._auth(request)
        alert_id = self._alert_id(request)
        if request.content_length:
            raise ApiError(400, f"{action} takes no body")
        try:
            if action == "claim":
                record = await self.lifecycle.claim(
                    alert_id, session.store_id, associate.associate_id
                )
            elif action == "done":
                record = await self.lifecycle.done(
                    alert_id, session.store_id, associate.associate_id
                )
            else:
                record, _ = await self.lifecycle.decline(
                    alert_id, session.store_id, associate.associate_id
                )
        except AlertConflict:
            self.metrics.inc("proxima_notifier_acks_total", source="console", result="conflict")
            raise
        self.metrics.inc("proxima_notifier_acks_total", source="console", result=action)
        names = await self.lifecycle.names(session.store_id)
        return web.json_response({"alert": record.view(names)})

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: a snapshot of the store's feed, then every change.

        The session is checked again every ``session_recheck_s`` however busy the store
        (a sign-out or removal elsewhere also closes the stream at once), so an expired
        session does not keep receiving customers' names.
        """
        session, _ = await self._auth(request)
        token = request.cookies.get(SESSION_COOKIE, "")
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        recheck_s = self.settings.session_recheck_s
        next_check = loop.time() + recheck_s
        next_keepalive = loop.time() + KEEPALIVE_S

        async def send(event: str, data: dict[str, Any]) -> None:
            nonlocal next_keepalive
            await response.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())
            next_keepalive = loop.time() + KEEPALIVE_S

        async def snapshot() -> None:
            since = self.clock() - timedelta(hours=12)
            await send("snapshot", {"alerts": await self._views(session.store_id, since)})

        # Listen before taking the snapshot, so no change falls between the two; the
        # console drops an update older (lower ``rev``) than what it already shows.
        with self.hub.listen(session.store_id) as queue:
            try:
                await snapshot()
                while not self.closing.is_set():
                    if loop.time() >= next_check:
                        if not await self._still_signed_in(token):
                            await send("signed-out", {})
                            break
                        next_check = loop.time() + recheck_s
                    if loop.time() >= next_keepalive:
                        await response.write(b": keepalive\n\n")
                        next_keepalive = loop.time() + KEEPALIVE_S
                    try:
                        async with asyncio.timeout_at(min(next_check, next_keepalive)):
                            message = await queue.get()
                    except TimeoutError:
                        continue
                    kind = message.get("type")
                    if kind == "close":
                        break
                    if kind == "revoke" and (
                        message.get("sid") == session.sid
                        or message.get("associate_id") == session.associate_id
                    ):
                        await send("signed-out", {})
                        break
                    if kind == "resync":
                        await snapshot()
                    elif kind == "alert":
                        await send("alert", message["alert"])
                    elif kind == "shift":
                        await send("shift", message["associate"])
                    elif kind == "notify" and message.get("associate_id") == session.associate_id:
                        # Only the associate the alert was routed to is rung.
                        await send("notify", message)
            except ConnectionResetError:
                log.debug("live feed of %s closed by the client", session.associate_id)
        return response

    # shifts and the manager view -------------------------------------------------
    async def shifts(self, request: web.Request) -> web.Response:
        session, _ = await self._auth(request)
        staff = await self.directory.staff(session.store_id)
        return web.json_response({"associates": [a.public() for a in staff]})

    async def set_shift(self, request: web.Request) -> web.Response:
        session, me = await self._auth(request)
        target = request.match_info["associate_id"]
        if target == "me":
            target = me.associate_id
        if target != me.associate_id and me.role != "manager":
            raise ApiError(403, "only a manager can change another associate's shift")
        body = await self._body(request, ShiftBody)
        updated = await self.directory.set_on_shift(session.store_id, target, body.on_shift)
        await self.redis.publish(
            self.lifecycle.channel(session.store_id),
            json.dumps({"type": "shift", "associate": updated.public()}),
        )
        return web.json_response({"associate": updated.public()})

    async def summary(self, request: web.Request) -> web.Response:
        session, me = await self._auth(request)
        if me.role != "manager":
            raise ApiError(403, "the summary is for managers")
        summary = await self.lifecycle.summary(session.store_id)
        return web.json_response({"summary": summary.as_dict()})

    # alerts' receipts ----------------------------------------------------------------
    async def receipts(self, request: web.Request) -> web.Response:
        session, _ = await self._auth(request)
        alert_id = self._alert_id(request)
        await self.lifecycle.get_in_store(alert_id, session.store_id)
        return web.json_response({"receipts": await self.lifecycle.receipts(alert_id)})

    # channels ------------------------------------------------------------------------
    async def list_channels(self, request: web.Request) -> web.Response:
        session, me = await self._auth(request)
        mine = await self.destinations.list(session.store_id, me.associate_id)
        body: dict[str, Any] = {
            "always": ["mqtt", "sse"],
            "mine": [d.public() for d in mine],
        }
        if me.role == "manager":
            store = await self.destinations.list(session.store_id)
            body["store"] = [d.public() for d in store]
        return web.json_response(body)

    async def add_webhook(self, request: web.Request) -> web.Response:
        session, me = await self._auth(request)
        # A webhook makes this server send requests where it is told: managers only.
        if me.role != "manager":
            raise ApiError(403, "only a manager can add a webhook")
        body = await self._body(request, WebhookBody)
        dest = await self.destinations.add_webhook(
            session.store_id,
            body.url,
            associate_id=None if body.scope == "store" else me.associate_id,
            secret=body.secret,
            key_id=body.key_id,
        )
        # The secret is shown once, here; listings never show it.
        return web.json_response({"destination": dest.public(), "secret": dest.secret}, status=201)

    async def add_push(self, request: web.Request) -> web.Response:
        session, me = await self._auth(request)
        body = await self._body(request, PushSubscriptionBody)
        dest = await self.destinations.add_push(
            session.store_id, me.associate_id, body.endpoint, body.keys.p256dh, body.keys.auth
        )
        return web.json_response({"destination": dest.public()}, status=201)

    async def remove_channel(self, request: web.Request) -> web.Response:
        session, me = await self._auth(request)
        scope = request.query.get("scope", "me")
        if scope not in ("me", "store"):
            raise ApiError(400, f"scope: {scope[:20]!r} is not one of me, store", field="scope")
        if scope == "store" and me.role != "manager":
            raise ApiError(403, "only a manager can remove a store webhook")
        destination_id = request.match_info["destination_id"]
        await self.destinations.remove(
            session.store_id, destination_id, None if scope == "store" else me.associate_id
        )
        return web.json_response({"removed": destination_id})

    async def push_key(self, request: web.Request) -> web.Response:
        await self._auth(request)
        return web.json_response({"public_key": await self.vapid.public_key()})

    # the store's routing -----------------------------------------------------------------
    async def get_routing(self, request: web.Request) -> web.Response:
        session, _ = await self._auth(request)
        routing = await self.lifecycle.routing.get(session.store_id)
        return web.json_response({"routing": routing.as_dict()})

    async def set_routing(self, request: web.Request) -> web.Response:
        session, me = await self._auth(request)
        if me.role != "manager":
            raise ApiError(403, "only a manager can change the store's routing")
        body = await self._body(request, RoutingBody)
        routing = await self.lifecycle.routing.set(
            session.store_id,
            escalate_after_s=body.escalate_after_s,
            manager_after_s=body.manager_after_s,
            expire_after_s=body.expire_after_s,
            tiers=body.tiers,
        )
        return web.json_response({"routing": routing.as_dict()})

    # description and the PWA ------------------------------------------------------------
    async def openapi_doc(self, _request: web.Request) -> web.Response:
        return web.json_response(openapi.document(), headers={"Cache-Control": "no-cache"})

    async def manifest(self, _request: web.Request) -> web.Response:
        return web.Response(
            text=assets.MANIFEST,
            content_type="application/manifest+json",
            headers={"Cache-Control": "no-cache"},
        )

    async def service_worker(self, _request: web.Request) -> web.Response:
        return web.Response(
            text=assets.SERVICE_WORKER,
            content_type="text/javascript",
            headers={"Cache-Control": "no-cache", "Service-Worker-Allowed": "/"},
        )

    async def icon(self, _request: web.Request) -> web.Response:
        return web.Response(
            text=assets.ICON_SVG,
            content_type="image/svg+xml",
            headers={"Cache-Control": "no-cache"},
        )


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
