"""The store's alerts (``/api/alerts``): list, read, claim/done/decline, receipts, summary."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from aiohttp import web

from notifier.directory import Clock
from notifier.exceptions import AlertConflict
from notifier.lifecycle import AlertRecord, AlertState, Lifecycle
from notifier.metrics import Metrics
from notifier.outcomes import PERIODS, OutcomeReport
from notifier.web.auth import Auth, require_manager
from notifier.web.errors import ApiError
from notifier.web.models import (
    AlertReply,
    AlertsReply,
    AlertView,
    OutcomesReply,
    OutcomesView,
    ReceiptsReply,
    ReceiptView,
    SummaryReply,
    SummaryView,
)
from notifier.web.wire import alert_id_of, reply, since_of

# What a console shows when it opens, and what ``since`` defaults to.
RECENT = timedelta(hours=12)
_ACTIONS = ("claim", "done", "decline")


async def alert_views(
    lifecycle: Lifecycle, store: str, since: datetime, state: str | None = None
) -> list[AlertView]:
    records = await lifecycle.list_store(store, since)
    names = await lifecycle.names(store)
    rooms = await lifecycle.rooms.held_for_all(store)
    return [
        AlertView.model_validate(r.view(names, rooms.get(r.alert.customer_id)))
        for r in records
        if state is None or r.state.value == state
    ]


@dataclass(frozen=True, slots=True, eq=False)
class AlertHandlers:
    auth: Auth
    lifecycle: Lifecycle
    metrics: Metrics
    clock: Clock

    async def _reply(self, record: AlertRecord) -> web.Response:
        store, customer = record.alert.store_id, record.alert.customer_id
        names = await self.lifecycle.names(store)
        room = await self.lifecycle.rooms.held_for(store, customer)
        return reply(AlertReply(alert=AlertView.model_validate(record.view(names, room))))

    async def list(self, request: web.Request) -> web.Response:
        session, _ = await self.auth(request)
        state = request.query.get("state")
        if state is not None and state not in {s.value for s in AlertState}:
            allowed = ", ".join(s.value for s in AlertState)
            raise ApiError(400, f"state: {state[:40]!r} is not one of {allowed}", field="state")
        since = since_of(request, self.clock() - RECENT)
        return reply(
            AlertsReply(alerts=await alert_views(self.lifecycle, session.store_id, since, state))
        )

    async def get(self, request: web.Request) -> web.Response:
        session, _ = await self.auth(request)
        record = await self.lifecycle.get_in_store(alert_id_of(request), session.store_id)
        return await self._reply(record)

    async def act(self, request: web.Request) -> web.Response:
        action = request.match_info["action"]
        if action not in _ACTIONS:
            raise ApiError(404, f"no action {action[:40]!r}: use claim, done or decline")
        session, associate = await self.auth(request)
        alert_id = alert_id_of(request)
        if request.content_length:
            raise ApiError(400, f"{action} takes no body")
        store, me = session.store_id, associate.associate_id
        try:
            if action == "claim":
                record = await self.lifecycle.claim(alert_id, store, me)
            elif action == "done":
                record = await self.lifecycle.done(alert_id, store, me)
            else:
                record, _ = await self.lifecycle.decline(alert_id, store, me)
        except AlertConflict:
            self.metrics.inc("proxima_notifier_acks_total", source="console", result="conflict")
            raise
        self.metrics.inc("proxima_notifier_acks_total", source="console", result=action)
        if action == "claim":
            self.metrics.claimed(record.delivered_at, record.claimed_at)
        return await self._reply(record)

    async def receipts(self, request: web.Request) -> web.Response:
        session, _ = await self.auth(request)
        alert_id = alert_id_of(request)
        await self.lifecycle.get_in_store(alert_id, session.store_id)
        receipts = await self.lifecycle.receipts(alert_id)
        return reply(ReceiptsReply(receipts=[ReceiptView.model_validate(r) for r in receipts]))

    async def summary(self, request: web.Request) -> web.Response:
        session, me = await self.auth(request)
        require_manager(me, "the summary is for managers")
        summary = await self.lifecycle.summary(session.store_id)
        return reply(SummaryReply(summary=SummaryView.model_validate(summary.as_dict())))

    async def _outcomes(self, request: web.Request) -> OutcomeReport:
        session, me = await self.auth(request)
        require_manager(me, "outcomes are for managers")
        raw = request.query.get("days", "1")
        if raw not in {str(p) for p in PERIODS}:
            allowed = ", ".join(str(p) for p in PERIODS)
            raise ApiError(400, f"days: {raw[:20]!r} is not one of {allowed}", field="days")
        store = session.store_id
        routing = await self.lifecycle.routing.get(store)
        return await self.lifecycle.outcomes.report(
            store,
            int(raw),
            routing.midnight(self.lifecycle.clock()),
            routing.timezone,
            await self.lifecycle.names(store),
        )

    async def outcomes(self, request: web.Request) -> web.Response:
        report = await self._outcomes(request)
        return reply(OutcomesReply(outcomes=OutcomesView.model_validate(report.as_dict())))

    async def outcomes_csv(self, request: web.Request) -> web.Response:
        rows = request.query.get("rows", "visits")
        if rows not in ("visits", "associates", "days"):
            raise ApiError(
                400, f"rows: {rows[:20]!r} is not one of visits, associates, days", field="rows"
            )
        report = await self._outcomes(request)
        name = f"outcomes-{report.store_id}-{report.days}d-{rows}.csv"
        return web.Response(
            text=report.csv(rows),
            content_type="text/csv",
            charset="utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
