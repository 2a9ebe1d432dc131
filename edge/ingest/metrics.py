"""Counters of the app-event ingest, for health and Prometheus."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector


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

    def families(self, labels: dict[str, str] | None = None) -> list[Metric]:
        """The counters as Prometheus metric families, with ``labels`` on every sample."""
        labels = labels or {}
        names, values = list(labels), list(labels.values())
        out: list[Metric] = []
        for name, doc, value in (
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
        ):
            family = CounterMetricFamily(name, doc, labels=names)
            family.add_metric(values, float(value))
            out.append(family)
        rejected = CounterMetricFamily(
            "proxima_ingest_rejected_total",
            "app-event requests rejected, by reason",
            labels=[*names, "reason"],
        )
        for reason, n in sorted(self.rejected.items()):
            rejected.add_metric([*values, reason], float(n))
        out.append(rejected)
        return out


class IngestCollector(Collector):
    """An ingest's counters in a registry (the agent's ``/metrics``), labelled."""

    def __init__(self, metrics: IngestMetrics, labels: dict[str, str]) -> None:
        self.metrics = metrics
        self.labels = labels

    def collect(self) -> Iterable[Metric]:
        yield from self.metrics.families(self.labels)
