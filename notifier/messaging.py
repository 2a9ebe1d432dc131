"""Telling the customer: "Your fitting room (Room 2) is ready. Maria will meet you."

Issue 14, optional per store. A store may set one **messaging webhook**: the retailer's
own messaging system (its app, SMS or chat provider), which knows how to reach its
customer. When a fitting room held for a customer becomes ready, and the customer granted
``room_messages`` for that store (the store's decision wins over the global one; none
means no: :mod:`notifier.purposes`), one signed JSON POST goes there::

    {"type": "room_ready", "delivery_id": "…", "store_id": "lisbon-chiado",
     "customer_id": "ana", "room_id": "2", "room": "Room 2", "associate": "Maria Silva",
     "message": "Your fitting room (Room 2) is ready. Maria Silva will meet you.",
     "at": "2026-03-14T15:58:02+00:00"}

``customer_id`` is the retailer's own id for her: its system needs to know whom to
message, and it is the one party that already knows her. The request is signed like every
webhook (``X-Proxima-Timestamp``, ``X-Proxima-Signature``, ``X-Proxima-Key-Id``,
``X-Proxima-Delivery``: :class:`notifier.channels.WebhookChannel`), goes only to public
addresses (or the networks an operator allows, :mod:`notifier.egress`), over https only,
and is retried with backoff; a notifier that dies mid-retry leaves it to another one (a
Redis outbox, :class:`notifier.outbox.Outbox`, drained by :class:`RoomMessenger`).

**Once per hold.** A hold is a room held for a customer at one moment (the room and its
``held_at``); the first time it becomes ready the message is queued, and never again for
that hold. The room's state machine lets a ready room only go into use or be released, so
"ready, prepare, ready again" cannot happen; a room released and held again is a new hold
and tells her again (it may be another room). Consent is checked when the message is
queued and again just before it is sent, so a revocation or a forget in between wins.

Nothing here names the customer except the outbox entry waiting to be sent (a forget
deletes it): the receipts an operator sees say the room, the result and when.

Keys (a store's share the hash tag ``{messaging:STORE}``)::

    {prefix}notifier:{messaging:S}:hook                   hash: url, secret, key_id, message, set_at
    {prefix}notifier:{messaging:S}:receipts               list of JSON, newest first (RECEIPTS_KEPT)
    {prefix}notifier:{messaging:S}:told:{room}:{held ms}  the hold already told (kept TOLD_TTL_S)
    {prefix}notifier:outbox:room-messages                 stream: messages waiting to be sent
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import string
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from notifier.channels import Destination, Receipt, WebhookChannel
from notifier.destinations import MIN_SECRET, check_https_url
from notifier.directory import Clock, check_id, from_ms, to_ms, utc_now
from notifier.exceptions import InvalidInput, NoMessagingHook, NotifierError
from notifier.metrics import Metrics
from notifier.outbox import Entry, Outbox
from notifier.purposes import ROOM_MESSAGES, Purposes
from notifier.rooms import Room, RoomState
from transport.cancel import reraise_if_cancelled
from transport.redis import RedisClient, text_map
from transport.redis import as_text as text

log = logging.getLogger(__name__)

DEFAULT_MESSAGE = "Your fitting room ({room}) is ready. {associate} will meet you."
PLACEHOLDERS = ("room", "associate")
MAX_MESSAGE = 320
RECEIPTS_KEPT = 50
TOLD_TTL_S = 2 * 24 * 3600
"""How long a hold is remembered as told (a hold lasts a visit: hours, not days)."""
METRIC = "proxima_notifier_room_messages_total"


def outbox_key(prefix: str) -> str:
    return f"{prefix}notifier:outbox:room-messages"


def check_message(template: str) -> str:
    """A message template: 1-320 characters, ``{room}`` and ``{associate}`` its only places
    (no format specs or conversions: what the receiver gets is plain text)."""
    template = template.strip()
    if not template or len(template) > MAX_MESSAGE:
        raise InvalidInput("message", f"must be 1-{MAX_MESSAGE} characters")
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise InvalidInput("message", f"{exc}; write a literal brace as {{{{ or }}}}") from None
    for _literal, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in PLACEHOLDERS or spec or conversion:
            raise InvalidInput(
                "message",
                f"{{{name}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}}"
                " is not a place the message can fill: use {room} and {associate} (a literal"
                " brace is {{ or }})",
            )
    return template


def render(template: str, room: str, associate: str) -> str:
    return template.format(room=room, associate=associate)


@dataclass(frozen=True, slots=True)
class MessagingHook:
    """A store's messaging webhook."""

    store_id: str
    url: str
    secret: str
    key_id: str
    message: str
    set_at: datetime | None = None

    @property
    def destination(self) -> Destination:
        return Destination(self.url, id="messaging", secret=self.secret, key_id=self.key_id)

    def public(self) -> dict[str, Any]:
        """What a listing shows: no secret, the URL without its query."""
        return {
            "url": self.destination.redacted(),
            "key_id": self.key_id,
            "message": self.message,
            "set_at": self.set_at.isoformat() if self.set_at else None,
        }


