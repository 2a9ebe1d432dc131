"""Store presence: one zone per subject, from the evidence of every gateway of a store.

A single gateway decides only "near me or not". At the door that is not enough: a phone
in a bag crossing into the entrance reads like a held phone outside the window. What tells
them apart is the other gateways: someone who walks in gets farther from the door gateway
and nearer an interior one; someone outside fades everywhere. :class:`StorePresence`
takes each gateway's evidence about a subject (its own zone machine's enters and exits,
:mod:`beacons.presence`, and its strongest level per window, a ``sighting``; a door pair's
gateways take it from a filter faster than the machine's, ``edge.pipeline``) and places
the subject in at most one zone of the store. From outside, inside is:

* ``door_then_interior``: the door gateway peaked at ``peak_min_rssi`` or more within
  ``peak_window_s``; since that peak it fell by ``drop_db`` or more while an interior
  gateway rose by ``rise_db`` or more (unheard counts as ``unheard_rssi``) to at least its
  enter threshold − ``interior_margin_db``, together ``gain_db`` or more, for
  ``confirm_s``. The gain does not depend on how loud the phone is, only on where it went;
  holding it for ``confirm_s`` keeps one noisy window of someone standing still from
  counting;
* ``interior_gateway`` / ``small_gateway``: an interior gateway's own machine is present
  (its calibrated threshold is one the street cannot reach, ``edge.calibration``), unless
  a door gateway heard the subject ``door_margin_db`` louder as it entered or since: that
  is the doorway, not inside (for a machine that entered by lingering: the best levels
  over ``peak_window_s``, judged as it enters);
* ``door_strong``: a door level ``strong_margin_db`` above the strongest the calibration
  predicts anywhere outside (``GatewayRole.street_rssi``), held ``strong_s`` (a door
  without a pair);
* ``door_over_street``: where the door has a pair, a gateway outside on the shop front
  (``GatewayRole.pair``, a gateway of kind ``street``), the door hears the subject
  ``pair_margin_db`` louder than the street gateway's latest level of the last
  ``pair_window_s`` (unheard counts as ``unheard_rssi``)
  and at ``peak_min_rssi`` or more, held ``pair_s``, judged at the end of a window (once
  both gateways' levels of it are in). The difference does not depend on how loud the
  phone is, only on which side of the front it is;
* ``door_linger``: the door's machine entered by lingering, or stayed ``door_stay_s``. A
  door enter alone is *not* inside: a window shopper's held phone reaches it too.

Where a door has a pair, nothing places a subject inside while the street gateway's
latest level of the last ``pair_window_s`` is at least the door's: it is at the front,
outside.

Once inside, the zone is the present machine of highest priority (small zones over the
floor around them, the floor over the entrance). Inside is kept while a machine is present
or an interior gateway hears the subject at its enter threshold − ``interior_margin_db``;
``keep_s`` after the last such evidence the subject exits, at that due time. A machine
silent for ``stale_s`` no longer counts (its exit was lost), a level older than ``fresh_s``
is not "now". Hysteresis: two zone changes
of a subject (enter, move, exit) are at least ``hold_s`` apart, and a move needs its zone
to stay the best for ``hold_s``.

Every decision carries a :class:`~beacons.presence.Why`: the rule and the readings of
the gateways it used. Time is the evidence's own (seconds, any epoch); :meth:`window`
feeds a window's evidence in one canonical order and fires the timers at its end, so the
offline bench and the store's coordinator decide the same from the same evidence.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from beacons.presence import Transition, Why

RoleKind = Literal["entrance", "interior", "small", "street"]
EvidenceKind = Literal["zone_enter", "zone_dwell", "zone_exit", "sighting"]
_KIND_ORDER = {"zone_exit": 0, "zone_enter": 1, "zone_dwell": 2, "sighting": 3}
_PRIORITY = {"small": 3, "interior": 2, "entrance": 1}
_INSIDE = frozenset({"interior", "small"})  # a zone inside the store beyond the entrance


@dataclass(frozen=True, slots=True)
class GatewayRole:
    """What the fusion knows of one gateway: its zone, the zone's role, its enter level."""

    gateway_id: str
    zone_id: str
    kind: RoleKind
    enter_rssi: float
    street_rssi: float | None = None
    """The median level predicted at the nearest point outside (calibration), if known."""
    pair: str | None = None
    """An entrance gateway's door pair: the ``street`` gateway outside the same door."""

    def __post_init__(self) -> None:
        if self.kind not in _PRIORITY and self.kind != "street":
            raise ValueError(
                f"gateway {self.gateway_id}: kind must be entrance, interior, small or street"
            )
        if self.pair is not None and self.kind != "entrance":
            raise ValueError(f"gateway {self.gateway_id}: only an entrance gateway has a pair")


