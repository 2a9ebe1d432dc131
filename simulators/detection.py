"""``proxima bench detection``: the detection figures of DESIGN.md on simulated stores, offline.

For each seed it simulates a scenario, runs every gateway's real decision path
(``edge.pipeline.Pipeline`` with the thresholds ``proxima replay`` gives it from the
layout's calibration, timers ticked each second of trace time), resolves the EIDs the way
the stream does (``beacons.resolver`` over the enrolled customers' keys), adds what the
customers' apps report (geofence entries, beacon regions), applies the stream's visit rule
(:func:`visit_alerts`: a signal of a customer not seen for ``revisit_gap_s`` starts a
visit, an approach unless it is in-store evidence; the first in-store evidence is the
arrival; alerts only with ``arrival_alerts`` consent at that moment) and scores arrivals
and approaches with ``simulators.score`` against the trace's truth, overall and per device
class.

No broker is involved, so it measures what the radio and the zone logic allow, quickly
(~5 s per boutique-rush seed) and for many seeds; the end-to-end test
(tests/simulators/test_end_to_end.py) scores one of these traces through the real
Mosquitto, Kafka and Redis pipeline. Latency is from the truth's door crossing to the
``observed_at`` of the event that caused the alert (the pipeline adds ~20-50 ms,
``proxima bench stream``/``notifier``); an app event's ``observed_at`` is when the OS told
the app, so iOS's delays are in it; for iPhone visitors the bench also splits that latency
at the floor iOS sets (:func:`ios_floors`).
"""

from __future__ import annotations

import json
import math
import tempfile
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import Any, NamedTuple

from beacons.fusion import Evidence, FusionConfig, StorePresence
from beacons.presence import Transition
from beacons.resolver import EidResolver
from contracts.models import Alert, AlertKind
from contracts.trace import AdvRecord, AppRecord, read_trace
from edge.fusion import (
    FUSION_GATEWAY_ID,
    evidence_of_transition,
    fusable,
    fusion_config,
    fusion_roles,
    gateway_settings,
)
from edge.geofence import Circle, Fix, GeofenceEngine, GeofenceError
from edge.pipeline import Pipeline
from edge.settings import EdgeSettings
from edge.sources import advert_from_record
from simulators.app_replay import region_ref, store_config
from simulators.devices import first_ranging
from simulators.engine import Simulation, build_scenario
from simulators.layout import StoreLayout
from simulators.movement import Trajectory
from simulators.population import Person
from simulators.score import (
    DEFAULT_REVISIT_GAP_S,
    Score,
    Tally,
    Visit,
    by_class,
    load_truth,
    percentile_s,
    score,
)
from simulators.side_lines import Ranging

EVENT_NS = uuid.UUID("0d5e6c1e-7f43-4f0e-9a7c-3b1f2f1c9a11")
OUTSIDE = "outside"  # the street's zone kind: evidence of an approach (stream.visits)


def gateway_windows(
    trace: Path, defaults: EdgeSettings | None = None
) -> Iterator[tuple[float | None, list[tuple[str, Transition]]]]:
    """Every gateway's transitions for a trace, one tick window at a time, as replay decides.

    Windows are 1 s of trace time (the agents' ``tick_s``); each is yielded with the time
    its timers fired, as :class:`edge.trace_clock.TraceClock` does at ``--speed max``; an
    ``app`` line cuts a window there (yielded with None: no timers fired).
    """
    defaults = defaults or EdgeSettings()
    with trace.open(encoding="utf-8") as fh:
        first = fh.readline()
    layout = json.loads(first).get("layout") or {}
    pipes = {
        gid: Pipeline(defaults.model_copy(update=tuned))
        for gid, tuned in gateway_settings(layout, defaults).items()
    }
    found: list[tuple[str, Transition]] = []
    out: list[Transition] = []

    def tick(at: float) -> list[tuple[str, Transition]]:
        for gid, pipe in pipes.items():
            pipe.tick(at, out)
            found.extend((gid, tr) for tr in out)
            out.clear()
        window = found[:]
        found.clear()
        return window

    with trace.open(encoding="utf-8") as fh:
        header, records = read_trace(fh)
        start = header.start.timestamp()
        window = 0
        for rec in records:
            k = math.floor(rec.t)
            if k > window:
                # As the TraceClock: timers fire at the start of the next window that has
                # records (they carry their due times, so empty windows need no tick).
                window = k
                yield start + k, tick(start + k)
            if isinstance(rec, AdvRecord):
                heard_by = pipes.get(rec.gateway_id)
                if heard_by is not None:
                    heard_by.handle(advert_from_record(rec, start), out)
                    found.extend((rec.gateway_id, tr) for tr in out)
                    out.clear()
            elif isinstance(rec, AppRecord):
                # The replay publishes what came before an app line first (no timers).
                yield None, found[:]
                found.clear()
        yield start + window + 1, tick(start + window + 1)
        # The trace is over: everyone present leaves when their timers say.
        yield math.inf, tick(math.inf)


