"""The virtual clock of a max-speed replay: every gateway of a trace in lockstep.

At ``--speed max`` nothing paces the agents but the trace, so agents reading it on their
own race each other: one gateway's ``zone_enter`` at t=400 s can reach the stream before
another's at t=60 s, and the stream's visits (and the ids of their alerts) then depend on
who won. :class:`TraceClock` is the one reader of the trace for all the agents of a replay
(one process, one event loop) and keeps them in step:

* the trace is cut into **windows** of ``tick_s`` trace seconds; in each window every
  gateway's agent takes its turn and consumes that window's adverts for its gateway
  through its own decode → filter → zone pipeline (:class:`ClockedTraceSource`);
* at the window's end the clock fires every agent's presence timers at that instant, so
  exits and dwells are decided on the trace's clock, never on wall time;
* then the window's events of all gateways are **published in ``observed_at`` order**,
  each gateway's run of events through its own outbox and MQTT connection, the next run
  only after the broker acknowledged the previous one; the broker queues a message for
  its subscribers before it acknowledges it, so the stream sees the gateways' events in
  the trace's global order and a replay decides the same way every time;
* an ``app`` line ends a window early: everything before it is published first, then
  ``on_app`` runs (the replay applies consent changes there, once the stream has
  processed those events), then the window goes on;
* in a fused store the gateways publish evidence, not events: after each publish the
  clock steps the store's coordinator (:class:`edge.coordinator.Coordinator`), which
  applies that evidence, fires its timers at the window's end and publishes the store's
  zone events; those are what ``on_app`` waits for.

Transitions carry the time they became due, not the time they were noticed, so firing
timers at window ends gives the same events as a live agent ticking every ``tick_s``.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from beacons.presence import Transition
from contracts.trace import AdvRecord, AppRecord, TraceHeader, TraceRecord
from edge.exceptions import SourceError
from edge.sources import Advertisement, ClockedAgent, ScannerSource, advert_from_record

log = logging.getLogger(__name__)

AppHook = Callable[[AppRecord, Sequence[UUID]], Awaitable[None]]


class SteppedCoordinator(Protocol):
    """A fused store's coordinator as the clock drives it (edge.coordinator.Coordinator)."""

    async def step(self, end: float | None, expected: int) -> list[UUID]:
        """Apply the first ``expected`` evidence events, fire timers due by ``end`` (None:
        none, mid-window) and return the ids of its events once the broker has them."""


@dataclass(slots=True)
class ClockStats:
    windows: int = 0
    adverts: int = 0
    other_gateways: int = 0  # adverts of gateways that have no agent in this replay
    app_lines: int = 0
    published: int = 0
    publish_rounds: int = 0


class ClockedTraceSource(ScannerSource):
    """One gateway's adverts, handed out by a :class:`TraceClock` one window at a time."""

    name = "replay"

    def __init__(self, clock: TraceClock, gateway_id: str) -> None:
        self.clock = clock
        self.gateway_id = gateway_id
        self.agent: ClockedAgent | None = None
        self._now = clock.start
        self._turns: asyncio.Queue[list[AdvRecord] | None] = asyncio.Queue(maxsize=1)
        self._turn_done = asyncio.Event()
        self._started = asyncio.Event()
        self.closed = False
        self.delivered = 0
        self.bad_records = 0

    @property
    def finite(self) -> bool:
        return True

    def now(self) -> float:
        return max(self._now, self.clock.now())

    def bind(self, agent: ClockedAgent) -> bool:
        """The agent that consumes this source; the clock fires its timers and publishes."""
        self.agent = agent
        return True

    async def adverts(self) -> AsyncIterator[Advertisement]:
        if self.closed:
            raise SourceError(f"the replay of {self.gateway_id} has ended; it cannot restart")
        self.state = "scanning"
        self._started.set()
        start = self.clock.start
        try:
            while True:
                records = await self._turns.get()
                if records is None:
                    break
                for record in records:
                    try:
                        advert = advert_from_record(record, start)
                    except SourceError as exc:
                        # One bad line is counted and skipped; the adverts around it count.
                        self.bad_records += 1
                        log.warning("%s; skipped", exc)
                        continue
                    self._now = advert.at
                    self.delivered += 1
                    yield advert
                # The consumer asked for more: everything of this turn went through it.
                self._turn_done.set()
        finally:
            self.closed = True
            self._turn_done.set()
        self.state = "finished"

    def close(self) -> None:
        self.closed = True
        self._turn_done.set()

    async def _take_turn(self, records: list[AdvRecord]) -> None:
        if self.closed:
            return
        self._turn_done.clear()
        await self._turns.put(records)
        await self._turn_done.wait()

    async def _finish(self) -> None:
        if not self.closed:
            await self._turns.put(None)


