"""How the operating system reports a customer's app: iOS beacon regions, OS geofences, fixes.

What each device class puts on air is the engine's (:mod:`simulators.engine`): an Android
app advertises the customer's EID (100-250 ms on screen, 250 ms-1 s in the background from a
foreground service), a VIP tag at a fixed interval, an iPhone only iOS's own Continuity
frames (CoreBluetooth gives an app no EID advertising). This module turns what a phone
hears and where it walks into the ``app`` lines its app would send, with the delays the
OSes add:

* **iOS beacon regions** (CLBeaconRegion, one region per store iBeacon; Eddystone cannot be
  monitored): the phone hears a beacon's packets through the radio model; iOS reports the
  region's *enter* a few seconds after the first packet it catches, up to tens of seconds
  in the background (log-normal, median :data:`IOS_REGION_ENTRY_DELAY`), and its *exit*
  once it has heard nothing for ~30 s (:data:`IOS_REGION_EXIT_AFTER_S`, plus a few seconds).
  On the wake the app runs for about :data:`IOS_RANGING_WINDOW_S` (a background task
  extends the wake's ~10 s) and ranges the store's beacons at 1 Hz (each reading the mean
  RSSI of that second's packets). Where the store says how loud a beacon must be to be in
  the store (``app_min_rssi``), a weaker first reading is reported at once (the ingest
  makes it an approach) and the app keeps ranging: the first reading of any store beacon
  at or above its threshold is reported as that region's enter, the arrival
  (:func:`ranged_enters`); so is a bagged phone's reading a region under it, but at its
  ``sustained_min_rssi`` or above, for seconds with the storefront quiet (:class:`Sustained`).
* **OS geofences** (CLCircularRegion / Android GeofencingClient), for app users who share
  their location: *enter* when the phone's GPS position crosses the store's circle. GPS
  outdoors is off by 5-25 m, so the circle the phone acts on is as much larger or smaller;
  the OS then takes tens of seconds to minutes (:data:`OS_GEOFENCE_DELAY`).
* **Location fixes**: one when the app is woken by a geofence transition (both OSes), and
  on Android a few background fixes an hour (Android 8+ limits background location).
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from edge.ingest.store import PAIR_WINDOW_S, SUSTAIN_READINGS, SUSTAIN_WINDOW_S
from simulators.movement import Trajectory

IOS_REGION_ENTRY_DELAY = (6.0, 0.9, 60.0)
"""Median s, sigma of its log, cap: iOS notices a monitored beacon within seconds, at worst
tens of seconds with the phone asleep in a pocket."""
IOS_REGION_EXIT_AFTER_S = 30.0
"""iOS declares a beacon region left after about 30 s without hearing it."""
IOS_REGION_EXIT_DELAY = (3.0, 0.6, 30.0)
IOS_RANGING_WINDOW_S = 30.0
"""How long an app woken by a beacon region event runs (and ranges) in the background: the
wake's ~10 s, extended by a background task (iOS grants about 30 s in all)."""
APP_CONFIRM_DB = 2.0
"""An in-store reading this many dB over both its bars (the beacon's ``min_rssi`` and the
storefront's margin) counts at once; one within them counts only once a second one (of
any in-store beacon) comes within :data:`APP_CONFIRM_S`. iOS's reading of a second is the
mean of its packets, a few dB either side of the level: a window shopper standing minutes
at the glass, where the entrance beacon reads at its bar, would cross it now and then on
noise alone (docs/presence.md)."""
APP_CONFIRM_S = 2.0
IOS_BACKGROUND_SCAN_DUTY = 0.5
"""Share of a beacon's packets a background iPhone catches (its scan is duty-cycled)."""
OS_GEOFENCE_DELAY = {"iphone_app": (45.0, 0.9), "android_app": (60.0, 0.9)}
"""Median s and sigma of its log between crossing the (GPS) circle and the app hearing of it."""
OS_GEOFENCE_DELAY_MAX_S = 600.0
GPS_OUTDOOR_ACCURACY_M = (5.0, 25.0)
GPS_INDOOR_ACCURACY_M = (15.0, 65.0)
ANDROID_FIX_INTERVAL = (600.0, 0.5)
"""Median s and sigma of its log between Android background fixes (a few per hour)."""
APPROACH_SPEED = 1.3
"""m/s: how fast someone walks from the geofence's edge to where the trace picks them up."""


