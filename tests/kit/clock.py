"""Injected time for tests: advance it instead of sleeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

T0 = 1_767_261_600.0
"""2026-01-01T10:00:00Z, the epoch seconds most tests start at."""


class FakeClock:
    """Seconds (any epoch) as a callable, for code that takes ``clock: Callable[[], float]``."""

    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a clock does not go back")
        self.t += seconds
        return self.t


class FakeUtcClock:
    """An aware UTC ``datetime`` as a callable, for code that takes ``clock: Callable[[], datetime]``."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime.fromtimestamp(T0, UTC)
        if self.now.tzinfo is None:
            raise ValueError("the fake clock keeps aware UTC datetimes")

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        if seconds < 0:
            raise ValueError("a clock does not go back")
        self.now += timedelta(seconds=seconds)
        return self.now
