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
import json
import logging
import sys
import tempfile
import threading
from collections.abc import Callable, Coroutine, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from uuid import UUID

from contracts.services import ServiceSettings
from contracts.trace import PIPELINE_KINDS, AppRecord, TraceProblems, TraceRecord, read_trace
from edge.sources import TraceSource
from transport.cli import seconds_bar
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


# --- proxima replay: one edge agent per gateway on the trace's clock --------------------
def trace_span(path: Path) -> float | None:
    """The time (s) of a trace's last line, read from its end (the trace may be GBs)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - 65536))
            tail = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    for line in reversed(tail):
        try:
            t = json.loads(line).get("t")
        except (json.JSONDecodeError, AttributeError):
            continue
        if isinstance(t, int | float):
            return float(t)
    return None


async def replay_trace(
    trace: Path,
    speed: float | None,
    problems: TraceProblems | None = None,
    device_keys: Path | None = None,
    app_summary: list[str] | None = None,
    fusion: bool = True,
) -> dict[str, tuple[int, int]]:
    """Replay ``trace``; the lines it skips are recorded in ``problems`` (see TraceProblems),
    and what became of its app lines is appended to ``app_summary`` (simulators.app_replay).
    With ``fusion`` a store plan that can be fused (edge.fusion.fusable) gets its presence
    coordinator: the gateways send it evidence, it publishes the store's zone events."""
    from contracts.trace import PIPELINE_KINDS, TraceProblems, read_trace
    from edge.agent import EdgeAgent
    from edge.coordinator import coordinator_agent
    from edge.fusion import FUSION_GATEWAY_ID, fusable, fusion_roles, gateway_settings
    from edge.settings import EdgeSettings
    from edge.sources import ScannerSource
    from edge.trace_clock import TraceClock
    from simulators.app_replay import AppReplay, HeldSource, device_keys_path, load_device_keys
    from stream.cli import provision_keys

    problems = problems if problems is not None else TraceProblems(str(trace))
    with trace.open("rb") as fh:
        first = fh.readline()
        header, _ = read_trace([first])
    if header.layout is None:
        raise OSError(f"{trace}: header has no layout; replay needs the gateways and their zones")
    app_keys = load_device_keys(device_keys) if device_keys is not None else {}
    layout_raw = json.loads(first).get("layout") or {}
    # Interior gateways whose layout carries a calibration (rssi_1m, path_loss_n, zone
    # rectangles) get thresholds that cover their zone (edge.calibration).
    defaults = EdgeSettings()
    per_gateway = gateway_settings(layout_raw, defaults)
    roles = fusion_roles(layout_raw, defaults) if fusion else []
    # Fusion needs a calibrated door and somewhere inside: other store plans are replayed
    # gateway by gateway (edge.fusion.fusable).
    fused = fusable(roles)
    services = ServiceSettings()
    agents = []
    # consent_revoke/grant app lines reach the registry at their place in the trace.
    consent = ConsentReplay(services, problems=problems)
    # Each replayed gateway signs with a key of its own from the keyring (reused across
    # replays), so a bridge that requires signatures accepts it.
    ids = [gw.id for gw in header.layout.gateways] + ([FUSION_GATEWAY_ID] if fused else [])
    keys = await provision_keys(services, [(header.store_id, g) for g in ids])
    # --speed max: one reader and one virtual clock for every agent (edge.trace_clock),
    # so the gateways publish in the trace's order and two replays decide the same.
    clock = None
    trace_file = None
    coordinator = fusion_agent = None
    hint = device_keys_path(trace)
    apps = AppReplay(
        header,
        layout_raw,
        app_keys,
        None,
        services,
        keys_hint=hint if device_keys is None and hint.exists() else None,
    )
    tmp = tempfile.TemporaryDirectory(prefix="proxima-replay-")
    if fused:
        key = keys[(header.store_id, FUSION_GATEWAY_ID)]
        fusion_settings = EdgeSettings(
            store_id=header.store_id,
            gateway_id=FUSION_GATEWAY_ID,
            zone_id=roles[0].zone_id,
            signing_kid=key.kid,
            signing_key=key.secret,
            # Stepped by the clock: publish each step at once, no batch to wait for.
            batch_max_latency_s=0.001 if speed is None else 0.1,
        )
        fusion_agent, coordinator = coordinator_agent(
            fusion_settings,
            roles,
            services.topics,
            mqtt_url=fusion_settings.mqtt_url or services.mqtt,
            outbox_path=Path(tmp.name) / "outbox-fusion.sqlite",
            clocked=speed is None,
            persistent=False,
            services=[apps.serve],
        )
    if speed is None:
        trace_file = trace.open("rb")
        clock_header, records = read_trace(trace_file, problems, kinds=PIPELINE_KINDS)
        app_ids: list[Any] = []  # the ingest's events since the last app line

        async def on_app(record: AppRecord, published: Sequence[Any]) -> None:
            # A consent change waits for the stream to have decided the app events too.
            await consent.on_app(record, [*published, *app_ids])
            app_ids[:] = await apps.on_app(record)

        clock = TraceClock(clock_header, records, on_app=on_app, coordinator=coordinator)
        apps.clock = clock.now
    # The store's app-event ingest runs in one gateway's agent, as on a real store: the
    # first entrance gateway's (its reader hands over the app lines; at a finite speed that
    # agent waits for the last one). In a fused store the gateways send evidence, so the
    # coordinator's agent, which publishes the store's events, serves it.
    kinds = {z.id: z.kind for z in header.layout.zones}
    host = next(
        (g.id for g in header.layout.gateways if kinds.get(g.zone_id) == "entrance"),
        header.layout.gateways[0].id,
    )
    apps.host = FUSION_GATEWAY_ID if fused else host
    fed = asyncio.Event()
    app_lines: asyncio.Queue[AppRecord | None] = asyncio.Queue()
    # A replay is a dev tool: each agent gets a fresh outbox that disappears afterwards.
    with tmp:
        for gw in header.layout.gateways:
            key = keys[(header.store_id, gw.id)]
            tuned: dict[str, Any] = dict(per_gateway.get(gw.id, {}))
            if clock is not None:  # the clock publishes a window at once: no batch to wait for
                tuned["batch_max_latency_s"] = 0.001
            settings = EdgeSettings(
                store_id=header.store_id,
                signing_kid=key.kid,
                signing_key=key.secret,
                fused=fused,
                **{"gateway_id": gw.id, "zone_id": gw.zone_id, **tuned},
            )
            src: ScannerSource
            if clock is not None:
                src = clock.source(gw.id)
            elif gw.id == host:
                src = HeldSource(consent.source(trace, gw.id, speed, app_lines.put_nowait), fed)
            else:
                src = consent.source(trace, gw.id, speed)
            agents.append(
                EdgeAgent(
                    settings,
                    src,
                    services.topics,
                    mqtt_url=settings.mqtt_url or services.mqtt,
                    outbox_path=Path(tmp.name) / f"outbox-{gw.id}.sqlite",
                    services=[apps.serve] if gw.id == host and not fused else (),
                )
            )

        async def feed() -> None:
            try:
                assert speed is not None
                await apps.feed(app_lines, speed)
            finally:
                fed.set()

        progress = (
            asyncio.create_task(_replay_progress(clock, trace_span(trace)))
            if clock is not None and sys.stderr.isatty()
            else None
        )
        try:
            runs = [a.run(until_drained=True) for a in agents]
            driver = clock.run() if clock is not None else feed()
            if coordinator is None:
                await asyncio.gather(*runs, driver)
            else:
                await _replay_fused(runs, driver, fusion_agent, coordinator, agents, clock)
        finally:
            if progress is not None:
                progress.cancel()
                await asyncio.gather(progress, return_exceptions=True)
            consent.close()
            if trace_file is not None:
                trace_file.close()
    if app_summary is not None and (said := apps.summary()):
        app_summary.append(said)
    result = {a.settings.gateway_id: (a.stats.adverts, a.stats.events_published) for a in agents}
    if fusion_agent is not None:
        result[FUSION_GATEWAY_ID] = (0, fusion_agent.stats.events_published)
    return result


