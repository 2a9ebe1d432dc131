"""The decision chain for one event: resolve → consent → visit → rules → dedupe → alert.

Plain async code, independent of Faust, so it is unit-tested directly; the Faust agent in
:mod:`stream.app` only moves bytes in and out.

- **Identity**: an Eddystone-EID resolves through the EID index (enrolled customers only),
  an app device id through the registry's device map; anything else is nobody and is
  dropped here, counted, never stored.
- **Consent** (per purpose, store-specific over global): without ``arrival_alerts`` and
  without ``analytics`` the event stops here. ``arrival_alerts`` is checked again as the
  alert is built, so a revocation that lands while the event is in flight wins.
- **Visits** (:mod:`stream.visits`): visit changes are returned for ``proxima.visits.v1``
  only when the customer granted ``analytics``. The store's rules file says which zones are
  ``outside`` (a storefront beacon's region): evidence of an approach, not an arrival.
- **Rules** (:mod:`stream.rules`) decide which alerts a visit's approach, its arrival or a
  zone entry causes.

At least once, exactly one alert: an event may be processed twice (a worker killed after
producing but before committing). The visit id derives from the visit's first event, the
alert id from the dedupe key (customer, store, visit, kind). The key is claimed with
``SET NX EX`` as ``pending:<id>`` before the alert is produced and becomes ``sent:<id>``
once Kafka has it; a replay finding ``pending`` with the same id produces the same alert
again (the notifier drops the copy), one finding ``sent`` stays silent. The worker also
keeps the sent keys in a changelog-backed Faust table (:mod:`stream.tables`), consulted
first as :attr:`EventProcessor.sent_log`: a hit stays silent without asking Redis, and a
restarted worker knows what it sent even if Redis lost the key. Redis stays the authority
across workers (only it sees another worker's claim still pending). A step's visit states
reach Redis with its marks, after its output is on Kafka (:class:`Step`), so a step run
again is decided against the states it was first decided against.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from redis.asyncio.cluster import RedisCluster

from contracts.models import (
    Alert,
    AlertKind,
    Event,
    EventKind,
    SubjectType,
    VisitChange,
    VisitUpdate,
)
from stream.bookings import Bookings, with_bookings
from stream.consent_view import ConsentView
from stream.identity import IdentityIndex
from stream.registry import CustomerProfile, Purpose, Registry
from stream.rules import Rule, RuleBook, Trigger, eta_text, priority_for, render, target_for
from stream.visits import Observation, VisitState, VisitTracker
from transport.redis import RedisClient, as_text
from transport.redis_bulk import BulkWrites

log = logging.getLogger(__name__)

ALERT_NS = uuid.UUID("6f2b8a52-3a3c-4c1e-9a55-0d3c1f6e8b10")


class SentLog(Protocol):
    """Where the worker records alerts as sent, besides Redis (:class:`stream.tables.AlertDedupe`)."""

    def sent(self, key: str, now: float) -> str | None:
        """The id of the alert sent for dedupe key ``key`` (:meth:`EventProcessor.dedupe_id`)."""
        ...


@dataclass(slots=True)
class ProcessorStats:
    counts: Counter[str] = field(default_factory=Counter)


@dataclass(slots=True)
class Decision:
    """What one event caused: alerts for ``proxima.alerts.v1``, visit changes for ``.visits``."""

    alerts: list[Alert] = field(default_factory=list)
    visits: list[VisitUpdate] = field(default_factory=list)


@dataclass(slots=True)
class Step:
    """One try at a step of the worker, between :meth:`EventProcessor.decide_batch` and
    :meth:`EventProcessor.mark_done`: what it leaves for after its output is on Kafka.

    - ``writes``: each visit's new state and departing-set change. They go to Redis with
      the step's marks, in the same call, only once Kafka has the step's alerts and
      visits: a try that fails (Kafka refusing, the worker killed) leaves the states as
      they were, so its retry or the restarted worker decides the step's events again
      against the same states and makes the same visits and alerts (a state written early
      had made an earlier visit's event a late straggler on the replay, and its arrival
      alert was never sent).
    - ``stores``: the stores the step advanced, whose departures are checked once its
      states are written (:meth:`EventProcessor.step_departures`).
    - ``claims``: the dedupe claims it made, released if the try fails
      (:meth:`EventProcessor.release_claims`); a step's own, so that two agents deciding
      through one processor never release each other's."""

    writes: BulkWrites = field(default_factory=BulkWrites)
    stores: set[str] = field(default_factory=set)
    claims: list[str] = field(default_factory=list)