class Messaging:
    """Each store's messaging webhook, the decision to tell a customer, and the receipts."""

    def __init__(
        self, redis: RedisClient, prefix: str, purposes: Purposes, *, clock: Clock = utc_now
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.purposes = purposes
        self.clock = clock
        # Writing only: the notifier's RoomMessenger reads it in its own consumer group.
        self.outbox = Outbox(redis, outbox_key(prefix), group="room-messages", consumer="queue")

    # keys ------------------------------------------------------------------------
    def _base(self, store: str) -> str:
        return f"{self.prefix}notifier:{{messaging:{store}}}"

    def _hook(self, store: str) -> str:
        return f"{self._base(store)}:hook"

    def _receipts(self, store: str) -> str:
        return f"{self._base(store)}:receipts"

    def _told(self, store: str, room: Room) -> str:
        held = to_ms(room.held_at) if room.held_at else 0
        return f"{self._base(store)}:told:{room.room_id}:{held}"

    # the webhook -----------------------------------------------------------------
    async def set(
        self,
        store: str,
        url: str,
        *,
        secret: str | None = None,
        key_id: str | None = None,
        message: str | None = None,
    ) -> MessagingHook:
        """Set (or replace) the store's messaging webhook; without a secret one is made
        (the caller shows it once). Replacing keeps the message unless one is given."""
        check_id("store", store)
        check_https_url("url", url)
        if secret is not None and len(secret) < MIN_SECRET:
            raise InvalidInput("secret", f"must be at least {MIN_SECRET} characters")
        if key_id is not None:
            check_id("key_id", key_id)
        if message is not None:
            message = check_message(message)
        before = await self.get(store)
        now = from_ms(str(to_ms(self.clock())))  # as it is stored
        hook = MessagingHook(
            store_id=store,
            url=url,
            secret=secret or secrets.token_urlsafe(32),
            key_id=key_id or "k1",
            message=message or (before.message if before else DEFAULT_MESSAGE),
            set_at=now,
        )
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._hook(store))
            pipe.hset(
                self._hook(store),
                mapping={
                    "url": hook.url,
                    "secret": hook.secret,
                    "key_id": hook.key_id,
                    "message": hook.message,
                    "set_at": str(to_ms(now or self.clock())),
                },
            )
            await pipe.execute()
        return hook

    async def get(self, store: str) -> MessagingHook | None:
        check_id("store", store)
        data = text_map(await self.redis.hgetall(self._hook(store)))
        if not data.get("url"):
            return None
        return MessagingHook(
            store_id=store,
            url=data["url"],
            secret=data.get("secret", ""),
            key_id=data.get("key_id") or "k1",
            message=data.get("message") or DEFAULT_MESSAGE,
            set_at=from_ms(data.get("set_at")),
        )

    async def remove(self, store: str) -> None:
        check_id("store", store)
        if not await self.redis.delete(self._hook(store)):
            raise NoMessagingHook(store)

    # receipts --------------------------------------------------------------------
    async def record(
        self,
        store: str,
        room: str,
        result: str,
        *,
        receipt: Receipt | None = None,
        detail: str = "",
        delivery_id: str = "",
    ) -> None:
        """One result the operator sees (``messaging show``, ``GET /api/messaging``)."""
        row: dict[str, Any] = {
            "at": self.clock().isoformat(),
            "room": room,
            "result": result,
            "status": receipt.status if receipt else None,
            "attempts": receipt.attempts if receipt else 0,
            "detail": receipt.detail if receipt else detail,
            "delivery_id": delivery_id,
        }
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.lpush(self._receipts(store), json.dumps(row))
            pipe.ltrim(self._receipts(store), 0, RECEIPTS_KEPT - 1)
            await pipe.execute()

    async def receipts(self, store: str, limit: int = RECEIPTS_KEPT) -> list[dict[str, Any]]:
        """The latest results, newest first."""
        check_id("store", store)
        rows = await self.redis.lrange(self._receipts(store), 0, max(0, limit - 1))
        return [json.loads(text(r)) for r in rows]

    # the decision ----------------------------------------------------------------
    async def room_ready(self, room: Room, customer_id: str, associate: str) -> str:
        """A room held for ``customer_id`` became ready: queue her message if the store has
        a messaging webhook and she allows it. Returns what happened: ``queued``,
        ``no_webhook``, ``skipped_no_consent`` or ``already_told`` (this hold was)."""
        if room.state is not RoomState.READY or not customer_id:
            return "not_ready"
        store = room.store_id
        hook = await self.get(store)
        if hook is None:
            return "no_webhook"
        if not await self.purposes.allows(customer_id, ROOM_MESSAGES, store):
            await self.record(store, room.name, "skipped_no_consent")
            return "skipped_no_consent"
        told = self._told(store, room)
        if not await self.redis.set(told, "1", nx=True, ex=TOLD_TTL_S):
            return "already_told"
        delivery_id = str(uuid.uuid4())
        try:
            await self.outbox.put(
                {
                    "store": store,
                    "customer": customer_id,
                    "room_id": room.room_id,
                    "room": room.name,
                    "associate": associate,
                    "message": render(hook.message, room.name, associate),
                    "at": self.clock().isoformat(),
                    "delivery_id": delivery_id,
                }
            )
        except BaseException:
            await self.redis.delete(told)  # not queued: a retry of the change may tell her
            raise
        await self.record(store, room.name, "queued", delivery_id=delivery_id)
        return "queued"

    async def forget(self, customer_id: str) -> None:
        """A forgotten customer's messages still waiting are not sent (their entries go)."""
        drop = [
            text(entry_id)
            for entry_id, fields in await self.redis.xrange(self.outbox.key) or []
            if entry_id is not None and text_map(fields or {}).get("customer") == customer_id
        ]
        if drop:
            await self.redis.xdel(self.outbox.key, *drop)


