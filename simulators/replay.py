"""Replay support: a trace's consent changes happen at their place in the trace.

A customer who revokes consent during the day does so through the app; the trace carries
it as an ``app`` line (``event: consent_revoke`` or ``consent_grant``, ``customer_id``,
``purpose``). The stream checks consent when it builds an alert, so the change must reach
the registry after the stream has decided on every event before the line and before any
event after it:

* at ``--speed max`` the replay's :class:`edge.trace_clock.TraceClock` calls
  :meth:`ConsentReplay.on_app` once everything before the line is published; it waits
  until the stream has marked those events processed (``event:{id}`` in Redis; it gives
  up, with a warning, after ``processed_timeout_s`` without progress, e.g. when no
  worker runs), then writes the change, and the replay goes on;
* at a finite speed, :meth:`ConsentReplay.source` wraps each agent's trace records and
  writes the change when an agent's replay reaches the line, blocking that replay until
  it is stored. Every agent reads the same line; the first applies it, the others find it
  done.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from uuid import UUID

from contracts.services import ServiceSettings
from contracts.trace import PIPELINE_KINDS, AppRecord, TraceProblems, TraceRecord, read_trace
from edge.sources import TraceSource
from transport.redis import redis_for

log = logging.getLogger(__name__)

CONSENT_EVENTS = {"consent_revoke": False, "consent_grant": True}


class ConsentReplay:
    """Applies ``consent_revoke`` / ``consent_grant`` app lines to the registry, once each."""

    def __init__(
        self,
        services: ServiceSettings | None = None,
        *,
        processed_timeout_s: float = 10.0,
        problems: TraceProblems | None = None,
    ) -> None:
        self.services = services or ServiceSettings()
        # The malformed lines the agents' readers skipped, shared so each is reported once.
        self.problems = problems or TraceProblems()
        self.processed_timeout_s = processed_timeout_s
        self._done: set[tuple[str, str, bool, float]] = set()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="consent-replay")
        self._published: list[UUID] = []
        self.applied = 0
        self.failed = 0
        self.unconfirmed = 0  # changes applied before the stream confirmed what came first

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    async def on_app(self, record: AppRecord, published: Sequence[UUID]) -> None:
        """The TraceClock's hook: apply a consent line once the stream has caught up."""
        self._published.extend(published)
        if record.event not in CONSENT_EVENTS:
            return
        parsed = self._parse(record)
        if parsed is None:
            return
        await self._wait_processed(record)
        await self._store_counted(record, *parsed)

    async def _wait_processed(self, record: AppRecord) -> None:
        """Until the stream has marked every event published so far as processed (or has
        made no progress for ``processed_timeout_s``)."""

        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.processed_timeout_s
        prefix = f"{self.services.redis_prefix}event:"
        async with redis_for(self.services) as r:
            while self._published:
                # Oldest first: the stream decides in order, so most checks stop early.
                chunk = self._published[:500]
                async with r.pipeline(transaction=False) as pipe:
                    for event_id in chunk:
                        pipe.exists(f"{prefix}{event_id}")
                    hits = await pipe.execute()
                done = next((i for i, hit in enumerate(hits) if not hit), len(chunk))
                del self._published[:done]
                if done:
                    deadline = loop.time() + self.processed_timeout_s  # it is progressing
                if done == len(chunk):
                    continue
                if loop.time() >= deadline:
                    self.unconfirmed += 1
                    log.warning(
                        "trace t=%s: the stream has processed none of %d event(s) published"
                        " before this %s for %.0f s; applying it anyway",
                        record.t,
                        len(self._published),
                        record.event,
                        self.processed_timeout_s,
                    )
                    self._published.clear()
                    return
                await asyncio.sleep(0.05)

    def source(
        self,
        path: Path,
        gateway_id: str,
        speed: float | None,
        tap: Callable[[AppRecord | None], None] | None = None,
    ) -> TraceSource:
        """A TraceSource for one gateway whose records apply consent lines as they pass;
        ``tap`` gets every app line this reader passes, then None at its end."""
        fh = path.open("rb")
        try:
            header, records = read_trace(fh, self.problems, kinds=PIPELINE_KINDS)
        except BaseException:
            fh.close()
            raise

        def lines() -> Iterator[TraceRecord]:
            try:
                with fh:
                    for record in records:
                        if isinstance(record, AppRecord):
                            if record.event in CONSENT_EVENTS:
                                self._apply(record)
                            if tap is not None:
                                tap(record)
                        yield record
            finally:
                if tap is not None:
                    tap(None)

        return TraceSource(header, lines(), gateway_id, speed)

    def _parse(self, record: AppRecord) -> tuple[str, str] | None:
        extra = record.model_extra or {}
        customer = extra.get("customer_id")
        purpose = extra.get("purpose", "arrival_alerts")
        if not isinstance(customer, str) or not isinstance(purpose, str):
            self.failed += 1
            log.warning(
                "trace t=%s: %s without customer_id/purpose; skipped", record.t, record.event
            )
            return None
        return customer, purpose

    def _apply(self, record: AppRecord) -> None:
        parsed = self._parse(record)
        if parsed is None:
            return
        customer, purpose = parsed
        granted = CONSENT_EVENTS[record.event]
        key = (customer, purpose, granted, record.t)
        with self._lock:
            if key in self._done:
                return
            self._done.add(key)
        # The replay's event loop is this thread; the registry is async: run it beside, wait.
        self._pool.submit(asyncio.run, self._store_counted(record, customer, purpose)).result()

    async def _store_counted(self, record: AppRecord, customer: str, purpose: str) -> None:
        """Apply one consent line; a failure is counted and logged, never raised."""
        try:
            await self._store(customer, purpose, CONSENT_EVENTS[record.event])
        except Exception as exc:  # a bad line must not stop the replay; say why
            self.failed += 1
            log.warning(
                "trace t=%s: %s for %s not applied: %s", record.t, record.event, customer, exc
            )
            return
        self.applied += 1
        log.info("trace t=%s: %s %s for %s", record.t, record.event, purpose, customer)

    async def _store(self, customer: str, purpose: str, granted: bool) -> None:
        from stream.registry import Purpose, Registry

        async with redis_for(self.services) as r:
            await Registry(r, self.services.redis_prefix).set_consent(
                customer, Purpose(purpose), granted
            )
