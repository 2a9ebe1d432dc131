"""Counters of the app-event ingest, for health and Prometheus."""

from __future__ import annotations

from collections import Counter
from typing import Any


class IngestMetrics:
    """Counters for health and /metrics: requests, acceptances and rejections by reason."""

    def __init__(self) -> None:
        self.requests = 0
        self.accepted = 0
        self.events = 0
        self.tick_events = 0
        self.tick_events_lost = 0
        self.rejected: Counter[str] = Counter()

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "accepted": self.accepted,
            "events": self.events,
            "tick_events": self.tick_events,
            "tick_events_lost": self.tick_events_lost,
            "rejected": dict(sorted(self.rejected.items())),
            "rejected_total": sum(self.rejected.values()),
        }

    def prometheus(self, labels: str = "") -> str:
        """The counters in Prometheus text format; ``labels`` like ``store="s",gateway="g"``."""
        base = f"{{{labels}}}" if labels else ""
        sep = "," if labels else ""
        counters = [
            ("proxima_ingest_requests_total", "app-event requests received", self.requests),
            ("proxima_ingest_accepted_total", "app-event requests accepted", self.accepted),
            (
                "proxima_ingest_events_total",
                "events the ingest stored in the outbox (requests and geofence ticks)",
                self.events + self.tick_events,
            ),
            (
                "proxima_ingest_tick_events_lost_total",
                "geofence dwell/stale-exit events the outbox refused",
                self.tick_events_lost,
            ),
        ]
        lines: list[str] = []
        for name, doc, value in counters:
            lines += [f"# HELP {name} {doc}", f"# TYPE {name} counter", f"{name}{base} {value}"]
        name = "proxima_ingest_rejected_total"
        lines += [f"# HELP {name} app-event requests rejected, by reason", f"# TYPE {name} counter"]
        lines += [
            f'{name}{{{labels}{sep}reason="{r}"}} {n}' for r, n in sorted(self.rejected.items())
        ]
        return "\n".join(lines) + "\n"
