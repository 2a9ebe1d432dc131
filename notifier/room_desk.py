"""Fitting rooms and alerts together: a room is held for an open alert's customer, and
that customer's alerts show the room ("Room 2 ready") from then on, changed live; when it
is ready, the customer may be told (:mod:`notifier.messaging`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from notifier.directory import Associate, check_id
from notifier.exceptions import AlertConflict, InvalidInput
from notifier.lifecycle import OPEN_STATES, Lifecycle, visit_of
from notifier.messaging import METRIC
from notifier.metrics import Metrics
from notifier.rooms import Room, RoomOp, RoomState


@dataclass(frozen=True, slots=True)
class HoldFor:
    """Whom a hold is for: an open alert's customer (or, for a manager, a customer id),
    and the booking it serves if any."""

    alert_id: str | None = None
    customer_id: str | None = None
    booking_id: str | None = None

    def __post_init__(self) -> None:
        if self.alert_id is None and self.customer_id is None:
            raise InvalidInput("alert_id", "name the open alert whose customer the room is for")
        if self.alert_id is not None and self.customer_id is not None:
            raise InvalidInput("customer_id", "give the alert or the customer, not both")
        if self.customer_id is not None:
            check_id("customer_id", self.customer_id)
        if self.booking_id is not None:
            check_id("booking_id", self.booking_id)


class RoomDesk:
    """Applies room changes for associates and keeps the consoles' rooms and alerts current."""

    def __init__(self, lifecycle: Lifecycle, metrics: Metrics | None = None) -> None:
        self.lifecycle = lifecycle
        self.rooms = lifecycle.rooms
        self.metrics = metrics

    async def views(self, store: str) -> list[dict[str, Any]]:
        names = await self.lifecycle.names(store)
        return [r.view(names) for r in await self.rooms.list_rooms(store)]

    async def today(self, store: str) -> dict[str, Any]:
        """The store's operational counts since its midnight (its routing's time zone)."""
        routing = await self.lifecycle.routing.get(store)
        day = routing.midnight(self.lifecycle.clock()).date().isoformat()
        return {"day": day, "timezone": routing.timezone, **await self.rooms.counts(store, day)}

    async def set_layout(self, store: str, rooms: dict[str, str]) -> list[Room]:
        result = await self.rooms.set_layout(store, rooms)
        await self.rooms.publish_all(store, await self.lifecycle.names(store))
        return result

    async def act(
        self, store: str, room_id: str, op: RoomOp, associate: Associate, hold: HoldFor | None
    ) -> Room:
        """Apply one change; raises RoomConflict (409) with the reason when refused."""
        customer = alert = booking = ""
        if op is RoomOp.HOLD:
            if hold is None:
                raise InvalidInput("alert_id", "name the open alert whose customer the room is for")
            if hold.alert_id is not None:
                record = await self.lifecycle.get_in_store(hold.alert_id, store)
                if record.state not in OPEN_STATES:
                    raise AlertConflict(
                        hold.alert_id,
                        record.state.value,
                        record.claimed_by,
                        f"alert {hold.alert_id} is {record.state.value}: hold a room for an"
                        " open alert's customer",
                    )
                customer, alert = record.alert.customer_id, hold.alert_id
            else:
                customer = hold.customer_id or ""
            booking = hold.booking_id or ""
        now = self.lifecycle.clock()
        routing = await self.lifecycle.routing.get(store)
        names = await self.lifecycle.names(store)
        room, customer_of_room = await self.rooms.apply(
            store,
            room_id,
            op,
            associate.associate_id,
            now,
            routing.midnight(now).date().isoformat(),
            manager=associate.role == "manager",
            customer_id=customer,
            alert_id=alert,
            booking_id=booking,
            names=names,
        )
        await self.rooms.publish(room, names)
        if customer_of_room:
            await self._republish_alerts(store, customer_of_room, names)
            await self._record_outcome(store, customer_of_room, room, now)
            if op is RoomOp.READY:
                await self._tell_customer(room, customer_of_room, names)
        return room

    async def _tell_customer(self, room: Room, customer_id: str, names: dict[str, str]) -> None:
        """Her room is ready: a message through the store's messaging webhook, if it has
        one and she granted ``room_messages`` there (:mod:`notifier.messaging`)."""
        holder = room.held_by or ""
        result = await self.lifecycle.messaging.room_ready(
            room, customer_id, names.get(holder) or holder
        )
        if self.metrics is not None and result in ("queued", "skipped_no_consent"):
            self.metrics.inc(METRIC, result=result)

    async def _record_outcome(
        self, store: str, customer_id: str, room: Room, now: datetime
    ) -> None:
        """A room ready or in use for the customer's latest visit here (its outcome row)."""
        if room.state not in (RoomState.READY, RoomState.IN_USE):
            return
        alerts = [
            r
            for r in await self.lifecycle.customer_alerts(customer_id)
            if r.alert.store_id == store
        ]
        if alerts:
            latest = max(alerts, key=lambda r: r.delivered_at)
            visit = visit_of(latest.alert)
            await self.lifecycle.outcomes.room_changed(store, customer_id, visit, room, now)

    async def _republish_alerts(self, store: str, customer_id: str, names: dict[str, str]) -> None:
        """The customer's alerts in this store, sent again with the room as it is now."""
        for record in await self.lifecycle.customer_alerts(customer_id):
            if record.alert.store_id == store:
                await self.lifecycle.publish(record, names)