class TraceClock:
    """One trace read once, its gateways' agents driven in windows of ``tick_s`` (see module).

    Make one source per gateway with :meth:`source`, give each to its agent (the agent
    binds itself), start the agents, and run :meth:`run` beside them; it returns once the
    trace is over and every event of it is published.
    """

    def __init__(
        self,
        header: TraceHeader,
        records: Iterable[TraceRecord],
        *,
        tick_s: float = 1.0,
        on_app: AppHook | None = None,
        coordinator: SteppedCoordinator | None = None,
    ) -> None:
        if tick_s <= 0:
            raise SourceError(f"tick_s must be > 0, got {tick_s}")
        self.header = header
        self.start = header.start.timestamp()
        self.tick_s = tick_s
        self.on_app = on_app
        self.coordinator = coordinator
        self._evidence = 0  # evidence events the gateways published (fused store)
        self._records = records
        self._sources: dict[str, ClockedTraceSource] = {}
        self._now = self.start
        self._since_app: list[UUID] = []
        self.stats = ClockStats()

    def now(self) -> float:
        """The trace time every agent has reached (Unix seconds)."""
        return self._now

    def source(self, gateway_id: str) -> ClockedTraceSource:
        if gateway_id in self._sources:
            raise SourceError(f"gateway {gateway_id!r} already has a source on this clock")
        src = self._sources[gateway_id] = ClockedTraceSource(self, gateway_id)
        return src

    async def run(self) -> ClockStats:
        """Drive the replay to the trace's end; then every agent's source ends."""
        try:
            await asyncio.gather(*(s._started.wait() for s in self._sources.values()))
            missing = [g for g, s in self._sources.items() if s.agent is None]
            if missing:
                raise SourceError(f"no agent is bound to the clocked source of {missing}")
            await self._drive()
        finally:
            for src in self._sources.values():
                await src._finish()
        return self.stats

    async def _drive(self) -> None:
        tick = self.tick_s
        window = 0  # the window [start + window·tick, start + (window + 1)·tick)
        pending: dict[str, list[AdvRecord]] = {}
        for record in self._records:
            k = math.floor(record.t / tick)
            if k > window:
                # Close the window: turns, timers at its end, publish. Empty windows in
                # between need no ticks of their own: timers carry the time they fell
                # due, so one tick at the next window's start fires them in order.
                await self._turns(pending)
                pending = {}
                window = k
                self._tick(self.start + window * tick)
                await self._publish(self.start + window * tick)
                self.stats.windows += 1
            if isinstance(record, AdvRecord):
                if record.gateway_id in self._sources:
                    pending.setdefault(record.gateway_id, []).append(record)
                    self.stats.adverts += 1
                else:
                    self.stats.other_gateways += 1
            elif isinstance(record, AppRecord):
                self.stats.app_lines += 1
                if self.on_app is not None:
                    await self._turns(pending)
                    pending = {}
                    await self._publish(None)
                    self._now = max(self._now, self.start + record.t)
                    ids, self._since_app = self._since_app, []
                    await self.on_app(record, ids)
        await self._turns(pending)
        self._tick(self.start + (window + 1) * tick)
        await self._publish(self.start + (window + 1) * tick)
        self.stats.windows += 1
        # The trace is over: nothing more will be heard, so everyone present leaves when
        # their timers say (each exit carries its own due time, not this one).
        self._tick(math.inf)
        await self._publish(math.inf)

    async def _turns(self, pending: dict[str, list[AdvRecord]]) -> None:
        # Dicts keep insertion order: gateways take turns in the order the window first
        # heard them, the same on every replay of the trace.
        for gateway_id, records in pending.items():
            await self._sources[gateway_id]._take_turn(records)
            last = records[-1].t + self.start
            if last > self._now:
                self._now = last

    def _tick(self, now: float) -> None:
        if now != math.inf:
            self._now = max(self._now, now)
        for src in self._sources.values():
            if src.agent is not None and not src.closed:
                src.agent.fire_timers(now)

    async def _publish(self, end: float | None) -> None:
        """Publish what the agents decided; then step a fused store's coordinator to ``end``."""
        await self._publish_agents()
        if self.coordinator is not None:
            ids = await self.coordinator.step(end, self._evidence)
            self._since_app.extend(ids)
            self.stats.published += len(ids)

    async def _publish_agents(self) -> None:
        if self.coordinator is not None:
            # Evidence: the coordinator orders a window's evidence itself, so each agent
            # publishes its whole window in one run.
            for src in self._sources.values():
                if src.agent is not None and (window := src.agent.take_transitions()):
                    await self._publish_run(src.agent, window)
            return
        decided: list[tuple[float, int, int, Transition]] = []
        for index, src in enumerate(self._sources.values()):
            if src.agent is None:
                continue
            for order, tr in enumerate(src.agent.take_transitions()):
                decided.append((tr.at, index, order, tr))
        if not decided:
            return
        decided.sort(key=lambda d: d[:3])
        agents = [src.agent for src in self._sources.values()]
        run: list[Transition] = []
        run_index = decided[0][1]
        for _, index, _, tr in decided:
            if index != run_index:
                await self._publish_run(agents[run_index], run)
                run, run_index = [], index
            run.append(tr)
        await self._publish_run(agents[run_index], run)

    async def _publish_run(self, agent: ClockedAgent | None, run: list[Transition]) -> None:
        assert agent is not None
        ids = await agent.publish_transitions(run)
        self.stats.publish_rounds += 1
        if self.coordinator is not None:
            self._evidence += len(ids)  # for the coordinator, not the stream
            return
        self._since_app.extend(ids)
        self.stats.published += len(ids)
