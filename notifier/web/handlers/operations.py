"""For operators and their tools: ``/livez``, ``/readyz`` (= ``/healthz``) and ``/metrics``.

Liveness and readiness are separate so that a Redis blip takes a notifier out of service
(readiness) without restarting it (liveness): ``/livez`` answers while the process's
event loop does, ``/readyz`` also needs Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from redis.exceptions import RedisClusterException, RedisError

from notifier.metrics import Metrics
from notifier.web.models import HealthReply
from notifier.web.wire import reply
from transport.redis import RedisClient


@dataclass(frozen=True, slots=True, eq=False)
class OperationHandlers:
    redis: RedisClient
    metrics: Metrics
    mqtt_connected: Callable[[], bool]

    async def livez(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def healthz(self, _request: web.Request) -> web.Response:
        try:
            async with asyncio.timeout(1.0):
                redis_ok = bool(await self.redis.ping())
        except (RedisError, RedisClusterException, OSError, TimeoutError):
            redis_ok = False
        health = HealthReply(
            status="ok" if redis_ok else "unavailable", redis=redis_ok, mqtt=self.mqtt_connected()
        )
        return reply(health, status=200 if redis_ok else 503)

    async def metrics_text(self, _request: web.Request) -> web.Response:
        return web.Response(
            text=self.metrics.render(),
            content_type="text/plain",
            charset="utf-8",
            headers={"Cache-Control": "no-store"},
        )
