"""What happened after the alerts: per visit and per store, in the store's own days.

Issue 14's outcomes. Two kinds of record, kept apart because they need different consent:

* **Operational counts** (no consent needed: they say what the staff did, about nobody in
  particular): per store and store-local day, approaches and arrivals alerted, arrivals
  claimed (greeted), closed (done), expired with nobody claiming them (*unserved*), the
  arrivals whose held room was ready before them and those whose room was not; per
  associate their claims and closes; the times to claim (seconds, tagged with the
  associate) and the rooms' head starts (seconds). No customer or visit id is in them.
* **Visit rows**, only for a customer who granted ``analytics`` for that store (DESIGN.md:
  visits are kept only with analytics consent): approached, arrived, claimed at and by
  whom, time to claim, the room and when it was ready (and by how much before the arrival),
  in use, done. Keyed by the stream's ``visit_id`` (a UUID that does not reveal the
  customer); the customer id is kept only in an index that lets a revocation or a forget
  delete them. A revocation of ``analytics`` deletes the rows of the stores it covers.

Everything is kept :data:`KEEP_DAYS` days (the manager's longest view is 30). The notifier
learns every customer's ``analytics`` decisions from ``proxima.consent.v1``, which it
follows from the beginning (:mod:`notifier.purposes` keeps them); an alert whose consent
record it has not read yet makes no visit row (data minimisation errs that way).
"""

from __future__ import annotations

import csv
import io
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from contracts.models import AlertKind, ConsentRecord
from notifier.directory import from_ms, to_ms
from notifier.purposes import ANALYTICS, Purposes
from notifier.rooms import Room, RoomState
from transport.redis import RedisClient, text_map
from transport.redis import as_text as text

KEEP_DAYS = 35
"""Counts and visit rows live this long (the longest view is 30 days, in any time zone)."""
PERIODS = (1, 7, 30)
COUNTED = (
    "approaches",
    "arrivals",
    "claimed",
    "done",
    "unserved",
    "room_ready",
    "room_not_ready",
)
VISIT_COLUMNS = (
    "visit",
    "day",
    "approached_at",
    "arrived_at",
    "zone",
    "claimed_at",
    "claimed_by",
    "time_to_claim_s",
    "room",
    "room_ready_at",
    "room_ready_before_arrival_s",
    "room_in_use_at",
    "done_at",
)
ASSOCIATE_COLUMNS = ("associate", "name", "claimed", "done", "median_time_to_claim_s")
DAY_COLUMNS = ("day", *COUNTED, "median_time_to_claim_s")


def _iso(ms: str | None) -> str | None:
    at = from_ms(ms)
    return at.isoformat() if at else None


def _median(values: Iterable[float]) -> float | None:
    got = list(values)
    return round(statistics.median(got), 1) if got else None


@dataclass(slots=True)
class OutcomeReport:
    """A store's outcomes over ``days`` store-local days, ending today."""

    store_id: str
    days: int
    timezone: str
    since: datetime
    totals: dict[str, Any] = field(default_factory=dict)
    by_day: list[dict[str, Any]] = field(default_factory=list)
    associates: list[dict[str, Any]] = field(default_factory=list)
    visits: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "store_id": self.store_id,
            "days": self.days,
            "timezone": self.timezone,
            "since": self.since.isoformat(),
            "totals": self.totals,
            "by_day": self.by_day,
            "associates": self.associates,
            "visits": self.visits,
        }

    def csv(self, rows: str = "visits") -> str:
        """``visits`` (one row per visit with analytics consent), ``associates`` or ``days``."""
        table: dict[str, tuple[tuple[str, ...], list[dict[str, Any]]]] = {
            "visits": (VISIT_COLUMNS, self.visits),
            "associates": (ASSOCIATE_COLUMNS, self.associates),
            "days": (DAY_COLUMNS, self.by_day),
        }
        if rows not in table:
            raise ValueError(f"rows must be one of {', '.join(table)}, not {rows!r}")
        columns, data = table[rows]
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(data)
        return out.getvalue()


