"""Requests per device: a token bucket, taken after authentication."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable


class RateLimiter:
    """A token bucket per device (clock injected); idle full buckets are forgotten."""

    def __init__(
        self, rate_per_s: float, burst: int, clock: Callable[[], float], max_keys: int = 100_000
    ) -> None:
        self.rate = rate_per_s
        self.burst = float(burst)
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str) -> float:
        """Take one token: 0.0 if allowed, else the seconds until one is available."""
        now = self.clock()
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens - 1.0, now)
        self._buckets.move_to_end(key)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)  # least recently allowed: worst case a fresh bucket
        return 0.0

    def refund(self, key: str) -> None:
        if key in self._buckets:
            tokens, last = self._buckets[key]
            self._buckets[key] = (min(self.burst, tokens + 1.0), last)
