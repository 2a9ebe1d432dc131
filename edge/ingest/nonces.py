"""Replay protection: the nonces seen recently, per device.

Nonces live in memory for ``2 × clock_skew_s`` (a timestamp is acceptable for that long),
per ``(device, nonce)``, bounded by ``nonce_cache_max``. One process per gateway serves the
ingest, so memory is enough; a farm of ingest servers behind one address would need the
cache in Redis (``SET NX EX``). A nonce is released again when the request was refused for
a reason the client may retry unchanged (429, 503), and event ids derive from
``(device, nonce, index)``, so a retried request maps to the same events (the pipeline
deduplicates by ``event_id``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Literal


class NonceCache:
    """``(device, nonce)`` pairs seen in the last ``ttl_s`` (clock injected), at most ``max_items``."""

    def __init__(self, ttl_s: float, max_items: int, clock: Callable[[], float]) -> None:
        self.ttl_s = ttl_s
        self.max_items = max_items
        self.clock = clock
        self._expiry: dict[tuple[str, str], float] = {}
        self._order: deque[tuple[float, tuple[str, str]]] = deque()

    def __len__(self) -> int:
        return len(self._expiry)

    def _purge(self, now: float) -> None:
        while self._order and self._order[0][0] <= now:
            exp, key = self._order.popleft()
            if self._expiry.get(key) == exp:
                del self._expiry[key]

    def claim(self, device_id: str, nonce: str) -> Literal["ok", "replayed", "full"]:
        now = self.clock()
        self._purge(now)
        key = (device_id, nonce)
        if key in self._expiry:
            return "replayed"
        if len(self._expiry) >= self.max_items:
            return "full"
        exp = now + self.ttl_s
        self._expiry[key] = exp
        self._order.append((exp, key))
        return "ok"

    def release(self, device_id: str, nonce: str) -> None:
        self._expiry.pop((device_id, nonce), None)
