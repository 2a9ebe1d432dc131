"""Delivery channels: one small interface, one backend per URL scheme.

Like Faust's store registry, a destination's URL scheme picks the backend:

=================  ==============================================================
``mqtt:``          the associate's contract topic (handhelds); the store's topic
                   when the notice is for the whole store (an ``AlertView``)
``sse:``           the web console's live feed (server-sent events via Redis)
``https://``       a webhook, signed with HMAC-SHA256 and retried with backoff
                   (``http://`` ones, stored before https was required, are refused)
``webpush:URL``    a Web Push subscription (VAPID, aes128gcm), for the console
                   installed as a PWA; ``URL`` is the push service's endpoint
=================  ==============================================================

Webhooks and pushes connect only to public addresses (``notifier.egress``), keep only the
status of a response (at most ``MAX_RESPONSE_READ`` bytes of it are read), and their
receipts name only the destination's host: a path often holds a token (Slack, push).

Every send returns a :class:`Receipt`; the dispatcher records receipts in the alert's
lifecycle. MQTT and the console run inline with the Kafka loop (their failure means
"do not commit"); webhooks and pushes, which can be slow, go through a Redis outbox.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import random
import uuid
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

import aiohttp
import http_ece
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02

from contracts.models import Alert
from contracts.topics import Topics
from notifier.directory import Clock, utc_now
from notifier.egress import BlockedAddress
from notifier.exceptions import UnknownScheme
from transport.mqtt import MqttClient
from transport.redis import RedisClient
from transport.redis import as_text as text
from transport.retry import backoff_delay

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Proxima-Signature"
TIMESTAMP_HEADER = "X-Proxima-Timestamp"
KEY_ID_HEADER = "X-Proxima-Key-Id"
DELIVERY_HEADER = "X-Proxima-Delivery"
Sleep = Callable[[float], Awaitable[None]]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


# --- value objects -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Destination:
    """Where a notice goes; the URL's scheme picks the channel."""

    url: str
    id: str = ""
    secret: str = field(default="", repr=False)  # webhook HMAC key
    key_id: str = ""  # names the webhook key, so receivers can rotate
    p256dh: str = ""  # push subscription's public key (base64url, uncompressed P-256)
    auth: str = field(default="", repr=False)  # push subscription's auth secret

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme.lower()

    @property
    def endpoint(self) -> str:
        """The push service URL of a ``webpush:`` destination."""
        return self.url.split(":", 1)[1] if self.scheme == "webpush" else self.url

    @property
    def host(self) -> str:
        """The host alone: what receipts and logs show of a destination."""
        return urlsplit(self.endpoint).hostname or "?"

    def redacted(self) -> str:
        """Scheme, host and path only: never a token hidden in a query string."""
        parts = urlsplit(self.endpoint)
        if not parts.netloc:
            return self.url
        kind = "webpush:" if self.scheme == "webpush" else ""
        path = parts.path if len(parts.path) <= 40 else parts.path[:37] + "..."
        return (
            f"{kind}{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}{path}"
        )

    def as_json(self) -> str:
        return json.dumps(
            {
                "url": self.url,
                "id": self.id,
                "secret": self.secret,
                "key_id": self.key_id,
                "p256dh": self.p256dh,
                "auth": self.auth,
            }
        )

    @classmethod
    def from_json(cls, raw: str) -> Destination:
        data = json.loads(raw)
        names = {f.name for f in fields(cls)}
        return cls(**{k: str(v) for k, v in data.items() if k in names})

    def public(self) -> dict[str, Any]:
        """What an API or CLI listing may show: no secret."""
        return {
            "id": self.id,
            "channel": CHANNEL_OF_SCHEME.get(self.scheme, self.scheme),
            "url": self.redacted(),
            "key_id": self.key_id or None,
        }


@dataclass(frozen=True, slots=True)
class Notice:
    """One alert for one associate (or, with no associate, for the whole store)."""

    alert: Alert
    associate_id: str | None
    tier: str
    reason: str = "delivered"  # or "escalated"
    delivery_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    room: dict[str, Any] | None = None
    """The fitting room held for the alert's customer as it is at sending ("Room 2 ready")."""

    def webhook_body(self) -> bytes:
        return json.dumps(
            {
                "type": f"alert.{self.reason}",
                "delivery_id": self.delivery_id,
                "store_id": self.alert.store_id,
                "associate_id": self.associate_id,
                "tier": self.tier,
                # The associates' view: no customer, visit or event ids (DESIGN.md).
                "alert": self.alert.view().model_dump(mode="json", by_alias=True),
                "room": self.room,
            },
            separators=(",", ":"),
        ).encode()

    def push_body(self) -> bytes:
        """A push carries only what a lock screen shows; the console fetches the rest."""
        return json.dumps(
            {
                "alert_id": str(self.alert.alert_id),
                "store_id": self.alert.store_id,
                "title": self.alert.title,
                "body": self.alert.body,
                "priority": self.alert.priority.value,
                "url": "/",
            },
            separators=(",", ":"),
        ).encode()


