"""Per-gateway zone thresholds from the installer's calibration and the zone's geometry.

One enter threshold for every gateway (``enter_rssi``, -72 dBm by default) suits a small
zone around its gateway, such as an entrance; it is far too deaf for a gateway in the
middle of a 16 × 20 m shop floor, which then hears a visitor only within ~3 m of it. With
a gateway's calibration (RSSI at 1 m and path-loss exponent, as measured at install) and
the store's plan (zone rectangles, the street), an interior gateway's threshold can be:

* the RSSI the calibration predicts at the far edge of its own zone (so the whole zone
  counts, and not much more), but
* never lower than the RSSI it predicts at the nearest point outside the store plus a
  margin (one shadowing spread, 4 dB by default), so a passer-by on the pavement cannot
  enter an interior zone even when the shop front does not attenuate them;
* and never higher (deafer) than the default, nor lower than -85 dBm, where readings are
  mostly packet loss and fading.

Only ``floor`` zones (the open sales floor that holds the rest) are widened. A fitting
room or checkout is a small zone inside the floor: past its own edge is the floor, so a
wider reach would put floor shoppers in it (measured on boutique-rush seed 21: 10
fitting-room enters outside any true fitting-room stay instead of 1, and not one more
stay caught). An entrance gateway sits at the boundary itself: the street is nearer to it
than the far side of its own zone, so no threshold separates the two. Both keep the
default.

A phone in a bag or behind its carrier reads 8-15 dB under a held one: it crosses the door
without reaching an enter threshold a window shopper's held phone outside also reaches.
What tells the two apart is time, so every gateway also enters by *lingering*
(``beacons.presence``: a slow average ``linger_db`` under ``enter_rssi`` for
``linger_min_s``). The defaults (10 dB, 60 s) suit an entrance: a lingerer stays minutes,
a window shopper ~20 s. On the sales floor nobody is on the pavement, and walls and
distance keep the street out, so floor gateways linger at ``INTERIOR_LINGER_DBM`` over
``INTERIOR_LINGER_S``. That level is absolute, not ``linger_db`` under the floor's enter
threshold: a gateway decodes little under ~-85 dBm (the radio's soft edge,
``simulators.radio``), so the average of what it does hear sits above -92 dBm for anyone
it hears at all, a window shopper at the shop front included (boutique-rush seed 47).
Chosen with ``proxima bench detection`` on boutique-rush seeds 21-27 and 41-50 (338
consenting visits; on 41-50 recall 0.975 → 0.980, false arrivals 1 → 0, p95 65 → 61 s)
and checked on seeds 31-35, hard-cases 1-5, boutique-hour 1-3 and flagship-hour 1, on
the measured radio. Over the 354 visits of 21-27 and the checks: recall 0.986 → 0.980
(two more held-out misses, seed 35), false arrivals 0 → 0, p50 8.0 s either way, p95
127 → 121 s; one or two visits either way is within what the order of random draws
alone moves (the same model with draws ordered differently scored 0.989 → 0.992, false
arrivals 1 → 0). At 10 s the floor gateway took window shoppers (2 false in 141 visits,
those earlier draws); -90 or -92 dBm over 15 s took seed 47's window shopper again. (On
the earlier, kinder radio -88 dBm over 20 s took recall from 0.966 to 0.989.) Small zones (fitting rooms, checkout)
do not linger at all: the floor around them is full of shoppers lingering at their level
(boutique-rush 21-25: fitting-room enters of people not in a fitting room 12 without
lingering, 15 with the default tier, 112 with the floor's), and a fitting-room enter
readies a fitting room.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Rect = tuple[float, float, float, float]  # x0, y0, x1, y1 (metres, store plan)

WIDENED_KINDS = frozenset({"floor"})
SMALL_KINDS = frozenset({"fitting_room", "checkout"})
INTERIOR_LINGER_DBM = -88.0
INTERIOR_LINGER_S = 15.0


def predicted_rssi(rssi_1m: float, path_loss_n: float, distance_m: float) -> float:
    """Median RSSI at ``distance_m`` on the log-distance model (closer than 1 m counts as 1 m)."""
    return rssi_1m - 10.0 * path_loss_n * math.log10(max(distance_m, 1.0))


def _rect_distance(x: float, y: float, rect: Rect) -> float:
    x0, y0, x1, y1 = (
        min(rect[0], rect[2]),
        min(rect[1], rect[3]),
        max(rect[0], rect[2]),
        max(rect[1], rect[3]),
    )
    dx = max(x0 - x, 0.0, x - x1)
    dy = max(y0 - y, 0.0, y - y1)
    return math.hypot(dx, dy)


def _farthest(x: float, y: float, rect: Rect) -> float:
    return max(math.hypot(cx - x, cy - y) for cx in (rect[0], rect[2]) for cy in (rect[1], rect[3]))


@dataclass(frozen=True, slots=True)
class GatewayCalibration:
    """What the calibration needs to know about one gateway."""

    gateway_id: str
    x: float
    y: float
    rssi_1m: float
    path_loss_n: float
    zone_kind: str
    zone_rect: Rect | None
    outside_rects: tuple[Rect, ...] = ()

    def enter_rssi(self, default: float, margin_db: float = 4.0, lowest: float = -85.0) -> float:
        """The calibrated enter threshold (dBm), or ``default`` where none is better.

        Never below ``lowest``: weaker readings are mostly packet loss and fading, and a
        whole-floor reach would let a gateway claim people on the floors around it.
        """
        if self.zone_kind not in WIDENED_KINDS or self.zone_rect is None:
            return default
        own_zone = predicted_rssi(
            self.rssi_1m, self.path_loss_n, _farthest(self.x, self.y, self.zone_rect)
        )
        street = -math.inf
        if self.outside_rects:
            nearest = min(_rect_distance(self.x, self.y, r) for r in self.outside_rects)
            street = predicted_rssi(self.rssi_1m, self.path_loss_n, nearest) + margin_db
        return round(min(default, max(own_zone, street, lowest)), 1)

    def street_rssi(self) -> float | None:
        """The median RSSI predicted at the nearest point outside the store, if the plan has one.

        An entrance gateway hears someone there about this strong; the store's presence
        coordinator (beacons.fusion) takes a door level well above it as inside.
        """
        if not self.outside_rects:
            return None
        nearest = min(_rect_distance(self.x, self.y, r) for r in self.outside_rects)
        return round(predicted_rssi(self.rssi_1m, self.path_loss_n, nearest), 1)


def _rect(value: Any) -> Rect | None:
    if (
        isinstance(value, Sequence)
        and len(value) == 4
        and all(isinstance(v, int | float) for v in value)
    ):
        return (float(value[0]), float(value[1]), float(value[2]), float(value[3]))
    return None


def calibrations(layout: Mapping[str, Any]) -> dict[str, GatewayCalibration]:
    """The gateways of a store plan (a trace header's ``layout``) that carry a calibration.

    A gateway needs ``rssi_1m`` and ``path_loss_n``; its zone needs a ``rect``. Others are
    left out (they keep the default thresholds). Outside zones count on the same floor only.
    The gateway's ``rssi_offset_db`` is added to ``rssi_1m``: the pipeline compares the
    thresholds with readings that already carry that offset.
    """
    zones = {z.get("id"): z for z in layout.get("zones") or [] if isinstance(z, Mapping)}
    out: dict[str, GatewayCalibration] = {}
    for gw in layout.get("gateways") or []:
        if not isinstance(gw, Mapping):
            continue
        rssi_1m, n = gw.get("rssi_1m"), gw.get("path_loss_n")
        zone = zones.get(gw.get("zone_id"))
        if not isinstance(rssi_1m, int | float) or not isinstance(n, int | float) or zone is None:
            continue
        floor = gw.get("floor", 0)
        outside = tuple(
            r
            for z in zones.values()
            if z.get("kind") == "outside" and z.get("floor", 0) == floor
            for r in [_rect(z.get("rect"))]
            if r is not None
        )
        out[str(gw["id"])] = GatewayCalibration(
            gateway_id=str(gw["id"]),
            x=float(gw.get("x", 0.0)),
            y=float(gw.get("y", 0.0)),
            rssi_1m=float(rssi_1m) + float(gw.get("rssi_offset_db", 0.0)),
            path_loss_n=float(n),
            zone_kind=str(zone.get("kind")),
            zone_rect=_rect(zone.get("rect")),
            outside_rects=outside,
        )
    return out


def calibrated_thresholds(
    layout: Mapping[str, Any],
    enter_rssi: float,
    exit_rssi: float,
    margin_db: float = 4.0,
    linger_db: float | None = 10.0,
) -> dict[str, dict[str, float | None]]:
    """Presence settings per calibrated gateway that differ from the defaults given.

    ``enter_rssi``/``exit_rssi`` (the hysteresis kept as given) for widened zones;
    ``linger_db``/``linger_min_s`` for floors, ``linger_db=None`` (off) for small zones
    (see the module docstring).
    """
    hysteresis = enter_rssi - exit_rssi
    out: dict[str, dict[str, float | None]] = {}
    for gateway_id, cal in calibrations(layout).items():
        tuned: dict[str, float | None] = {}
        enter = cal.enter_rssi(enter_rssi, margin_db)
        if enter != enter_rssi:
            tuned.update(enter_rssi=enter, exit_rssi=round(enter - hysteresis, 1))
        if linger_db is not None and cal.zone_kind in WIDENED_KINDS:
            tuned["linger_db"] = round(max(0.0, enter - INTERIOR_LINGER_DBM), 1)
            tuned["linger_min_s"] = INTERIOR_LINGER_S
        elif linger_db is not None and cal.zone_kind in SMALL_KINDS:
            tuned["linger_db"] = None
        if tuned:
            out[gateway_id] = tuned
    return out
