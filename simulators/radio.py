"""The radio model: what RSSI a gateway reports for an advertisement, if it hears it at all.

RSSI = rssi_1m − 10·n·log10(d) − floor/facade/body/bag losses + spot + shadowing + fading.

* **Path loss**: log-distance with each gateway's calibration (``rssi_1m``, exponent ``n``);
  ``d`` is the 3-D distance (gateways hang at ``height_m``, phones are at 1.2 m).
* **Spot offset**: where a subject stands keeps its own offset per link (furniture,
  walls, reflections): Gaussian ``spot_db``, an AR(1) over metres moved with
  decorrelation distance ``spot_decorrelation_m`` (Gudmundson), constant while still.
* **Shadowing**: Gaussian in dB with spread ``shadowing_db``, correlated in time per link
  as an AR(1) process with time constant ``shadowing_tau_s`` (people moving around, the
  carrier turning), so a still phone's readings wander for seconds, not per packet.
* **Fast fading**: Rician with factor K, one independent draw per packet (consecutive
  advertisements hop channels), re-centred so its mean in dB is 0: the gateway's
  calibration is the mean it measures at 1 m.
* **Body and bag**: the carrier's body blocks up to ``body_db`` when the gateway is behind
  them; a phone in a pocket or bag loses a further fixed amount.
* **Reception**: a soft edge, P(decoded) = logistic((RSSI − ``edge_dbm``) /
  ``edge_width_db``), and a two-state burst channel per link (Gilbert-Elliott, as a
  continuous-time Markov chain: ``burst_share`` of the time, bursts of ``burst_mean_s``)
  whose bursts raise the edge by ``burst_db``: strong links ride them out, weak ones lose
  runs of packets. Then the gateway's scan duty cycle, a base loss, and collisions that
  grow with the number of advertisers on air (1 − e^(−c·N)).

The defaults (``simulators.layout.RadioEnv``) were fitted so that the ``radio-survey``
scenario, grouped into 2 s scans, reproduces a measured indoor link (UCI "BLE RSSI
Dataset for Indoor Localization and Navigation": detection by distance, misses by signal
strength and in runs, spot scatter, short-term spread and correlation), within the
tolerances stated in tests/simulators/test_radio.py.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from functools import lru_cache

from simulators.layout import FLOOR_HEIGHT_M, GatewaySpec, RadioEnv, StoreLayout

PHONE_HEIGHT_M = 1.2
CARRY_LOSS_DB = {"hand": 0.0, "pocket": 4.0, "bag": 8.0, "wrist": 1.0, "ceiling": 0.0}
BODY_LOSS_DB = 6.0
FADING_HEADROOM_DB = 8.0  # Rician fades (K >= 3) rise this far above their mean ~1 in 10^4


@lru_cache(maxsize=32)
def rician_mean_db(k: float) -> float:
    """Mean of 10·log10(|h|²) for unit-power Rician fading with factor K (deterministic)."""
    rng = random.Random(0x5EED)
    n = 200_000
    total = 0.0
    los = math.sqrt(k / (k + 1))
    s = math.sqrt(1 / (2 * (k + 1)))
    for _ in range(n):
        re = los + rng.gauss(0.0, s)
        im = rng.gauss(0.0, s)
        total += 10 * math.log10(re * re + im * im + 1e-12)
    return total / n


@dataclass(frozen=True, slots=True)
class Link:
    """One gateway's fixed parameters, precomputed for the hot loop."""

    gateway_id: str
    x: float
    y: float
    z: float
    floor: int
    rssi_1m: float
    n10: float  # 10 · path-loss exponent
    shadowing_db: float
    scan_duty: float
    outside: bool = False
    """A gateway on the street side of the shop front (``boutique-pair``'s ``gw-street``)."""
    facing: tuple[float, float] | None = None
    """A directional antenna: the unit vector it points along on the plan (None: omni)."""
    back_loss_db: float = 0.0


@dataclass(slots=True)
class LinkState:
    """What one (advertiser, gateway) link remembers between packets."""

    shadow: float | None = None
    shadow_t: float = 0.0
    spot: float | None = None
    spot_x: float = 0.0
    spot_y: float = 0.0
    spot_z: float = 0.0
    burst: bool = False
    burst_t: float = 0.0


