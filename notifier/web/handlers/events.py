"""The live feed (``/api/events``): server-sent events of the signed-in associate's store.

A snapshot of the store's alerts and fitting rooms first, then every change; the session is checked again
every ``session_recheck_s`` however busy the store (a sign-out or removal elsewhere also
closes the stream at once), so an expired session does not keep receiving customers'
names.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from notifier.directory import Clock
from notifier.lifecycle import Lifecycle
from notifier.room_desk import RoomDesk
from notifier.web.auth import Auth
from notifier.web.feed import FeedHub
from notifier.web.handlers.alerts import RECENT, alert_views
from notifier.web.sessions import SESSION_COOKIE, Session

log = logging.getLogger(__name__)

KEEPALIVE_S = 15.0
_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-store",
    "X-Accel-Buffering": "no",
}


class _Stream:
    """One open event stream, and when it next needs a keepalive."""

    def __init__(self, response: web.StreamResponse) -> None:
        self.response = response
        self.loop = asyncio.get_running_loop()
        self.next_keepalive = self.loop.time() + KEEPALIVE_S

    async def send(self, event: str, data: dict[str, Any]) -> None:
        await self.response.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())
        self.next_keepalive = self.loop.time() + KEEPALIVE_S

    async def keepalive_if_due(self) -> None:
        if self.loop.time() >= self.next_keepalive:
            await self.response.write(b": keepalive\n\n")
            self.next_keepalive = self.loop.time() + KEEPALIVE_S


@dataclass(frozen=True, slots=True, eq=False)
class EventHandlers:
    auth: Auth
    hub: FeedHub
    lifecycle: Lifecycle
    desk: RoomDesk
    clock: Clock
    recheck_s: float
    closing: asyncio.Event  # set when the server shuts down

    async def events(self, request: web.Request) -> web.StreamResponse:
        session, _ = await self.auth(request)
        token = request.cookies.get(SESSION_COOKIE, "")
        response = web.StreamResponse(headers=_HEADERS)
        await response.prepare(request)
        stream = _Stream(response)
        first_check = stream.loop.time() + self.recheck_s
        # Listen before taking the snapshot, so no change falls between the two; the
        # console drops an update older (lower ``rev``) than what it already shows.
        with self.hub.listen(session.store_id) as queue:
            try:
                await self._snapshot(stream, session)
                await self._follow(stream, session, token, queue, first_check)
            except ConnectionResetError:
                log.debug("live feed of %s closed by the client", session.associate_id)
        return response

    async def _snapshot(self, stream: _Stream, session: Session) -> None:
        since = self.clock() - RECENT
        views = await alert_views(self.lifecycle, session.store_id, since)
        rooms = await self.desk.views(session.store_id)
        alerts = [v.model_dump(mode="json") for v in views]
        await stream.send("snapshot", {"alerts": alerts, "rooms": rooms})

    async def _follow(
        self,
        stream: _Stream,
        session: Session,
        token: str,
        queue: asyncio.Queue[dict[str, Any]],
        next_check: float,
    ) -> None:
        """Pass the store's changes on until told to stop or the session ends."""
        while not self.closing.is_set():
            if stream.loop.time() >= next_check:
                if not await self.auth.still_signed_in(token):
                    await stream.send("signed-out", {})
                    return
                next_check = stream.loop.time() + self.recheck_s
            await stream.keepalive_if_due()
            try:
                async with asyncio.timeout_at(min(next_check, stream.next_keepalive)):
                    message = await queue.get()
            except TimeoutError:
                continue
            if not await self._pass_on(stream, session, message):
                return

    async def _pass_on(self, stream: _Stream, session: Session, message: dict[str, Any]) -> bool:
        """Send what this session should see of one message; False ends the stream."""
        kind = message.get("type")
        if kind == "close":
            return False
        if kind == "revoke" and (
            message.get("sid") == session.sid or message.get("associate_id") == session.associate_id
        ):
            await stream.send("signed-out", {})
            return False
        if kind == "resync":
            await self._snapshot(stream, session)
        elif kind == "alert":
            await stream.send("alert", message["alert"])
        elif kind == "room":
            await stream.send("room", message["room"])
        elif kind == "rooms":
            await stream.send("rooms", {"rooms": message["rooms"]})
        elif kind == "shift":
            await stream.send("shift", message["associate"])
        elif kind == "notify" and message.get("associate_id") == session.associate_id:
            # Only the associate the alert was routed to is rung.
            await stream.send("notify", message)
        return True