def gateway_transitions(
    trace: Path, defaults: EdgeSettings | None = None
) -> tuple[float, list[tuple[str, Transition]]]:
    """Every gateway's presence transitions for a trace, as ``proxima replay`` decides them."""
    with trace.open(encoding="utf-8") as fh:
        header, _ = read_trace([fh.readline()])
    found = [p for _, window in gateway_windows(trace, defaults) for p in window]
    return header.start.timestamp(), found


def fused_transitions(
    trace: Path,
    defaults: EdgeSettings | None = None,
    config: FusionConfig | None = None,
    *,
    sightings: list[Evidence] | None = None,
) -> tuple[float, list[tuple[str, Transition]]]:
    """The store coordinator's decisions for a trace (gateways with ``fused`` on).

    Each window's evidence goes through :meth:`StorePresence.window` as the coordinator
    gets it in a replay: the gateways' events, rounded as the contract carries them.
    ``sightings``: if given, every gateway's ``sighting`` evidence is appended to it too.
    """
    defaults = (defaults or EdgeSettings()).model_copy(update={"fused": True})
    with trace.open(encoding="utf-8") as fh:
        first = fh.readline()
    header, _ = read_trace([first])
    roles = fusion_roles(json.loads(first).get("layout") or {}, defaults)
    presence = StorePresence(roles, config or fusion_config(defaults))
    found: list[tuple[str, Transition]] = []
    for end, window in gateway_windows(trace, defaults):
        evidence = [evidence_of_transition(gid, tr) for gid, tr in window]
        if sightings is not None:
            sightings += [ev for ev in evidence if ev.kind == "sighting"]
        found += [(FUSION_GATEWAY_ID, tr) for tr in presence.window(evidence, end)]
    return header.start.timestamp(), found


@dataclass(frozen=True, slots=True)
class Signal:
    """One piece of evidence about a customer, as the stream's sessionizer weighs it."""

    at: float  # Unix s
    customer_id: str
    in_store: bool  # False: an approach (a geofence, a storefront beacon's region)
    zone_id: str | None
    event_id: uuid.UUID


def devices_of(sim: Simulation) -> dict[str, str]:
    """App device id → customer id, as ``proxima simulate --enroll`` registers them."""
    devices: dict[str, str] = {}
    for c in sim.customers:
        device = getattr(c, "device_id", None)  # traces before device classes: none
        if c.customer_id is not None and isinstance(device, str):
            devices[device] = c.customer_id
    return devices


def app_signals(trace: Path, devices: dict[str, str], layout: StoreLayout) -> list[Signal]:
    """What the app path gives the stream: a trace's ``app`` lines of enrolled customers'
    devices, as the ingest turns them into events. Geofence entries come from the ingest's
    own engine (``edge.geofence``) over the OS's reports and the location fixes, whichever
    is first; a beacon region's entry is in the zone of the layout's beacon (``outside``: an
    approach; any other: in-store). Exits start nothing, so they are left out, as gateways'
    exits are."""
    # The ingest's own region specs (simulators.app_replay.store_config): the same zones,
    # the same min_rssi rule.
    specs = store_config(layout.trace_layout(), layout.store_id).regions()
    gf = layout.geofence
    fence_id = str(getattr(gf, "id", None) or layout.store_id)
    now = 0.0
    engine = GeofenceEngine([Circle(fence_id, gf.lat, gf.lon, gf.radius_m)], clock=lambda: now)
    out: list[Signal] = []
    with trace.open(encoding="utf-8") as fh:
        header, records = read_trace(fh)
        start = header.start.timestamp()
        for rec in records:
            if not isinstance(rec, AppRecord):
                continue
            extra = rec.model_extra or {}
            # Older traces name the customer on the app line; newer ones the device only.
            cid = devices.get(rec.device_id) or extra.get("customer_id")
            if not isinstance(cid, str):
                continue
            now = at = start + rec.t
            event_id = uuid.uuid5(EVENT_NS, f"app|{rec.device_id}|{rec.event}|{rec.t}")
            try:
                if rec.event in ("geofence_enter", "geofence_exit"):
                    entered = rec.event == "geofence_enter"
                    moves = engine.report(rec.device_id, fence_id, entered, at)
                elif rec.event == "location":
                    fix = Fix(rec.device_id, extra["lat"], extra["lon"], extra["accuracy_m"], at)
                    moves = engine.observe(fix)
                else:
                    moves = []
            except (GeofenceError, KeyError, TypeError):
                continue  # what the ingest refuses with a 422
            if any(m.kind == "geofence_enter" for m in moves):
                out.append(Signal(at, cid, False, None, event_id))
            if rec.event == "beacon_region_enter":
                ref = region_ref(extra)
                spec = specs.get(ref) if ref is not None else None
                if spec is not None:  # else a region the store does not know: refused
                    rssi = extra.get("rssi")
                    zone = spec.zone_for(
                        float(rssi) if isinstance(rssi, int | float) else None,
                        sustained=extra.get("sustained") is True,
                    )
                    out.append(Signal(at, cid, layout.zone(zone).kind != OUTSIDE, zone, event_id))
    return out


