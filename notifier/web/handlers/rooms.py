"""The store's fitting rooms (``/api/rooms``): read by all, laid out by managers, held,
prepared, readied, used and freed by associates (first hold wins)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from notifier.directory import check_id
from notifier.exceptions import RoomConflict
from notifier.metrics import Metrics
from notifier.room_desk import HoldFor, RoomDesk
from notifier.rooms import RoomOp
from notifier.web.auth import Auth, require_manager
from notifier.web.errors import ApiError
from notifier.web.models import (
    HoldBody,
    RoomCountsView,
    RoomReply,
    RoomsBody,
    RoomsReply,
    RoomView,
)
from notifier.web.wire import read_body, reply

_OPS = {op.value: op for op in RoomOp}


@dataclass(frozen=True, slots=True, eq=False)
class RoomHandlers:
    auth: Auth
    desk: RoomDesk
    metrics: Metrics

    async def _rooms(self, store: str) -> web.Response:
        return reply(
            RoomsReply(
                rooms=[RoomView.model_validate(v) for v in await self.desk.views(store)],
                today=RoomCountsView.model_validate(await self.desk.today(store)),
            )
        )

    async def list(self, request: web.Request) -> web.Response:
        session, _ = await self.auth(request)
        return await self._rooms(session.store_id)

    async def set(self, request: web.Request) -> web.Response:
        session, me = await self.auth(request)
        require_manager(me, "only a manager can change the store's fitting rooms")
        body = await read_body(request, RoomsBody)
        ids = [r.room_id for r in body.rooms]
        if len(set(ids)) != len(ids):
            twice = next(i for i in ids if ids.count(i) > 1)
            raise ApiError(400, f"rooms: room {twice!r} is given twice", field="rooms")
        await self.desk.set_layout(session.store_id, {r.room_id: r.name for r in body.rooms})
        return await self._rooms(session.store_id)

    async def act(self, request: web.Request) -> web.Response:
        action = request.match_info["action"]
        op = _OPS.get(action)
        if op is None:
            raise ApiError(404, f"no action {action[:40]!r}: use {', '.join(_OPS)}")
        session, me = await self.auth(request)
        room_id = check_id("room_id", request.match_info["room_id"][:80])
        hold: HoldFor | None = None
        if op is RoomOp.HOLD:
            body = await read_body(request, HoldBody)
            if body.customer_id is not None:
                require_manager(me, "only a manager can hold a room by customer id: name the alert")
            alert_id = str(body.alert_id) if body.alert_id is not None else None
            hold = HoldFor(alert_id, body.customer_id, body.booking_id)
        elif request.content_length:
            raise ApiError(400, f"{action} takes no body")
        try:
            room = await self.desk.act(session.store_id, room_id, op, me, hold)
        except RoomConflict:
            self.metrics.inc("proxima_notifier_room_changes_total", action=action, result="refused")
            raise
        self.metrics.inc("proxima_notifier_room_changes_total", action=action, result="ok")
        names = await self.desk.lifecycle.names(session.store_id)
        return reply(RoomReply(room=RoomView.model_validate(room.view(names))))
