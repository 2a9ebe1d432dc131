"""The store's customer messages (``/api/messaging``): the webhook that tells a customer
"your room is ready" (managers), and its latest results."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from notifier.messaging import Messaging
from notifier.web.auth import Auth, require_manager
from notifier.web.models import (
    MessageReceiptView,
    MessagingBody,
    MessagingReply,
    MessagingSetReply,
    MessagingView,
    RemovedReply,
)
from notifier.web.wire import read_body, reply


@dataclass(frozen=True, slots=True, eq=False)
class MessagingHandlers:
    auth: Auth
    messaging: Messaging

    async def get(self, request: web.Request) -> web.Response:
        session, me = await self.auth(request)
        require_manager(me, "only a manager can see the store's customer messaging")
        hook = await self.messaging.get(session.store_id)
        receipts = await self.messaging.receipts(session.store_id)
        return reply(
            MessagingReply(
                messaging=MessagingView.model_validate(hook.public()) if hook else None,
                receipts=[MessageReceiptView.model_validate(r) for r in receipts],
            )
        )

    async def set(self, request: web.Request) -> web.Response:
        session, me = await self.auth(request)
        # A webhook makes this server send requests where it is told: managers only.
        require_manager(me, "only a manager can set the store's customer messaging")
        body = await read_body(request, MessagingBody)
        hook = await self.messaging.set(
            session.store_id, body.url, secret=body.secret, key_id=body.key_id, message=body.message
        )
        # The secret is shown once, here.
        view = MessagingView.model_validate(hook.public())
        return reply(MessagingSetReply(messaging=view, secret=hook.secret))

    async def remove(self, request: web.Request) -> web.Response:
        session, me = await self.auth(request)
        require_manager(me, "only a manager can remove the store's customer messaging")
        await self.messaging.remove(session.store_id)
        return reply(RemovedReply(removed="messaging"))