def gateway_signals(sim: Simulation, transitions: Iterable[tuple[str, Transition]]) -> list[Signal]:
    """The gateways' zone entries of enrolled customers' EIDs, resolved as the stream does."""
    resolver = _resolver(sim)
    out: list[Signal] = []
    for gateway_id, tr in transitions:
        if tr.kind in ("zone_exit", "sighting"):
            continue  # exits start nothing; sightings are store-local evidence
        match = resolver.resolve(bytes.fromhex(tr.subject), int(tr.at))
        if match is None:
            continue
        # A staged scene may come without a layout: its zones are then all in-store.
        layout = getattr(sim, "layout", None)
        zone_kind = layout.zone(tr.zone_id).kind if layout is not None and tr.zone_id else None
        out.append(
            Signal(
                tr.at,
                match.identity_id,
                zone_kind != OUTSIDE,
                tr.zone_id,
                uuid.uuid5(EVENT_NS, f"{gateway_id}|{tr.subject}|{tr.kind}|{tr.at}"),
            )
        )
    return out


def _fusion_config(defaults: EdgeSettings | None, config: FusionConfig | None) -> FusionConfig:
    """The coordinator's thresholds the bench runs with: ``config``, else the settings'."""
    return config or fusion_config(defaults or EdgeSettings())


def _resolver(sim: Simulation) -> EidResolver:
    """The enrolled customers' EIDs, resolved as the stream does."""
    resolver = EidResolver(drift_windows=1)
    for c in sim.customers:
        if c.customer_id is not None:
            resolver.add(c.customer_id, c.identity_key, c.rotation_exponent)
    return resolver


Consent = dict[str, tuple[bool, float | None]]
"""customer → (granted ``arrival_alerts``, revoked at: seconds of trace time, or None)."""


def consent_of(sim: Simulation) -> Consent:
    return {
        c.customer_id: ("arrival_alerts" in c.consent, c.revoke_at)
        for c in sim.customers
        if c.customer_id is not None
    }


def arrival_alerts(
    sim: Simulation, store_id: str, transitions: Iterable[tuple[str, Transition]]
) -> tuple[list[Alert], dict[str, float]]:
    """The alerts the stream makes of the gateways' (or the coordinator's) transitions
    alone: :func:`visit_alerts` over :func:`gateway_signals`, no app path."""
    signals = gateway_signals(sim, transitions)
    return visit_alerts(consent_of(sim), sim.start.timestamp(), store_id, signals)


