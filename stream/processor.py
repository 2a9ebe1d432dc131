"""The decision chain for one event: resolve → consent → visit → rule → dedupe → alert.

Plain async code, independent of Faust, so it is unit-tested directly; the Faust agent in
:mod:`stream.app` only moves bytes in and out.

At least once, exactly one alert: an event may be processed twice (a worker killed after
producing but before committing). The visit id is derived from the visit's first
event time, the alert id from the dedupe key (customer, store, visit, kind), and the
dedupe key is set only once the alert is on Kafka, so a replay either finds the key and
stays silent or produces the same alert id again, which the notifier drops.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

import redis.asyncio as aioredis

from contracts.models import Alert, AlertKind, AlertTarget, Event, EventKind, Priority
from stream.identity import IdentityIndex
from stream.registry import Purpose, Registry

log = logging.getLogger(__name__)

ALERT_NS = uuid.UUID("6f2b8a52-3a3c-4c1e-9a55-0d3c1f6e8b10")
PRESENCE_KINDS = frozenset(
    {
        EventKind.ZONE_ENTER,
        EventKind.ZONE_DWELL,
        EventKind.SIGHTING,
        EventKind.GEOFENCE_ENTER,
        EventKind.GEOFENCE_DWELL,
    }
)


@dataclass(slots=True)
class ProcessorStats:
    counts: Counter[str] = field(default_factory=Counter)


class EventProcessor:
    """Turns events into alerts, holding every guarantee about consent and visibility."""

    def __init__(
        self,
        redis: aioredis.Redis,
        prefix: str,
        *,
        drift_windows: int = 1,
        revisit_gap_s: float = 4 * 3600,
        dedupe_ttl_s: int = 2 * 86400,
    ) -> None:
        self.r = redis
        self.p = prefix
        self.registry = Registry(redis, prefix)
        self.identity = IdentityIndex(self.registry, drift_windows)
        self.revisit_gap_s = revisit_gap_s
        self.dedupe_ttl_s = dedupe_ttl_s
        self.stats = ProcessorStats()

    async def process(self, event: Event) -> list[Alert]:
        """The alerts this event causes (usually none)."""
        c = self.stats.counts
        c["events"] += 1
        if await self._seen(event):
            c["duplicate_events"] += 1
            return []
        observed = event.observed_at.timestamp()
        customer_id = await self.identity.resolve(event.subject, observed)
        if customer_id is None:
            c["unresolved"] += 1  # dropped here, never stored
            return []
        if event.kind not in PRESENCE_KINDS:
            c["non_presence"] += 1
            return []
        if not await self.registry.has_consent(customer_id, Purpose.ARRIVAL_ALERTS, event.store_id):
            c["no_consent"] += 1
            return []
        visit_id, is_new = await self._visit(customer_id, event.store_id, observed)
        if not is_new:
            c["visit_continues"] += 1
        if await self._alerted(customer_id, event.store_id, visit_id, AlertKind.ARRIVAL):
            c["deduped"] += 1
            return []
        profile = await self.registry.get(customer_id)
        # Check consent again as the alert is built: a revocation in flight wins.
        if profile is None or not await self.registry.has_consent(
            customer_id, Purpose.ARRIVAL_ALERTS, event.store_id
        ):
            c["no_consent"] += 1
            return []
        fields = profile.visible()
        who = str(fields.get("name") or "A customer who asked to be greeted")
        zone = event.zone_id or "the store"
        body_parts = []
        if "sizes" in fields:
            body_parts.append("sizes " + ", ".join(f"{k} {v}" for k, v in profile.sizes.items()))
        if "wishlist" in fields:
            body_parts.append("wishlist: " + ", ".join(profile.wishlist))
        alert = Alert(
            alert_id=self.alert_id(customer_id, event.store_id, visit_id, AlertKind.ARRIVAL),
            store_id=event.store_id,
            customer_id=customer_id,
            visit_id=visit_id,
            kind=AlertKind.ARRIVAL,
            title=f"{who} is at the {zone}",
            body="; ".join(body_parts),
            fields=fields,
            zone_id=event.zone_id,
            caused_by=[event.event_id],
            created_at=datetime.now(UTC),
            priority=Priority.HIGH
            if profile.tier in ("gold", "platinum", "vip")
            else Priority.NORMAL,
            target=AlertTarget(associate_id=profile.assigned_associate),
        )
        c["alerts"] += 1
        return [alert]

    async def mark_sent(self, alert: Alert, event: Event | None = None) -> None:
        """Record that the alert is on Kafka; later duplicates of its cause stay silent."""
        key = self._k(
            "alerted", alert.customer_id, alert.store_id, alert.visit_id or "-", alert.kind.value
        )
        await self.r.set(key, str(alert.alert_id), ex=self.dedupe_ttl_s)

    async def mark_processed(self, event: Event) -> None:
        await self.r.set(self._k("event", str(event.event_id)), 1, ex=self.dedupe_ttl_s)

    @staticmethod
    def alert_id(customer_id: str, store_id: str, visit_id: str, kind: AlertKind) -> uuid.UUID:
        return uuid.uuid5(ALERT_NS, f"{customer_id}|{store_id}|{visit_id}|{kind.value}")

    def _k(self, *parts: str) -> str:
        return self.p + ":".join(parts)

    async def _seen(self, event: Event) -> bool:
        return bool(await self.r.exists(self._k("event", str(event.event_id))))

    async def _alerted(
        self, customer_id: str, store_id: str, visit_id: str, kind: AlertKind
    ) -> bool:
        return bool(
            await self.r.exists(self._k("alerted", customer_id, store_id, visit_id, kind.value))
        )

    async def _visit(self, customer_id: str, store_id: str, observed: float) -> tuple[str, bool]:
        """(visit id, whether this event started it). A gap ≥ revisit_gap starts a new visit."""
        key = self._k("visit", customer_id, store_id)
        raw = await self.r.hgetall(key)
        if raw:
            started = float(raw[b"started"])
            last = float(raw[b"last_seen"])
            if observed - last < self.revisit_gap_s and observed >= started - self.revisit_gap_s:
                if observed > last:
                    await self.r.hset(key, "last_seen", repr(observed))
                visit = raw[b"visit_id"]
                return (visit.decode() if isinstance(visit, bytes) else str(visit)), False
        visit_id = str(uuid.uuid5(ALERT_NS, f"visit|{customer_id}|{store_id}|{round(observed, 3)}"))
        await self.r.hset(
            key,
            mapping={"visit_id": visit_id, "started": repr(observed), "last_seen": repr(observed)},
        )
        await self.r.expire(key, int(self.revisit_gap_s * 2))
        return visit_id, True