@dataclass(frozen=True, slots=True)
class FusionConfig:
    """Thresholds (dBm) and timers (seconds) of :class:`StorePresence` (module docstring)."""

    peak_min_rssi: float = -80.0
    peak_window_s: float = 20.0
    rise_db: float = 3.0
    drop_db: float = 3.0
    gain_db: float = 12.0
    confirm_s: float = 1.0
    interior_margin_db: float = 4.0
    unheard_rssi: float = -90.0
    door_margin_db: float = 3.0
    door_stay_s: float = 60.0
    door_window_s: float = 4.0
    # A store sets these two (edge.settings: fusion_door_strong_margin_db, _s). 1 s instead
    # of 1.5 s cost no precision on any scenario's seeds (2026-12-04); the margin stays
    # above the street's median at the door line, as a held phone standing in the doorway
    # outside reads about that (tests/beacons/test_fusion.py's window shopper).
    strong_margin_db: float | None = 2.0
    strong_s: float = 1.0
    # Chosen on boutique-rush 21-27 in boutique-pair (2026-12-04): 4 dB took a passer-by
    # inside; 8 dB or a 4 s window cost 1-3 s of p50; pair_s 0 took a passer-by inside.
    pair_margin_db: float = 6.0
    pair_s: float = 1.0
    pair_window_s: float = 3.0
    hold_s: float = 3.0
    keep_s: float = 15.0
    dwell_s: float = 60.0
    stale_s: float = 60.0
    fresh_s: float = 2.0

    def __post_init__(self) -> None:
        names = ("peak_window_s", "gain_db", "door_stay_s", "keep_s", "dwell_s", "stale_s")
        for name in names:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.hold_s < 0 or self.interior_margin_db < 0:
            raise ValueError("hold_s and interior_margin_db must be >= 0")


@dataclass(frozen=True, slots=True)
class Evidence:
    """One gateway's word about a subject: its machine's transition, or a level."""

    gateway_id: str
    subject: str
    kind: EvidenceKind
    at: float
    rssi: float
    confidence: float | None = None

    def order(self) -> tuple[float, str, int, str]:
        """The canonical order within a window: time, gateway, exits before enters."""
        return (self.at, self.gateway_id, _KIND_ORDER[self.kind], self.subject)


@dataclass(slots=True)
class _Gateway:
    """One gateway's evidence about one subject."""

    present: bool = False
    since: float = 0.0
    last: float = -math.inf
    lingered: bool = False
    vetoed: bool = False
    confidence: float = 0.5
    levels: deque[tuple[float, float]] = field(default_factory=deque)

    def level(self) -> float | None:
        return self.levels[-1][1] if self.levels else None


@dataclass(slots=True)
class _Subject:
    gateways: dict[str, _Gateway] = field(default_factory=dict)
    streets: dict[str, _Gateway] = field(default_factory=dict)
    """Street gateways' evidence: kept apart, it places nobody and keeps nobody inside;
    only a door pair compares with it."""
    zone: str | None = None
    changed_at: float = -math.inf
    entered_at: float = 0.0
    dwelled: bool = False
    keep_until: float = -math.inf
    last_heard: float = -math.inf
    pending: str | None = None
    pending_since: float = 0.0
    rise_since: float | None = None


def _held_since(
    levels: deque[tuple[float, float]], holds: Callable[[float, float], bool]
) -> float | None:
    """When the trailing run of ``levels`` (time, dBm) for which ``holds`` is true began;
    None if the last level does not hold."""
    first = None
    for lt, lv in reversed(levels):
        if not holds(lt, lv):
            break
        first = lt
    return first


