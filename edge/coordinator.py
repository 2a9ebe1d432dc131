"""The store's presence coordinator: evidence from the store's MQTT → fused zone events.

It runs as a service of an edge agent that has no scanner of its own (``proxima edge
fuse``; ``proxima replay`` starts one per fused trace): that agent's outbox, signing and
uplink carry the fused decisions to the bridge like any gateway's events, under the
coordinator's own gateway id. Evidence comes from every gateway of the store on
``.../stores/{store}/gateways/+/evidence`` through a persistent session (a coordinator
that restarts finds what was published meanwhile), each message acknowledged only once
the decisions it caused are in the outbox.

* **live**: evidence is applied as it arrives, timers fire every ``tick_s`` on the
  evidence's clock (the latest evidence time, advanced by wall time since it came);
* **clocked** (``--speed max``): :meth:`Coordinator.step` is called by the replay's
  :class:`edge.trace_clock.TraceClock` once the gateways have published a window; it
  waits for that evidence, applies it with :meth:`StorePresence.window` (the canonical
  order ``proxima bench detection`` uses too) and returns once the decisions are on the
  broker.

Bad evidence (not a batch, a field out of contract) is counted, logged and parked in a
bounded quarantine the agent's status reports; the good events next to it are applied.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from beacons.fusion import Evidence, FusionConfig, GatewayRole, StorePresence
from beacons.presence import Transition
from contracts.models import split_batch
from contracts.topics import Topics
from edge.agent import EdgeAgent, gateway_tls, with_credentials
from edge.fusion import evidence_of_event, fusion_config
from edge.outbox import Outbox
from edge.pipeline import to_draft
from edge.settings import EdgeSettings
from edge.sources import Advertisement, ScannerSource
from transport.mqtt import Message, MqttClient

log = logging.getLogger(__name__)

QUARANTINE_MAX = 100


@dataclass(slots=True)
class CoordinatorStats:
    batches: int = 0
    evidence: int = 0
    rejected: int = 0
    other_store: int = 0
    decisions: int = 0
    refused: int = 0
    reasons: Counter[str] = field(default_factory=Counter)


class Coordinator:
    """Fuses a store's gateway evidence into zone events (see the module docstring)."""

    def __init__(
        self,
        settings: EdgeSettings,
        roles: Sequence[GatewayRole],
        topics: Topics,
        *,
        mqtt_url: str,
        config: FusionConfig | None = None,
        clocked: bool = False,
        persistent: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``persistent``: a session the broker keeps while the coordinator is away (a
        replay's coordinator lives only as long as the replay: it needs none)."""
        self.settings = settings
        self.persistent = persistent
        self.presence = StorePresence(roles, config or fusion_config(settings))
        self.topics = topics
        self.mqtt_url = mqtt_url
        self.clocked = clocked
        self.clock = clock
        self.stats = CoordinatorStats()
        self.quarantine: deque[dict[str, Any]] = deque(maxlen=QUARANTINE_MAX)
        self.ready = asyncio.Event()
        self._outbox: Outbox | None = None
        self._pending: list[Evidence] = []
        self._arrived = asyncio.Event()
        self._watermark = (float("-inf"), 0.0)  # latest evidence time, monotonic when seen
        self._client: MqttClient | None = None

    # --- the service ------------------------------------------------------------------
    async def __call__(self, outbox: Outbox) -> None:
        """Run as a service of the coordinator's agent until cancelled."""
        self._outbox = outbox
        s = self.settings
        ns = f"{self.topics.namespace}-" if self.topics.namespace else ""
        client = MqttClient(
            # As the agent's own connection: the gateway's MQTT user, password and TLS
            # files (a broker that refuses anonymous clients refused this one).
            with_credentials(self.mqtt_url, s),
            **gateway_tls(s),
            client_id=f"{ns}proxima-fusion-{s.store_id}-{s.gateway_id}"
            + ("" if self.persistent else f"-{uuid.uuid4().hex[:6]}"),
            manual_ack=True,
            clean_session=not self.persistent,
            queue_size=1_000_000,
        )
        self._client = client
        async with client:
            await client.subscribe(self.topics.store_evidence(s.store_id), qos=1)
            self.ready.set()
            async with asyncio.TaskGroup() as tg:
                if not self.clocked:
                    tg.create_task(self._ticker(), name="fusion-ticker")
                while True:
                    message = await client.messages.get()
                    evidence = self._parse(message)
                    if self.clocked:
                        # Acked at once: the broker sends only so many unacked messages,
                        # and a busy window holds more than that (a replay is a dev tool).
                        self._pending += evidence
                        client.ack(message)
                        self._arrived.set()
                        continue
                    out: list[Transition] = []
                    for ev in sorted(evidence, key=Evidence.order):
                        self._advance(ev.at)
                        self.presence.observe(ev, out)
                    await self._store(out)
                    client.ack(message)
                    self._arrived.set()

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.settings.tick_s)
            await self._store(self.presence.tick(self.now()))

    def now(self) -> float:
        """The store's time: the latest evidence's, advanced by wall time since it came."""
        t, seen = self._watermark
        if t == float("-inf"):
            return t
        return t + max(0.0, self.clock() - seen)

    def _advance(self, t: float) -> None:
        if t > self._watermark[0]:
            self._watermark = (t, self.clock())

    # --- driven by a max-speed replay's TraceClock --------------------------------------
    async def step(self, end: float | None, expected: int) -> list[uuid.UUID]:
        """Apply the first ``expected`` evidence events (all the gateways published so far),
        fire the timers due by ``end`` (None: mid-window, no timers) and return the ids of
        the decisions once the broker has them."""
        while self.stats.evidence + self.stats.rejected < expected:
            self._arrived.clear()
            await self._arrived.wait()
        evidence, self._pending = self._pending, []
        out = self.presence.window(evidence, end)
        ids = await self._store(out)
        assert self._outbox is not None
        await self._outbox.wait_empty()
        return ids

    async def finish(self, expected: int) -> None:
        """A finite (paced) replay is over: once the first ``expected`` evidence events are
        in, everyone still inside leaves when their timers say."""
        while self.stats.evidence + self.stats.rejected < expected:
            self._arrived.clear()
            await self._arrived.wait()
        await self._store(self.presence.tick(float("inf")))

    # --- helpers ----------------------------------------------------------------------
    def _parse(self, message: Message) -> list[Evidence]:
        """The batch's evidence; bad items are counted and parked, their neighbours kept."""
        self.stats.batches += 1
        good, bad = split_batch(message.payload)
        for rejected in bad:
            self._park(message.topic, rejected.reason, rejected.raw)
        store = self.settings.store_id
        evidence = []
        for event in good:
            if event.store_id != store:
                self.stats.other_store += 1
                self._park(message.topic, f"event of store {event.store_id!r}, not {store!r}", b"")
                continue
            ev = evidence_of_event(event)
            if ev is None:
                self.stats.reasons[f"not evidence: {event.kind.value}"] += 1
                # Counted as seen, so a clocked step does not wait for it.
                self.stats.evidence += 1
                continue
            self.stats.evidence += 1
            evidence.append(ev)
        return evidence

    def _park(self, topic: str, reason: str, raw: bytes) -> None:
        self.stats.rejected += 1
        self.stats.reasons[reason.split(":")[0]] += 1
        self.quarantine.append(
            {"topic": topic, "reason": reason, "raw": raw[:4096].decode("utf-8", "replace")}
        )
        log.warning("evidence rejected on %s: %s", topic, reason)

    async def _store(self, transitions: list[Transition]) -> list[uuid.UUID]:
        if not transitions:
            return []
        assert self._outbox is not None
        self.stats.decisions += len(transitions)
        try:
            events = await self._outbox.put([to_draft(tr) for tr in transitions])
        except Exception as exc:  # an outbox refusal must not stop the loop: say why
            self.stats.refused += len(transitions)
            log.error("fused decisions not stored: %s", exc)
            return []
        return [e.event_id for e in events]

    def warnings(self) -> list[str]:
        """What the coordinator's agent status should say."""
        if not self.stats.rejected:
            return []
        last = self.quarantine[-1]["reason"] if self.quarantine else ""
        return [f"{self.stats.rejected} evidence items rejected; last: {last}"]


class NoScanner(ScannerSource):
    """The coordinator's agent hears nothing itself: its only producer is the coordinator.

    Finite in the watchdog's sense (nothing to restart); it ends when the agent stops.
    """

    name = "none"

    def __init__(self) -> None:
        self._closed = asyncio.Event()

    @property
    def finite(self) -> bool:
        return True

    def now(self) -> float:
        return time.time()

    async def adverts(self) -> AsyncIterator[Advertisement]:
        self.state = "idle"
        await self._closed.wait()
        return
        yield  # an async generator that yields nothing

    def close(self) -> None:
        self._closed.set()


def coordinator_agent(
    settings: EdgeSettings,
    roles: Sequence[GatewayRole],
    topics: Topics,
    *,
    mqtt_url: str,
    source: ScannerSource | None = None,
    outbox_path: Path | None = None,
    config: FusionConfig | None = None,
    clocked: bool = False,
    persistent: bool = True,
    services: Sequence[Callable[[Outbox], Coroutine[Any, Any, None]]] = (),
) -> tuple[EdgeAgent, Coordinator]:
    """A store's coordinator and the agent that carries its decisions (no scanner unless a
    replay's clocked source is given, which only paces it). ``services`` are more producers
    into that agent's outbox: the store's app-event ingest belongs here, since its
    gateways send only evidence."""
    coordinator = Coordinator(
        settings,
        roles,
        topics,
        mqtt_url=mqtt_url,
        config=config,
        clocked=clocked,
        persistent=persistent,
    )
    agent = EdgeAgent(
        settings,
        source or NoScanner(),
        topics,
        mqtt_url=mqtt_url,
        outbox_path=outbox_path,
        services=[coordinator, *services],
        service_warnings=[coordinator.warnings],
    )
    return agent, coordinator
