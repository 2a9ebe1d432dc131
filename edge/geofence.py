"""Store geofences and the per-device enter/dwell/exit state machine (pure, clock injected).

Geofences are circles (centre and radius, distances by haversine) or polygons (WGS84
vertices, projected onto a local equirectangular plane around their centroid, which is
accurate to well under a metre for the few hundred metres a store geofence spans).

**Hysteresis.** A location fix is a disc: its position and its accuracy radius. For each
geofence we compute the signed distance ``d`` from the fix to the boundary (positive
inside). The fix counts as *inside* only when the whole disc is inside by the margin
(``d >= accuracy + margin``), as *outside* only when it is wholly outside by the margin
(``d <= -(accuracy + margin)``); anything in between holds the previous state. So GPS
noise near the boundary, or a coarse fix, can never toggle a device in and out.

**Dwell.** A device that has stayed inside for ``dwell_s`` gets one ``geofence_dwell`` per
visit, dated ``entered_at + dwell_s``, emitted by the next fix or :meth:`tick`, whichever
comes first (the agent ticks every second, so it is at most a tick late).

**Reports.** The app may report an OS geofence transition (iOS/Android run their own
hysteresis); :meth:`GeofenceEngine.report` applies it to the same state, so an OS enter and
a fix that crosses the same fence do not make two enters.

Per device and geofence the output always alternates ``enter (dwell)? exit``; a device that
is not heard from for ``stale_s`` is forgotten, with an ``exit`` of confidence 0.5 if it was inside.
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from edge.exceptions import EdgeError

EARTH_RADIUS_M = 6_371_008.8
MAX_POLYGON_EXTENT_M = 20_000.0
"""Beyond this the equirectangular projection stops being accurate to a metre."""

GeofenceKind = Literal["geofence_enter", "geofence_dwell", "geofence_exit"]


class GeofenceError(EdgeError):
    """A geofence definition or a report that cannot be used; ``geofence_id`` says which."""

    def __init__(self, message: str, geofence_id: str | None = None) -> None:
        self.geofence_id = geofence_id
        super().__init__(message)


def _check_lat_lon(lat: float, lon: float, what: str) -> None:
    if not (math.isfinite(lat) and -90.0 <= lat <= 90.0):
        raise GeofenceError(f"{what}: latitude {lat!r} is not in [-90, 90]")
    if not (math.isfinite(lon) and -180.0 <= lon <= 180.0):
        raise GeofenceError(f"{what}: longitude {lon!r} is not in [-180, 180]")


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres between two WGS84 points (spherical Earth)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def _wrap_deg(d: float) -> float:
    """A longitude difference folded into [-180, 180), so fences may straddle the antimeridian."""
    return (d + 180.0) % 360.0 - 180.0


@dataclass(frozen=True, slots=True)
class Circle:
    """A circular geofence: centre (WGS84 degrees) and radius in metres."""

    id: str
    lat: float
    lon: float
    radius_m: float

    def __post_init__(self) -> None:
        _check_lat_lon(self.lat, self.lon, f"geofence {self.id!r}")
        if not (math.isfinite(self.radius_m) and self.radius_m > 0):
            raise GeofenceError(f"geofence {self.id!r}: radius_m must be > 0", self.id)

    def signed_distance_m(self, lat: float, lon: float) -> float:
        """Distance from the point to the boundary: positive inside, negative outside."""
        return self.radius_m - haversine_m(self.lat, self.lon, lat, lon)

    def from_centre_m(self, lat: float, lon: float) -> float:
        """How far the point is from the store (the circle's centre)."""
        return haversine_m(self.lat, self.lon, lat, lon)

    @property
    def reach_m(self) -> float | None:
        """How far from the store someone crossing the boundary is: the radius."""
        return self.radius_m


@dataclass(frozen=True, slots=True)
class Polygon:
    """A polygonal geofence: at least three (lat, lon) vertices, in order, not closed."""

    id: str
    vertices: tuple[tuple[float, float], ...]
    _lat0: float = field(init=False, repr=False, compare=False)
    _lon0: float = field(init=False, repr=False, compare=False)
    _kx: float = field(init=False, repr=False, compare=False)
    _xy: tuple[tuple[float, float], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.vertices) < 3:
            raise GeofenceError(
                f"geofence {self.id!r}: a polygon needs at least 3 vertices", self.id
            )
        for i, (lat, lon) in enumerate(self.vertices):
            _check_lat_lon(lat, lon, f"geofence {self.id!r} vertex {i}")
        lat0 = sum(v[0] for v in self.vertices) / len(self.vertices)
        ref_lon = self.vertices[0][1]
        lon0 = ref_lon + sum(_wrap_deg(v[1] - ref_lon) for v in self.vertices) / len(self.vertices)
        kx = EARTH_RADIUS_M * math.cos(math.radians(lat0))
        object.__setattr__(self, "_lat0", lat0)
        object.__setattr__(self, "_lon0", lon0)
        object.__setattr__(self, "_kx", kx)
        xy = tuple(self._project(lat, lon) for lat, lon in self.vertices)
        object.__setattr__(self, "_xy", xy)
        extent = max(math.hypot(x, y) for x, y in xy)
        if extent > MAX_POLYGON_EXTENT_M:
            raise GeofenceError(
                f"geofence {self.id!r}: polygon spans {extent:.0f} m from its centre, more than "
                f"{MAX_POLYGON_EXTENT_M:.0f} m",
                self.id,
            )
        twice_area = sum(
            x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in zip(xy, xy[1:] + xy[:1], strict=True)
        )
        if abs(twice_area) < 1e-6:
            raise GeofenceError(f"geofence {self.id!r}: polygon has no area", self.id)

    def _project(self, lat: float, lon: float) -> tuple[float, float]:
        x = self._kx * math.radians(_wrap_deg(lon - self._lon0))
        y = EARTH_RADIUS_M * math.radians(lat - self._lat0)
        return x, y

    def signed_distance_m(self, lat: float, lon: float) -> float:
        """Distance from the point to the nearest edge: positive inside, negative outside."""
        px, py = self._project(lat, lon)
        inside = False
        best = math.inf
        xy = self._xy
        n = len(xy)
        for i in range(n):
            x1, y1 = xy[i]
            x2, y2 = xy[(i + 1) % n]
            # Even-odd ray cast to +x.
            if (y1 > py) != (y2 > py) and px < x1 + (py - y1) * (x2 - x1) / (y2 - y1):
                inside = not inside
            dx, dy = x2 - x1, y2 - y1
            seg2 = dx * dx + dy * dy
            t = 0.0 if seg2 == 0 else max(0.0, min(1.0, ((px - x1) * dx + (py - y1) * dy) / seg2))
            best = min(best, math.hypot(px - (x1 + t * dx), py - (y1 + t * dy)))
        return best if inside else -best

    def from_centre_m(self, lat: float, lon: float) -> float:
        """How far the point is from the polygon's centre (the mean of its vertices)."""
        return math.hypot(*self._project(lat, lon))

    @property
    def reach_m(self) -> float | None:
        """A polygon's boundary is at no one distance from the store."""
        return None


Geofence = Circle | Polygon


@dataclass(frozen=True, slots=True)
class Fix:
    """One location fix reported by a device: position, accuracy radius (m), time (Unix s)."""

    device_id: str
    lat: float
    lon: float
    accuracy_m: float
    at: float

    def __post_init__(self) -> None:
        _check_lat_lon(self.lat, self.lon, "fix")
        if not (math.isfinite(self.accuracy_m) and self.accuracy_m >= 0):
            raise GeofenceError(f"fix accuracy_m {self.accuracy_m!r} must be >= 0")


@dataclass(frozen=True, slots=True)
class GeofenceTransition:
    """An enter, dwell or exit of one device in one geofence."""

    device_id: str
    geofence_id: str
    kind: GeofenceKind
    at: float
    distance_m: float | None = None
    """How far from the store (the fence's centre) the device is, where known: the fix's
    distance, or the radius for an OS's report of a circle (``proxima.geofence.v1``'s
    ``distance_m``; the stream's "on the way (~N min)")."""
    confidence: float | None = None


@dataclass(slots=True)
class _Fence:
    inside: bool = False
    entered_at: float | None = None
    dwelled: bool = False


@dataclass(slots=True)
class DeviceState:
    """One device's state in every geofence it has been decided about."""

    last_at: float
    heard_at: float
    fences: dict[str, _Fence] = field(default_factory=dict)


class GeofenceEngine:
    """Enter/dwell/exit per device over one store's geofences; see the module doc for the model."""

    def __init__(
        self,
        geofences: Iterable[Geofence],
        *,
        clock: Callable[[], float],
        margin_m: float = 5.0,
        dwell_s: float = 120.0,
        stale_s: float = 3600.0,
        max_devices: int = 100_000,
    ) -> None:
        fences = list(geofences)
        ids = [g.id for g in fences]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise GeofenceError(f"duplicate geofence ids: {', '.join(dupes)}", dupes[0])
        if margin_m < 0 or dwell_s <= 0 or stale_s <= 0 or max_devices < 1:
            raise GeofenceError("margin_m >= 0, dwell_s > 0, stale_s > 0, max_devices >= 1")
        self.geofences: dict[str, Geofence] = {g.id: g for g in fences}
        self.clock = clock
        self.margin_m = margin_m
        self.dwell_s = dwell_s
        self.stale_s = stale_s
        self.max_devices = max_devices
        # Least recently heard first, so eviction is O(1).
        self._devices: OrderedDict[str, DeviceState] = OrderedDict()

    def __len__(self) -> int:
        return len(self._devices)

    def replace_geofences(self, geofences: Iterable[Geofence]) -> list[GeofenceTransition]:
        """Swap in a new set of geofences (live configuration).

        A fence kept under the same id keeps every device's state (the next fix settles a
        moved boundary through the usual hysteresis); devices inside a fence that is gone
        get its ``geofence_exit`` now, with confidence 0.5, so no visit is left open.
        """
        fences = list(geofences)
        ids = [g.id for g in fences]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise GeofenceError(f"duplicate geofence ids: {', '.join(dupes)}", dupes[0])
        now = self.clock()
        out: list[GeofenceTransition] = []
        kept = set(ids)
        for device_id, state in self._devices.items():
            for gid in [g for g in state.fences if g not in kept]:
                if state.fences.pop(gid).inside:
                    at = max(now, state.last_at)
                    out.append(
                        GeofenceTransition(device_id, gid, "geofence_exit", at, confidence=0.5)
                    )
        self.geofences = {g.id: g for g in fences}
        return out

    def is_inside(self, device_id: str, geofence_id: str) -> bool:
        state = self._devices.get(device_id)
        return bool(state and geofence_id in state.fences and state.fences[geofence_id].inside)

    def snapshot(self, device_id: str) -> DeviceState | None:
        """A copy of one device's state, for :meth:`restore` if its events cannot be stored."""
        state = self._devices.get(device_id)
        return copy.deepcopy(state) if state is not None else None

    def restore(self, device_id: str, state: DeviceState | None) -> None:
        """Put back what :meth:`snapshot` returned (``None``: the device was unknown)."""
        if state is None:
            self._devices.pop(device_id, None)
        else:
            self._devices[device_id] = state

    def _device(self, device_id: str, at: float, out: list[GeofenceTransition]) -> DeviceState:
        state = self._devices.get(device_id)
        if state is None:
            while len(self._devices) >= self.max_devices:
                old_id, old = self._devices.popitem(last=False)
                out.extend(self._forget(old_id, old, max(at, old.last_at)))
            state = self._devices[device_id] = DeviceState(last_at=at, heard_at=self.clock())
        else:
            state.heard_at = self.clock()
            self._devices.move_to_end(device_id)
        return state

    def _due_dwells(
        self, device_id: str, state: DeviceState, now: float
    ) -> list[GeofenceTransition]:
        out = []
        for gid, fence in state.fences.items():
            if fence.inside and not fence.dwelled and fence.entered_at is not None:
                due = fence.entered_at + self.dwell_s
                if due <= now:
                    fence.dwelled = True
                    out.append(GeofenceTransition(device_id, gid, "geofence_dwell", due))
        return out

    def observe(self, fix: Fix) -> list[GeofenceTransition]:
        """Apply one fix; a fix older than the device's last one is ignored (``[]``)."""
        out: list[GeofenceTransition] = []
        known = self._devices.get(fix.device_id)
        if known is not None and fix.at < known.last_at:
            return out
        state = self._device(fix.device_id, fix.at, out)
        out.extend(self._due_dwells(fix.device_id, state, fix.at))
        state.last_at = fix.at
        band = fix.accuracy_m + self.margin_m
        for gid, geofence in self.geofences.items():
            d = geofence.signed_distance_m(fix.lat, fix.lon)
            fence = state.fences.get(gid)
            if d >= band:
                if fence is None:
                    fence = state.fences[gid] = _Fence()
                if not fence.inside:
                    fence.inside, fence.entered_at, fence.dwelled = True, fix.at, False
                    away = geofence.from_centre_m(fix.lat, fix.lon)
                    out.append(
                        GeofenceTransition(fix.device_id, gid, "geofence_enter", fix.at, away, 1.0)
                    )
            elif d <= -band and fence is not None:
                if fence.inside:
                    away = geofence.from_centre_m(fix.lat, fix.lon)
                    out.append(
                        GeofenceTransition(fix.device_id, gid, "geofence_exit", fix.at, away, 1.0)
                    )
                # Outside is the default: drop the entry so state stays small.
                del state.fences[gid]
        out.extend(self._due_dwells(fix.device_id, state, fix.at))
        return out

    def report(
        self, device_id: str, geofence_id: str, entered: bool, at: float
    ) -> list[GeofenceTransition]:
        """Apply an OS-reported enter (``entered``) or exit; a repeat of the current state is a no-op."""
        if geofence_id not in self.geofences:
            raise GeofenceError(f"unknown geofence {geofence_id!r}", geofence_id)
        out: list[GeofenceTransition] = []
        known = self._devices.get(device_id)
        if known is not None and at < known.last_at:
            return out
        state = self._device(device_id, at, out)
        out.extend(self._due_dwells(device_id, state, at))
        state.last_at = at
        fence = state.fences.get(geofence_id)
        if entered and (fence is None or not fence.inside):
            state.fences[geofence_id] = _Fence(inside=True, entered_at=at)
            reach = self.geofences[geofence_id].reach_m
            out.append(GeofenceTransition(device_id, geofence_id, "geofence_enter", at, reach))
        elif not entered and fence is not None:
            if fence.inside:
                reach = self.geofences[geofence_id].reach_m
                out.append(GeofenceTransition(device_id, geofence_id, "geofence_exit", at, reach))
            del state.fences[geofence_id]
        out.extend(self._due_dwells(device_id, state, at))
        return out

    def _forget(self, device_id: str, state: DeviceState, at: float) -> list[GeofenceTransition]:
        return [
            GeofenceTransition(device_id, gid, "geofence_exit", at, confidence=0.5)
            for gid, fence in state.fences.items()
            if fence.inside
        ]

    def tick(self, now: float | None = None) -> list[GeofenceTransition]:
        """Emit due dwells and forget devices not heard for ``stale_s`` (exiting them at ``now``).

        ``now`` defaults to the injected clock; staleness is measured on that clock (when we
        last heard the device), dwell on the devices' own fix times.
        """
        now = self.clock() if now is None else now
        out: list[GeofenceTransition] = []
        while self._devices:
            device_id, state = next(iter(self._devices.items()))
            if now - state.heard_at < self.stale_s:
                break
            del self._devices[device_id]
            out.extend(self._forget(device_id, state, max(now, state.last_at)))
        for device_id, state in self._devices.items():
            out.extend(self._due_dwells(device_id, state, now))
        return out