@dataclass(frozen=True, slots=True)
class Receipt:
    """The outcome of one send, kept with the alert's lifecycle."""

    channel: str
    destination: str
    associate_id: str | None
    ok: bool
    attempts: int
    at: datetime
    status: int | None = None
    detail: str = ""
    gone: bool = False  # the destination no longer exists (a push subscription ended)

    def as_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "destination": self.destination,
            "associate_id": self.associate_id,
            "ok": self.ok,
            "attempts": self.attempts,
            "at": self.at.isoformat(),
            "status": self.status,
            "detail": self.detail,
        }


# --- the interface -------------------------------------------------------------------
class Channel(ABC):
    """A way to reach people; one instance per notifier, shared by every send."""

    name: ClassVar[str]
    schemes: ClassVar[tuple[str, ...]]
    inline: ClassVar[bool] = False  # sent in the Kafka loop (True) or via the outbox

    @abstractmethod
    async def send(self, destination: Destination, notice: Notice) -> Receipt:
        """Deliver one notice; raise only for what must stop the caller (a lost broker)."""


CHANNEL_OF_SCHEME = {
    "mqtt": "mqtt",
    "sse": "sse",
    "http": "webhook",
    "https": "webhook",
    "webpush": "webpush",
}


class Channels:
    """The registry: a destination's URL scheme → its channel."""

    def __init__(self, *channels: Channel) -> None:
        self._by_scheme: dict[str, Channel] = {}
        for channel in channels:
            self.register(channel)

    def register(self, channel: Channel) -> None:
        for scheme in channel.schemes:
            self._by_scheme[scheme] = channel

    @property
    def schemes(self) -> tuple[str, ...]:
        return tuple(sorted(self._by_scheme))

    def for_url(self, url: str) -> Channel:
        scheme = urlsplit(url).scheme.lower()
        channel = self._by_scheme.get(scheme)
        if channel is None:
            raise UnknownScheme(url, scheme, self.schemes)
        return channel


# --- MQTT and the console --------------------------------------------------------------
MQTT = Destination("mqtt:")
CONSOLE = Destination("sse:")


class MqttChannel(Channel):
    """The contract topics: the associate's own, or the store's for a store notice."""

    name = "mqtt"
    schemes = ("mqtt", "mqtts")
    inline = True

    def __init__(self, mqtt: MqttClient, topics: Topics, clock: Clock = utc_now) -> None:
        self.mqtt = mqtt
        self.topics = topics
        self.clock = clock

    async def send(self, destination: Destination, notice: Notice) -> Receipt:
        store = notice.alert.store_id
        topic = (
            self.topics.associate_alerts(store, notice.associate_id)
            if notice.associate_id
            else self.topics.store_alerts(store)
        )
        # Raises when the broker is gone: the Kafka offset must then not be committed.
        await self.mqtt.publish(topic, notice.alert.view().to_json(), qos=1)
        return Receipt("mqtt", topic, notice.associate_id, True, 1, self.clock(), detail="puback")


class ConsoleChannel(Channel):
    """Tells the notified associate's console sessions to ring (sound and vibration).

    The alert itself reaches every console of the store through the lifecycle's feed;
    this adds a ``notify`` message naming who should be woken.
    """

    name = "sse"
    schemes = ("sse",)
    inline = True

    def __init__(
        self, redis: RedisClient, channel_of: Callable[[str], str], clock: Clock = utc_now
    ) -> None:
        self.redis = redis
        self.channel_of = channel_of
        self.clock = clock

    async def send(self, destination: Destination, notice: Notice) -> Receipt:
        message = {
            "type": "notify",
            "alert_id": str(notice.alert.alert_id),
            "associate_id": notice.associate_id,
            "tier": notice.tier,
        }
        listeners = await self.redis.publish(
            self.channel_of(notice.alert.store_id), json.dumps(message)
        )
        return Receipt(
            "sse",
            "console",
            notice.associate_id,
            True,
            1,
            self.clock(),
            detail=f"{int(listeners)} notifier instance(s) listening",
        )


# --- HTTP channels: retries with capped, jittered backoff -------------------------------
@dataclass(frozen=True, slots=True)
class Backoff:
    """Full-jitter exponential backoff (AWS architecture blog), capped, a bounded number of tries."""

    attempts: int = 5
    base_s: float = 0.5
    cap_s: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.base_s <= 0 or self.cap_s < self.base_s:
            raise ValueError("need attempts >= 1 and 0 < base_s <= cap_s")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """The pause after failed attempt number ``attempt`` (1-based): the one full-jitter
        formula of transport.retry."""
        return backoff_delay(attempt - 1, self.base_s, self.cap_s, rng.random)

    @property
    def worst_case_s(self) -> float:
        return float(sum(min(self.cap_s, self.base_s * 2.0**i) for i in range(self.attempts - 1)))


RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})
# Enough to finish a small reply (so the connection is reused); a larger one is dropped.
MAX_RESPONSE_READ = 1024


class _HttpChannel(Channel):
    """POSTs with retries; subclasses build the request."""

    def __init__(
        self,
        session: Callable[[], aiohttp.ClientSession],
        *,
        backoff: Backoff = Backoff(),
        timeout_s: float = 10.0,
        clock: Clock = utc_now,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.session = session
        self.backoff = backoff
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.clock = clock
        self.sleep = sleep
        self.rng = rng or random.Random()

    @abstractmethod
    async def request(
        self, destination: Destination, notice: Notice
    ) -> tuple[str, bytes, dict[str, str]]:
        """The URL, body and headers of one attempt (rebuilt per attempt: fresh signatures)."""

    async def send(self, destination: Destination, notice: Notice) -> Receipt:
        return await self.post(
            destination, lambda: self.request(destination, notice), notice.associate_id
        )

    async def post(
        self,
        destination: Destination,
        build: Callable[[], Awaitable[tuple[str, bytes, dict[str, str]]]],
        associate_id: str | None = None,
    ) -> Receipt:
        """POST what ``build`` makes (called again for each attempt), with the retries."""
        status: int | None = None
        detail = ""
        if urlsplit(destination.endpoint).scheme.lower() != "https":
            # Stored before https was required: never sent in the clear, never retried.
            return self._receipt(destination, associate_id, False, 0, None, "refused: not https://")
        for attempt in range(1, self.backoff.attempts + 1):
            url, body, headers = await build()
            retry_after: float | None = None
            try:
                async with self.session().post(
                    url, data=body, headers=headers, timeout=self.timeout, allow_redirects=False
                ) as res:
                    status = res.status
                    # Only the status is kept: a body can hold what an internal service
                    # said, and only a bounded prefix is ever read into memory.
                    await res.content.read(MAX_RESPONSE_READ)
                    if not res.content.at_eof():
                        res.close()
                    detail = f"HTTP {status}"
                    if 200 <= status < 300:
                        return self._receipt(destination, associate_id, True, attempt, status, "")
                    if status in (404, 410) and destination.scheme == "webpush":
                        return Receipt(
                            self.name,
                            destination.host,
                            associate_id,
                            False,
                            attempt,
                            self.clock(),
                            status,
                            "subscription gone",
                            gone=True,
                        )
                    if status not in RETRYABLE:
                        return self._receipt(
                            destination, associate_id, False, attempt, status, detail
                        )
                    retry_after = _retry_after(res.headers.get("Retry-After"))
            except aiohttp.ClientConnectorError as exc:
                status, detail = None, _error_detail(exc, destination)
                if isinstance(exc.os_error, BlockedAddress):
                    log.warning("%s to %s: %s", self.name, destination.host, exc.os_error)
                    return self._receipt(destination, associate_id, False, attempt, None, detail)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                status, detail = None, _error_detail(exc, destination)
            if attempt < self.backoff.attempts:
                pause = self.backoff.delay(attempt, self.rng)
                if retry_after is not None:
                    pause = min(self.backoff.cap_s, max(pause, retry_after))
                log.info(
                    "%s to %s failed (%s); attempt %d in %.2f s",
                    self.name,
                    destination.host,
                    detail,
                    attempt + 1,
                    pause,
                )
                await self.sleep(pause)
        return self._receipt(
            destination, associate_id, False, self.backoff.attempts, status, detail
        )

    def _receipt(
        self,
        destination: Destination,
        associate_id: str | None,
        ok: bool,
        attempts: int,
        status: int | None,
        detail: str,
    ) -> Receipt:
        return Receipt(
            self.name, destination.host, associate_id, ok, attempts, self.clock(), status, detail
        )


def _error_detail(exc: BaseException, destination: Destination) -> str:
    """The error's type and text, with the destination's URL (its token) cut out."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        text_ = f"cannot connect to {destination.host}: {exc.os_error}"
    else:
        text_ = str(exc)
        parts = urlsplit(destination.endpoint)
        for secret in (destination.endpoint, parts.path, parts.query):
            if len(secret) > 1:
                text_ = text_.replace(secret, "…")
    return f"{type(exc).__name__}: {text_}"[:200]


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: the backoff decides


def sign_webhook(secret: str, timestamp: int, body: bytes) -> str:
    """``v1=`` + hex HMAC-SHA256 over ``{timestamp}.{body}`` (Stripe's scheme)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"v1={mac.hexdigest()}"


def verify_webhook(
    secret: str, headers: dict[str, str], body: bytes, now: float, tolerance_s: float = 300
) -> bool:
    """What a receiver does: a fresh timestamp and a matching signature."""
    try:
        timestamp = int(headers[TIMESTAMP_HEADER])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = sign_webhook(secret, timestamp, body)
    return hmac.compare_digest(expected, headers.get(SIGNATURE_HEADER, ""))


class WebhookChannel(_HttpChannel):
    """Signed JSON POSTs for clienteling apps, Slack or Teams relays.

    Headers: ``X-Proxima-Timestamp`` (Unix seconds), ``X-Proxima-Signature``
    (``v1=`` HMAC-SHA256 of ``timestamp.body`` under the destination's secret),
    ``X-Proxima-Key-Id`` (which secret), ``X-Proxima-Delivery`` (the same on every retry,
    so a receiver can drop duplicates).
    """

    name = "webhook"
    schemes = ("http", "https")

    async def request(
        self, destination: Destination, notice: Notice
    ) -> tuple[str, bytes, dict[str, str]]:
        return self.signed(destination, notice.webhook_body(), notice.delivery_id)

    def signed(
        self, destination: Destination, body: bytes, delivery_id: str
    ) -> tuple[str, bytes, dict[str, str]]:
        """One attempt's URL, body and headers, signed now."""
        timestamp = int(self.clock().timestamp())
        return (
            destination.url,
            body,
            {
                "Content-Type": "application/json",
                "User-Agent": "proxima-notifier",
                TIMESTAMP_HEADER: str(timestamp),
                SIGNATURE_HEADER: sign_webhook(destination.secret, timestamp, body),
                KEY_ID_HEADER: destination.key_id,
                DELIVERY_HEADER: delivery_id,
            },
        )

    async def send_body(self, destination: Destination, body: bytes, delivery_id: str) -> Receipt:
        """POST a JSON body that is not an alert's (the customer messages of
        :mod:`notifier.messaging`), signed and retried as every webhook."""

        async def build() -> tuple[str, bytes, dict[str, str]]:
            return self.signed(destination, body, delivery_id)

        return await self.post(destination, build)


# --- Web Push ----------------------------------------------------------------------------
class VapidKeys:
    """The notifier's VAPID key pair, shared by every instance through Redis.

    A key from the settings wins; otherwise the first instance creates one (SET NX), so
    subscriptions made through any instance stay valid on all of them.
    """

    def __init__(self, redis: RedisClient, prefix: str, configured: str = "") -> None:
        self.redis = redis
        self.key = f"{prefix}notifier:vapid-private-key"
        self.configured = configured
        self._vapid: Vapid02 | None = None

    async def vapid(self) -> Vapid02:
        if self._vapid is None:
            raw = self.configured
            if not raw:
                fresh = ec.generate_private_key(ec.SECP256R1())
                candidate = b64url(fresh.private_numbers().private_value.to_bytes(32, "big"))
                await self.redis.set(self.key, candidate, nx=True)
                raw = text(await self.redis.get(self.key))
            self._vapid = Vapid02.from_raw(raw.encode())
        return self._vapid

    async def public_key(self) -> str:
        """The ``applicationServerKey`` a browser subscribes with."""
        vapid = await self.vapid()
        point = vapid.public_key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return b64url(point)


class WebPushChannel(_HttpChannel):
    """RFC 8030 push with RFC 8291 (aes128gcm) encryption and RFC 8292 (VAPID) auth."""

    name = "webpush"
    schemes = ("webpush",)

    def __init__(
        self,
        session: Callable[[], aiohttp.ClientSession],
        keys: VapidKeys,
        subject: str,
        *,
        ttl_s: int = 300,
        **kwargs: Any,
    ) -> None:
        super().__init__(session, **kwargs)
        self.keys = keys
        self.subject = subject
        self.ttl_s = ttl_s

    async def request(
        self, destination: Destination, notice: Notice
    ) -> tuple[str, bytes, dict[str, str]]:
        endpoint = destination.endpoint
        parts = urlsplit(endpoint)
        vapid = await self.keys.vapid()
        claims = {
            "aud": f"{parts.scheme}://{parts.netloc}",
            "sub": self.subject,
            "exp": int(self.clock().timestamp() + 12 * 3600),
        }
        server_key = ec.generate_private_key(ec.SECP256R1())
        body = http_ece.encrypt(
            notice.push_body(),
            salt=None,
            private_key=server_key,
            dh=unb64url(destination.p256dh),
            auth_secret=unb64url(destination.auth),
            version="aes128gcm",
        )
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Encoding": "aes128gcm",
            "TTL": str(self.ttl_s),
            "Urgency": "high" if notice.alert.priority.value in ("high", "urgent") else "normal",
            "Authorization": vapid.sign(claims)["Authorization"],
        }
        return endpoint, bytes(body), headers