class EventProcessor:
    """Turns events into alerts and visits, holding every guarantee about consent and visibility."""

    def __init__(
        self,
        redis: RedisClient,
        prefix: str,
        *,
        drift_windows: int = 1,
        revisit_gap_s: float = 4 * 3600,
        exit_timeout_s: float = 300,
        dedupe_ttl_s: int = 2 * 86400,
        rules: RuleBook | None = None,
        registry: Registry | None = None,
        sent_log: SentLog | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.r = redis
        self.p = prefix
        self.registry = registry or Registry(redis, prefix)
        self.bookings = Bookings(redis, prefix)
        self.identity = IdentityIndex(self.registry, drift_windows)
        self.consent_view = ConsentView(self.registry)
        """Consent as last read, while its registry shard is unchanged (stream.consent_view)."""
        self.visits = VisitTracker(
            redis, prefix, revisit_gap_s=revisit_gap_s, exit_timeout_s=exit_timeout_s
        )
        self.rules = rules or RuleBook(None)
        self.revisit_gap_s = revisit_gap_s
        self.dedupe_ttl_s = dedupe_ttl_s
        self.sent_log = sent_log
        """Consulted before Redis's dedupe key; the Faust app attaches its table here."""
        self.now = now
        self.monotonic = monotonic
        # One counter for the chain and its rule book (rules_reload_errors): `proxima stats`.
        self.stats = ProcessorStats(counts=self.rules.counts)
        # store → (latest event time seen, monotonic time it was seen): the departure clock
        self._watermarks: dict[str, tuple[float, float]] = {}
        self._checked: dict[str, float] = {}
        self._claimed: OrderedDict[str, None] = OrderedDict()
        # Held by a step from its decision to its marks (stream.runner.BatchRunner.attempt)
        # and by the departures timer (:meth:`tick`): the visit states a step decided from
        # are in Redis only after its marks, so nothing else may decide or depart from them
        # meanwhile (two agents, v1 and v2 records, share this processor).
        self.step_lock = asyncio.Lock()
        self.departure_every_s = 1.0  # event time between departure checks on the event path

    async def process(self, event: Event) -> list[Alert]:
        """The alerts this event causes (usually none)."""
        return (await self.decide(event)).alerts

    async def decide(self, event: Event) -> Decision:
        """One event on its own (tests, tools); the worker uses :meth:`decide_batch`."""
        (decision,) = await self.decide_batch([event])
        return decision

    async def decide_batch(self, events: list[Event], step: Step | None = None) -> list[Decision]:
        """Decide a batch in order, reading Redis once for all of it.

        Everything the batch needs (duplicate marks, consent, visit state) is read in one
        pipeline, then the alert path (:meth:`_alerts`: profiles, consent re-check, then a
        dedupe claim per candidate) reads Redis afresh. Each visit's last state is queued on
        ``step``'s writes, which :meth:`mark_done` makes once the step's output is on Kafka
        (the worker's way, :class:`Step`). Without a ``step`` (tests, tools) the states are
        written here, in one round trip, and the stores' due departures come with the last
        decision.
        """
        c = self.stats.counts
        c["events"] += len(events)
        own = step is None
        step = step or Step()
        decisions = [Decision() for _ in events]
        todo: list[tuple[int, Event, str]] = []
        for i, event in enumerate(events):
            customer_id = await self._resolve(event)
            if customer_id is None:
                # Dropped here, never stored; resolving first spares Redis for most of the
                # traffic (phones of people who never enrolled).
                c["unresolved"] += 1
            elif event.kind is EventKind.LOCATION:
                c["location_dropped"] += 1  # location trails are not kept
            else:
                todo.append((i, event, customer_id))
        if not todo:
            return decisions
        pairs = sorted({(cid, e.store_id) for _, e, cid in todo})
        marks = [self._k("event", str(e.event_id)) for _, e, _ in todo]
        # One server counts the batch's marks in one EXISTS: almost always none is there
        # (a replay, or a duplicate from a gateway, is rare), and only then is each asked.
        # A cluster pipeline cannot split a multi-key command over slots: one per event.
        counted = not isinstance(self.r, RedisCluster)
        async with self.r.pipeline(transaction=False) as pipe:
            if counted:
                pipe.exists(*marks)
            else:
                for mark in marks:
                    pipe.exists(mark)
            reading = self.consent_view.queue(pipe, pairs)
            state_keys = [self.visits.state_key(cid, store) for cid, store in pairs]
            if counted:  # one server: one MGET (a cluster's keys are on many slots)
                pipe.mget(state_keys)
            else:
                for key in state_keys:
                    pipe.get(key)
            got = await pipe.execute()
        n = 1 if counted else len(todo)
        hits = got[:n]
        if counted:
            hits = await self._each_exists(marks) if got[0] else [0] * len(todo)
        seen = {str(e.event_id) for (_, e, _), hit in zip(todo, hits, strict=True) if hit}
        self.consent_view.take(reading, got[n : n + reading.commands])
        raws = got[n + reading.commands :]
        if counted:
            raws = raws[0]
        # Each visit's state parsed once, changed in memory by the batch's events in order,
        # and written once after them (its last state, and its last departing-set change).
        states: dict[tuple[str, str], VisitState | None] = {
            pair: VisitState.load(raw) if raw else None
            for pair, raw in zip(pairs, raws, strict=True)
        }
        written: dict[tuple[str, str], VisitState] = {}
        departing: dict[tuple[str, str], float | None] = {}
        # As fresh as this round trip: decisions held for the versions it read; those of a
        # shard that changed since they were read cost one more.
        consent, stale = self.consent_view.decisions(pairs)
        if stale:
            consent |= await self.consent_view.read(stale)
        triggered: list[tuple[int, Event, str, Observation, list[Trigger]]] = []
        stores: set[str] = set()
        for i, event, cid in todo:
            eid = str(event.event_id)
            if eid in seen:
                c["duplicate_events"] += 1
                continue
            seen.add(eid)
            store = event.store_id
            alerts_ok, analytics_ok = consent[(cid, store)]
            if not (alerts_ok or analytics_ok):
                c["no_consent"] += 1
                continue
            pair = (cid, store)
            obs, change = self.visits.apply(
                cid, event, states[pair], zone_kind=self._zone_kind(event)
            )
            if change is not None:
                states[pair] = written[pair] = change.state
                if change.departing_at is not None or change.undeparting:
                    departing[pair] = change.departing_at
            self._advance(store, event.observed_at.timestamp())
            stores.add(store)
            if obs.late:
                c["late_events"] += 1
            if obs.arrival:
                c["arrivals"] += 1
            if obs.approach:
                c["approaches"] += 1
            if analytics_ok:
                decisions[i].visits.extend(obs.updates)
            elif obs.updates:
                c["visits_withheld"] += len(obs.updates)
            if not alerts_ok:
                c["no_consent"] += 1
                continue
            if obs.late or not obs.visit_id:
                continue
            triggers = []
            if obs.approach:
                triggers.append(Trigger.APPROACH)
            if obs.arrival:
                triggers.append(Trigger.ARRIVAL)
            if obs.entered_zone is not None:
                triggers.append(Trigger.ZONE_ENTER)
            if not triggers:
                c["visit_continues"] += 1
                continue
            # Only triggers some rule of the store is for: the alert path reads the
            # customer's profile and bookings, which most zone moves do not need.
            ruleset = self.rules.for_store(store)
            triggers = [t for t in triggers if ruleset.may_fire(t, obs.zone)]
            if not triggers:
                c["no_rule"] += 1
                continue
            # Every alert those rules could build for this visit already sent (or claimed by
            # this worker): the alert path would dedupe each; its reads are spared.
            kinds = {k for t in triggers for k in ruleset.kinds_for(t, obs.zone)}
            if all(self._alerted(cid, store, obs.visit_id, kind) for kind in kinds):
                c["deduped"] += 1
                continue
            triggered.append((i, event, cid, obs, triggers))
        for (cid, store), at in departing.items():
            self.visits.queue_departing(step.writes, cid, store, at)
        for (cid, store), state in written.items():
            self.visits.queue_write(step.writes, cid, store, state)
        step.stores |= stores
        for i, alerts in (await self._alerts(triggered, step)).items():
            decisions[i].alerts.extend(alerts)
        if own:
            await step.writes.execute(self.r)
            last = max(i for i, _, _ in todo)
            decisions[last].visits.extend(await self.step_departures(step))
        return decisions

    async def step_departures(self, step: Step) -> list[VisitUpdate]:
        """The due departures of the stores ``step`` advanced, each store at most once per
        ``departure_every_s`` of its event time (a replay at full speed departs visits as
        it goes, not only on the timer's wall-clock ticks). Call once the step's states are
        written: the check reads them."""
        out: list[VisitUpdate] = []
        for store in sorted(step.stores):
            t = self._watermarks[store][0]
            if t - self._checked.get(store, float("-inf")) >= self.departure_every_s:
                self._checked[store] = t
                out.extend(await self.departures(store))
        return out

    async def _alerts(
        self, triggered: list[tuple[int, Event, str, Observation, list[Trigger]]], step: Step
    ) -> dict[int, list[Alert]]:
        """The alerts of a batch's triggered events, by event index.

        Read in one round trip each for the whole batch: the profiles, then — after the
        candidates are built — consent again (a revocation in flight wins). Cooldowns and
        dedupe claims stay in event order, one event's writes seen by the next.
        """
        if not triggered:
            return {}
        c = self.stats.counts
        customers = sorted({cid for _, _, cid, _, _ in triggered})
        profiles = await self.registry.get_many(customers)
        # Their reservations and appointments (stream.bookings): an alert shows the one at
        # its store around its time, if the customer made it visible.
        booked = await self.bookings.of_customers(cid for cid in customers if profiles.get(cid))
        built: list[tuple[int, Event, str, list[tuple[Rule, Alert]]]] = []
        for i, event, customer_id, obs, triggers in triggered:
            profile = profiles[customer_id]
            if profile is None:
                c["no_profile"] += 1
                continue
            if booked.get(customer_id):
                profile = with_bookings(
                    profile, booked[customer_id], event.store_id, event.observed_at
                )
            candidates = self._candidates(customer_id, event, obs, triggers, profile)
            if candidates:
                built.append((i, event, customer_id, candidates))
        if not built:
            return {}
        # Check consent again as the alerts are built: a revocation in flight wins.
        consent = await self.registry.consent_many(
            sorted({(cid, e.store_id) for _, e, cid, _ in built}), Purpose.ARRIVAL_ALERTS
        )
        out: dict[int, list[Alert]] = {}
        for i, event, customer_id, candidates in built:
            store = event.store_id
            if not consent[(customer_id, store)]:
                c["revoked_in_flight"] += len(candidates)
                continue
            ruleset = self.rules.for_store(store)
            t = event.observed_at.timestamp()
            for rule, alert in candidates:
                if self._sent_before(alert):
                    c["deduped"] += 1
                    continue
                cooldown = ruleset.cooldown(rule)
                if await self._cooling(customer_id, store, rule.id, t, alert.alert_id, cooldown):
                    c["cooldown"] += 1
                    continue
                if not await self._claim(alert, step):
                    c["deduped"] += 1
                    continue
                if cooldown > 0:
                    await self.r.set(
                        self._k("cooldown", customer_id, store, rule.id),
                        json.dumps({"t": t, "alert_id": str(alert.alert_id)}),
                        ex=int(cooldown + self.revisit_gap_s) + 1,
                    )
                c["alerts"] += 1
                out.setdefault(i, []).append(alert)
        return out

    def _candidates(
        self,
        customer_id: str,
        event: Event,
        obs: Observation,
        triggers: list[Trigger],
        profile: CustomerProfile,
    ) -> list[tuple[Rule, Alert]]:
        """The alerts the store's rules build for this event (before cooldown and dedupe)."""
        c = self.stats.counts
        store = event.store_id
        visible = profile.visible()
        ruleset = self.rules.for_store(store)
        candidates = []
        for trigger in triggers:
            for rule in ruleset.matching(trigger, profile, visible, obs.zone, event.observed_at):
                if ruleset.quiet(event.observed_at) and not rule.during_quiet_hours:
                    c["quiet_hours"] += 1
                    continue
                eta = (
                    eta_text(event.distance_m)
                    if event.kind is EventKind.GEOFENCE_ENTER and trigger is Trigger.APPROACH
                    else ""
                )
                title, body = render(rule, visible, obs.zone, eta)
                caused = [event.event_id]
                if obs.first_event and obs.first_event != str(event.event_id):
                    caused.insert(0, uuid.UUID(obs.first_event))
                candidates.append(
                    (
                        rule,
                        Alert(
                            alert_id=self.alert_id(customer_id, store, obs.visit_id, rule.alert),
                            store_id=store,
                            customer_id=customer_id,
                            visit_id=obs.visit_id,
                            kind=rule.alert,
                            title=title,
                            body=body,
                            fields=visible,
                            zone_id=obs.zone,
                            caused_by=caused,
                            created_at=self.now(),
                            priority=priority_for(rule, visible),
                            target=target_for(rule, profile),
                        ),
                    )
                )
        return candidates

    async def departures(self, store_id: str) -> list[VisitUpdate]:
        """Departures due at the store's watermark, for customers with ``analytics`` consent.

        They stay due until :meth:`settle_departures` (after their records are on Kafka);
        those withheld for want of consent are settled here."""
        mark = self._watermarks.get(store_id)
        if mark is None:
            return []
        event_t, seen_at = mark
        watermark = event_t + max(0.0, self.monotonic() - seen_at)
        out, withheld = [], []
        for update in await self.visits.departures(store_id, watermark):
            if await self.registry.has_consent(update.customer_id, Purpose.ANALYTICS, store_id):
                out.append(update)
            else:
                withheld.append(update)
        self.stats.counts["departures"] += len(out) + len(withheld)
        self.stats.counts["visits_withheld"] += len(withheld)
        await self.visits.settle(withheld)  # nothing to publish: done now
        return out

    async def settle_departures(self, visits: list[VisitUpdate]) -> None:
        """Record the departures among ``visits`` as done: call once they are on Kafka.
        Until then they stay due, and the next check returns them again."""
        await self.visits.settle([v for v in visits if v.change is VisitChange.DEPARTURE])

    async def tick(self) -> list[VisitUpdate]:
        """Departures due at every store this worker has seen, between steps
        (:attr:`step_lock`): a step in flight has not written the states it made."""
        async with self.step_lock:
            return await self._due()

    async def depart(self, publish: Callable[[list[VisitUpdate]], Awaitable[None]]) -> None:
        """The departures timer's job: every store's due departures, handed to
        ``publish`` (which returns once Kafka has them all), then settled.

        All of it between steps (:attr:`step_lock`): a step that continued a visit after
        it was found due would otherwise see its departure published anyway, or its
        state settled over. ``publish`` failing leaves them due for the next tick."""
        async with self.step_lock:
            due = await self._due()
            await publish(due)
            await self.settle_departures(due)

    async def _due(self) -> list[VisitUpdate]:
        return [u for store in list(self._watermarks) for u in await self.departures(store)]

    async def mark_sent(self, alert: Alert, event: Event | None = None) -> None:
        """Record that the alert is on Kafka; later duplicates of its cause stay silent."""
        await self.r.set(self._dedupe_key(alert), f"sent:{alert.alert_id}", ex=self.dedupe_ttl_s)

    async def mark_processed(self, event: Event) -> None:
        await self.r.set(self._k("event", str(event.event_id)), 1, ex=self.dedupe_ttl_s)

    async def mark_processed_many(self, events: list[Event]) -> None:
        await self.mark_done([], events)

    async def mark_sent_many(self, alerts: list[Alert]) -> None:
        await self.mark_done(alerts, [])

    async def mark_done(
        self, alerts: list[Alert], events: list[Event], step: Step | None = None
    ) -> None:
        """After Kafka has a batch's output: ``step``'s visit states, its alerts as sent,
        its events as processed.

        One round trip on one server (:class:`transport.redis_bulk.BulkWrites`: one script,
        run at once, for up to 5,000 writes; more are several calls, in order), two on a
        cluster (the states, then the marks): either way no event is marked processed
        unless its visit's state is written and its alert is marked sent.
        """
        writes = BulkWrites() if step is None else step.writes
        if step is not None and isinstance(self.r, RedisCluster):
            # A cluster pipeline goes to its nodes at once: the states first, on their own,
            # or an event's mark could land on its node while its state's node failed.
            await writes.execute(self.r)
            writes = BulkWrites()
        ttl = self.dedupe_ttl_s
        for alert in alerts:
            writes.set(self._dedupe_key(alert), f"sent:{alert.alert_id}", ttl)
        mark = self._k("event", "")
        for event in events:
            writes.set(f"{mark}{event.event_id}", 1, ttl)
        await writes.execute(self.r)

    @staticmethod
    def alert_id(customer_id: str, store_id: str, visit_id: str, kind: AlertKind) -> uuid.UUID:
        return uuid.uuid5(ALERT_NS, f"{customer_id}|{store_id}|{visit_id}|{kind.value}")

    @staticmethod
    def dedupe_id(alert: Alert) -> str:
        """The alert's dedupe key (customer, store, visit, kind), as the table holds it."""
        return EventProcessor.dedupe_id_of(
            alert.customer_id, alert.store_id, alert.visit_id, alert.kind
        )

    @staticmethod
    def dedupe_id_of(customer_id: str, store_id: str, visit_id: str | None, kind: AlertKind) -> str:
        """:meth:`dedupe_id` of an alert of ``kind`` not built yet."""
        return ":".join((customer_id, store_id, visit_id or "-", kind.value))

    def _alerted(self, customer_id: str, store_id: str, visit_id: str, kind: AlertKind) -> bool:
        """True if an alert of ``kind`` for the visit is known here as sent (the table) or
        claimed by this worker: either way :meth:`_alerts` would dedupe it."""
        key = self.dedupe_id_of(customer_id, store_id, visit_id, kind)
        return self._k("alerted", key) in self._claimed or self._in_sent_table(key)

    def _in_sent_table(self, dedupe_id: str) -> bool:
        """True if the local dedupe table knows the alert as sent (no Redis round trip)."""
        if self.sent_log is None:
            return False
        try:
            return self.sent_log.sent(dedupe_id, self.now().timestamp()) is not None
        except Exception:
            # The table is a cache: a store that cannot be read is a miss (Redis decides).
            log.exception("alert dedupe table not readable; asking Redis")
            self.stats.counts["dedupe_table_errors"] += 1
            return False

    def _k(self, *parts: str) -> str:
        return self.p + ":".join(parts)

    def _dedupe_key(self, alert: Alert) -> str:
        return self._k("alerted", self.dedupe_id(alert))

    def _sent_before(self, alert: Alert) -> bool:
        """True if the local table knows this alert as sent (no Redis round trip then).

        Checked before the cooldown and the claim: a replayed alert has the same id, which
        the cooldown would let through anyway, and the claim would refuse.
        """
        if not self._in_sent_table(self.dedupe_id(alert)):
            return False
        self.stats.counts["dedupe_table_hits"] += 1
        return True

    def _zone_kind(self, event: Event) -> str | None:
        """The kind of the event's zone in its store's rules (``outside``: an approach)."""
        if event.zone_id is None:
            return None
        return self.rules.for_store(event.store_id).zones.get(event.zone_id)

    def _advance(self, store: str, t: float) -> None:
        mark = self._watermarks.get(store)
        if mark is None or t >= mark[0]:
            self._watermarks[store] = (t, self.monotonic())

    async def _resolve(self, event: Event) -> str | None:
        if event.subject.type is SubjectType.DEVICE:
            return await self.registry.customer_for_device(event.subject.id)
        return await self.identity.resolve(event.subject, event.observed_at.timestamp())

    async def _consents(self, customer_id: str, store: str) -> tuple[bool, bool]:
        return (
            await self.registry.has_consent(customer_id, Purpose.ARRIVAL_ALERTS, store),
            await self.registry.has_consent(customer_id, Purpose.ANALYTICS, store),
        )

    async def _each_exists(self, keys: list[str]) -> list[int]:
        async with self.r.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.exists(key)
            found: list[int] = await pipe.execute()
        return found

    async def _seen(self, event: Event) -> bool:
        return bool(await self.r.exists(self._k("event", str(event.event_id))))

    async def _claim(self, alert: Alert, step: Step) -> bool:
        """SET NX EX the dedupe key; True if this alert should be produced."""
        key = self._dedupe_key(alert)
        if key in self._claimed:
            return False  # claimed by this worker already (its send may still be in flight)
        if await self.r.set(key, f"pending:{alert.alert_id}", nx=True, ex=self.dedupe_ttl_s):
            self._remember(key, step)
            return True
        held = await self.r.get(key)
        held_s = as_text(held)
        # Claimed by an earlier worker that died before Kafka confirmed: the same id again.
        if held_s == f"pending:{alert.alert_id}":
            self._remember(key, step)
            return True
        return False

    def release_claims(self, step: Step) -> None:
        """Forget the claims ``step`` made: its try failed.

        The worker retries a failed batch whole. An alert claimed by the failed try may
        never have reached Kafka, and this worker's memory of the claim would refuse it
        (:meth:`_claim`); Redis still holds ``pending:<id>``, which the retry takes again.
        """
        for key in step.claims:
            self._claimed.pop(key, None)
        step.claims.clear()

    def _remember(self, key: str, step: Step) -> None:
        self._claimed[key] = None
        step.claims.append(key)
        while len(self._claimed) > 100_000:
            self._claimed.popitem(last=False)

    async def _cooling(
        self,
        customer_id: str,
        store: str,
        rule_id: str,
        t: float,
        alert_id: uuid.UUID,
        cooldown: float,
    ) -> bool:
        if cooldown <= 0:
            return False
        raw = await self.r.get(self._k("cooldown", customer_id, store, rule_id))
        if not raw:
            return False
        last = json.loads(raw)
        if last["alert_id"] == str(alert_id):
            return False  # the same alert again (a replay), not a new one
        return 0 <= t - float(last["t"]) < cooldown