def visit_alerts(
    consent: Consent,
    start: float,
    store_id: str,
    signals: Iterable[Signal],
    revisit_gap_s: float = DEFAULT_REVISIT_GAP_S,
) -> tuple[list[Alert], dict[str, float]]:
    """The approach and arrival alerts the stream makes of these signals, and their causes'
    times (``stream.visits``: a signal after ``revisit_gap_s`` of silence starts a visit, an
    approach unless it is in-store evidence; the first in-store evidence is the arrival).
    Every consenting customer gets the approach alert here, as if each had an appointment:
    the bench measures what detection allows, not which rules a store runs."""
    last_seen: dict[str, float] = {}
    arrived: dict[str, bool] = {}
    alerts: list[Alert] = []
    times: dict[str, float] = {}
    for sig in sorted(signals, key=lambda s: (s.at, str(s.event_id))):
        cid = sig.customer_id
        new = cid not in last_seen or sig.at - last_seen[cid] >= revisit_gap_s
        last_seen[cid] = sig.at
        if new:
            arrived[cid] = sig.in_store
            kind = AlertKind.ARRIVAL if sig.in_store else AlertKind.APPROACH
        elif sig.in_store and not arrived[cid]:
            arrived[cid] = True
            kind = AlertKind.ARRIVAL
        else:
            continue
        granted, revoke_at = consent.get(cid, (False, None))
        if not granted or (revoke_at is not None and start + revoke_at <= sig.at):
            continue
        times[str(sig.event_id)] = sig.at
        alerts.append(
            Alert(
                alert_id=uuid.uuid5(EVENT_NS, f"alert|{kind.value}|{sig.event_id}"),
                store_id=store_id,
                customer_id=cid,
                kind=kind,
                title=f"{cid} is at the {sig.zone_id or 'store'}",
                zone_id=sig.zone_id,
                caused_by=[sig.event_id],
                created_at=datetime.fromtimestamp(sig.at, UTC),
            )
        )
    return alerts, times


IPHONE = "iphone_app"


def ios_floors(ranging: Ranging, visits: Iterable[Visit]) -> list[tuple[float, float]]:
    """For each iPhone app visitor alerted on arrival: (door → the app's first ranging
    second after the door, the alert's latency over that second), in s.

    That second is the floor iOS sets: the app reads beacons only while iOS lets it run
    (the wake of a region enter, delayed as iOS delays it, or a location session), so no
    rule of ours could place her inside sooner. What comes after it is the radio and our
    rules (the walk to the pair margin over the storefront beacon, a bag's sparse readings).
    Visits in which the phone does not range after the door (iOS never woke the app before
    she left) are left out; the latency figures count them."""
    out: list[tuple[float, float]] = []
    for v in visits:
        alert = _first_alert(v)
        if v.device_class != IPHONE or alert is None or v.customer_id not in ranging:
            continue
        seconds = [
            first_ranging(spans, phase, v.arrive_t) for phase, spans in ranging[v.customer_id]
        ]
        floor = min((t for t in seconds if t is not None), default=None)
        if floor is not None and floor <= v.leave_t:  # else not on this visit
            out.append((floor - v.arrive_t, alert - floor))
    return out


def _first_alert(v: Visit) -> float | None:
    """When an expected visit was first alerted on arrival (None: missed, or not expected)."""
    timely = [t for t in v.alerts if not math.isnan(t)]
    return min(timely) if v.expected and timely else None


def floor_figures(floors: Sequence[tuple[float, float]]) -> dict[str, Any]:
    """:func:`ios_floors` of every seed, as the bench reports them."""
    waits = [f for f, _ in floors]
    over = [o for _, o in floors]
    return {
        "iphone_floor_visits": len(floors),
        "iphone_os_floor_p50_s": percentile_s(waits, 0.5),
        "iphone_os_floor_p95_s": percentile_s(waits, 0.95),
        "iphone_over_floor_p50_s": percentile_s(over, 0.5),
        "iphone_over_floor_p95_s": percentile_s(over, 0.95),
    }


ADVERTISING = frozenset({"android_app", "vip_tag"})
"""The classes the gateways hear: a door pair places them (``door_over_street``)."""
FLOOR_STEP_S = 0.1