def body_of(fields: dict[str, str]) -> bytes:
    """The webhook's JSON body from an outbox entry."""
    return json.dumps(
        {
            "type": "room_ready",
            "delivery_id": fields["delivery_id"],
            "store_id": fields["store"],
            "customer_id": fields["customer"],
            "room_id": fields["room_id"],
            "room": fields["room"],
            "associate": fields["associate"],
            "message": fields["message"],
            "at": fields["at"],
        },
        separators=(",", ":"),
    ).encode()


class RoomMessenger:
    """Drains the room-messages outbox: re-checks consent, sends, records, counts."""

    def __init__(
        self,
        messaging: Messaging,
        outbox: Outbox,
        webhook: WebhookChannel,
        metrics: Metrics,
        clock: Clock = utc_now,
    ) -> None:
        if outbox.key != messaging.outbox.key:
            raise ValueError(f"outbox {outbox.key!r} is not {messaging.outbox.key!r}")
        self.messaging = messaging
        self.outbox = outbox
        self.webhook = webhook
        self.metrics = metrics
        self.clock = clock

    async def send_entries(self, entries: Sequence[Entry]) -> None:
        await asyncio.gather(*(self.send(fields) for _id, fields in entries))

    async def send(self, fields: dict[str, str]) -> str:
        """One message; every end is a receipt and a count, never a raise (but Redis)."""
        try:
            store, customer, room = fields["store"], fields["customer"], fields["room"]
            body = body_of(fields)
        except KeyError as exc:
            log.error("unreadable room message dropped: missing %s", exc)
            return "dropped"
        hook = await self.messaging.get(store)
        if hook is None:
            await self.messaging.record(
                store,
                room,
                "failed",
                detail="the store's messaging webhook was removed",
                delivery_id=fields["delivery_id"],
            )
            self.metrics.inc(METRIC, result="failed")
            return "failed"
        if not await self.messaging.purposes.allows(customer, ROOM_MESSAGES, store):
            # Revoked (or forgotten) since it was queued: in-flight messages obey too.
            await self.messaging.record(
                store, room, "skipped_no_consent", delivery_id=fields["delivery_id"]
            )
            self.metrics.inc(METRIC, result="skipped_no_consent")
            return "skipped_no_consent"
        try:
            receipt = await self.webhook.send_body(hook.destination, body, fields["delivery_id"])
        except NotifierError as exc:
            receipt = Receipt(
                "webhook", hook.destination.host, None, False, 0, self.clock(), detail=str(exc)
            )
        except Exception as exc:
            reraise_if_cancelled()
            log.exception("room message to %s failed", hook.destination.host)
            receipt = Receipt(
                "webhook",
                hook.destination.host,
                None,
                False,
                1,
                self.clock(),
                detail=type(exc).__name__,
            )
        result = "sent" if receipt.ok else "failed"
        await self.messaging.record(
            store, room, result, receipt=receipt, delivery_id=fields["delivery_id"]
        )
        self.metrics.inc(METRIC, result=result)
        return result

    async def run(self) -> None:
        await self.outbox.run(self.send_entries, count=20)


__all__ = [
    "DEFAULT_MESSAGE",
    "Messaging",
    "MessagingHook",
    "RoomMessenger",
    "check_message",
    "outbox_key",
    "render",
]
