"""Operators' endpoints: ``GET /admin/quarantine`` and ``GET /admin/metrics``, behind a token."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from aiohttp import web
from pydantic import SecretStr

from edge.ingest.metrics import IngestMetrics
from edge.ingest.quarantine import Quarantine


@dataclass(frozen=True, slots=True, eq=False)
class AdminEndpoints:
    """The rejected requests and the counters, for ``Authorization: Bearer <admin_token>``."""

    token: SecretStr
    quarantine: Quarantine
    metrics: IngestMetrics

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/admin/quarantine", self.get_quarantine)
        router.add_get("/admin/metrics", self.get_metrics)

    def _admin_ok(self, request: web.Request) -> None:
        token = self.token.get_secret_value()
        if not token:
            raise web.HTTPNotFound(
                text="admin endpoints are disabled: set PROXIMA_INGEST_ADMIN_TOKEN"
            )
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise web.HTTPUnauthorized(text="admin endpoints need 'Authorization: Bearer TOKEN'")

    async def get_quarantine(self, request: web.Request) -> web.Response:
        self._admin_ok(request)
        try:
            limit = max(1, min(1000, int(request.query.get("limit", "100"))))
        except ValueError:
            limit = 100
        return web.json_response({"rejected": self.quarantine.recent(limit)})

    async def get_metrics(self, request: web.Request) -> web.Response:
        self._admin_ok(request)
        return web.json_response(self.metrics.snapshot())
