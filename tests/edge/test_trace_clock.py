"""The max-speed replay clock: every gateway of a trace in lockstep, events in trace order.

Unit tests drive real pipelines through :class:`TraceClock` with fake agents (of our own
``ClockedAgent`` interface) whose publishing takes a random while, as separate MQTT
connections do; the integration test replays a simulated boutique twice through
``proxima replay``'s code path into real Mosquitto and compares what a subscriber sees.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from pathlib import Path

import pytest

from beacons.presence import Transition
from contracts.trace import AppRecord, read_trace
from edge.exceptions import SourceError
from edge.pipeline import Pipeline
from edge.settings import EdgeSettings
from edge.trace_clock import ClockedTraceSource, TraceClock
from simulators.engine import build_scenario

Published = tuple[str, str, str, str, float]  # gateway, kind, subject, zone, observed_at


@pytest.fixture(scope="module")
def rush(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five busy boutique minutes (4 gateways, ~40 k adverts, consent revocations)."""
    path = tmp_path_factory.mktemp("clock") / "rush.jsonl"
    # The advertising classes: this test replays adverts (an iPhone advertises no EID).
    population = {"device_classes": {"android_app": 0.9, "vip_tag": 0.1}}
    build_scenario("boutique-rush", seed=5, hours=5 / 60, population=population).write(path)
    return path


class FakeAgent:
    """A gateway agent reduced to its pipeline; publishing takes a random 0-2 ms."""

    def __init__(
        self, source: ClockedTraceSource, zone_id: str, log: list[Published], rng: random.Random
    ) -> None:
        self.source = source
        self.pipeline = Pipeline(
            EdgeSettings(store_id="boutique-01", gateway_id=source.gateway_id, zone_id=zone_id)
        )
        self.buffer: list[Transition] = []
        self.log = log
        self.rng = rng
        source.bind(self)

    async def consume(self) -> None:
        async for advert in self.source.adverts():
            self.pipeline.handle(advert, self.buffer)

    def fire_timers(self, now: float) -> None:
        self.pipeline.tick(now, self.buffer)

    def take_transitions(self) -> list[Transition]:
        items, self.buffer = self.buffer, []
        return items

    async def publish_transitions(self, transitions: list[Transition]) -> list[uuid.UUID]:
        await asyncio.sleep(self.rng.random() * 0.002)
        gw = self.source.gateway_id
        self.log.extend((gw, t.kind, t.subject, t.zone_id, t.at) for t in transitions)
        return [uuid.uuid4() for _ in transitions]


async def replay_fake(
    trace: Path, seed: int, apps: list[tuple[float, int, int]] | None = None
) -> list[Published]:
    log: list[Published] = []
    rng = random.Random(seed)

    async def on_app(record: AppRecord, ids: object) -> None:
        assert apps is not None
        published_before = len(log)
        await asyncio.sleep(rng.random() * 0.002)  # nothing may be published meanwhile
        assert len(log) == published_before
        apps.append((record.t, published_before, len(ids)))  # type: ignore[arg-type]

    with trace.open(encoding="utf-8") as fh:
        header, records = read_trace(fh)
        assert header.layout is not None
        clock = TraceClock(header, records, on_app=on_app if apps is not None else None)
        agents = [
            FakeAgent(clock.source(gw.id), gw.zone_id, log, rng) for gw in header.layout.gateways
        ]
        rng.shuffle(agents)  # start order must not matter either
        await asyncio.gather(clock.run(), *(a.consume() for a in agents))
    return log


async def test_two_replays_publish_the_same_events_in_trace_order(rush: Path) -> None:
    first = await replay_fake(rush, seed=1)
    second = await replay_fake(rush, seed=2)
    assert len(first) > 20
    assert {p[0] for p in first} >= {"gw-door", "gw-floor"}  # several gateways took part
    assert first == second
    times = [p[4] for p in first]
    assert times == sorted(times), "events left out of observed_at order across gateways"


async def test_app_lines_wait_for_everything_before_them(rush: Path) -> None:
    apps: list[tuple[float, int, int]] = []
    log = await replay_fake(rush, seed=3, apps=apps)
    assert apps, "the trace has app lines"
    with rush.open(encoding="utf-8") as fh:
        start = read_trace(fh)[0].start.timestamp()
    total_ids = 0
    for t, published_before, n_ids in apps:
        # Everything decided before the line was published before the hook ran ...
        assert all(p[4] <= start + t for p in log[:published_before])
        total_ids += n_ids
        # ... and the hook was told every event id published since the previous line.
        assert total_ids == published_before
    # Every window's events (transitions are stamped with the trace time they were due).
    assert len(log) >= apps[-1][1]


async def test_a_source_is_bound_before_the_clock_starts(rush: Path) -> None:
    with rush.open(encoding="utf-8") as fh:
        header, records = read_trace(fh)
        clock = TraceClock(header, records)
        source = clock.source("gw-door")

        async def consume() -> None:
            async for _ in source.adverts():
                pass

        with pytest.raises(SourceError, match="no agent is bound"):
            await asyncio.gather(clock.run(), consume())


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_replay_at_max_speed_reaches_mosquitto_in_the_same_order_twice(
    rush: Path, namespace: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from contracts.models import parse_batch
    from contracts.services import ServiceSettings
    from simulators.replay import replay_trace
    from tests.edge.support import Collector

    # Without consent lines: this test has no stream to wait for (see the e2e test).
    trace = tmp_path / "no-consent.jsonl"
    with rush.open(encoding="utf-8") as fh:
        trace.write_text("".join(line for line in fh if '"consent_' not in line), encoding="utf-8")
    monkeypatch.setenv("PROXIMA_NAMESPACE", namespace)
    services = ServiceSettings()
    seen: list[list[Published]] = []
    for _ in range(2):
        async with Collector(services.mqtt, services.topics.all_gateway_events()) as col:
            stats = await replay_trace(trace, None)
            # The gateways send evidence to the store's coordinator; only it publishes events.
            n = stats["fusion"][1]
            async with asyncio.timeout(30):
                while sum(len(parse_batch(b)) for _, b, _ in col.batches) < n:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
        events = [e for _, payload, _ in col.batches for e in parse_batch(payload)]
        seen.append(
            [
                (
                    e.gateway_id,
                    e.kind.value,
                    e.subject.id,
                    e.zone_id or "",
                    e.observed_at.timestamp(),
                )
                for e in events
            ]
        )
    assert len(seen[0]) > 20
    assert seen[0] == seen[1]
    times = [p[4] for p in seen[0]]
    assert times == sorted(times)