def pair_floors(
    sim: Simulation, visits: Iterable[Visit], margin_db: float, defaults: EdgeSettings | None = None
) -> tuple[list[tuple[float, float]], int]:
    """For each advertising visitor (:data:`ADVERTISING`) alerted on arrival who came in by a
    door with a pair: (door → the first moment the door gateway's *median* level of her
    phone is ``margin_db`` over its street gateway's, the alert's latency over that moment),
    in s; and how many such visitors never got there during the visit.

    That moment is the floor the pair's placement sets: ``door_over_street`` compares the
    two gateways' levels, and before it even the levels without noise (no shadowing, no
    per-position offset, no fading or losses: :meth:`Simulation.median_dbm`) are not
    ``margin_db`` apart; a rule deciding sooner would have to trust a smaller difference,
    which a passer-by's noise gives too. It is where the medians allow the decision, not a
    bound: the noise lets a few alerts come before it (a negative latency over it, counted
    by :func:`pair_floor_figures`). What comes after it is the radio's noise and the rule
    (its hold, a bag's lost packets). Those never over the margin (she walked in beside
    the door gateway, not under it) are placed by the other rules; counted apart."""
    roles = fusion_roles(sim.layout.trace_layout(), defaults)
    pair_of = {r.zone_id: (r.gateway_id, r.pair) for r in roles if r.pair is not None}
    out: list[tuple[float, float]] = []
    never = 0
    if not pair_of:
        return out, never
    people = _by_customer(sim)

    def clear(inside: str, street: str, traj: Trajectory, t: float) -> bool:
        return sim.median_dbm(inside, traj, t) - sim.median_dbm(street, traj, t) >= margin_db

    for v in visits:
        if v.device_class not in ADVERTISING:
            continue
        alert, who = _alerted_visitor(people, v)
        if who is None:
            continue
        traj = who.walker.traj
        door = _door_crossed(sim, traj, v.arrive_t)
        if door not in pair_of:
            continue  # she came in by a door without a pair
        inside, street = pair_of[door]
        assert street is not None

        if (floor := _first(v, traj, partial(clear, inside, street, traj))) is None:
            never += 1
        else:
            out.append((floor - v.arrive_t, alert - floor))
    return out, never


def _by_customer(sim: Simulation) -> dict[str, list[Person]]:
    """The simulation's people by customer id (a customer may come more than once)."""
    people: dict[str, list[Person]] = defaultdict(list)
    for person in sim.people:
        if person.customer is not None and person.customer.customer_id is not None:
            people[person.customer.customer_id].append(person)
    return people


def _walking(people: dict[str, list[Person]], cid: str, t: float) -> Person | None:
    """The person whose walk holds moment ``t`` of customer ``cid`` (None: not on the scene)."""
    for person in people[cid]:
        if person.walker.traj.start <= t <= person.walker.traj.end:
            return person
    return None


def _door_crossed(sim: Simulation, traj: Trajectory, t: float) -> str:
    """The entrance zone of the door nearest where ``traj`` is at ``t`` (her door crossing)."""
    x, y, *_ = traj.at(t)
    return min(sim.layout.doors, key=lambda d: math.dist((d.x, d.y), (x, y))).b


def _alerted_visitor(people: dict[str, list[Person]], v: Visit) -> tuple[float, Person | None]:
    """The first alert of an expected visit that was alerted on arrival, and the person
    whose walk holds its door crossing (None: not such a visit)."""
    if (alert := _first_alert(v)) is not None:
        return alert, _walking(people, v.customer_id, v.arrive_t)
    return math.nan, None


def _first(v: Visit, traj: Trajectory, holds: Callable[[float], bool]) -> float | None:
    """The first moment from ``v``'s door crossing on, in steps of :data:`FLOOR_STEP_S`
    until she leaves, at which ``holds``; None if it never does."""
    t, end = v.arrive_t, min(v.leave_t, traj.end)
    while t <= end:
        if holds(t):
            return t
        t += FLOOR_STEP_S
    return None


def app_pair_floors(
    sim: Simulation, visits: Iterable[Visit]
) -> tuple[list[tuple[float, float]], int]:
    """:func:`pair_floors` for the iPhone app's beacon pair: for each iPhone visitor alerted
    on arrival, (door → the first moment her phone's *median* reading of an in-store
    beacon the app compares with the storefront (``app_pair_margin_db``) is loud enough to
    count (the lower of its ``app_min_rssi`` and ``app_sustained_min_rssi``: the sustained
    rule holds for any phone) and that margin over every storefront beacon's median, the
    alert's latency over that moment), and how many never got there during the visit. The
    medians are :meth:`SideLines.median_dbm` (carry loss in: the bars are absolute). Not a
    bound either: the app also counts a reading while the storefront beacon is unheard
    (``Ranged.over_front``), and the radio's noise lets some alerts come before it. A
    store without a storefront beacon has no such floor."""
    side = sim.side
    lay = sim.layout
    fronts = [b for b in lay.beacons if b.kind == "ibeacon" and b.zone_id in lay.outside_zone_ids]
    # (beacon, the bars it must read at, its margin over the storefront)
    inner = [
        (b, min(b.app_min_rssi, b.app_sustained_min_rssi or b.app_min_rssi), b.app_pair_margin_db)
        for b in lay.beacons
        if b.kind == "ibeacon" and b.app_pair_margin_db is not None and b.app_min_rssi is not None
    ]
    out: list[tuple[float, float]] = []
    never = 0
    if side is None or not fronts or not inner:
        return out, never
    people = _by_customer(sim)

    def counts(person: Person, t: float) -> bool:
        front = max(side.median_dbm(person, b, t) for b in fronts)
        for b, bar, margin in inner:
            level = side.median_dbm(person, b, t)
            if level >= bar and level - front >= margin:
                return True
        return False

    for v in visits:
        if v.device_class != IPHONE:
            continue
        alert, who = _alerted_visitor(people, v)
        if who is None:
            continue
        if (floor := _first(v, who.walker.traj, partial(counts, who))) is None:
            never += 1
        else:
            out.append((floor - v.arrive_t, alert - floor))
    return out, never