def os_delay(rng: random.Random, median: float, sigma: float, cap: float) -> float:
    return min(cap, rng.lognormvariate(math.log(median), sigma))


@dataclass(frozen=True, slots=True)
class RegionTransition:
    t: float
    entered: bool


def region_transitions(heard: Sequence[float], rng: random.Random) -> list[RegionTransition]:
    """iOS's enter/exit reports for one beacon region, given when the phone caught its packets.

    A run of packets with no gap of :data:`IOS_REGION_EXIT_AFTER_S` is one stay in the
    region: enter reported a delay after its first packet, exit a delay after 30 s of silence
    following its last one (and never before the enter it closes).
    """
    out: list[RegionTransition] = []
    i = 0
    while i < len(heard):
        first = last = heard[i]
        i += 1
        while i < len(heard) and heard[i] - last < IOS_REGION_EXIT_AFTER_S:
            last = heard[i]
            i += 1
        t_enter = first + os_delay(rng, *IOS_REGION_ENTRY_DELAY)
        t_exit = last + IOS_REGION_EXIT_AFTER_S + os_delay(rng, *IOS_REGION_EXIT_DELAY)
        out.append(RegionTransition(t_enter, True))
        out.append(RegionTransition(max(t_exit, t_enter + 1.0), False))
    return out


@dataclass(frozen=True, slots=True)
class Ranged:
    """One store beacon as the app ranges it: the packets the phone caught, (t, dBm) in
    time order, and how loud it must be to count as in the store (None: any reading);
    by how much it must also beat the storefront beacons (``pair_margin_db``, None: not
    compared); ``storefront``: a beacon outside on the shop front, never in the store;
    ``sustained_min_rssi``: how loud it must be read over several seconds instead (a
    bagged phone; :data:`~edge.ingest.store.SUSTAIN_READINGS`)."""

    heard: Sequence[tuple[float, float]]
    min_rssi: float | None
    pair_margin_db: float | None = None
    storefront: bool = False
    sustained_min_rssi: float | None = None
    times: list[float] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "times", [t for t, _ in self.heard])

    def reading(self, end: float) -> float | None:
        """iOS's reading for the second ending at ``end``: the mean of its packets, rounded;
        None without one (iOS reports such a beacon with RSSI 0, which the app skips)."""
        times = self.times
        lo, hi = bisect.bisect_right(times, end - 1.0), bisect.bisect_right(times, end)
        if lo == hi:
            return None
        return float(round(sum(rssi for _, rssi in self.heard[lo:hi]) / (hi - lo)))

    def near(self, reading: float | None) -> bool:
        return reading is not None and (self.min_rssi is None or reading >= self.min_rssi)

    def in_store(self, reading: float | None, front: float | None, above: float = 0.0) -> bool:
        """Whether the app counts ``reading`` as in the store, the storefront beacons' loudest
        recent reading being ``front`` (None: none heard); ``above``: by that many dB over
        both bars (the threshold and the storefront's margin)."""
        if self.storefront or reading is None or not self.near(reading - above):
            return False
        return self.over_front(reading - above, front)

    def over_front(self, reading: float, front: float | None) -> bool:
        margin = self.pair_margin_db
        return margin is None or front is None or reading >= front + margin

    def sustains(self, reading: float | None, front: float | None) -> bool:
        """Whether ``reading`` counts towards a sustained enter (:class:`Sustained`)."""
        bar = self.sustained_min_rssi
        if self.storefront or bar is None or reading is None or reading < bar:
            return False
        return self.over_front(reading, front)


class AppEnter(NamedTuple):
    """An enter report the app sends: when, of which beacon (an index), with its reading
    (None: without one), ``sustained``: judged over several seconds (:class:`Sustained`)."""

    t: float
    beacon: int
    rssi: float | None
    sustained: bool = False


