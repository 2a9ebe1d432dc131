"""Fan one routing decision out over every channel of every recipient, with receipts.

MQTT and the console are sent inline: if the broker is gone the caller must not commit
its Kafka offset. Webhooks and pushes go through a Redis outbox (:mod:`notifier.outbox`)
drained by :meth:`Dispatcher.run_external`, so a slow receiver never holds up the
Kafka loop and a notifier that dies mid-retry leaves the send to another instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import uuid
from collections.abc import Iterable, Sequence

from contracts.models import Alert
from notifier.channels import CONSOLE, MQTT, Channels, Destination, Notice, Receipt
from notifier.destinations import Destinations
from notifier.directory import Clock, utc_now
from notifier.exceptions import NotifierError, UnknownDestination
from notifier.lifecycle import AlertRecord, AlertState, Lifecycle
from notifier.metrics import Metrics
from notifier.outbox import Entry, Outbox
from transport.cancel import reraise_if_cancelled

log = logging.getLogger(__name__)


class Dispatcher:
    """Sends notices and records what happened in the alert's lifecycle."""

    def __init__(
        self,
        channels: Channels,
        destinations: Destinations,
        lifecycle: Lifecycle,
        outbox: Outbox,
        metrics: Metrics,
        clock: Clock = utc_now,
    ) -> None:
        self.channels = channels
        self.destinations = destinations
        self.lifecycle = lifecycle
        self.outbox = outbox
        self.metrics = metrics
        self.clock = clock

    async def deliver(
        self,
        record: AlertRecord,
        associate_ids: Iterable[str],
        tier: str,
        *,
        reason: str = "delivered",
        to_store: bool = False,
    ) -> None:
        """Tell these associates (and the store, on a new alert) on all their channels."""
        alert = record.alert
        if to_store:
            notice = Notice(alert, None, tier, reason)
            await self.send_inline(MQTT, notice)
            for dest in await self.destinations.list(alert.store_id):
                await self.queue(dest, notice)
        for associate_id in associate_ids:
            notice = Notice(alert, associate_id, tier, reason)
            await self.send_inline(MQTT, notice)
            self.metrics.inc("proxima_notifier_deliveries_total", tier=tier)
            await self.send_inline(CONSOLE, notice)
            for dest in await self.destinations.list(alert.store_id, associate_id):
                await self.queue(dest, notice)

    async def send_inline(self, dest: Destination, notice: Notice) -> Receipt:
        receipt = await self.channels.for_url(dest.url).send(dest, notice)
        await self._record(notice.alert, receipt)
        return receipt

    async def queue(self, dest: Destination, notice: Notice) -> None:
        await self.outbox.put(
            {
                "alert": notice.alert.model_dump_json(by_alias=True),
                "associate": notice.associate_id or "",
                "tier": notice.tier,
                "reason": notice.reason,
                "delivery_id": notice.delivery_id,
                "destination": dest.id,
            }
        )

    async def _record(self, alert: Alert, receipt: Receipt) -> None:
        self.metrics.inc(
            "proxima_notifier_channel_sends_total",
            channel=receipt.channel,
            result="ok" if receipt.ok else ("gone" if receipt.gone else "failed"),
        )
        await self.lifecycle.add_receipt(str(alert.alert_id), receipt)

    # the outbox side -------------------------------------------------------------------
    async def send_external(self, entries: Sequence[Entry]) -> None:
        """One outbox batch, concurrently; each failure ends in a receipt, never a raise."""
        await asyncio.gather(*(self._send_entry(fields) for _id, fields in entries))

    async def _send_entry(self, fields: dict[str, str]) -> None:
        try:
            alert = Alert.model_validate_json(fields["alert"])
            associate_id = fields.get("associate") or None
            notice = Notice(
                alert,
                associate_id,
                fields.get("tier", ""),
                fields.get("reason", "delivered"),
                fields.get("delivery_id") or str(uuid.uuid4()),
            )
        except (KeyError, ValueError) as exc:
            log.error("unreadable outbox entry dropped: %r (%s)", fields, exc)
            return
        record = await self.lifecycle.get(str(alert.alert_id))
        if record is None or record.state is AlertState.WITHDRAWN:
            # The customer revoked consent or was forgotten since it was queued.
            log.info("send of alert %s dropped: withdrawn or erased", alert.alert_id)
            return
        room = await self.lifecycle.rooms.held_for(alert.store_id, alert.customer_id)
        if room is not None:
            notice = dataclasses.replace(notice, room=room.mark())
        dest_id = fields.get("destination", "")
        found = [
            d for d in await self.destinations.list(alert.store_id, associate_id) if d.id == dest_id
        ]
        if not found:
            receipt = Receipt(
                "unknown",
                dest_id,
                associate_id,
                False,
                0,
                self.clock(),
                detail="destination removed",
            )
            await self._record(alert, receipt)
            return
        dest = found[0]
        try:
            receipt = await self.channels.for_url(dest.url).send(dest, notice)
        except NotifierError as exc:
            receipt = Receipt(
                "unknown", dest.host, associate_id, False, 0, self.clock(), detail=str(exc)
            )
        except Exception as exc:
            reraise_if_cancelled()
            log.exception("sending to %s failed", dest.host)
            # The type only: an exception's text can carry the URL, and with it a token.
            receipt = Receipt(
                "unknown",
                dest.host,
                associate_id,
                False,
                1,
                self.clock(),
                detail=type(exc).__name__,
            )
        await self._record(alert, receipt)
        if receipt.gone and associate_id is not None:
            log.info("push subscription %s ended; removed", dest.host)
            with contextlib.suppress(UnknownDestination):
                await self.destinations.remove(alert.store_id, dest.id, associate_id)

    async def run_external(self) -> None:
        await self.outbox.run(self.send_external, count=20)