def pair_floor_figures(
    floors: Sequence[tuple[float, float]], never: int, prefix: str = "pair"
) -> dict[str, Any]:
    """:func:`pair_floors` (or, ``prefix`` ``app_pair``, :func:`app_pair_floors`) of every
    seed, as the bench reports them."""
    waits = [f for f, _ in floors]
    over = [o for _, o in floors]
    return {
        f"{prefix}_floor_visits": len(floors),
        f"{prefix}_floor_never": never,
        # The floor is where the medians allow it, not a bound: noise lets a few alerts
        # come before it (their latency over it is negative).
        f"{prefix}_floor_beaten": sum(1 for o in over if o < 0),
        f"{prefix}_floor_p50_s": percentile_s(waits, 0.5),
        f"{prefix}_floor_p95_s": percentile_s(waits, 0.95),
        f"{prefix}_over_floor_p50_s": percentile_s(over, 0.5),
        f"{prefix}_over_floor_p95_s": percentile_s(over, 0.95),
    }


EARLY_S = 3.0
"""How soon after the door :func:`door_evidence` looks at an entrant's door level (the
issue's p50 target)."""
OUTSIDE_STEP_S = 0.5


class DoorEvidence(NamedTuple):
    """What a door pair's two gateways heard of the enrolled customers (:func:`door_evidence`)."""

    ages: list[float]
    """For each silence of a street gateway about a customer in which its door gateway
    heard her at ``peak_min_rssi`` or louder while she was still outside: how old the
    street's last level of her was at the last such door level (s). Past the rule's
    ``pair_window_s`` the rule reads the street as not hearing her."""
    outside: list[float]
    """Every level the door gateway reported of a customer outside (dBm)."""
    entrants: list[float]
    """Each advertising entrant's loudest door level within :data:`EARLY_S` of the door
    (dBm; -inf: not heard)."""


def door_evidence(
    sim: Simulation,
    sightings: Iterable[Evidence],
    visits: Iterable[Visit],
    defaults: EdgeSettings | None = None,
    config: FusionConfig | None = None,
) -> DoorEvidence:
    """The evidence a door pair's rule has to work with, from the gateways' sightings (as
    the coordinator gets them) and where each customer really was.

    Two things set how soon a rule can place a bagged entrant without taking someone
    outside in. How stale the street gateway's level of someone still outside at the door
    can be when the door hears her (its losses come in bursts; a rule that trusts a
    shorter silence takes her inside). And how loud the door gateway hears entrants in
    their first seconds against how loud it hears people outside (a level outside never
    reaches would place her on its own). Each gateway reports a level a window (1 s), at
    the time of its loudest packet, so ages up to ~2 s come with no window missed.
    Customers only (their EIDs resolve); a store without a pair, or no sightings (the
    gateways judged alone), gives none."""
    roles = fusion_roles(sim.layout.trace_layout(), defaults)
    pairs = {r.gateway_id: r.pair for r in roles if r.pair is not None}
    found = DoorEvidence([], [], [])
    sightings = list(sightings)
    if not pairs or not sightings:
        return found
    loud = _fusion_config(defaults, config).peak_min_rssi
    resolver = _resolver(sim)
    start = sim.start.timestamp()
    names: dict[str, str | None] = {}
    heard: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    wanted = set(pairs) | set(pairs.values())
    for ev in sightings:
        if ev.gateway_id not in wanted:
            continue
        if ev.subject not in names:
            match = resolver.resolve(bytes.fromhex(ev.subject), int(ev.at))
            names[ev.subject] = None if match is None else match.identity_id
        if (cid := names[ev.subject]) is not None:
            heard[cid][ev.gateway_id].append((ev.at - start, ev.rssi))
    people = _by_customer(sim)
    outside_zones = sim.layout.outside_zone_ids

    def outside(cid: str, t: float) -> bool:
        person = _walking(people, cid, t)  # None: not on the scene
        return person is not None and person.walker.traj.at(t)[3] in outside_zones

    def outside_all(cid: str, a: float, b: float) -> bool:
        n = max(1, math.ceil((b - a) / OUTSIDE_STEP_S))
        return all(outside(cid, a + (b - a) * i / n) for i in range(n + 1))

    for cid, by_gateway in heard.items():
        for door, street in pairs.items():
            door_levels = sorted(by_gateway.get(door, []))
            found.outside.extend(lv for t, lv in door_levels if outside(cid, t))
            street_times = sorted(t for t, _ in by_gateway.get(street, []))
            for a, b in pairwise([*street_times, math.inf]):
                # The door's loud levels of the silence while she is still outside since a.
                age = None
                for t, lv in door_levels:
                    if t <= a or lv < loud:
                        continue
                    if t >= b or not outside_all(cid, a, t):
                        break
                    age = t - a
                if age is not None:
                    found.ages.append(age)
    door_of = {r.zone_id: r.gateway_id for r in roles if r.pair is not None}
    for v in visits:
        if v.device_class not in ADVERTISING or not v.expected:
            continue
        if (who := _walking(people, v.customer_id, v.arrive_t)) is None:
            continue
        gateway = door_of.get(_door_crossed(sim, who.walker.traj, v.arrive_t))
        if gateway is None:
            continue  # she came in by a door without a pair
        early = [
            lv
            for t, lv in heard[v.customer_id].get(gateway, [])
            if v.arrive_t <= t <= v.arrive_t + EARLY_S
        ]
        found.entrants.append(max(early, default=-math.inf))
    return found