@dataclass(frozen=True, slots=True)
class _Candidate:
    zone: str
    confidence: float
    why: Why


@dataclass(slots=True)
class FusionStats:
    evidence: int = 0
    unknown_gateway: int = 0
    enters: int = 0
    moves: int = 0
    exits: int = 0
    evicted: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)


class StorePresence:
    """The zone of every subject of one store, from its gateways' evidence (module docstring)."""

    def __init__(
        self,
        roles: Iterable[GatewayRole],
        config: FusionConfig | None = None,
        *,
        max_subjects: int = 50_000,
    ) -> None:
        self.roles: dict[str, GatewayRole] = {r.gateway_id: r for r in roles}
        if not self.roles:
            raise ValueError("a store needs at least one gateway role")
        self.config = config or FusionConfig()
        self.max_subjects = max_subjects
        self.stats = FusionStats()
        self._subjects: dict[str, _Subject] = {}
        self._street_heard: dict[str, float] = {}  # a street gateway's latest evidence, anyone
        self._entrances = [r for r in self.roles.values() if r.kind == "entrance"]
        self._interiors = [r for r in self.roles.values() if r.kind in _INSIDE]
        for door in self._entrances:
            paired = self.roles.get(door.pair) if door.pair is not None else None
            if door.pair is not None and (paired is None or paired.kind != "street"):
                raise ValueError(
                    f"gateway {door.gateway_id}: its pair {door.pair!r} is no street gateway"
                )

    def __len__(self) -> int:
        return len(self._subjects)

    def zone_of(self, subject: str) -> str | None:
        """The zone ``subject`` is in, or None (outside, or not heard)."""
        state = self._subjects.get(subject)
        return None if state is None else state.zone

    # --- input --------------------------------------------------------------------------
    def window(self, evidence: Iterable[Evidence], end: float | None) -> list[Transition]:
        """Feed one window's evidence in canonical order, then fire the timers due by ``end``.

        ``end`` None: part of a window (a replay cut it at an app line), no timers yet.
        """
        out: list[Transition] = []
        for ev in sorted(evidence, key=Evidence.order):
            self.observe(ev, out)
        if end is not None:
            self.tick(end, out)
        # Timers of different subjects fire in any order: publish in time order (stable, so
        # a move's enter stays before its exit).
        out.sort(key=lambda tr: tr.at)
        return out

    def observe(self, ev: Evidence, out: list[Transition]) -> None:
        """Apply one piece of evidence; append the decisions it causes to ``out``."""
        role = self.roles.get(ev.gateway_id)
        if role is None:
            self.stats.unknown_gateway += 1
            return
        self.stats.evidence += 1
        if role.kind == "street":
            self._street_heard[ev.gateway_id] = max(
                self._street_heard.get(ev.gateway_id, -math.inf), ev.at
            )
        state = self._subjects.get(ev.subject)
        if state is None:
            if len(self._subjects) >= self.max_subjects:
                self._shed(ev.at, out)
            state = self._subjects[ev.subject] = _Subject()
        # Anything that fell due before this evidence happened first.
        self._timers(ev.subject, state, ev.at, out)
        gateways = state.streets if role.kind == "street" else state.gateways
        gw = gateways.get(ev.gateway_id)
        if gw is None:
            gw = gateways[ev.gateway_id] = _Gateway()
        state.last_heard = max(state.last_heard, ev.at)
        gw.last = max(gw.last, ev.at)
        if ev.kind == "zone_exit":
            if gw.present and state.zone is not None:
                # It held the subject inside until now: keep from here, not from a tick.
                state.keep_until = max(state.keep_until, ev.at + self.config.keep_s)
            gw.present = False
        elif ev.kind == "zone_enter" or (ev.kind == "zone_dwell" and not gw.present):
            gw.present = True
            gw.since = ev.at
            # A machine enters at its threshold, or below it by lingering (beacons.presence).
            gw.lingered = ev.kind == "zone_enter" and ev.rssi < role.enter_rssi
            gw.confidence = 0.5 if ev.confidence is None else ev.confidence
        self._record(gw, ev.at, ev.rssi)
        if ev.kind == "zone_enter" and role.kind in _INSIDE:
            # Judged as it enters, too: heard louder at the door then, it was the doorway,
            # and must not count later when the door no longer hears the subject.
            gw.vetoed = state.zone is None and self._door_louder(state, gw, ev.at)
        if (
            state.zone is not None
            and role.kind in _INSIDE
            and ev.rssi >= role.enter_rssi - self.config.interior_margin_db
        ):
            # Heard where the street cannot be: still inside, whatever the machines say.
            state.keep_until = max(state.keep_until, ev.at + self.config.keep_s)
        self._decide(ev.subject, state, ev.at, out, settled=False)

    def tick(self, now: float, out: list[Transition] | None = None) -> list[Transition]:
        """Fire timers due by ``now`` (exits, door stays, dwells); forget idle subjects."""
        out = [] if out is None else out
        horizon = self.config.peak_window_s + self.config.keep_s
        idle: list[str] = []
        for subject, state in self._subjects.items():
            self._timers(subject, state, now, out)
            if now != math.inf:
                self._decide(subject, state, now, out, settled=True)
            if (
                state.zone is None
                and not self._still_present(state, now)
                and now - state.last_heard >= horizon
            ):
                idle.append(subject)
        for subject in idle:
            del self._subjects[subject]
        self.stats.evicted += len(idle)
        return out

    # --- the model ----------------------------------------------------------------------
    def _record(self, gw: _Gateway, t: float, rssi: float) -> None:
        levels = gw.levels
        levels.append((t, rssi))
        horizon = t - self.config.peak_window_s - self.config.hold_s
        while levels and levels[0][0] < horizon:
            levels.popleft()

    def _candidate(self, state: _Subject, t: float, settled: bool) -> _Candidate | None:
        """Where the evidence places the subject now, or None if nothing says inside.

        ``settled``: the end of a window, every gateway's evidence of it is in."""
        best: tuple[int, float, str, _Gateway] | None = None
        outside = state.zone is None
        if outside and self._at_the_front(state, t):
            return None
        for gid, gw in state.gateways.items():
            if not self._present(gw, t):
                continue
            role = self.roles[gid]
            if outside and role.kind == "entrance" and not self._stayed(gw, t):
                continue  # a door enter alone: could be a window shopper
            if outside and role.kind != "entrance" and self._doorway(state, gw, t):
                continue  # heard better at the door: from the doorway, not from inside
            margin = (gw.level() or role.enter_rssi) - role.enter_rssi
            key = (_PRIORITY[role.kind], margin, gid, gw)
            if best is None or key[:3] > best[:3]:
                best = key
        if best is not None:
            _, _, gid, gw = best
            role = self.roles[gid]
            level = gw.level()
            reading = ((gid, round(level, 1)),) if level is not None else ()
            if role.kind == "entrance" and outside:
                detail = (
                    f"{gid} entered by lingering"
                    if gw.lingered
                    else f"{gid} present for {t - gw.since:.0f} s"
                )
                why = Why("door_linger", reading, detail)
                return _Candidate(role.zone_id, min(gw.confidence, 0.75), why)
            why = Why(f"{role.kind}_gateway", reading, f"{gid} entered its zone")
            return _Candidate(role.zone_id, gw.confidence, why)
        if outside:
            return (
                self._door_strong(state, t)
                or (self._door_over_street(state, t) if settled else None)
                or self._confirmed(state, t)
            )
        # Inside with no machine present: the pair still says "this side of the front" (a
        # bagged phone in the entrance whose door machine never enters stays inside).
        return self._door_over_street(state, t) if settled else None

    def _paired(self, door: GatewayRole, t: float) -> bool:
        """A door whose pair outside is working: it gave evidence (of anyone) within
        ``stale_s``. A silent pair (down, unplugged) leaves the door judged alone."""
        return (
            door.pair is not None
            and t - self._street_heard.get(door.pair, -math.inf) < self.config.stale_s
        )

    def _stayed(self, door: _Gateway, t: float) -> bool:
        """A door machine that entered by lingering, or has been present ``door_stay_s``."""
        return door.lingered or t - door.since >= self.config.door_stay_s

    def _doorway(self, state: _Subject, inner: _Gateway, t: float) -> bool:
        """True if an interior machine's presence is better explained by the doorway."""
        return inner.vetoed or (not inner.lingered and self._door_louder(state, inner, t))

    def _door_louder(self, state: _Subject, inner: _Gateway, t: float) -> bool:
        """True if a door gateway hears the subject ``door_margin_db`` louder than ``inner``.

        The difference does not depend on how loud the phone is, only on where it is: just
        outside the door the door gateway is far nearer than any interior one.
        """
        cfg = self.config
        if inner.lingered:
            # Slow evidence (a weak level held for long, heard in runs): weigh its best
            # against the door's best over as long.
            since = t - cfg.peak_window_s
            level = max((lv for lt, lv in inner.levels if lt >= since), default=None)
        else:
            since = t - cfg.door_window_s
            level = inner.level()
        if level is None:
            return False
        for door in self._entrances:
            gw = state.gateways.get(door.gateway_id)
            if gw is None:
                continue
            door_level = max((lv for lt, lv in gw.levels if lt >= since), default=None)
            if door_level is not None and door_level - level > cfg.door_margin_db:
                return True
        return False

    def _confirmed(self, state: _Subject, t: float) -> _Candidate | None:
        """Door then interior, once it has held for ``confirm_s`` (one noisy window is not)."""
        found = self._door_then_interior(state, t)
        if found is None:
            state.rise_since = None
            return None
        if state.rise_since is None:
            state.rise_since = t
        return found if t - state.rise_since >= self.config.confirm_s else None

    def _door_strong(self, state: _Subject, t: float) -> _Candidate | None:
        """A door level the street cannot produce, held for ``strong_s``."""
        cfg = self.config
        if cfg.strong_margin_db is None:
            return None
        for door in self._entrances:
            gw = state.gateways.get(door.gateway_id)
            if gw is None or not gw.levels or door.street_rssi is None or self._paired(door, t):
                continue  # a door with a working pair has a better test: door_over_street
            strong = door.street_rssi + cfg.strong_margin_db
            first = _held_since(gw.levels, lambda _, lv: lv >= strong)  # noqa: B023 (called here)
            last = gw.levels[-1][0]
            if first is None or last - first < cfg.strong_s or t - last > cfg.fresh_s:
                continue
            level = gw.levels[-1][1]
            return _Candidate(
                door.zone_id,
                0.75,
                Why(
                    "door_strong",
                    ((door.gateway_id, round(level, 1)),),
                    f"{door.gateway_id} at {strong:.0f} dBm or more for"
                    f" {gw.levels[-1][0] - first:.1f} s",
                ),
            )
        return None

    def _door_over_street(self, state: _Subject, t: float) -> _Candidate | None:
        """The door louder than its pair outside by ``pair_margin_db``, held ``pair_s``."""
        cfg = self.config
        for door, gw, street in self._paired_doors(state, t):
            first = _held_since(
                gw.levels,
                lambda lt, lv: (
                    lv >= cfg.peak_min_rssi
                    and lv - self._street_level(street, lt) >= cfg.pair_margin_db  # noqa: B023
                ),
            )
            last_t, level = gw.levels[-1]
            if first is None or last_t - first < cfg.pair_s:
                continue
            street_level = self._street_level(street, last_t)
            return _Candidate(
                door.zone_id,
                0.8,
                Why(
                    "door_over_street",
                    ((door.gateway_id, round(level, 1)), (door.pair or "", round(street_level, 1))),
                    f"{door.gateway_id} {level - street_level:.0f} dB louder than {door.pair}"
                    f" outside for {last_t - first:.1f} s",
                ),
            )
        return None

    def _at_the_front(self, state: _Subject, t: float) -> bool:
        """True if a door's pair outside hears the subject now, at least as loud as the door
        does: at the shop front, on the street side (a held phone standing in the doorway
        reads inside to the door alone). Only fresh levels count: a veto of a moment ago
        must not keep someone the interior gateways have since found out of the store."""
        for _, gw, street in self._paired_doors(state, t):
            heard = self._street_level(street, t)
            if heard > self.config.unheard_rssi and heard >= gw.levels[-1][1]:
                return True
        return False

    def _paired_doors(
        self, state: _Subject, t: float
    ) -> Iterator[tuple[GatewayRole, _Gateway, _Gateway | None]]:
        """Each door with a working pair that heard the subject within ``fresh_s``: the
        door, its evidence, and its pair's (None: the pair has not heard the subject)."""
        for door in self._entrances:
            gw = state.gateways.get(door.gateway_id)
            if (
                door.pair is None
                or gw is None
                or not gw.levels
                or not self._paired(door, t)
                or t - gw.levels[-1][0] > self.config.fresh_s
            ):
                continue
            yield door, gw, state.streets.get(door.pair)

    def _street_level(self, street: _Gateway | None, at: float) -> float:
        """The street gateway's latest level within ``pair_window_s`` before ``at`` (a level
        it sends after ``at`` is a later moment), or ``unheard_rssi``.

        The latest, not the loudest: the loudest of the window is her approach under the
        street gateway, which held every entrant back for the whole window (latency p50
        -0.7 to -0.6 s on the pair layouts with the latest, precision unchanged). The window
        still bridges the street gateway's bursts of losses: a street level it heard up to
        ``pair_window_s`` ago stands for the street until a newer one comes."""
        level, latest = self.config.unheard_rssi, -math.inf
        if street is not None:
            since = at - self.config.pair_window_s
            for lt, lv in street.levels:  # in arrival order: a late window may come after
                if since <= lt <= at and lt >= latest:
                    level, latest = lv, lt
        return level

    def _door_then_interior(self, state: _Subject, t: float) -> _Candidate | None:
        """Door peak, then the door falling and an interior gateway rising (module docstring).

        Both are measured against the moment of the door's peak: someone who walks in gets
        farther from the door gateway and nearer an interior one; someone outside who
        walks on gets farther from both. The sum (how much the interior gained on the
        door) does not depend on how strong the phone is, only on where it went.
        """
        cfg = self.config
        since = t - cfg.peak_window_s
        found: _Candidate | None = None
        best = -math.inf
        for door in self._entrances:
            gw = state.gateways.get(door.gateway_id)
            if gw is None or not gw.levels:
                continue
            peak_t, peak = -math.inf, -math.inf
            for lt, lv in gw.levels:
                if lt >= since and lv >= peak:
                    peak_t, peak = lt, lv
            if peak < cfg.peak_min_rssi:
                continue
            for inner in self._interiors:
                igw = state.gateways.get(inner.gateway_id)
                if igw is None or not igw.levels:
                    continue
                now_t, now_level = igw.levels[-1]
                if (
                    now_t <= peak_t
                    or t - now_t > cfg.fresh_s
                    or now_level < inner.enter_rssi - cfg.interior_margin_db
                ):
                    continue
                ref = cfg.unheard_rssi
                door_now = cfg.unheard_rssi
                for lt, lv in igw.levels:
                    if peak_t - cfg.hold_s <= lt <= peak_t and lv > ref:
                        ref = lv
                for lt, lv in gw.levels:
                    if now_t - cfg.hold_s <= lt <= now_t:
                        door_now = lv
                rise, drop = now_level - ref, peak - door_now
                gain = rise + drop
                if rise < cfg.rise_db or drop < cfg.drop_db or gain < cfg.gain_db or gain <= best:
                    continue
                best = gain
                confidence = 0.5 + 0.5 * min(1.0, (gain - cfg.gain_db) / cfg.gain_db)
                found = _Candidate(
                    inner.zone_id,
                    round(confidence, 3),
                    Why(
                        "door_then_interior",
                        (
                            (door.gateway_id, round(peak, 1)),
                            (inner.gateway_id, round(now_level, 1)),
                        ),
                        f"{door.gateway_id} peaked at {peak:.0f} dBm and fell {drop:.0f} dB;"
                        f" {inner.gateway_id} rose {rise:.0f} dB to {now_level:.0f} dBm"
                        f" in {now_t - peak_t:.1f} s",
                    ),
                )
        return found

    def _decide(
        self, subject: str, state: _Subject, t: float, out: list[Transition], *, settled: bool
    ) -> None:
        cfg = self.config
        candidate = self._candidate(state, t, settled)
        if state.zone is not None and candidate is not None:
            state.keep_until = max(state.keep_until, t + cfg.keep_s)
        if candidate is None:
            state.pending = None
            return
        if state.zone is None:
            if t - state.changed_at < cfg.hold_s:
                return
            state.zone = candidate.zone
            state.changed_at = state.entered_at = t
            state.dwelled = False
            state.keep_until = t + cfg.keep_s
            state.pending = None
            self._count("enter", candidate.why.rule)
            out.append(self._transition(subject, candidate, "zone_enter", t, state))
            return
        if candidate.zone == state.zone:
            state.pending = None
            return
        if state.pending != candidate.zone:
            state.pending, state.pending_since = candidate.zone, t
        if t - state.pending_since < cfg.hold_s or t - state.changed_at < cfg.hold_s:
            return
        previous = state.zone
        state.zone = candidate.zone
        state.changed_at = state.entered_at = t
        state.dwelled = False
        state.pending = None
        self._count("move", candidate.why.rule)
        # The new zone first: the visit stays open between the two events.
        out.append(self._transition(subject, candidate, "zone_enter", t, state))
        why = Why("moved", candidate.why.readings, f"left for {candidate.zone}")
        out.append(
            Transition(
                subject, previous, "zone_exit", t, self._level(state), candidate.confidence, why
            )
        )

    def _timers(self, subject: str, state: _Subject, now: float, out: list[Transition]) -> None:
        cfg = self.config
        if state.zone is None:
            return
        exit_at = max(state.keep_until, state.changed_at + cfg.hold_s)
        dwell_at = state.entered_at + cfg.dwell_s
        if not state.dwelled and dwell_at <= now and dwell_at < exit_at:
            state.dwelled = True
            why = Why("dwell", (), f"in {state.zone} for {cfg.dwell_s:.0f} s")
            out.append(
                Transition(
                    subject, state.zone, "zone_dwell", dwell_at, self._level(state), 1.0, why
                )
            )
        if exit_at > now or self._still_present(state, now):
            return
        zone = state.zone
        state.zone = None
        state.changed_at = exit_at
        state.pending = None
        self._count("exit", "quiet")
        why = Why("quiet", (), f"no gateway placed it inside for {cfg.keep_s:.0f} s")
        out.append(Transition(subject, zone, "zone_exit", exit_at, self._level(state), 0.9, why))

    def _present(self, gw: _Gateway, t: float) -> bool:
        # A gateway that said "present" and then nothing for stale_s lost its exit (or
        # its power): its word no longer counts.
        return gw.present and t - gw.last < self.config.stale_s

    def _still_present(self, state: _Subject, t: float) -> bool:
        return any(self._present(g, t) for g in state.gateways.values())

    # --- helpers ------------------------------------------------------------------------
    def _level(self, state: _Subject) -> float:
        best = -127.0
        for gw in state.gateways.values():
            level = gw.level()
            if level is not None and level > best:
                best = level
        return best

    def _transition(
        self,
        subject: str,
        candidate: _Candidate,
        kind: Literal["zone_enter"],
        t: float,
        state: _Subject,
    ) -> Transition:
        return Transition(
            subject,
            candidate.zone,
            kind,
            t,
            self._level(state),
            candidate.confidence,
            candidate.why,
        )

    def _count(self, what: str, rule: str) -> None:
        stats = self.stats
        if what == "enter":
            stats.enters += 1
        elif what == "move":
            stats.moves += 1
        else:
            stats.exits += 1
        key = f"{what}:{rule}"
        stats.by_rule[key] = stats.by_rule.get(key, 0) + 1

    def _shed(self, t: float, out: list[Transition]) -> None:
        """Forget the longest-silent tenth of the subjects (exiting those inside)."""
        by_age = sorted(self._subjects.items(), key=lambda item: item[1].last_heard)
        for subject, state in by_age[: max(1, len(by_age) // 10)]:
            if state.zone is not None:
                why = Why("shed", (), "too many subjects: the longest silent are forgotten")
                out.append(
                    Transition(subject, state.zone, "zone_exit", t, self._level(state), 0.0, why)
                )
            del self._subjects[subject]
            self.stats.evicted += 1
