"""Movement: piecewise-linear trajectories through a layout's zones, with ground truth.

A :class:`Trajectory` is a list of waypoints (time, x, y, z, zone); position is linear
between them and the zone is the one of the last waypoint passed. The builder walks a
person along a plan: along the sidewalk, through a door (truth ``arrive``), through the
portals :meth:`StoreLayout.route` gives, browsing inside each target zone for its dwell,
and out again (truth ``leave``). Every zone change inside is a truth ``enter_zone``.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass, field

from simulators.layout import FLOOR_HEIGHT_M, PortalSpec, StoreLayout, ZoneSpec
from simulators.radio import PHONE_HEIGHT_M

WALK_SPEED = (1.0, 1.5)  # m/s on the street
INDOOR_SPEED = (0.7, 1.1)  # m/s between zones inside
BROWSE_SPEED = (0.3, 0.7)  # m/s while browsing


@dataclass(frozen=True, slots=True)
class TruthEvent:
    t: float
    event: str  # arrive | enter_zone | leave | pass_by
    zone_id: str


Position = tuple[float, float, float, str, float | None]
"""Where a walker is at a moment: x, y, z (m), zone id, heading (rad; None standing)."""


@dataclass(slots=True)
class Trajectory:
    ts: list[float] = field(default_factory=list)
    xs: list[float] = field(default_factory=list)
    ys: list[float] = field(default_factory=list)
    zs: list[float] = field(default_factory=list)
    zones: list[str] = field(default_factory=list)

    @property
    def start(self) -> float:
        return self.ts[0]

    @property
    def end(self) -> float:
        return self.ts[-1]

    def add(self, t: float, x: float, y: float, z: float, zone: str) -> None:
        if self.ts and t < self.ts[-1]:
            raise ValueError(f"waypoint at t={t} before the previous one at {self.ts[-1]}")
        self.ts.append(t)
        self.xs.append(x)
        self.ys.append(y)
        self.zs.append(z)
        self.zones.append(zone)

    def at(self, t: float) -> Position:
        """(x, y, z, zone, heading) at time ``t``; heading None while standing still."""
        i = bisect.bisect_right(self.ts, t) - 1
        if i < 0:
            return self.xs[0], self.ys[0], self.zs[0], self.zones[0], None
        if i >= len(self.ts) - 1:
            return self.xs[-1], self.ys[-1], self.zs[-1], self.zones[-1], None
        t0, t1 = self.ts[i], self.ts[i + 1]
        x0, y0, x1, y1 = self.xs[i], self.ys[i], self.xs[i + 1], self.ys[i + 1]
        f = (t - t0) / (t1 - t0) if t1 > t0 else 0.0
        dx, dy = x1 - x0, y1 - y0
        heading = math.atan2(dy, dx) if (dx or dy) else None
        z = self.zs[i] + f * (self.zs[i + 1] - self.zs[i])
        return x0 + f * dx, y0 + f * dy, z, self.zones[i], heading


def z_of(floor: int) -> float:
    return floor * FLOOR_HEIGHT_M + PHONE_HEIGHT_M


class Walker:
    """Builds one person's trajectory and truth, step by step."""

    def __init__(
        self, layout: StoreLayout, rng: random.Random, t: float, x: float, y: float, zone: str
    ) -> None:
        self.layout = layout
        self.rng = rng
        self.t = t
        self.zone = zone
        self.floor = layout.zone(zone).floor
        self.x, self.y = x, y
        self.traj = Trajectory()
        self.truth: list[TruthEvent] = []
        self.traj.add(t, x, y, z_of(self.floor), zone)

    # --- primitives -------------------------------------------------------------------
    def walk_to(self, x: float, y: float, speed: float) -> None:
        d = math.hypot(x - self.x, y - self.y)
        self.t += d / speed
        self.x, self.y = x, y
        self.traj.add(self.t, x, y, z_of(self.floor), self.zone)

    def pause(self, seconds: float) -> None:
        if seconds > 0:
            self.t += seconds
            self.traj.add(self.t, self.x, self.y, z_of(self.floor), self.zone)

    def _enter(self, zone: str, event: str = "enter_zone") -> None:
        self.zone = zone
        self.traj.zones[-1] = zone
        self.truth.append(TruthEvent(round(self.t, 3), event, zone))

    def through(self, portal: PortalSpec, to_zone: str, speed: float) -> None:
        """Walk to a portal and pass it into ``to_zone`` (riding it if it changes floor)."""
        self.walk_to(portal.x, portal.y, speed)
        target = self.layout.zone(to_zone)
        if target.floor != self.floor:
            self.floor = target.floor
            self.t += portal.travel_s
            self.traj.add(self.t, portal.x, portal.y, z_of(self.floor), self.zone)
        from_kind = self.layout.zone(self.zone).kind
        to_kind = target.kind
        if from_kind == "outside" and to_kind == "entrance":
            self._enter(to_zone, "arrive")
        elif to_kind == "outside":
            left = self.zone
            self.zone = to_zone
            self.traj.zones[-1] = to_zone
            self.truth.append(TruthEvent(round(self.t, 3), "leave", left))
        else:
            self._enter(to_zone)

    def go_to_zone(self, zone_id: str, speed: float) -> None:
        for portal, nxt in self.layout.route(self.zone, zone_id):
            self.through(portal, nxt, speed)

    def random_point(self, zone: ZoneSpec, margin: float = 0.6) -> tuple[float, float]:
        """A point in ``zone`` that no zone listed before it claims (so truth stays true)."""
        x0, y0, x1, y1 = zone.rect
        for _ in range(50):
            x = self.rng.uniform(x0 + margin, x1 - margin)
            y = self.rng.uniform(y0 + margin, y1 - margin)
            if self.layout.zone_at(zone.floor, x, y) == zone.id:
                return x, y
        return (x0 + x1) / 2, (y0 + y1) / 2

    def browse(self, seconds: float) -> None:
        """Wander inside the current zone for about ``seconds``: walk, stop, look."""
        zone = self.layout.zone(self.zone)
        until = self.t + seconds
        speed = self.rng.uniform(*BROWSE_SPEED)
        while self.t < until:
            x, y = self.random_point(zone)
            self.walk_to(x, y, speed)
            self.pause(min(max(0.0, until - self.t), self.rng.lognormvariate(math.log(25), 0.7)))

    def dwell_for(self, zone: ZoneSpec) -> float:
        if zone.dwell is None:
            return self.rng.uniform(5, 15)
        d = zone.dwell
        return min(d.max_s, self.rng.lognormvariate(math.log(d.median_s), d.sigma))