def door_evidence_figures(evidence: DoorEvidence, window_s: float) -> dict[str, Any]:
    """:func:`door_evidence` of every seed, as the bench reports it; ``window_s``: the
    rule's ``pair_window_s``."""
    ages, entrants = evidence.ages, evidence.entrants
    outside_p99 = percentile_s(evidence.outside, 0.99)
    return {
        "pair_street_ages": len(ages),
        "pair_street_age_p99_s": percentile_s(ages, 0.99),
        "pair_street_age_max_s": round(max(ages), 3) if ages else None,
        # Ages up to ~2 s come with no window missed (one level a window, at its loudest).
        "pair_street_ages_over_2s": sum(1 for a in ages if a > 2.0),
        "pair_street_ages_over_window": sum(1 for a in ages if a > window_s),
        "pair_door_outside_p99_dbm": None if outside_p99 is None else round(outside_p99, 1),
        "pair_entrants": len(entrants),
        "pair_entrants_door_heard_3s": _share(
            sum(1 for lv in entrants if lv > -math.inf), entrants
        ),
        "pair_entrants_over_outside_p99_3s": None
        if outside_p99 is None
        else _share(sum(1 for lv in entrants if lv > outside_p99), entrants),
    }


def _share(n: int, of: Sequence[object]) -> float | None:
    return round(n / len(of), 3) if of else None


class SeedScore(NamedTuple):
    score: Score
    kafka_events: int
    door_arrivals: int
    ios_floors: list[tuple[float, float]]
    pair_floors: list[tuple[float, float]]
    pair_never: int
    app_pair_floors: list[tuple[float, float]]
    app_pair_never: int
    door: DoorEvidence


def score_seed(
    scenario: str,
    seed: int,
    workdir: Path,
    defaults: EdgeSettings | None = None,
    population: dict[str, Any] | None = None,
    *,
    app: bool = True,
    fusion: bool = True,
    config: FusionConfig | None = None,
    layout: str | None = None,
) -> SeedScore:
    """One seed's score (``proxima score``'s figures and per-class tallies), with the
    events that reach Kafka, the door crossings of its truth and its iPhone visitors'
    :func:`ios_floors`. ``population`` overrides
    fields of the scenario's (e.g. ``device_classes``); ``app=False`` leaves the app path
    out (the gateways alone); ``fusion``: the store's coordinator decides (as ``proxima
    replay`` runs it); off, each gateway's own decisions go to the stream; ``layout`` plays
    the scenario in another store (``boutique-pair``)."""
    sim = build_scenario(scenario, seed, population=population, layout=layout)
    trace = workdir / f"{scenario}-{seed}.jsonl"
    sim.write(trace)
    try:
        roles = fusion_roles(sim.layout.trace_layout(), defaults)
        sightings: list[Evidence] = []
        if fusion and fusable(roles):  # as proxima replay decides
            _, transitions = fused_transitions(trace, defaults, config, sightings=sightings)
        else:
            _, transitions = gateway_transitions(trace, defaults)
        signals = gateway_signals(sim, transitions)
        if app:
            signals += app_signals(trace, devices_of(sim), sim.layout)
        store = sim.layout.store_id
        alerts, times = visit_alerts(consent_of(sim), sim.start.timestamp(), store, signals)
        result = score(load_truth(trace), alerts, times)
        # What reaches Kafka: every event but the gateways' sightings (store-local evidence).
        kafka_events = sum(1 for _, tr in transitions if tr.kind != "sighting")
        door_arrivals = _door_arrivals(trace)
    finally:
        trace.unlink()
    margin = _fusion_config(defaults, config).pair_margin_db
    pairs, never = pair_floors(sim, result.visits, margin, defaults)
    return SeedScore(
        result,
        kafka_events,
        door_arrivals,
        ios_floors(sim.side.ranging if sim.side else {}, result.visits),
        pairs,
        never,
        *app_pair_floors(sim, result.visits),
        door_evidence(sim, sightings, result.visits, defaults, config),
    )


