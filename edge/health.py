"""``/livez``, ``/readyz`` (= ``/healthz``) and ``/metrics`` of one agent, over aiohttp.

``/readyz`` answers 200 while the agent is connected to the broker (or has nothing to
send) and its scanner is not failed, else 503 with the reasons, so a supervisor can act;
``/livez`` while the agent's loop answers. ``/metrics`` is prometheus_client's text format
from a registry of the agent's own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from edge.agent import EdgeAgent


class AgentCollector(Collector):
    """The agent's counters and gauges, read at scrape time, labelled with its store and
    gateway."""

    def __init__(self, agent: EdgeAgent) -> None:
        self.agent = agent

    def collect(self) -> Iterable[Metric]:
        agent = self.agent
        labels = [agent.settings.store_id, agent.settings.gateway_id]
        for name, kind, doc, value in _rows(agent):
            family: GaugeMetricFamily | CounterMetricFamily
            if kind == "counter":
                family = CounterMetricFamily(name, doc, labels=["store", "gateway"])
            else:
                family = GaugeMetricFamily(name, doc, labels=["store", "gateway"])
            family.add_metric(labels, float(value))
            yield family
        yield from agent.batch_events.collect()
        yield from agent.outbox_age.collect()


def metrics_text(agent: EdgeAgent) -> str:
    """Every counter and gauge of the agent in the Prometheus exposition format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AgentCollector(agent))
    for collector in agent.collectors:  # the app-event ingest's, when it runs here
        registry.register(collector)
    return generate_latest(registry).decode()


def _rows(agent: EdgeAgent) -> list[tuple[str, str, str, float]]:
    s, ob, ps = agent.stats, agent.outbox.stats, agent.pipeline.stats
    rows: list[tuple[str, str, str, float]] = [
        ("proxima_edge_adverts_total", "counter", "advertisements received", ps.adverts),
        (
            "proxima_edge_decode_errors_total",
            "counter",
            "undecodable advertisements",
            ps.decode_errors,
        ),
        ("proxima_edge_events_total", "counter", "events written to the outbox", s.events),
        (
            "proxima_edge_events_published_total",
            "counter",
            "events acknowledged by the broker",
            s.events_published,
        ),
        (
            "proxima_edge_batches_published_total",
            "counter",
            "batches acknowledged by the broker",
            s.batches_published,
        ),
        (
            "proxima_edge_publish_failures_total",
            "counter",
            "batches not acknowledged",
            s.publish_failures,
        ),
        (
            "proxima_edge_reconnects_total",
            "counter",
            "MQTT reconnections after a failure",
            s.reconnects,
        ),
        (
            "proxima_edge_connect_failures_total",
            "counter",
            "failed MQTT connection attempts",
            s.connect_failures,
        ),
        ("proxima_edge_outbox_depth", "gauge", "events waiting in the outbox", ob.depth),
        ("proxima_edge_outbox_bytes", "gauge", "bytes of event JSON in the outbox", ob.bytes),
        (
            "proxima_edge_outbox_oldest_seconds",
            "gauge",
            "age of the oldest unsent event",
            agent.outbox.oldest_age_s(),
        ),
        (
            "proxima_edge_outbox_near_cap",
            "gauge",
            "1 when the outbox is past its warning level",
            float(ob.near_cap),
        ),
        (
            "proxima_edge_outbox_dropped_total",
            "counter",
            "events dropped at the outbox cap",
            ob.dropped_total,
        ),
        (
            "proxima_edge_outbox_refused_total",
            "counter",
            "events refused at the outbox cap",
            s.refused,
        ),
        (
            "proxima_edge_uptime_seconds",
            "gauge",
            "seconds since the agent started",
            time.monotonic() - s.started,
        ),
    ]
    return rows


def health_problems(agent: EdgeAgent) -> list[str]:
    problems = []
    if agent.source.state == "failed":
        problems.append("scanner failed")
    if agent.outbox.stats.depth and not agent.connected:
        problems.append("not connected to the MQTT broker and events are waiting")
    return problems


async def serve_health(agent: EdgeAgent, stop: asyncio.Event) -> None:
    """Serve until ``stop`` is set (or the task is cancelled)."""

    async def healthz(_request: web.Request) -> web.Response:
        problems = health_problems(agent)
        if problems:
            return web.Response(status=503, text="; ".join(problems) + "\n")
        return web.Response(text="ok\n")

    async def livez(_request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(
            body=metrics_text(agent).encode(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", healthz)
    app.router.add_get("/livez", livez)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, agent.settings.http_host, agent.settings.http_port)
    await site.start()
    addresses = runner.addresses  # the bound port when 0 asked for any free one
    assert agent.http_bound is not None
    agent.http_bound.set_result(int(addresses[0][1]) if addresses else agent.settings.http_port)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
