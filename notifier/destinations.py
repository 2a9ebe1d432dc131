"""Per-associate and per-store delivery destinations (webhooks, push subscriptions) in Redis.

``{prefix}notifier:store:{store}:destinations:store``            hash id → Destination JSON
``{prefix}notifier:store:{store}:destinations:associate:{id}``   hash id → Destination JSON

Every associate is always reachable on MQTT and the console; these are the extra
destinations (https only; the directory deletes an associate's when removing them). Store destinations (a Slack relay, a clienteling app's endpoint) get every
new alert of the store once; an associate's get the alerts routed to them.
"""

from __future__ import annotations

import hashlib
import secrets
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ec

from notifier.channels import Destination, unb64url
from notifier.directory import Directory, check_id, destinations_key
from notifier.exceptions import (
    InvalidInput,
    TooManyDestinations,
    UnknownAssociate,
    UnknownDestination,
)
from transport.redis import RedisClient, text_map
from transport.redis import as_text as text

MAX_URL = 2048
MIN_SECRET = 16
MAX_PER_OWNER = 10


def check_https_url(field: str, url: str) -> str:
    """An absolute https URL with a host and no credentials.

    Plain http is refused (it would carry alerts and signatures in the clear); which
    addresses the URL may reach is checked when connecting (``notifier.egress``).
    """
    if len(url) > MAX_URL:
        raise InvalidInput(field, f"longer than {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError as exc:
        raise InvalidInput(field, f"{url[:80]!r} is not a valid URL: {exc}") from exc
    if parts.scheme == "http":
        raise InvalidInput(field, f"{url[:80]!r} must use https:// (plain http is refused)")
    if parts.scheme != "https":
        raise InvalidInput(field, f"{url[:80]!r} must start with https://")
    if not parts.hostname:
        raise InvalidInput(field, f"{url[:80]!r} has no host")
    if parts.username or parts.password:
        raise InvalidInput(field, "must not carry a user name or password; the HMAC secret signs")
    return url


def check_push_keys(p256dh: str, auth: str) -> None:
    try:
        point = unb64url(p256dh)
    except ValueError as exc:
        raise InvalidInput("keys.p256dh", "is not base64url") from exc
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError as exc:
        raise InvalidInput("keys.p256dh", "is not an uncompressed P-256 public key") from exc
    try:
        secret = unb64url(auth)
    except ValueError as exc:
        raise InvalidInput("keys.auth", "is not base64url") from exc
    if len(secret) != 16:
        raise InvalidInput("keys.auth", f"must be 16 bytes, got {len(secret)}")


class Destinations:
    """Webhooks and push subscriptions of stores and associates."""

    def __init__(self, redis: RedisClient, prefix: str, directory: Directory) -> None:
        self.redis = redis
        self.prefix = prefix
        self.directory = directory

    def _key(self, store: str, associate_id: str | None) -> str:
        return destinations_key(self.prefix, store, associate_id)

    @staticmethod
    def _owner(store: str, associate_id: str | None) -> str:
        return (
            f"associate {associate_id!r} of store {store!r}" if associate_id else f"store {store!r}"
        )

    async def _check_owner(self, store: str, associate_id: str | None) -> None:
        check_id("store", store)
        if associate_id is not None:
            check_id("associate", associate_id)
            if await self.directory.get(store, associate_id) is None:
                raise UnknownAssociate(store, associate_id)

    async def _put(self, store: str, associate_id: str | None, dest: Destination) -> Destination:
        key = self._key(store, associate_id)
        existing = [Destination.from_json(text(v)) for v in (await self.redis.hvals(key))]
        same_kind = [
            d
            for d in existing
            if d.scheme == dest.scheme or {d.scheme, dest.scheme} <= {"http", "https"}
        ]
        if dest.id not in {d.id for d in existing} and len(same_kind) >= MAX_PER_OWNER:
            raise TooManyDestinations(self._owner(store, associate_id), MAX_PER_OWNER)
        await self.redis.hset(key, dest.id, dest.as_json())
        return dest

    async def add_webhook(
        self,
        store: str,
        url: str,
        *,
        associate_id: str | None = None,
        secret: str | None = None,
        key_id: str | None = None,
    ) -> Destination:
        """Add a webhook; without a secret one is generated (shown once by the caller)."""
        await self._check_owner(store, associate_id)
        check_https_url("url", url)
        if secret is not None and len(secret) < MIN_SECRET:
            raise InvalidInput("secret", f"must be at least {MIN_SECRET} characters")
        if key_id is not None:
            check_id("key_id", key_id)
        dest = Destination(
            url=url,
            id="wh-" + secrets.token_hex(6),
            secret=secret or secrets.token_urlsafe(32),
            key_id=key_id or "k1",
        )
        return await self._put(store, associate_id, dest)

    async def add_push(
        self, store: str, associate_id: str, endpoint: str, p256dh: str, auth: str
    ) -> Destination:
        """Add (or refresh) a push subscription; the same endpoint keeps its id."""
        await self._check_owner(store, associate_id)
        check_https_url("endpoint", endpoint)
        check_push_keys(p256dh, auth)
        dest = Destination(
            url=f"webpush:{endpoint}",
            id="wp-" + hashlib.sha256(endpoint.encode()).hexdigest()[:12],
            p256dh=p256dh,
            auth=auth,
        )
        return await self._put(store, associate_id, dest)

    async def remove(
        self, store: str, destination_id: str, associate_id: str | None = None
    ) -> None:
        await self._check_owner(store, associate_id)
        if not await self.redis.hdel(self._key(store, associate_id), destination_id):
            raise UnknownDestination(self._owner(store, associate_id), destination_id)

    async def list(self, store: str, associate_id: str | None = None) -> list[Destination]:
        check_id("store", store)
        if associate_id is not None:
            check_id("associate", associate_id)
        data = text_map(await self.redis.hgetall(self._key(store, associate_id)))
        return sorted((Destination.from_json(v) for v in data.values()), key=lambda d: d.id)
