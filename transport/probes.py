"""``/metrics``, ``/livez`` and ``/readyz`` for a service with no web app of its own (the
bridge, the stream worker).

- ``/livez``: 200 while the service's event loop answers (the handler runs on it). A
  Kubernetes liveness probe restarts the pod when it fails: only a stuck process should.
- ``/readyz``: 200 when every dependency check passes, else 503 with which failed (JSON).
  A readiness probe takes the pod out of service: a Redis blip makes it unready, not
  restarted.
- ``/metrics``: the Prometheus text format from a registry of the service's own (never
  prometheus_client's global one, so several services in one test process do not
  collide): its counters (the ones ``proxima stats`` shows), with the gauges named.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[bool]]
"""One readiness check: True when the dependency answers (it must not raise)."""

CHECK_TIMEOUT_S = 1.0


class CountsCollector(Collector):
    """A service's counters (``name -> int``) as Prometheus metrics
    ``proxima_{component}_{name}_total``; names in ``gauges`` are gauges (no ``_total``)."""

    def __init__(self, component: str, counts: Counter[str], gauges: Iterable[str] = ()) -> None:
        self.component = component.replace("-", "_")
        self.counts = counts
        self.gauges = frozenset(gauges)

    def collect(self) -> Iterable[Metric]:
        for name, value in sorted(self.counts.items()):
            metric = f"proxima_{self.component}_{name}"
            if name in self.gauges:
                gauge = GaugeMetricFamily(metric, f"{self.component}: {name} (now)")
                gauge.add_metric([], float(value))
                yield gauge
            else:
                counter = CounterMetricFamily(metric, f"{self.component}: {name} since start")
                counter.add_metric([], float(value))
                yield counter


async def _passes(check: Check) -> bool:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            return await check()
    except Exception:  # a failing check is an unready dependency, said in /readyz
        return False


def probes_app(registry: CollectorRegistry, checks: Mapping[str, Check]) -> web.Application:
    """The three endpoints over ``registry`` and the named readiness ``checks``."""

    async def livez(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_request: web.Request) -> web.Response:
        names = list(checks)
        results = await asyncio.gather(*(_passes(checks[n]) for n in names))
        status = dict(zip(names, results, strict=True))
        ok = all(results)
        body = {"status": "ok" if ok else "unavailable", "checks": status}
        return web.Response(
            text=json.dumps(body), status=200 if ok else 503, content_type="application/json"
        )

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"},
        )

    app = web.Application()
    app.add_routes(
        [web.get("/livez", livez), web.get("/readyz", readyz), web.get("/metrics", metrics)]
    )
    return app


@asynccontextmanager
async def serving(
    host: str, port: int | None, registry: CollectorRegistry, checks: Mapping[str, Check]
) -> AsyncIterator[int | None]:
    """Serve the probes on ``host:port`` for the block (``port`` None: not at all; 0: any
    free port); yields the bound port."""
    if port is None:
        yield None
        return
    runner = web.AppRunner(probes_app(registry, checks), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = port
    # aiohttp keeps the asyncio server in TCPSite._server: the only way to a port 0 bound.
    sockets = getattr(site._server, "sockets", None) or []
    if port == 0 and sockets:
        bound = int(sockets[0].getsockname()[1])
    log.info("probes on http://%s:%s (/livez /readyz /metrics)", host, bound)
    try:
        yield bound
    finally:
        await runner.cleanup()