class Sustained:
    """The seconds an app read some in-store beacon at its ``sustained_min_rssi`` or above
    (and by its pair margin over the storefront's loudest of the last 3 s), over the last
    :data:`~edge.ingest.store.SUSTAIN_WINDOW_S` seconds it ranged, and the storefront's
    readings of the same seconds. A phone in a bag walks in reading the entrance beacon at
    -75 to -85 dBm, under a threshold set for phones in the hand, for minutes; one such
    reading says little (a passer-by reads as much through the glass now and then), four in
    eight seconds with the storefront quiet say she is in."""

    def __init__(self, beacons: Sequence[Ranged]) -> None:
        self.beacons = beacons
        self.seen: list[tuple[float, int, float]] = []  # (second, beacon, reading)
        self.fronts: list[tuple[float, float]] = []  # (second, the storefront's loudest)

    def judge(
        self, end: float, readings: Sequence[float | None], front_now: float | None,
        front: float | None,
    ) -> AppEnter | None:  # fmt: skip
        """Add the second ending at ``end`` (``front_now``: the storefront's loudest reading
        of it; ``front``: of the last 3 s) and say whether the window makes an enter."""
        # Seconds are whole seconds apart on the phone's clock; half a second of slack keeps
        # float rounding (``end`` is built by adding 1.0) from widening the window to 9.
        since = end - SUSTAIN_WINDOW_S + 0.5
        self.seen = [x for x in self.seen if x[0] > since]
        self.fronts = [x for x in self.fronts if x[0] > since]
        if front_now is not None:
            self.fronts.append((end, front_now))
        held = [i for i, b in enumerate(self.beacons) if b.sustains(readings[i], front)]
        if held:
            # The reading furthest over the bar it was held to (``sustains``: not None).
            def over_bar(i: int) -> float:
                reading, bar = readings[i], self.beacons[i].sustained_min_rssi
                assert reading is not None
                assert bar is not None
                return reading - bar

            best = max(held, key=over_bar)
            reading = readings[best]
            assert reading is not None
            self.seen.append((end, best, reading))
        if len(self.seen) < SUSTAIN_READINGS:
            return None
        _, i, loudest = max(self.seen, key=lambda x: x[2])
        quiet = max((db for _, db in self.fronts), default=None)
        if not self.beacons[i].over_front(loudest, quiet):
            return None
        return AppEnter(end, i, loudest, sustained=True)


