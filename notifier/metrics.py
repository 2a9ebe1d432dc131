"""Counters, gauges and a histogram for ``/metrics``, through prometheus_client.

Per instance, as Prometheus expects: it scrapes each notifier and sums.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

_HELP: dict[str, tuple[str, str]] = {
    "proxima_notifier_alerts_total": ("counter", "Alerts handled, by outcome."),
    "proxima_notifier_deliveries_total": ("counter", "MQTT deliveries to associates, by tier."),
    "proxima_notifier_channel_sends_total": (
        "counter",
        "Sends by channel (mqtt, sse, webhook, webpush) and result (ok, failed, gone).",
    ),
    "proxima_notifier_acks_produced_total": ("counter", "AlertAcks produced to Kafka."),
    "proxima_notifier_escalations_total": ("counter", "Escalations performed, by tier."),
    "proxima_notifier_acks_total": ("counter", "Claims, done and declines, by source and result."),
    "proxima_notifier_acks_refused_total": (
        "counter",
        "MQTT acks refused, by reason (associate_mismatch: the body names someone else).",
    ),
    "proxima_notifier_shifts_total": ("counter", "Shift changes by source and result."),
    "proxima_notifier_logins_total": ("counter", "Console sign-ins, by result."),
    "proxima_notifier_http_requests_total": ("counter", "Console HTTP requests, by status class."),
    "proxima_notifier_retries_total": (
        "counter",
        "Steps tried again because Redis, Kafka or MQTT was away, by loop and step.",
    ),
    "proxima_notifier_records_parked_total": (
        "counter",
        "Kafka records parked after failing kafka_record_attempts times, by loop.",
    ),
    "proxima_notifier_consent_total": (
        "counter",
        "proxima.consent.v1 records followed, by change (erased, changed, rejected).",
    ),
    "proxima_notifier_alerts_withdrawn_total": (
        "counter",
        "Open alerts withdrawn, by reason (consent_revoked, erased).",
    ),
    "proxima_notifier_room_changes_total": (
        "counter",
        "Fitting-room changes asked for in the console, by action and result (ok, refused).",
    ),
    "proxima_notifier_room_messages_total": (
        "counter",
        "Customer messages 'your room is ready', by result (queued, sent, failed, "
        "skipped_no_consent).",
    ),
    "proxima_notifier_sse_clients": ("gauge", "Console live feeds connected to this instance."),
}

Labels = tuple[tuple[str, str], ...]


class Metrics:
    """The notifier's metrics on a prometheus_client registry of its own: named counters
    with labels (declared in ``_HELP``; :meth:`value` reads one back), gauges read at scrape
    time, and the alert → claim histogram."""

    def __init__(self) -> None:
        self.counters: defaultdict[tuple[str, Labels], float] = defaultdict(float)
        self.gauges: dict[str, Callable[[], float]] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Declared(self))
        self.claim_seconds = Histogram(
            "proxima_notifier_alert_to_claim_seconds",
            "An alert delivered to associates → claimed by one (seconds).",
            buckets=(5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600),
            registry=self.registry,
        )

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        if name not in _HELP:
            raise KeyError(f"undeclared metric {name!r}")
        self.counters[(name, tuple(sorted(labels.items())))] += amount

    def value(self, name: str, **labels: str) -> float:
        return self.counters.get((name, tuple(sorted(labels.items()))), 0.0)

    def gauge(self, name: str, read: Callable[[], float]) -> None:
        if name not in _HELP:
            raise KeyError(f"undeclared metric {name!r}")
        self.gauges[name] = read

    def claimed(self, delivered_at: datetime, claimed_at: datetime | None) -> None:
        """An alert was claimed: its delivery → claim time into the histogram."""
        if claimed_at is not None:
            self.claim_seconds.observe(max(0.0, (claimed_at - delivered_at).total_seconds()))

    def render(self) -> str:
        """The Prometheus text format (0.0.4), as prometheus_client writes it."""
        return generate_latest(self.registry).decode()


class _Declared(Collector):
    """The counters and gauges of ``_HELP``, as :class:`Metrics` holds them."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        for name, (kind, doc) in _HELP.items():
            if kind == "gauge":
                read = self.metrics.gauges.get(name)
                yield GaugeMetricFamily(name, doc, value=read() if read else 0.0)
                continue
            rows = sorted(
                (labels, n) for (m, labels), n in self.metrics.counters.items() if m == name
            )
            keys = [k for k, _ in rows[0][0]] if rows else []
            family = CounterMetricFamily(name, doc, labels=keys)
            for labels, n in rows:
                family.add_metric([v for _, v in labels], n)
            yield family
