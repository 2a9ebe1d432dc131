"""Counters and gauges for ``/metrics`` in the Prometheus text format (0.0.4).

Per instance, as Prometheus expects: it scrapes each notifier and sums.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

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
    "proxima_notifier_sse_clients": ("gauge", "Console live feeds connected to this instance."),
}

Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    """A small registry: named counters with labels, and gauges read at scrape time."""

    def __init__(self) -> None:
        self.counters: defaultdict[tuple[str, Labels], float] = defaultdict(float)
        self.gauges: dict[str, Callable[[], float]] = {}

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

    def render(self) -> str:
        lines: list[str] = []
        for name, (kind, doc) in _HELP.items():
            lines.append(f"# HELP {name} {doc}")
            lines.append(f"# TYPE {name} {kind}")
            if kind == "gauge":
                read = self.gauges.get(name)
                lines.append(f"{name} {read() if read else 0}")
                continue
            for (metric, labels), count in sorted(self.counters.items()):
                if metric != name:
                    continue
                label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
                lines.append(f"{name}{{{label_text}}} {count:g}" if labels else f"{name} {count:g}")
        return "\n".join(lines) + "\n"