class RadioModel:
    """Draws RSSI and reception for advertisement → gateway links (see module docstring)."""

    def __init__(self, env: RadioEnv) -> None:
        self.env = env
        self._fading_s = math.sqrt(1 / (2 * (env.rician_k + 1)))
        self._fading_los = math.sqrt(env.rician_k / (env.rician_k + 1))
        self._fading_mean = rician_mean_db(env.rician_k)
        # Burst channel as a two-state continuous-time Markov chain: rates out of each state.
        self._to_clear = 1.0 / env.burst_mean_s
        self._to_burst = self._to_clear * env.burst_share / (1.0 - env.burst_share)

    def link(self, gw: GatewaySpec, *, outside: bool = False) -> Link:
        return Link(
            gateway_id=gw.id,
            x=gw.x,
            y=gw.y,
            z=gw.floor * FLOOR_HEIGHT_M + gw.height_m,
            floor=gw.floor,
            rssi_1m=gw.rssi_1m,
            n10=10 * gw.path_loss_n,
            shadowing_db=self.env.shadowing_db if gw.shadowing_db is None else gw.shadowing_db,
            scan_duty=gw.scan_duty,
            outside=outside,
            facing=None
            if gw.facing_deg is None
            else (math.cos(math.radians(gw.facing_deg)), math.sin(math.radians(gw.facing_deg))),
            back_loss_db=gw.back_loss_db,
        )

    @staticmethod
    def antenna_loss_db(link: Link, dx: float, dy: float) -> float:
        """A directional antenna's loss towards a device at (-dx, -dy) from it on the plan
        (``dx, dy``: gateway minus device, as the hot loop has them): a cardioid, 0 dB
        straight ahead, ``back_loss_db`` straight behind, half of it at the side. A patch
        antenna's datasheet front-to-back ratio (15-20 dB) shrinks indoors, where
        reflections off the floor, ceiling and shelves reach its front."""
        if link.facing is None or link.back_loss_db <= 0.0:
            return 0.0
        d = math.hypot(dx, dy)
        if d < 1e-6:
            return 0.0
        cos = -(link.facing[0] * dx + link.facing[1] * dy) / d
        return link.back_loss_db * (1.0 - cos) / 2.0

    def mean_rssi(self, link: Link, distance_m: float, extra_loss_db: float = 0.0) -> float:
        """Median RSSI (no shadowing, no fading) at ``distance_m``."""
        return link.rssi_1m - link.n10 * math.log10(max(distance_m, 0.1)) - extra_loss_db

    def fading_db(self, rng: random.Random) -> float:
        """One Rician fast-fading draw in dB, zero mean."""
        re = self._fading_los + rng.gauss(0.0, self._fading_s)
        im = rng.gauss(0.0, self._fading_s)
        return 10 * math.log10(re * re + im * im + 1e-12) - self._fading_mean

    def shadowing_step(
        self, previous: float | None, dt: float, sigma: float, tau: float, rng: random.Random
    ) -> float:
        """Next shadowing value of a link: stationary N(0, sigma²), AR(1) over ``dt``."""
        if previous is None or sigma == 0:
            return rng.gauss(0.0, sigma)
        rho = math.exp(-max(dt, 0.0) / tau)
        return rho * previous + math.sqrt(1 - rho * rho) * rng.gauss(0.0, sigma)

    def collision_loss(self, advertisers: int) -> float:
        return 1.0 - math.exp(-self.env.collision_per_advertiser * max(advertisers, 0))

    def reception_probability(self, link: Link, advertisers: int) -> float:
        """Chance that a packet above sensitivity is reported: scan duty, base loss, collisions."""
        return (
            link.scan_duty * (1.0 - self.env.base_loss) * (1.0 - self.collision_loss(advertisers))
        )

    @staticmethod
    def body_loss_db(heading: float | None, dx: float, dy: float, body_db: float) -> float:
        """Loss from the carrier's body: 0 facing the gateway, ``body_db`` with it behind."""
        if heading is None or (dx == 0 and dy == 0):
            return body_db / 2
        angle = math.atan2(dy, dx) - heading
        return body_db * (1 - math.cos(angle)) / 2

    def sample_rssi(
        self,
        link: Link,
        distance_m: float,
        extra_loss_db: float,
        shadowing_db: float,
        rng: random.Random,
    ) -> float:
        """One packet's RSSI (not rounded) given the link's current shadowing value."""
        return self.mean_rssi(link, distance_m, extra_loss_db) + shadowing_db + self.fading_db(rng)

    def out_of_reach(self, link: Link, mean_dbm: float) -> bool:
        """True when a packet at this median cannot plausibly be decoded (skip the link)."""
        env = self.env
        spread = math.sqrt(link.shadowing_db**2 + env.spot_db**2)
        return mean_dbm + 4 * spread + 8 < env.edge_dbm - 5 * env.edge_width_db

    def spot_step(
        self, previous: float | None, moved_m: float, sigma: float, rng: random.Random
    ) -> float:
        """Next per-position offset: AR(1) over metres moved (Gudmundson); still, it stays."""
        if previous is None or sigma == 0:
            return rng.gauss(0.0, sigma)
        if moved_m <= 0:
            return previous
        rho = math.exp(-moved_m / self.env.spot_decorrelation_m)
        return rho * previous + math.sqrt(1 - rho * rho) * rng.gauss(0.0, sigma)

    def burst_step(self, bad: bool | None, dt: float, rng: random.Random) -> bool:
        """The link's burst state ``dt`` seconds later (None: a fresh link, stationary draw)."""
        share = self.env.burst_share
        if bad is None:
            return rng.random() < share
        # P(bad at t+dt | state now) for a two-state chain relaxing to ``share``.
        decay = math.exp(-(self._to_clear + self._to_burst) * max(dt, 0.0))
        p_bad = share + ((1.0 if bad else 0.0) - share) * decay
        return rng.random() < p_bad

    def edge_probability(self, rssi: float, burst: bool) -> float:
        """Chance that a packet arriving at ``rssi`` is decoded: logistic around the edge.

        A burst (interference, a crowd between) raises the edge by ``burst_db``: strong
        links ride it out, links near the edge lose packets for its duration.
        """
        edge = self.env.edge_dbm + (self.env.burst_db if burst else 0.0)
        z = (rssi - edge) / self.env.edge_width_db
        if z > 30:
            return 1.0
        if z < -30:
            return 0.0
        return 1.0 / (1.0 + math.exp(-z))

    def receive(
        self,
        link: Link,
        state: LinkState,
        t: float,
        pos: tuple[float, float, float],
        mean_dbm: float,
        advertisers: int,
        rng: random.Random,
    ) -> float | None:
        """One packet on a link: its RSSI (not rounded) if the gateway reports it, else None.

        Advances the link's state: the per-position offset over the distance moved since
        the last packet, the shadowing over the time since, and the burst state.
        """
        env = self.env
        x, y, z = pos
        fresh = state.shadow is None
        moved = 0.0 if fresh else math.dist(pos, (state.spot_x, state.spot_y, state.spot_z))
        state.spot = self.spot_step(state.spot, moved, env.spot_db, rng)
        state.spot_x, state.spot_y, state.spot_z = x, y, z
        dt = t - state.shadow_t
        state.shadow = self.shadowing_step(
            state.shadow, dt, link.shadowing_db, env.shadowing_tau_s, rng
        )
        state.shadow_t = t
        state.burst = self.burst_step(None if fresh else state.burst, dt, rng)
        level = mean_dbm + state.spot + state.shadow
        edge = env.edge_dbm + (env.burst_db if state.burst else 0.0)
        if level + FADING_HEADROOM_DB < edge - 6.0 * env.edge_width_db:
            return None  # even a rare constructive fade leaves it < 0.3% likely: save the draw
        rssi = level + self.fading_db(rng)
        if rssi < env.sensitivity_dbm:
            return None
        p = self.edge_probability(rssi, state.burst) * self.reception_probability(link, advertisers)
        return rssi if rng.random() < p else None


DOOR_OPENING_M = 1.2
"""Half the width of a door's opening (m): someone on the street this close to a door is
heard through it, with no shop-front loss."""


class Storefront:
    """The shop front's loss between the street and the store (none in a door's opening);
    the same for a gateway hearing a phone and a phone hearing a store beacon, and for a
    gateway outside hearing a phone inside."""

    def __init__(self, layout: StoreLayout) -> None:
        self._doors = [(d.x, d.y) for d in layout.doors]
        self._loss_db = layout.radio.facade_loss_db

    def loss_db(self, x: float, y: float, outside: bool) -> float:
        """The loss (dB) for a device at (x, y), ``outside`` on the street or not, heard from
        inside (from the street, the loss is that of a device on the other side)."""
        if not outside:
            return 0.0
        if any(abs(x - dx) < DOOR_OPENING_M and abs(y - dy) < 2.0 for dx, dy in self._doors):
            return 0.0
        return self._loss_db
