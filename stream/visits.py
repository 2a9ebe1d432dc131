"""The visit sessionizer: one visit per customer and store, whichever radio saw them.

BLE zone events, OS geofence transitions and app-reported beacon regions of the same
customer land on the same state (``p visit:{customer}:{store}``); the first signal starts
the visit, later ones refine it, none doubles it. Signals are of two kinds of evidence:

- *approach*: a geofence crossing (a 100 m circle, iOS's practical minimum, holds the
  pavement and the shop next door) or a zone of kind ``outside`` (a storefront beacon's
  region: the store's rules file says which zones are ``outside``);
- *in-store*: any other zone (a gateway's zone event, an interior beacon's region).

A visit that starts with approach evidence is *approaching* (a visit change ``approach``);
its *arrival* comes with the first in-store evidence, whenever that is, and only then: an
approach that never comes in departs without one. A visit that starts in the store arrives
at once. Either way a visit arrives at most once (what makes "one arrival alert per visit"
hold), and a zone move follows in-store zones only. The customer is *present* while any
signal is open (a zone or the geofence entered and not yet left); once none is, the visit is
*departing*, and becomes a *departure* when ``exit_timeout`` of event time passes without a
new signal. Coming back within ``revisit_gap`` of the last signal continues the same visit;
later, it is a new one.

Time is the events' own ``observed_at`` (so a replayed trace sessionizes the same); for
departures the caller passes a watermark, the latest event time it has seen for the store
(advanced by idle wall time, see :class:`stream.processor.EventProcessor`).

This state is operational and lives only ``2 × revisit_gap``; the visit record on
``proxima.visits.v1`` is published only with ``analytics`` consent, by the processor.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from contracts.models import Event, EventKind, SubjectType, VisitChange, VisitSource, VisitUpdate
from transport.redis import RedisClient, as_text, replace_if_same
from transport.redis_bulk import BulkWrites

VISIT_NS = uuid.UUID("6f2b8a52-3a3c-4c1e-9a55-0d3c1f6e8b10")
ENTER_KINDS = frozenset(
    {
        EventKind.ZONE_ENTER,
        EventKind.ZONE_DWELL,
        EventKind.SIGHTING,
        EventKind.GEOFENCE_ENTER,
        EventKind.GEOFENCE_DWELL,
    }
)
EXIT_KINDS = frozenset({EventKind.ZONE_EXIT, EventKind.GEOFENCE_EXIT})
GEOFENCE_KINDS = frozenset(
    {EventKind.GEOFENCE_ENTER, EventKind.GEOFENCE_DWELL, EventKind.GEOFENCE_EXIT}
)


OUTSIDE = "outside"  # the zone kind of the street in front of the store (layouts, rules files)


class Evidence(StrEnum):
    APPROACH = "approach"
    IN_STORE = "in_store"


def evidence_of(event: Event, zone_kind: str | None) -> Evidence:
    """Whether an event puts its subject near the store or in it (see the module docstring).

    ``zone_kind`` is the kind of the event's zone as the store's rules file knows it; a zone
    it does not know counts as in-store, as every zone did before approaches existed."""
    if event.kind in GEOFENCE_KINDS or zone_kind == OUTSIDE:
        return Evidence.APPROACH
    return Evidence.IN_STORE


def source_of(event: Event) -> VisitSource:
    if event.kind in GEOFENCE_KINDS:
        return VisitSource.GEOFENCE
    if event.subject.type is SubjectType.DEVICE:
        return VisitSource.APP_BEACON
    return VisitSource.BLE


def _ts(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


@dataclass(slots=True)
class VisitState:
    visit_id: str
    started: float
    last_seen: float
    zone: str | None = None
    open: list[str] = field(default_factory=list)
    departed: bool = False
    first_event: str | None = None
    source: str = VisitSource.BLE.value
    zone_event: str | None = None
    """The event that moved the visit into its current zone (so a replay of it re-fires)."""
    departing: bool = False
    arrived: bool = True
    """False while the visit is only approaching (no in-store evidence yet)."""
    arrival_event: str | None = None
    """The event that made the visit arrive (its first, unless it started approaching)."""

    def dump(self) -> str:
        return json.dumps(
            {
                "visit_id": self.visit_id,
                "started": self.started,
                "last_seen": self.last_seen,
                "zone": self.zone,
                "open": self.open,
                "departed": self.departed,
                "first_event": self.first_event,
                "source": self.source,
                "zone_event": self.zone_event,
                "departing": self.departing,
                "arrived": self.arrived,
                "arrival_event": self.arrival_event,
            }
        )

    @classmethod
    def load(cls, raw: bytes | str) -> VisitState:
        data: dict[str, Any] = json.loads(raw)
        if "arrived" not in data:  # written before approaches: every visit began arrived
            data["arrived"] = True
            data["arrival_event"] = data.get("first_event")
        return cls(**data)


@dataclass(frozen=True, slots=True)
class Observation:
    """What one event did to its visit."""

    visit_id: str
    started: float
    first_event: str | None
    arrival: bool
    zone: str | None
    entered_zone: str | None
    """The zone this event entered (a zone_enter into a new zone), for zone rules."""
    updates: tuple[VisitUpdate, ...]
    late: bool = False
    approach: bool = False
    """This event started the visit as an approach (no in-store evidence yet)."""


@dataclass(frozen=True, slots=True)
class Written:
    """What an event did to its visit's stored state: the state to write and its change
    in the store's departing set: added at ``departing_at`` (its last signal's time), or
    removed (``undeparting``), or neither."""

    state: VisitState
    departing_at: float | None = None
    undeparting: bool = False


class VisitTracker:
    """Visit state in Redis; one instance per worker."""

    def __init__(
        self,
        redis: RedisClient,
        prefix: str,
        *,
        revisit_gap_s: float,
        exit_timeout_s: float,
    ) -> None:
        self.r = redis
        self.p = prefix
        self.revisit_gap_s = revisit_gap_s
        self.exit_timeout_s = exit_timeout_s

    def _state_key(self, customer_id: str, store_id: str) -> str:
        return f"{self.p}visit:{customer_id}:{store_id}"

    def _departing_key(self, store_id: str) -> str:
        return f"{self.p}departing:{store_id}"

    def state_key(self, customer_id: str, store_id: str) -> str:
        return self._state_key(customer_id, store_id)

    def apply(
        self,
        customer_id: str,
        event: Event,
        state: VisitState | None,
        *,
        zone_kind: str | None = None,
    ) -> tuple[Observation, Written | None]:
        """Apply one event to the customer's visit ``state`` at the event's store (None:
        no visit), in memory: the observation, and what to write (:class:`Written`), None
        when nothing changed. ``state`` is changed in place; the written state is the one
        to pass with the customer's next event.

        ``zone_kind`` is the kind of the event's zone in the store's rules (``outside``
        makes it approach evidence). The caller writes (:meth:`queue_write`) what a batch
        of events did once, after all of them: the last state of each visit counts.
        """
        t = event.observed_at.timestamp()
        eid = str(event.event_id)
        store = event.store_id
        source = source_of(event)
        inside = evidence_of(event, zone_kind) is Evidence.IN_STORE
        signal = "geofence" if source is VisitSource.GEOFENCE else f"zone:{event.zone_id or '-'}"
        # The visit's zone is where in the store it is: approach evidence never sets it.
        zone = event.zone_id if inside else None
        updates: list[VisitUpdate] = []
        entering = event.kind in ENTER_KINDS

        def update(change: VisitChange, st: VisitState, prev: str | None = None) -> VisitUpdate:
            return VisitUpdate(
                visit_id=st.visit_id,
                customer_id=customer_id,
                store_id=store,
                change=change,
                at=_ts(t),
                started_at=_ts(st.started),
                zone_id=st.zone,
                previous_zone_id=prev,
                source=source,
                caused_by=[event.event_id],
            )

        def seen(
            st: VisitState,
            *,
            late: bool = False,
            arrival: bool = False,
            approach: bool = False,
            entered_zone: str | None = None,
            updates: list[VisitUpdate] | None = None,
        ) -> Observation:
            return Observation(
                visit_id=st.visit_id,
                started=st.started,
                first_event=st.first_event,
                arrival=arrival,
                zone=st.zone,
                entered_zone=entered_zone,
                updates=tuple(updates or ()),
                late=late,
                approach=approach,
            )

        if state is not None and t < state.started - self.revisit_gap_s:
            # Older than the visit by more than a gap: a straggler of an earlier visit.
            return seen(state, late=True), None
        if state is not None and eid in (state.first_event, state.arrival_event, state.zone_event):
            # A replay (worker died before committing): say again what the event did, so
            # an alert that never reached Kafka is built again with the same id.
            arrival = eid == state.arrival_event
            approach = eid == state.first_event and not arrival
            return seen(
                state,
                arrival=arrival,
                approach=approach,
                entered_zone=state.zone if eid == state.zone_event else None,
                updates=[update(VisitChange.ARRIVAL, state)]
                if arrival
                else [update(VisitChange.APPROACH, state)]
                if approach
                else [],
            ), None
        new = state is None or t - state.last_seen >= self.revisit_gap_s
        if new and not entering:
            # An exit with no visit to leave: nothing to start.
            return Observation("", t, None, False, None, None, (), True), None
        entered_zone = None
        arrival = approach = unmark = False
        if new:
            unmark = state is not None and state.departing
            state = VisitState(
                visit_id=str(uuid.uuid5(VISIT_NS, f"visit|{customer_id}|{store}|{round(t, 3)}")),
                started=t,
                last_seen=t,
                zone=zone,
                open=[signal],
                first_event=eid,
                zone_event=eid if zone else None,
                arrived=inside,
                arrival_event=eid if inside else None,
            )
            arrival, approach = inside, not inside
            updates.append(update(VisitChange.ARRIVAL if inside else VisitChange.APPROACH, state))
            entered_zone = zone
        else:
            assert state is not None
            state.last_seen = max(state.last_seen, t)
            if entering:
                if signal not in state.open:
                    state.open.append(signal)
                state.departed = False
                unmark = state.departing
                state.departing = False
                if inside and not state.arrived:
                    # The first in-store evidence of an approaching visit: its arrival.
                    state.arrived, state.arrival_event, arrival = True, eid, True
                    state.zone = zone
                    state.zone_event = eid if zone else None
                    updates.append(update(VisitChange.ARRIVAL, state))
                    entered_zone = zone
                elif zone is not None and zone != state.zone:
                    prev, state.zone = state.zone, zone
                    state.zone_event = eid
                    updates.append(update(VisitChange.ZONE_MOVE, state, prev))
                    entered_zone = zone
            elif signal in state.open:
                state.open.remove(signal)
        state.source = source.value
        departing_at = None
        if not state.open and not state.departed:
            state.departing = True
            departing_at = state.last_seen
        observed = seen(
            state,
            arrival=arrival,
            approach=approach,
            entered_zone=entered_zone,
            updates=updates,
        )
        # Removed then added again within one event: added (as the two writes would leave it).
        return observed, Written(state, departing_at, unmark and departing_at is None)

    def queue_write(
        self, writes: BulkWrites, customer_id: str, store_id: str, state: VisitState
    ) -> None:
        """Queue a visit's state on ``writes``."""
        key = self._state_key(customer_id, store_id)
        writes.set(key, state.dump(), int(self.revisit_gap_s * 2) + 1)

    def queue_departing(
        self, writes: BulkWrites, customer_id: str, store_id: str, at: float | None
    ) -> None:
        """Queue a visit's departing-set change on ``writes``: added at ``at`` (its last
        signal's time), or removed (None)."""
        key = self._departing_key(store_id)
        if at is None:
            writes.zrem(key, customer_id)
        else:
            writes.zadd(key, customer_id, at)

    async def departures(self, store_id: str, watermark: float) -> list[VisitUpdate]:
        """Visits of the store whose last signal closed ``exit_timeout`` before ``watermark``.

        Nothing is recorded here: a departure stays due until :meth:`settle` (called once
        its record is on Kafka, or when it is not to be published), so a worker that dies
        in between publishes it after the restart (at least once; a repeat has the same
        ``visit_id``). Only members with nothing left to depart are dropped."""
        dkey = self._departing_key(store_id)
        due = await self.r.zrangebyscore(dkey, "-inf", watermark - self.exit_timeout_s)
        out: list[VisitUpdate] = []
        for member in due:
            cid = as_text(member)
            raw = await self.r.get(self._state_key(cid, store_id))
            state = VisitState.load(raw) if raw else None
            if state is None or state.open or state.departed:
                await self.r.zrem(dkey, cid)
                continue
            out.append(
                VisitUpdate(
                    visit_id=state.visit_id,
                    customer_id=cid,
                    store_id=store_id,
                    change=VisitChange.DEPARTURE,
                    at=_ts(state.last_seen + self.exit_timeout_s),
                    started_at=_ts(state.started),
                    zone_id=state.zone,
                    source=VisitSource(state.source),
                )
            )
        return out

    async def settle(self, departures: list[VisitUpdate]) -> None:
        """Record departures as done: the visit's state first, then the departing set (a
        crash in between leaves a member that :meth:`departures` drops). A visit that
        came back or changed since (another ``visit_id``, open again) is left alone.

        The state is replaced only if it still holds what was read (one script, keeping
        its TTL): a step that wrote the visit in between is never overwritten with the
        older state it replaced; the state is read again and judged afresh."""
        for update in departures:
            key = self._state_key(update.customer_id, update.store_id)
            if await self._mark_departed(key, update.visit_id):
                await self.r.zrem(self._departing_key(update.store_id), update.customer_id)

    async def _mark_departed(self, key: str, visit_id: str) -> bool:
        """Mark the state at ``key`` departed if it is still visit ``visit_id``, closed;
        True if so or if the state is gone (False: the visit changed, leave it)."""
        while raw := await self.r.get(key):
            state = VisitState.load(raw)
            if state.visit_id != visit_id or state.open or state.departed:
                return False
            state.departed = True
            state.departing = False
            if await replace_if_same(self.r, key, raw, state.dump()):
                return True
        return True
