"""Where alerts are sent besides the console (``/api/channels``): webhooks and web push."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from notifier.channels import Destination, VapidKeys
from notifier.destinations import Destinations
from notifier.web.auth import Auth, require_manager
from notifier.web.errors import ApiError
from notifier.web.models import (
    ChannelsReply,
    DestinationReply,
    DestinationView,
    PushKeyReply,
    PushSubscriptionBody,
    RemovedReply,
    WebhookBody,
    WebhookReply,
)
from notifier.web.wire import read_body, reply

# Channels every associate has without configuring anything.
ALWAYS = ["mqtt", "sse"]


def _views(destinations: list[Destination]) -> list[DestinationView]:
    return [DestinationView.model_validate(d.public()) for d in destinations]


@dataclass(frozen=True, slots=True, eq=False)
class ChannelHandlers:
    auth: Auth
    destinations: Destinations
    vapid: VapidKeys

    async def list(self, request: web.Request) -> web.Response:
        session, me = await self.auth(request)
        mine = _views(await self.destinations.list(session.store_id, me.associate_id))
        if me.role != "manager":
            return reply(ChannelsReply(always=ALWAYS, mine=mine))
        store = _views(await self.destinations.list(session.store_id))
        return reply(ChannelsReply(always=ALWAYS, mine=mine, store=store))

    async def add_webhook(self, request: web.Request) -> web.Response:
        session, me = await self.auth(request)
        # A webhook makes this server send requests where it is told: managers only.
        require_manager(me, "only a manager can add a webhook")
        body = await read_body(request, WebhookBody)
        dest = await self.destinations.add_webhook(
            session.store_id,
            body.url,
            associate_id=None if body.scope == "store" else me.associate_id,
            secret=body.secret,
            key_id=body.key_id,
        )
        # The secret is shown once, here; listings never show it.
        view = DestinationView.model_validate(dest.public())
        return reply(WebhookReply(destination=view, secret=dest.secret), status=201)

    async def add_push(self, request: web.Request) -> web.Response:
        session, me = await self.auth(request)
        body = await read_body(request, PushSubscriptionBody)
        dest = await self.destinations.add_push(
            session.store_id, me.associate_id, body.endpoint, body.keys.p256dh, body.keys.auth
        )
        view = DestinationView.model_validate(dest.public())
        return reply(DestinationReply(destination=view), status=201)

    async def remove(self, request: web.Request) -> web.Response:
        session, me = await self.auth(request)
        scope = request.query.get("scope", "me")
        if scope not in ("me", "store"):
            raise ApiError(400, f"scope: {scope[:20]!r} is not one of me, store", field="scope")
        if scope == "store":
            require_manager(me, "only a manager can remove a store webhook")
        destination_id = request.match_info["destination_id"]
        await self.destinations.remove(
            session.store_id, destination_id, None if scope == "store" else me.associate_id
        )
        return reply(RemovedReply(removed=destination_id))

    async def push_key(self, request: web.Request) -> web.Response:
        await self.auth(request)
        return reply(PushKeyReply(public_key=await self.vapid.public_key()))
