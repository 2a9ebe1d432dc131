"""``/healthz`` and ``/metrics`` (Prometheus text format) of one agent, over aiohttp.

``/healthz`` answers 200 while the agent is connected to the broker (or has nothing to
send) and its scanner is not failed, else 503 with the reasons, so a supervisor can act.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from edge.agent import EdgeAgent


def metrics_text(agent: EdgeAgent) -> str:
    """Every counter and gauge of the agent in the Prometheus exposition format."""
    s, ob, ps = agent.stats, agent.outbox.stats, agent.pipeline.stats
    labels = f'store="{agent.settings.store_id}",gateway="{agent.settings.gateway_id}"'
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
    lines = []
    for name, kind, doc, value in rows:
        lines += [f"# HELP {name} {doc}", f"# TYPE {name} {kind}", f"{name}{{{labels}}} {value}"]
    return "\n".join(lines) + "\n"


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

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(text=metrics_text(agent), content_type="text/plain")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
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
