"""Replay support: a trace's consent changes happen at their place in the trace.

A customer who revokes consent during the day does so through the app; the trace carries
it as an ``app`` line (``event: consent_revoke`` or ``consent_grant``, ``customer_id``,
``purpose``). :class:`ConsentReplay` wraps each edge agent's trace records and writes the
change into the registry when an agent's replay reaches that line, blocking the replay
until it is stored, so no advertisement after it can be published before it holds (the
stream checks consent when it builds an alert). Every agent reads the same line; the first
applies it, the others find it done.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from contracts.services import ServiceSettings
from contracts.trace import AppRecord, TraceRecord, read_trace
from edge.sources import TraceSource

log = logging.getLogger(__name__)

CONSENT_EVENTS = {"consent_revoke": False, "consent_grant": True}


class ConsentReplay:
    """Applies ``consent_revoke`` / ``consent_grant`` app lines to the registry, once each."""

    def __init__(self, services: ServiceSettings | None = None) -> None:
        self.services = services or ServiceSettings()
        self._done: set[tuple[str, str, bool, float]] = set()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="consent-replay")
        self.applied = 0
        self.failed = 0

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def source(self, path: Path, gateway_id: str, speed: float | None) -> TraceSource:
        """A TraceSource for one gateway whose records apply consent lines as they pass."""
        fh = path.open(encoding="utf-8")
        try:
            header, records = read_trace(fh)
        except BaseException:
            fh.close()
            raise

        def lines() -> Iterator[TraceRecord]:
            with fh:
                for record in records:
                    if isinstance(record, AppRecord) and record.event in CONSENT_EVENTS:
                        self._apply(record)
                    yield record

        return TraceSource(header, lines(), gateway_id, speed)

    def _apply(self, record: AppRecord) -> None:
        extra = record.model_extra or {}
        customer = extra.get("customer_id")
        purpose = extra.get("purpose", "arrival_alerts")
        if not isinstance(customer, str) or not isinstance(purpose, str):
            self.failed += 1
            log.warning(
                "trace t=%s: %s without customer_id/purpose; skipped", record.t, record.event
            )
            return
        granted = CONSENT_EVENTS[record.event]
        key = (customer, purpose, granted, record.t)
        with self._lock:
            if key in self._done:
                return
            self._done.add(key)
        # The replay's event loop is this thread; the registry is async: run it beside, wait.
        try:
            self._pool.submit(asyncio.run, self._store(customer, purpose, granted)).result()
        except Exception as exc:  # a bad line must not stop the replay; say why
            self.failed += 1
            log.warning(
                "trace t=%s: %s for %s not applied: %s", record.t, record.event, customer, exc
            )
            return
        self.applied += 1
        log.info("trace t=%s: %s %s for %s", record.t, record.event, purpose, customer)

    async def _store(self, customer: str, purpose: str, granted: bool) -> None:
        import redis.asyncio as aioredis

        from stream.registry import Purpose, Registry

        r = aioredis.from_url(self.services.redis)
        try:
            await Registry(r, self.services.redis_prefix).set_consent(
                customer, Purpose(purpose), granted
            )
        finally:
            await r.aclose()