def ranged_enters(
    beacons: Sequence[Ranged],
    woke: int,
    t_enter: float,
    *,
    t_exit: float | None = None,
    running: Sequence[tuple[float, float]] = (),
    phase: float = 0.0,
) -> list[AppEnter]:
    """The enter reports (:class:`AppEnter`) an app sends for one stay in the region of
    ``beacons[woke]``, which iOS reported entered at ``t_enter`` (and left at ``t_exit``).

    A region without ``min_rssi``: one report at ``t_enter`` with no reading (an app that
    does not range). Else the app ranges the store's beacons by their shared UUID (so it
    reads every one of them, not only the one that woke it) at 1 Hz while it runs:
    :data:`IOS_RANGING_WINDOW_S` after the wake, and during ``running`` (spans when it runs
    anyway: a location session while inside the store's geofence, for a customer who
    shares location). The first second in which some in-store beacon reads near (at or
    above its ``min_rssi``, and by its ``pair_margin_db`` over the storefront beacons'
    latest reading of the last :data:`~edge.ingest.store.PAIR_WINDOW_S` seconds it ranged)
    with :data:`APP_CONFIRM_DB` to spare over both bars and over the storefront's loudest
    of those seconds, or reads near for the second time within :data:`APP_CONFIRM_S`, is
    reported as that beacon's enter and ends the ranging, as is
    a :class:`Sustained` window of readings under that bar (a bagged phone); before
    that, the first reading
    of the beacon that woke it is reported as its enter, with the reading only if it is
    below the threshold (the ingest makes it an approach either way: a reading the app
    judged not near is never sent as one the ingest would take as in-store). A storefront
    beacon's wake is reported at once, without a reading (an approach), and the app ranges
    on. No reading in the wake's window: the enter is reported at its end, without one.

    ``phase``: the phone's ranging clock. iOS delivers one ranging result a second per
    phone, so readings come at ``phase`` + whole seconds whichever region woke the app;
    stays of several regions at once (the storefront's, the entrance's, the floor's as she
    walks by) judge the same seconds, not one set each (which gave a passer-by a chance
    per region to cross a threshold, and sent each in-store enter once per region).
    """
    first = beacons[woke]
    if first.min_rssi is None and not first.storefront:
        return [AppEnter(t_enter, woke, None)]
    out: list[AppEnter] = []
    if first.storefront:
        out.append(AppEnter(t_enter, woke, None))
    fronts = [i for i, r in enumerate(beacons) if r.storefront]
    fronts_seen: list[tuple[float, float]] = []  # (second, the storefront's loudest)
    at_bars: list[float] = []  # seconds with an in-store reading that was not clear of them
    sustained = Sustained(beacons)
    spans = ranging_spans(t_enter, t_exit, running)  # when iOS lets it range (the floor too)
    last = max(b for _, b in spans)
    end = phase + math.floor(t_enter - phase)  # its last ranging second up to the wake
    while (end := end + 1.0) <= last:
        if not any(a <= end <= b for a, b in spans):
            continue
        readings = [r.reading(end) for r in beacons]
        # The storefront's readings of the seconds the app ranged (it knows no others).
        heard_front = [db for i in fronts if (db := readings[i]) is not None]
        # Half a second of slack: whole seconds apart, built by adding 1.0 (float rounding).
        fronts_seen = [(t, db) for t, db in fronts_seen if t > end - PAIR_WINDOW_S + 0.5]
        if heard_front:
            fronts_seen.append((end, max(heard_front)))
        front = max((db for _, db in fronts_seen), default=None)
        # Near: over the storefront's latest reading of the window (an entrant walked in
        # under it, so its loudest is from before the door); sure, and so in at once: clear
        # of the bars over its loudest. A near reading that is not sure counts once a second
        # one confirms it, as a reading at the bars does (a storefront second lost to noise
        # or a burst is then not enough on its own).
        latest = fronts_seen[-1][1] if fronts_seen else None
        near = [i for i, r in enumerate(beacons) if r.in_store(readings[i], latest)]
        # Clear of the bars by APP_CONFIRM_DB: in at once; at them: once confirmed.
        sure = [i for i in near if beacons[i].in_store(readings[i], front, APP_CONFIRM_DB)]
        if near and not sure and any(end - t < APP_CONFIRM_S + 0.5 for t in at_bars):
            sure = near
        if sure:
            best = max(sure, key=lambda i: (readings[i] or -999.0) - (beacons[i].min_rssi or 0.0))
            out.append(AppEnter(end, best, readings[best]))
            return out
        if near:
            at_bars.append(end)
        held = sustained.judge(end, readings, max(heard_front, default=None), front)
        if held is not None:
            out.append(held)
            return out
        if not out and (reading := readings[woke]) is not None:
            below = first.min_rssi is not None and reading < first.min_rssi
            out.append(AppEnter(end, woke, reading if below else None))
    return out or [AppEnter(t_enter + IOS_RANGING_WINDOW_S, woke, None)]


def ranging_spans(
    t_enter: float, t_exit: float | None, running: Sequence[tuple[float, float]] = ()
) -> list[tuple[float, float]]:
    """When the app may range during one stay in a region that iOS reported entered at
    ``t_enter`` (and left at ``t_exit``): the wake's :data:`IOS_RANGING_WINDOW_S`, and the
    parts of ``running`` within the stay. :func:`ranged_enters` ranges in these spans and
    the bench's floor (:func:`first_ranging`) reads them: what iOS allows, whatever the app
    then does with its readings."""
    end_of_stay = t_exit if t_exit is not None else math.inf
    spans = [(t_enter, t_enter + IOS_RANGING_WINDOW_S)]
    spans += [(max(a, t_enter), min(b, end_of_stay)) for a, b in running]
    return [(a, b) for a, b in spans if b > a]