async def _replay_progress(clock: Any, span: float | None) -> None:
    """A bar of the trace time replayed so far (a terminal only; until cancelled)."""
    with seconds_bar("replaying", span, "s of trace") as done:
        while True:
            done(max(0.0, clock.now() - clock.start))
            await asyncio.sleep(0.5)


async def _replay_fused(
    runs: Sequence[Coroutine[Any, Any, None]],
    driver: Coroutine[Any, Any, Any],
    fusion_agent: Any,
    coordinator: Any,
    agents: Sequence[Any],
    clock: Any | None,
) -> None:
    """Gateways publish evidence; the store's coordinator (subscribed first) publishes
    events: stepped by the clock at --speed max, live at a finite speed."""
    fusion_run = asyncio.ensure_future(fusion_agent.run())
    try:
        ready = asyncio.ensure_future(coordinator.ready.wait())
        await asyncio.wait({ready, fusion_run}, return_when=asyncio.FIRST_COMPLETED)
        if fusion_run.done():
            await fusion_run  # it failed before subscribing: say why
        await asyncio.gather(*runs, driver)
        if clock is None:
            await coordinator.finish(sum(a.stats.events_published for a in agents))
        await fusion_agent.outbox.wait_empty()
    finally:
        fusion_agent.stop()
        await fusion_run