class Outcomes:
    """Records what happened to each alert and room, and reports it per store and period."""

    def __init__(self, redis: RedisClient, prefix: str, purposes: Purposes | None = None) -> None:
        self.redis = redis
        self.prefix = prefix
        self.purposes = purposes or Purposes(redis, prefix)
        self.ttl = int(timedelta(days=KEEP_DAYS).total_seconds())

    # keys ------------------------------------------------------------------------
    def _base(self, store: str) -> str:
        return f"{self.prefix}notifier:{{outcomes:{store}}}"

    def _day(self, store: str, day: str) -> str:
        return f"{self._base(store)}:day:{day}"

    def _waits(self, store: str, day: str) -> str:
        return f"{self._base(store)}:waits:{day}"

    def _leads(self, store: str, day: str) -> str:
        return f"{self._base(store)}:leads:{day}"

    def _visit(self, store: str, visit: str) -> str:
        return f"{self._base(store)}:visit:{visit}"

    def _visits(self, store: str) -> str:
        return f"{self._base(store)}:visits"

    def _of_customer(self, customer_id: str) -> str:
        return f"{self.prefix}notifier:outcomes-of:{customer_id}"

    # consent ---------------------------------------------------------------------
    async def follow_consent(self, consent: ConsentRecord) -> None:
        """Delete the customer's visit rows of every store where ``analytics`` is no longer
        granted (the decisions themselves are :class:`notifier.purposes.Purposes`', kept
        by the lifecycle before this is called)."""
        await self._drop_rows(
            consent.customer_id, lambda store: not consent.allows(ANALYTICS, store)
        )

    async def allows(self, customer_id: str, store: str) -> bool:
        """The store's own analytics decision wins over the global one; none means no."""
        return await self.purposes.allows(customer_id, ANALYTICS, store)

    async def forget(self, customer_id: str) -> None:
        """Erase the customer's visit rows and their index (the counts name nobody; the
        decisions go with the lifecycle's :meth:`Purposes.forget`)."""
        await self._drop_rows(customer_id, lambda _store: True)
        await self.redis.delete(self._of_customer(customer_id))

    async def _drop_rows(self, customer_id: str, in_store: Callable[[str], bool]) -> None:
        index = self._of_customer(customer_id)
        for member in sorted(text(m) for m in await self.redis.smembers(index)):
            store, _, visit = member.partition("|")
            if not in_store(store):
                continue
            async with self.redis.pipeline(transaction=True) as pipe:  # one slot
                pipe.delete(self._visit(store, visit))
                pipe.zrem(self._visits(store), visit)
                await pipe.execute()
            await self.redis.srem(index, member)

    # recording -------------------------------------------------------------------
    async def _count(self, store: str, day: str, name: str, associate: str | None = None) -> None:
        key = self._day(store, day)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hincrby(key, name, 1)
        if associate:
            pipe.hincrby(key, f"a:{associate}:{name}", 1)
        pipe.expire(key, self.ttl)
        await pipe.execute()

    async def _row(
        self, store: str, customer_id: str, visit: str, at: datetime, values: dict[str, str]
    ) -> None:
        """Set the row's fields that are not set yet (the first time of each step wins)."""
        if not await self.allows(customer_id, store):
            return
        key = self._visit(store, visit)
        pipe = self.redis.pipeline(transaction=False)
        for name, value in values.items():
            pipe.hsetnx(key, name, value)
        pipe.expire(key, self.ttl)
        pipe.zadd(self._visits(store), {visit: to_ms(at)}, nx=True)
        pipe.expire(self._visits(store), self.ttl)
        await pipe.execute()
        await self.redis.sadd(self._of_customer(customer_id), f"{store}|{visit}")
        await self.redis.expire(self._of_customer(customer_id), self.ttl)

    async def alerted(
        self,
        kind: AlertKind,
        store: str,
        customer_id: str,
        visit: str,
        zone: str | None,
        at: datetime,
        day: str,
        room: Room | None,
    ) -> None:
        """An approach or arrival alert was created; ``room``: the one held for the
        customer at that moment, if any."""
        if kind is AlertKind.APPROACH:
            await self._count(store, day, "approaches")
            await self._row(
                store, customer_id, visit, at, {"day": day, "approached_at": str(to_ms(at))}
            )
            return
        if kind is not AlertKind.ARRIVAL:
            return
        await self._count(store, day, "arrivals")
        row = {"day": day, "arrived_at": str(to_ms(at)), "zone": zone or ""}
        if room is not None:
            ready = room.state in (RoomState.READY, RoomState.IN_USE)
            await self._count(store, day, "room_ready" if ready else "room_not_ready")
            row["room"] = room.name
            if ready and room.changed_at is not None and room.state is RoomState.READY:
                lead = (at - room.changed_at).total_seconds()
                await self.redis.rpush(self._leads(store, day), f"{lead:.1f}")
                await self.redis.expire(self._leads(store, day), self.ttl)
        await self._row(store, customer_id, visit, at, row)

    async def claimed(
        self,
        store: str,
        customer_id: str,
        visit: str,
        associate: str,
        wait_s: float,
        at: datetime,
        day: str,
    ) -> None:
        await self._count(store, day, "claimed", associate)
        key = self._waits(store, day)
        await self.redis.rpush(key, f"{associate} {wait_s:.1f}")
        await self.redis.expire(key, self.ttl)
        await self._row(
            store,
            customer_id,
            visit,
            at,
            {"claimed_at": str(to_ms(at)), "claimed_by": associate, "wait_s": f"{wait_s:.1f}"},
        )

    async def done(
        self, store: str, customer_id: str, visit: str, associate: str, at: datetime, day: str
    ) -> None:
        await self._count(store, day, "done", associate)
        await self._row(store, customer_id, visit, at, {"done_at": str(to_ms(at))})

    async def unserved(self, store: str, day: str) -> None:
        """An arrival alert expired with nobody claiming it."""
        await self._count(store, day, "unserved")

    async def room_changed(
        self, store: str, customer_id: str, visit: str, room: Room, at: datetime
    ) -> None:
        """A room held for the customer's visit became ready or in use (visit rows only:
        the rooms' own counts are :class:`notifier.rooms.Rooms`')."""
        name = {RoomState.READY: "room_ready_at", RoomState.IN_USE: "room_in_use_at"}.get(
            room.state
        )
        if name is None:
            return
        if not await self.redis.exists(self._visit(store, visit)):
            return  # rows are made by the alerts, with their consent check
        await self._row(store, customer_id, visit, at, {"room": room.name, name: str(to_ms(at))})

    # reports ---------------------------------------------------------------------
    async def report(
        self,
        store: str,
        days: int,
        midnight: datetime,
        timezone: str,
        names: dict[str, str] | None = None,
    ) -> OutcomeReport:
        """The ``days`` store-local days ending with the one that starts at ``midnight``."""
        if days < 1 or days > KEEP_DAYS - 1:
            raise ValueError(f"days must be between 1 and {KEEP_DAYS - 1}")
        names = names or {}
        day_list = [(midnight - timedelta(days=i)).date().isoformat() for i in range(days)]
        day_list.reverse()
        since = (midnight - timedelta(days=days - 1)).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        pipe = self.redis.pipeline(transaction=False)
        for day in day_list:
            pipe.hgetall(self._day(store, day))
            pipe.lrange(self._waits(store, day), 0, -1)
            pipe.lrange(self._leads(store, day), 0, -1)
        replies = await pipe.execute()
        report = OutcomeReport(store, days, timezone, since)
        totals: dict[str, int] = defaultdict(int)
        per_assoc: dict[str, dict[str, Any]] = {}
        all_waits: list[float] = []
        all_leads: list[float] = []
        for i, day in enumerate(day_list):
            counts = text_map(replies[3 * i])
            waits = [text(w).rsplit(" ", 1) for w in replies[3 * i + 1]]
            leads = [float(text(v)) for v in replies[3 * i + 2]]
            row: dict[str, Any] = {"day": day}
            for name in COUNTED:
                row[name] = int(counts.get(name) or 0)
                totals[name] += row[name]
            day_waits = [float(s) for _, s in waits]
            row["median_time_to_claim_s"] = _median(day_waits)
            report.by_day.append(row)
            all_waits += day_waits
            all_leads += leads
            for assoc, seconds in waits:
                entry = per_assoc.setdefault(assoc, {"waits": []})
                entry["waits"].append(float(seconds))
            for name, value in counts.items():
                if name.startswith("a:"):
                    _, assoc, what = name.split(":", 2)
                    entry = per_assoc.setdefault(assoc, {"waits": []})
                    entry[what] = entry.get(what, 0) + int(value)
        report.totals = {
            **totals,
            "served_share": round(totals["claimed"] / totals["arrivals"], 3)
            if totals["arrivals"]
            else None,
            "median_time_to_claim_s": _median(all_waits),
            "median_room_ready_before_arrival_s": _median(all_leads),
        }
        report.associates = [
            {
                "associate": assoc,
                "name": names.get(assoc, assoc),
                "claimed": entry.get("claimed", 0),
                "done": entry.get("done", 0),
                "median_time_to_claim_s": _median(entry["waits"]),
            }
            for assoc, entry in sorted(per_assoc.items())
        ]
        report.visits = await self._visit_rows(store, since, names)
        return report

    async def _visit_rows(
        self, store: str, since: datetime, names: dict[str, str]
    ) -> list[dict[str, Any]]:
        visits = [
            text(v)
            for v in await self.redis.zrangebyscore(self._visits(store), to_ms(since), "+inf")
        ]
        pipe = self.redis.pipeline(transaction=False)
        for visit in visits:
            pipe.hgetall(self._visit(store, visit))
        rows = []
        for visit, data in zip(visits, await pipe.execute(), strict=True):
            got = text_map(data)
            if not got:
                continue  # deleted by a revocation meanwhile
            arrived, ready = from_ms(got.get("arrived_at")), from_ms(got.get("room_ready_at"))
            by = got.get("claimed_by") or None
            rows.append(
                {
                    "visit": visit,
                    "day": got.get("day"),
                    "approached_at": _iso(got.get("approached_at")),
                    "arrived_at": _iso(got.get("arrived_at")),
                    "zone": got.get("zone") or None,
                    "claimed_at": _iso(got.get("claimed_at")),
                    "claimed_by": names.get(by, by) if by else None,
                    "time_to_claim_s": float(got["wait_s"]) if got.get("wait_s") else None,
                    "room": got.get("room") or None,
                    "room_ready_at": _iso(got.get("room_ready_at")),
                    "room_ready_before_arrival_s": round((arrived - ready).total_seconds(), 1)
                    if arrived and ready
                    else None,
                    "room_in_use_at": _iso(got.get("room_in_use_at")),
                    "done_at": _iso(got.get("done_at")),
                }
            )
        return rows


__all__ = ["KEEP_DAYS", "PERIODS", "OutcomeReport", "Outcomes"]
