"""Who is on shift (``/api/shifts``): everyone reads, each sets their own, managers anyone's."""

from __future__ import annotations

import json
from dataclasses import dataclass

from aiohttp import web

from notifier.directory import Directory
from notifier.lifecycle import Lifecycle
from notifier.web.auth import Auth
from notifier.web.errors import ApiError
from notifier.web.models import AssociateReply, AssociateView, ShiftBody, StaffReply
from notifier.web.wire import read_body, reply
from transport.redis import RedisClient


@dataclass(frozen=True, slots=True, eq=False)
class ShiftHandlers:
    auth: Auth
    directory: Directory
    lifecycle: Lifecycle
    redis: RedisClient

    async def list(self, request: web.Request) -> web.Response:
        session, _ = await self.auth(request)
        staff = await self.directory.staff(session.store_id)
        return reply(
            StaffReply(associates=[AssociateView.model_validate(a.public()) for a in staff])
        )

    async def set(self, request: web.Request) -> web.Response:
        session, me = await self.auth(request)
        target = request.match_info["associate_id"]
        if target == "me":
            target = me.associate_id
        if target != me.associate_id and me.role != "manager":
            raise ApiError(403, "only a manager can change another associate's shift")
        body = await read_body(request, ShiftBody)
        updated = await self.directory.set_on_shift(session.store_id, target, body.on_shift)
        # The live feeds of every instance show the change.
        await self.redis.publish(
            self.lifecycle.channel(session.store_id),
            json.dumps({"type": "shift", "associate": updated.public()}),
        )
        return reply(AssociateReply(associate=AssociateView.model_validate(updated.public())))
