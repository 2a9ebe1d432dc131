"""RSSI smoothing filters behind one small protocol.

Every filter takes samples with their time (seconds, any epoch, non-decreasing) so that
irregular advertising intervals are handled and tests need no clock.

Parameter sources:

* :class:`KalmanRssiFilter` follows the 1-D "static state" Kalman filter of W. Bulten,
  "Kalman filters explained: removing noise from RSSI signals" (2017), also used by the
  AltBeacon Android library's ``KalmanRssiFilter``, whose measurement noise is 15 (dB²).
  Its process noise there (0.01 per sample) assumes a beacon that does not move; a
  shopper walks, so ours is per second and larger (2 dB²/s: a 10 dB step is mostly
  followed within ~2 s at 5-10 adverts/s). Tune both from a recorded trace.
* :class:`EwmaRssiFilter` defaults to the AltBeacon ``ArmaRssiFilter`` speed 0.1, the
  value it recommends for signals sampled at about 1 Hz or faster; give ``tau_s``
  instead to make the weight depend on the time between samples.
* :class:`AdaptivePercentileFilter` keeps 20 s of samples like AltBeacon's
  ``RunningAverageRssiFilter`` (which drops a fixed top and bottom 10 %), but trims
  adaptively: it averages the samples inside ``[Q1 − k·IQR, Q3 + k·IQR]``; ``k = 0`` is
  the interquartile mean, ``k = 1.5`` Tukey's outlier fences.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import deque
from typing import Protocol, runtime_checkable


@runtime_checkable
class RssiFilter(Protocol):
    """A stateful RSSI smoother for one (subject, receiver) pair."""

    @property
    def value(self) -> float | None:
        """The current estimate, None before the first sample."""
        ...

    def update(self, rssi: float, t: float) -> float:
        """Feed one sample taken at time ``t``; return the new estimate."""
        ...

    def reset(self) -> None:
        """Forget every sample."""
        ...


class PassThroughFilter:
    """No smoothing: the estimate is the last sample (for pre-filtered input and tests)."""

    __slots__ = ("_x",)

    def __init__(self) -> None:
        self._x: float | None = None

    @property
    def value(self) -> float | None:
        """The last sample."""
        return self._x

    def update(self, rssi: float, t: float) -> float:
        """Feed one sample."""
        self._x = rssi
        return rssi

    def reset(self) -> None:
        """Forget the last sample."""
        self._x = None


class KalmanRssiFilter:
    """1-D Kalman filter with a random-walk state whose variance grows ``q`` dB² per second.

    ``max_gap_s``: after a silence this long the estimate restarts from the next sample.
    """

    __slots__ = ("_p", "_t", "_x", "max_gap_s", "q", "r")

    def __init__(self, q: float = 2.0, r: float = 15.0, max_gap_s: float | None = 10.0) -> None:
        if q < 0 or r <= 0:
            raise ValueError("q must be >= 0 and r > 0")
        self.q = q
        self.r = r
        self.max_gap_s = max_gap_s
        self._x: float | None = None
        self._p = r
        self._t = 0.0

    @property
    def value(self) -> float | None:
        """The current estimate."""
        return self._x

    @property
    def variance(self) -> float:
        """Variance of the estimate (dB²)."""
        return self._p

    def update(self, rssi: float, t: float) -> float:
        """Feed one sample."""
        x = self._x
        dt = t - self._t
        gap = self.max_gap_s
        if x is None or (gap is not None and dt > gap):
            self._x = rssi
            self._p = self.r
            self._t = t
            return rssi
        p = self._p
        if dt > 0.0:
            p += self.q * dt
            self._t = t
        k = p / (p + self.r)
        x += k * (rssi - x)
        self._p = (1.0 - k) * p
        self._x = x
        return x

    def reset(self) -> None:
        """Forget every sample."""
        self._x = None
        self._p = self.r
        self._t = 0.0


class EwmaRssiFilter:
    """Exponentially weighted moving average.

    With ``tau_s`` the weight of a new sample is ``1 − exp(−dt/tau_s)``, so a burst of
    adverts does not outweigh a slow trickle; otherwise it is the fixed ``alpha``.
    """

    __slots__ = ("_t", "_x", "alpha", "max_gap_s", "tau_s")

    def __init__(
        self, alpha: float = 0.1, tau_s: float | None = None, max_gap_s: float | None = 10.0
    ) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError("alpha must be in (0, 1]")
        if tau_s is not None and tau_s <= 0:
            raise ValueError("tau_s must be > 0")
        self.alpha = alpha
        self.tau_s = tau_s
        self.max_gap_s = max_gap_s
        self._x: float | None = None
        self._t = 0.0

    @property
    def value(self) -> float | None:
        """The current estimate."""
        return self._x

    def update(self, rssi: float, t: float) -> float:
        """Feed one sample."""
        x = self._x
        dt = t - self._t
        self._t = t
        if x is None or (self.max_gap_s is not None and dt > self.max_gap_s):
            self._x = rssi
            return rssi
        tau = self.tau_s
        a = self.alpha if tau is None else 1.0 - math.exp(-max(dt, 0.0) / tau)
        x += a * (rssi - x)
        self._x = x
        return x

    def reset(self) -> None:
        """Forget every sample."""
        self._x = None
        self._t = 0.0


class AdaptivePercentileFilter:
    """Mean of the samples of the last ``window_s`` seconds inside the interquartile fence."""

    __slots__ = ("_sorted", "_times", "_x", "fence_k", "max_samples", "window_s")

    def __init__(
        self, window_s: float = 20.0, fence_k: float = 0.0, max_samples: int = 256
    ) -> None:
        if window_s <= 0 or fence_k < 0 or max_samples < 1:
            raise ValueError("window_s > 0, fence_k >= 0 and max_samples >= 1 are required")
        self.window_s = window_s
        self.fence_k = fence_k
        self.max_samples = max_samples
        self._times: deque[tuple[float, float]] = deque()
        self._sorted: list[float] = []
        self._x: float | None = None

    @property
    def value(self) -> float | None:
        """The current estimate."""
        return self._x

    def update(self, rssi: float, t: float) -> float:
        """Feed one sample."""
        times, ordered = self._times, self._sorted
        horizon = t - self.window_s
        while times and (times[0][0] < horizon or len(times) >= self.max_samples):
            _, old = times.popleft()
            del ordered[bisect_left(ordered, old)]
        times.append((t, rssi))
        insort(ordered, rssi)
        n = len(ordered)
        q1 = _quantile(ordered, 0.25)
        q3 = _quantile(ordered, 0.75)
        spread = self.fence_k * (q3 - q1)
        lo = bisect_left(ordered, q1 - spread)
        hi = n
        top = q3 + spread
        while hi > lo and ordered[hi - 1] > top:
            hi -= 1
        inside = ordered[lo:hi] or ordered
        self._x = math.fsum(inside) / len(inside)
        return self._x

    def reset(self) -> None:
        """Forget every sample."""
        self._times.clear()
        self._sorted.clear()
        self._x = None


def _quantile(ordered: list[float], q: float) -> float:
    """Linear-interpolated quantile of a sorted, non-empty list."""
    pos = (len(ordered) - 1) * q
    i = int(pos)
    frac = pos - i
    if frac == 0.0 or i + 1 >= len(ordered):
        return ordered[i]
    return ordered[i] + (ordered[i + 1] - ordered[i]) * frac
