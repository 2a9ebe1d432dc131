"""Reconnect backoff: exponential, capped, with full jitter (so a store's gateways spread out)."""

from __future__ import annotations

from collections.abc import Callable


def backoff_delay(attempt: int, base: float, cap: float, rng: Callable[[], float]) -> float:
    """Uniform in [0, min(cap, base·2^attempt)] for ``rng`` uniform in [0, 1)."""
    return rng() * min(cap, base * (2.0 ** min(attempt, 30)))
