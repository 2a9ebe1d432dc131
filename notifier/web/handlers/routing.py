"""The store's routing (``/api/routing``): ladder times, expiry, tiers; managers change it."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from notifier.lifecycle import Lifecycle
from notifier.web.auth import Auth, require_manager
from notifier.web.models import RoutingBody, RoutingReply, RoutingView
from notifier.web.wire import read_body, reply


@dataclass(frozen=True, slots=True, eq=False)
class RoutingHandlers:
    auth: Auth
    lifecycle: Lifecycle

    async def get(self, request: web.Request) -> web.Response:
        session, _ = await self.auth(request)
        routing = await self.lifecycle.routing.get(session.store_id)
        return reply(RoutingReply(routing=RoutingView.model_validate(routing.as_dict())))

    async def set(self, request: web.Request) -> web.Response:
        session, me = await self.auth(request)
        require_manager(me, "only a manager can change the store's routing")
        body = await read_body(request, RoutingBody)
        routing = await self.lifecycle.routing.set(
            session.store_id,
            escalate_after_s=body.escalate_after_s,
            manager_after_s=body.manager_after_s,
            expire_after_s=body.expire_after_s,
            tiers=body.tiers,
            timezone=body.timezone,
        )
        return reply(RoutingReply(routing=RoutingView.model_validate(routing.as_dict())))