def first_ranging(spans: Sequence[tuple[float, float]], phase: float, at: float) -> float | None:
    """The phone's first ranging second after ``at`` within ``spans`` (readings come at
    ``phase`` + whole seconds, after a span's start: :func:`ranged_enters`), or None.

    For a visitor, ``at`` her door crossing: the floor iOS sets on her arrival. Before that
    second the app has no reading taken inside the store, whatever rule it runs."""
    best: float | None = None
    for a, b in spans:
        lo = max(a, at)
        second = phase + math.floor(lo - phase) + 1.0  # the first one after ``lo``
        if second <= b and (best is None or second < best):
            best = second
    return best


@dataclass(frozen=True, slots=True)
class Fix:
    t: float
    x: float
    y: float
    accuracy_m: float


@dataclass(frozen=True, slots=True)
class GeofencePass:
    """One pass through the store's geofence as the phone's OS reports it."""

    t_in: float  # when the phone's GPS position crossed the circle inwards (truth)
    t_out: float
    t_enter: float  # when the app hears of it (OS delay)
    t_exit: float


def position(traj: Trajectory, t: float, speed: float = APPROACH_SPEED) -> tuple[float, float]:
    """Where someone is at ``t`` on the store's local plan (origin: the geofence's centre).

    Before the trace picks them up they walk in along the line from the centre to where it
    does; after it lets go they walk on, away from the centre.
    """
    if t < traj.start or t > traj.end:
        i, dt = (0, traj.start - t) if t < traj.start else (-1, t - traj.end)
        x, y = traj.xs[i], traj.ys[i]
        d = math.hypot(x, y)
        if d < 1e-6:
            return x, y
        scale = (d + speed * dt) / d
        return x * scale, y * scale
    x, y, _, _, _ = traj.at(t)
    return x, y


def geofence_pass(
    traj: Trajectory, radius_m: float, os_class: str, rng: random.Random
) -> GeofencePass:
    """Enter and exit of the store's OS geofence for one trajectory (see module docstring)."""
    acc = rng.uniform(*GPS_OUTDOOR_ACCURACY_M)
    r_eff = max(10.0, radius_m + rng.gauss(0.0, acc))
    d0 = math.hypot(traj.xs[0], traj.ys[0])
    d1 = math.hypot(traj.xs[-1], traj.ys[-1])
    t_in = traj.start - max(0.0, r_eff - d0) / APPROACH_SPEED
    t_out = traj.end + max(0.0, r_eff - d1) / APPROACH_SPEED
    median, sigma = OS_GEOFENCE_DELAY[os_class]
    t_enter = t_in + os_delay(rng, median, sigma, OS_GEOFENCE_DELAY_MAX_S)
    t_exit = t_out + os_delay(rng, median, sigma, OS_GEOFENCE_DELAY_MAX_S)
    return GeofencePass(t_in, t_out, t_enter, max(t_exit, t_enter + 1.0))


def location_fixes(
    traj: Trajectory,
    gpass: GeofencePass,
    os_class: str,
    indoor: Sequence[tuple[float, float]],
    rng: random.Random,
) -> list[Fix]:
    """The fixes the app sends: one on each geofence wake-up, and Android's background ones.

    ``indoor`` are the (start, end) times the person is inside the store, where GPS is
    coarse. A fix is the true position plus GPS error of its accuracy.
    """
    times = [gpass.t_enter + rng.uniform(1.0, 5.0), gpass.t_exit + rng.uniform(1.0, 5.0)]
    if os_class == "android_app":
        t = gpass.t_enter + rng.lognormvariate(*_log(ANDROID_FIX_INTERVAL))
        while t < gpass.t_exit:
            times.append(t)
            t += rng.lognormvariate(*_log(ANDROID_FIX_INTERVAL))
    out: list[Fix] = []
    for t in sorted(times):
        inside = any(a <= t <= b for a, b in indoor)
        acc = rng.uniform(*(GPS_INDOOR_ACCURACY_M if inside else GPS_OUTDOOR_ACCURACY_M))
        x, y = position(traj, t)
        # A fix's accuracy is its error's 68% radius: each axis off by about acc/1.5.
        out.append(Fix(t, x + rng.gauss(0, acc / 1.5), y + rng.gauss(0, acc / 1.5), acc))
    return out


def _log(median_sigma: tuple[float, float]) -> tuple[float, float]:
    return math.log(median_sigma[0]), median_sigma[1]