def _door_arrivals(trace: Path) -> int:
    """Everyone's door crossings in the trace's truth (customers, unknown phones, all)."""
    with trace.open(encoding="utf-8") as fh:
        return sum(1 for line in fh if '"truth"' in line and '"arrive"' in line)


def _missed(v: Visit) -> str:
    return f"{v.customer_id}@{v.arrive_t:.0f}s ({v.behaviour}, {v.device_class})"


def run_detection_bench(
    seeds: Sequence[int] = (21, 22, 23, 24, 25, 26, 27),
    scenario: str = "boutique-rush",
    defaults: EdgeSettings | None = None,
    population: dict[str, Any] | None = None,
    *,
    app: bool = True,
    fusion: bool = True,
    config: FusionConfig | None = None,
    layout: str | None = None,
) -> dict[str, Any]:
    """Detection figures summed over ``seeds`` of ``scenario``, overall and per device class
    (see the module docstring); ``population`` overrides fields of the scenario's (e.g.
    ``device_classes``); ``app=False``: the gateways alone; ``fusion=False``: each gateway
    decides alone (no store coordinator); ``layout``: the scenario in another store."""
    tallies: dict[str, Tally] = defaultdict(Tally)
    kafka_events = door_arrivals = 0
    missed: list[str] = []
    false_alerts: list[str] = []
    floors: list[tuple[float, float]] = []
    pairs: list[tuple[float, float]] = []
    app_pairs: list[tuple[float, float]] = []
    never = app_never = 0
    door = DoorEvidence([], [], [])
    with tempfile.TemporaryDirectory(prefix="proxima-detection-") as tmp:
        for seed in seeds:
            got = score_seed(
                scenario,
                seed,
                Path(tmp),
                defaults,
                population,
                app=app,
                fusion=fusion,
                config=config,
                layout=layout,
            )
            result = got.score
            for cls, tally in result.tallies.items():
                tallies[cls].add(tally)
            missed += [f"seed {seed}: {_missed(v)}" for v in result.missed]
            false_alerts += [
                f"seed {seed}: {f['customer_id']}@{f['t']:.0f}s ({f['why']})"
                for f in result.false_alerts
            ]
            kafka_events += got.kafka_events
            door_arrivals += got.door_arrivals
            floors += got.ios_floors
            pairs += got.pair_floors
            never += got.pair_never
            app_pairs += got.app_pair_floors
            app_never += got.app_pair_never
            for mine, theirs in zip(door, got.door, strict=True):
                mine.extend(theirs)
    overall = Tally()
    for tally in tallies.values():
        overall.add(tally)
    return {
        "scenario": scenario,
        **({"layout": layout} if layout else {}),
        "seeds": ",".join(str(s) for s in seeds),
        "fusion": fusion,
        **overall.figures(),
        "missed": "; ".join(missed) or "-",
        "false": "; ".join(false_alerts) or "-",
        "door_arrivals": door_arrivals,
        "kafka_events_per_arrival": round(kafka_events / door_arrivals, 2)
        if door_arrivals
        else None,
        **floor_figures(floors),
        **pair_floor_figures(pairs, never),
        **pair_floor_figures(app_pairs, app_never, "app_pair"),
        **door_evidence_figures(door, _fusion_config(defaults, config).pair_window_s),
        "by_class": by_class(tallies),
    }
