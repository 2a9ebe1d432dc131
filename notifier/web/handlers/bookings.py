"""The store's reservations and appointments (``/api/bookings``, managers): listed,
booked, changed and cancelled through the bookings API (``notifier.bookings_client``),
always at the manager's own store."""

from __future__ import annotations

import re
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import date
from typing import Any

from aiohttp import web
from pydantic import TypeAdapter, ValidationError

from notifier.bookings_client import BookingsClient, BookingsRefused, BookingsUnavailable
from notifier.directory import Directory
from notifier.lifecycle import Lifecycle
from notifier.web.auth import Auth, require_manager
from notifier.web.errors import ApiError
from notifier.web.models import (
    BookingBody,
    BookingReply,
    BookingsReply,
    BookingView,
    CancelBookingBody,
    CancelledReply,
)
from notifier.web.wire import read_body, reply

NOT_CONNECTED = (
    "bookings are not connected: the operator sets PROXIMA_NOTIFIER_BOOKINGS_API_URL and "
    "PROXIMA_NOTIFIER_BOOKINGS_API_SECRET (the bookings API's address and secret)"
)
_VIEW: TypeAdapter[Any] = TypeAdapter(BookingView)
_VIEWS: TypeAdapter[list[Any]] = TypeAdapter(list[BookingView])


@dataclass(frozen=True, slots=True, eq=False)
class BookingHandlers:
    auth: Auth
    lifecycle: Lifecycle
    directory: Directory
    client: BookingsClient | None

    async def list(self, request: web.Request) -> web.Response:
        session, me = await self.auth(request)
        require_manager(me, "only a manager can see the store's bookings")
        store = session.store_id
        routing = await self.lifecycle.routing.get(store)
        raw = request.query.get("day")
        if raw is None:
            day = routing.midnight(self.lifecycle.clock()).date().isoformat()
        else:
            try:
                day = date.fromisoformat(raw).isoformat()
            except ValueError:
                raise ApiError(400, f"day: {raw[:40]!r} is not YYYY-MM-DD", field="day") from None
        if self.client is None:
            return reply(
                BookingsReply(
                    connected=False,
                    reason=NOT_CONNECTED,
                    day=day,
                    timezone=routing.timezone,
                    bookings=[],
                )
            )
        data = await _ask(self.client.list(store, day, routing.timezone))
        bookings = _read(_VIEWS, data.get("bookings"))
        return reply(
            BookingsReply(connected=True, day=day, timezone=routing.timezone, bookings=bookings)
        )

    async def put(self, request: web.Request) -> web.Response:
        session, me = await self.auth(request)
        require_manager(me, "only a manager can book or change a booking")
        client = self._client()
        booking = (await read_body(request, BookingBody)).root
        store = session.store_id
        if (
            booking.associate_id is not None
            and await self.directory.get(store, booking.associate_id) is None
        ):
            raise ApiError(
                400,
                f"associate_id: no associate {booking.associate_id!r} in store {store!r}",
                field="associate_id",
            )
        data = await _ask(client.put(store, booking.model_dump(mode="json", exclude_none=True)))
        view = _read(_VIEW, data)
        return reply(BookingReply(booking=view), status=200 if booking.booking_id else 201)

    async def cancel(self, request: web.Request) -> web.Response:
        session, me = await self.auth(request)
        require_manager(me, "only a manager can cancel a booking")
        client = self._client()
        which = await read_body(request, CancelBookingBody)
        await _ask(client.cancel(session.store_id, which.customer_id, which.booking_id))
        return reply(CancelledReply(cancelled=which.booking_id))

    def _client(self) -> BookingsClient:
        if self.client is None:
            raise ApiError(503, NOT_CONNECTED)
        return self.client


async def _ask(call: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    """The bookings API's answer; its refusals and failures as the console's errors."""
    try:
        return await call
    except BookingsUnavailable as exc:
        raise ApiError(exc.status, f"bookings: {exc.reason}") from exc
    except BookingsRefused as exc:
        # "at: ...", "items.0.size: ...", "appointment.at: ...": the field is the first word.
        named = re.match(r"(?:(?:reservation|appointment)\.)?([a-z_]+)[.:]", exc.reason)
        field = "customer_id" if exc.error == "unknown_customer" else (named and named[1])
        if field in ("reservation", "appointment"):  # the booking as a whole
            field = None
        if exc.status == 422:  # not a booking it can keep: the field and why
            raise ApiError(400, f"the bookings API refused it: {exc.reason}", field=field) from exc
        if exc.status in (404, 409):
            raise ApiError(exc.status, f"the bookings API: {exc.reason}") from exc
        raise ApiError(502, f"the bookings API refused it ({exc.status}): {exc.reason}") from exc


def _read(adapter: TypeAdapter[Any], data: Any) -> Any:
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        raise ApiError(502, f"bookings: the bookings API sent an unexpected reply ({exc.error_count()} "
                       "problem(s)): is it the same Proxima version?") from exc  # fmt: skip
