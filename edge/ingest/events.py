"""What accepted reports become: geofence state, beacon-region zones and events in the outbox.

**All or nothing**: a request's events go to the outbox in one ``put`` (one SQLite
transaction); if that fails, the geofence state is rolled back and the answer is 503.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from contracts.models import Event, EventKind, Subject, SubjectType, ZoneEvidence
from edge.exceptions import EventRejected, OutboxError
from edge.geofence import Fix, GeofenceEngine, GeofenceTransition
from edge.ingest.auth import Auth
from edge.ingest.bodies import BeaconReport, GeofenceReport, LocationReport
from edge.ingest.exceptions import Rejection
from edge.ingest.metrics import IngestMetrics
from edge.ingest.store import BeaconRegionSpec, StoreIngestConfig
from edge.outbox import EventDraft

log = logging.getLogger(__name__)

_EVENT_NS = uuid.UUID("6f1b3c52-5d0a-4f7e-9a51-2f0c6c1e7d30")


class EventSink(Protocol):
    """Where accepted events go: :class:`edge.outbox.Outbox` (all or nothing per call)."""

    async def put(self, drafts: Sequence[EventDraft]) -> list[Event]: ...


def _dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, tz=UTC)


def region_evidence(spec: BeaconRegionSpec, rssi: float | None, sustained: bool) -> ZoneEvidence:
    """Why a beacon-region enter is in its zone or its approach zone, for the event (and
    ``proxima score --timeline``): the app's reading against the region's bar."""
    if spec.min_rssi is None:
        return ZoneEvidence(rule="app_region", detail="the app's region enter; no bar to read")
    bar = spec.min_rssi
    if sustained and spec.sustained_min_rssi is not None:
        bar = spec.sustained_min_rssi
    if rssi is None:
        return ZoneEvidence(rule="app_region_unranged", detail="entered without a reading")
    held = "held over seconds, " if sustained else ""
    if rssi >= bar:
        rule = "app_region_sustained" if sustained else "app_region_near"
        return ZoneEvidence(rule=rule, detail=f"ranged {rssi:.0f} dBm, {held}bar {bar:.0f}")
    return ZoneEvidence(
        rule="app_region_far", detail=f"ranged {rssi:.0f} dBm, {held}under {bar:.0f}"
    )


def _subject(device_id: str) -> Subject:
    return Subject(type=SubjectType.DEVICE, id=device_id)


def _event_id(auth: Auth | None, index: int) -> uuid.UUID | None:
    if auth is None:
        return None
    return uuid.uuid5(_EVENT_NS, f"{auth.device_id}/{auth.nonce}/{index}")


def _geofence_draft(tr: GeofenceTransition, auth: Auth | None, index: int) -> EventDraft:
    distance = None if tr.distance_m is None else min(10_000.0, round(tr.distance_m, 2))
    return EventDraft(
        kind=EventKind(tr.kind),
        subject=_subject(tr.device_id),
        observed_at=_dt(tr.at),
        zone_id=tr.geofence_id,
        distance_m=distance,
        confidence=tr.confidence,
        event_id=_event_id(auth, index),
    )


@dataclass(eq=False)
class IngestEvents:
    """One store's reports into the sink: geofence state and the outbox change together."""

    store_id: str
    store: StoreIngestConfig
    engine: GeofenceEngine
    sink: EventSink
    metrics: IngestMetrics
    _regions: dict[tuple[str, str], BeaconRegionSpec] = field(init=False)
    # Geofence state and the outbox write change together, one request at a time.
    _engine_lock: asyncio.Lock = field(init=False, default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self._regions = self.store.regions()

    async def geofence_transitions(self, auth: Auth, report: GeofenceReport) -> list[Event]:
        for i, t in enumerate(report.transitions):
            if t.geofence_id not in self.engine.geofences:
                raise Rejection(
                    422,
                    "invalid_body",
                    f"transitions.{i}.geofence_id: {t.geofence_id!r} is not a geofence of "
                    f"store {self.store_id!r}",
                )

        def step() -> list[GeofenceTransition]:
            out: list[GeofenceTransition] = []
            for t in sorted(report.transitions, key=lambda t: t.at):
                out += self.engine.report(
                    auth.device_id, t.geofence_id, t.transition == "enter", t.at.timestamp()
                )
            return out

        return await self._with_engine(auth.device_id, step, auth)

    async def locations(self, auth: Auth, report: LocationReport) -> list[Event]:
        fixes = sorted(
            (
                Fix(auth.device_id, f.lat, f.lon, f.accuracy_m, f.at.timestamp())
                for f in report.fixes
            ),
            key=lambda f: f.at,
        )

        def step() -> list[GeofenceTransition]:
            out: list[GeofenceTransition] = []
            for fix in fixes:
                out += self.engine.observe(fix)
            return out

        return await self._with_engine(auth.device_id, step, auth)

    async def beacon_regions(self, auth: Auth, report: BeaconReport) -> list[Event]:
        drafts: list[EventDraft] = []
        for i, ev in enumerate(report.events):
            spec = self._regions.get((ev.region.type, ev.region.id))
            if spec is None:
                raise Rejection(
                    422,
                    "invalid_body",
                    f"events.{i}.region: {ev.region.type} {ev.region.id} is not a beacon "
                    f"region of store {self.store_id!r}",
                )
            # An enter is in the zone its ranged reading says (the region's, or its approach
            # zone when weaker than min_rssi); an exit closes both, whichever was entered (an
            # exit of a zone not entered changes nothing in the stream).
            zones = (
                [spec.zone_for(ev.rssi, sustained=ev.sustained)]
                if ev.transition == "enter"
                else [z for z in (spec.zone_id, spec.approach_zone_id) if z is not None]
            )
            for zone in zones:
                enter = ev.transition == "enter"
                drafts.append(
                    EventDraft(
                        kind=EventKind.ZONE_ENTER if enter else EventKind.ZONE_EXIT,
                        subject=_subject(auth.device_id),
                        observed_at=ev.at,
                        zone_id=zone,
                        rssi=ev.rssi,
                        evidence=region_evidence(spec, ev.rssi, ev.sustained) if enter else None,
                        # the first zone keeps the id it always had; an approach zone's exit
                        # gets one of its own
                        event_id=_event_id(auth, i if zone == zones[0] else 10_000 + i),
                    )
                )
        return await self._store(drafts)

    async def tick(self) -> list[Event]:
        """Emit due dwells and stale exits to the sink."""
        async with self._engine_lock:
            return await self._put_unrequested(self.engine.tick(), "tick")

    async def update_store(self, store: StoreIngestConfig) -> list[Event]:
        """Apply a new store configuration live (geofences, beacon regions)."""
        geofences = store.build_geofences()
        async with self._engine_lock:
            transitions = self.engine.replace_geofences(geofences)
            self.store = store
            self._regions = store.regions()
            return await self._put_unrequested(transitions, "configuration change")

    async def _put_unrequested(
        self, transitions: list[GeofenceTransition], why: str
    ) -> list[Event]:
        if not transitions:
            return []
        drafts = [_geofence_draft(tr, None, i) for i, tr in enumerate(transitions)]
        try:
            stored = await self.sink.put(drafts)
        except OutboxError as exc:
            self.metrics.tick_events_lost += len(drafts)
            log.error("%d geofence event(s) from a %s not stored: %s", len(drafts), why, exc)
            return []
        self.metrics.tick_events += len(stored)
        return stored

    async def _store(self, drafts: list[EventDraft]) -> list[Event]:
        if not drafts:
            return []
        try:
            return await self.sink.put(drafts)
        except EventRejected as exc:
            if exc.index is None:  # an event id of this request is already in the outbox
                raise Rejection(
                    409, "replayed_nonce", f"this request's events are already stored: {exc.reason}"
                ) from exc
            raise Rejection(422, "invalid_body", f"event not valid: {exc.reason}") from exc
        except OutboxError as exc:
            raise Rejection(503, "unavailable", f"events not stored: {exc}") from exc

    async def _with_engine(
        self, device_id: str, step: Callable[[], list[GeofenceTransition]], auth: Auth
    ) -> list[Event]:
        async with self._engine_lock:
            before = self.engine.snapshot(device_id)
            try:
                transitions = step()
                drafts = [_geofence_draft(tr, auth, i) for i, tr in enumerate(transitions)]
                return await self._store(drafts)
            except BaseException:
                self.engine.restore(device_id, before)
                raise
