"""The store's gateways for managers and IT (``/api/gateways``): what the bridge records
of each (transport.fleet), flagged where a person is needed."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from notifier.web.auth import Auth, require_manager
from notifier.web.models import GatewayRow, GatewaysReply
from notifier.web.wire import reply
from transport.fleet import fleet_status
from transport.redis import RedisClient


@dataclass(frozen=True, slots=True, eq=False)
class GatewayHandlers:
    auth: Auth
    redis: RedisClient
    prefix: str

    async def list(self, request: web.Request) -> web.Response:
        session, me = await self.auth(request)
        require_manager(me, "only a manager sees the store's gateways")
        views, _problems = await fleet_status(self.redis, self.prefix, store=session.store_id)
        rows = [GatewayRow.model_validate(view.to_json()) for view in views]
        return reply(GatewaysReply(gateways=rows))
