"""The radio model: what RSSI a gateway reports for an advertisement, if it hears it at all.

RSSI = rssi_1m − 10·n·log10(d) − floor/facade/body/bag losses + shadowing + fast fading.

* **Path loss**: log-distance with each gateway's calibration (``rssi_1m``, exponent ``n``);
  ``d`` is the 3-D distance (gateways hang at ``height_m``, phones are at 1.2 m).
* **Shadowing**: log-normal (Gaussian in dB) with spread ``shadowing_db``, correlated in
  time per (advertiser, gateway) link as an AR(1) process with time constant
  ``shadowing_tau_s``, so people walking behind a shelf fade for seconds, not per packet.
* **Fast fading**: Rician with factor K, one independent draw per packet (consecutive
  advertisements hop channels), re-centred so its mean in dB is 0: the gateway's
  calibration is the mean it measures at 1 m.
* **Body and bag**: the carrier's body blocks up to ``body_db`` when the gateway is behind
  them; a phone in a pocket or bag loses a further fixed amount.
* **Reception**: the gateway's scan duty cycle, a base loss, and collisions that grow with
  the number of advertisers on air (1 − e^(−c·N)).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from functools import lru_cache

from simulators.layout import FLOOR_HEIGHT_M, GatewaySpec, RadioEnv

PHONE_HEIGHT_M = 1.2
CARRY_LOSS_DB = {"hand": 0.0, "pocket": 4.0, "bag": 8.0, "wrist": 1.0, "ceiling": 0.0}
BODY_LOSS_DB = 6.0


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


class RadioModel:
    """Draws RSSI and reception for advertisement → gateway links (see module docstring)."""

    def __init__(self, env: RadioEnv) -> None:
        self.env = env
        self._fading_s = math.sqrt(1 / (2 * (env.rician_k + 1)))
        self._fading_los = math.sqrt(env.rician_k / (env.rician_k + 1))
        self._fading_mean = rician_mean_db(env.rician_k)

    def link(self, gw: GatewaySpec) -> Link:
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
        )

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
