"""``proxima bench edge``: the gateway's throughput, end to end and by stage.

Figures (the caller prints them):

- ``pipeline_adverts_per_s``: decode → Kalman filter → zone state machine, in process
  (the beacons bench's store-entrance mix, repeated on a shifted clock);
- ``agent_adverts_per_s`` / ``agent_adverts_per_cpu_s``: the whole agent, source →
  pipeline → SQLite outbox → signed MQTT batches to the broker on loopback, as fast as
  the agent takes it; per CPU-second of this process is the "per core" figure;
- ``agent_busy_events_per_s``: the whole agent on a flood of distinct visitors (each gives
  an enter and an exit), so the outbox and the publisher set the pace;
- ``outbox_put1_events_per_s`` / ``outbox_put100_events_per_s``: sustained durable writes
  (``synchronous=FULL``), one event per transaction and 100 per transaction;
- ``publish_events_per_s`` / ``publish_batches_per_s``: a pre-filled outbox drained to the
  broker (100 events per signed batch, PUBACK before delete, one batch in flight);
- ``recovery_s``: after ``kill -9`` of a process holding ``recovery_rows`` queued rows in
  an un-checkpointed WAL, the time for a new process to open the outbox and have its
  first batch ready.

The broker is PROXIMA_MQTT (loopback Mosquitto); topics live under a fresh namespace.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from beacons.bench import build_mix
from beacons.presence import Transition
from contracts.models import EventKind, Subject, SubjectType
from contracts.services import ServiceSettings
from contracts.topics import Topics
from edge.agent import EdgeAgent
from edge.outbox import EventDraft, Outbox
from edge.pipeline import Pipeline
from edge.settings import EdgeSettings
from edge.sources import Advertisement, ScannerSource

T0 = 1_767_261_600.0
_SECRET_HEX = "42" * 32


def _adverts(n: int, passes: int) -> list[Advertisement]:
    mix = build_mix(n)
    period = 90.0
    return [
        Advertisement(
            a.address, int(a.rssi), T0 + p * period + a.t, a.manufacturer_data, a.service_data
        )
        for p in range(passes)
        for a in mix
    ]


class ListSource(ScannerSource):
    """Prebuilt adverts as fast as the consumer takes them, on their own clock."""

    name = "bench"

    def __init__(self, adverts: list[Advertisement]) -> None:
        self._adverts = adverts
        self._now = adverts[0].at if adverts else T0

    @property
    def finite(self) -> bool:
        return True

    def now(self) -> float:
        return self._now

    async def adverts(self) -> AsyncIterator[Advertisement]:
        self.state = "scanning"
        for i, advert in enumerate(self._adverts):
            self._now = advert.at
            if i % 512 == 511:
                await asyncio.sleep(0)  # let the writer and the publisher run
            yield advert
        self.state = "finished"


def bench_pipeline(adverts: list[Advertisement], settings: EdgeSettings) -> float:
    pipe = Pipeline(settings)
    out: list[Transition] = []
    next_tick = 0.0
    start = time.perf_counter()
    for advert in adverts:
        pipe.handle(advert, out)
        if advert.at >= next_tick:
            next_tick = advert.at + 1.0
            pipe.tick(advert.at, out)
        if len(out) > 1000:
            out.clear()
    return len(adverts) / (time.perf_counter() - start)


async def bench_agent(
    adverts: list[Advertisement], settings: EdgeSettings, mqtt: str, workdir: Path
) -> dict[str, float]:
    topics = Topics(f"bench{uuid.uuid4().hex[:8]}")
    agent = EdgeAgent(
        settings, ListSource(adverts), topics, mqtt_url=mqtt, outbox_path=workdir / "agent.sqlite"
    )
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await agent.run(until_drained=True)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {
        "agent_adverts_per_s": len(adverts) / wall,
        "agent_adverts_per_cpu_s": len(adverts) / cpu,
        "agent_events": float(agent.stats.events_published),
    }


def _visitors(n: int) -> list[Advertisement]:
    """A flood of distinct EIDs, two sightings each 0.2 s apart: every one enters and exits."""
    from beacons.frames import encode_eddystone_eid

    out = []
    for i in range(n):
        uuid_, data = encode_eddystone_eid(i.to_bytes(8, "big"), -20)
        for dt in (0.0, 0.2):
            out.append(Advertisement(f"visitor-{i}", -50, T0 + i * 0.01 + dt, {}, {uuid_: data}))
    out.sort(key=lambda a: a.at)
    return out


async def bench_agent_events(
    visitors: int, settings: EdgeSettings, mqtt: str, workdir: Path
) -> dict[str, float]:
    """Event-heavy: every advert pair is an enter and an exit, so the outbox and the
    publisher set the pace (events/s written, signed, published and acked)."""
    busy = settings.model_copy(
        update={
            "enter_min_s": 0.0,
            "enter_min_sightings": 1,
            "exit_timeout_s": 1.0,
            "exit_min_s": 0.5,
        }
    )
    topics = Topics(f"bench{uuid.uuid4().hex[:8]}")
    agent = EdgeAgent(
        busy,
        ListSource(_visitors(visitors)),
        topics,
        mqtt_url=mqtt,
        outbox_path=workdir / "busy.sqlite",
    )
    start = time.perf_counter()
    await agent.run(until_drained=True)
    wall = time.perf_counter() - start
    return {
        "agent_busy_events": float(agent.stats.events_published),
        "agent_busy_events_per_s": agent.stats.events_published / wall,
    }


def _drafts(n: int) -> list[EventDraft]:
    at = datetime.fromtimestamp(T0, tz=UTC)
    return [
        EventDraft(
            EventKind.ZONE_ENTER,
            Subject(type=SubjectType.EDDYSTONE_EID, id=f"{i:016x}"),
            at,
            zone_id="entrance",
            rssi=-60.0,
            confidence=0.9,
        )
        for i in range(n)
    ]


async def bench_outbox_writes(workdir: Path, seconds: float) -> dict[str, float]:
    figures = {}
    for per_put in (1, 100):
        async with Outbox(
            workdir / f"writes-{per_put}.sqlite", store_id="bench", gateway_id="gw"
        ) as ob:
            drafts = _drafts(per_put)
            n = 0
            start = time.perf_counter()
            while time.perf_counter() - start < seconds:
                await ob.put(drafts)
                n += per_put
            figures[f"outbox_put{per_put}_events_per_s"] = n / (time.perf_counter() - start)
    return figures


async def bench_publish(
    workdir: Path, mqtt: str, events: int, settings: EdgeSettings
) -> dict[str, float]:
    path = workdir / "publish.sqlite"
    async with Outbox(path, store_id=settings.store_id, gateway_id=settings.gateway_id) as ob:
        for _ in range(events // 500):
            await ob.put(_drafts(500))
    topics = Topics(f"bench{uuid.uuid4().hex[:8]}")
    agent = EdgeAgent(settings, ListSource([]), topics, mqtt_url=mqtt, outbox_path=path)
    start = time.perf_counter()
    await agent.run(until_drained=True)
    wall = time.perf_counter() - start
    return {
        "publish_events_per_s": agent.stats.events_published / wall,
        "publish_batches_per_s": agent.stats.batches_published / wall,
    }


_FILL_AND_DIE = """
import asyncio, os, signal, sys
from edge.bench import _drafts
from edge.outbox import Outbox

async def main():
    ob = Outbox(sys.argv[1], store_id="bench", gateway_id="gw")
    await ob.open()
    rows = int(sys.argv[2])
    for _ in range(rows // 1000):
        await ob.put(_drafts(1000))
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


def bench_recovery(workdir: Path, rows: int) -> float:
    path = workdir / "recovery.sqlite"
    subprocess.run(
        [sys.executable, "-c", _FILL_AND_DIE, str(path), str(rows)],
        check=False,
        env=dict(os.environ),
    )
    if not Path(f"{path}-wal").exists():
        raise RuntimeError("the killed writer left no WAL: recovery was not exercised")

    async def reopen() -> float:
        start = time.perf_counter()
        async with Outbox(path, store_id="bench", gateway_id="gw") as ob:
            batch = await ob.next_batch(max_events=100, max_latency_s=0.0001)
            elapsed = time.perf_counter() - start
            if ob.stats.depth != rows or batch.first_seq != 1:
                raise RuntimeError(f"recovered {ob.stats.depth} rows of {rows}")
        return elapsed

    return asyncio.run(reopen())


def run_edge_bench(
    seconds: float = 2.0,
    *,
    adverts: int = 20_000,
    passes: int = 10,
    publish_events: int = 20_000,
    recovery_rows: int = 100_000,
    busy_visitors: int = 10_000,
) -> dict[str, Any]:
    """Every edge figure; needs the MQTT broker of PROXIMA_MQTT."""
    mqtt = ServiceSettings().mqtt
    settings = EdgeSettings(
        store_id="bench",
        gateway_id="gw",
        signing_kid="bench",
        signing_key=_SECRET_HEX,
        status_interval_s=3600,
    )
    stream = _adverts(adverts, passes)
    figures: dict[str, Any] = {"adverts": len(stream)}
    figures["pipeline_adverts_per_s"] = bench_pipeline(stream, settings)
    with tempfile.TemporaryDirectory(prefix="proxima-bench-edge-") as tmp:
        work = Path(tmp)

        async def main() -> None:
            figures.update(await bench_agent(stream, settings, mqtt, work))
            figures.update(await bench_agent_events(busy_visitors, settings, mqtt, work))
            figures.update(await bench_outbox_writes(work, seconds))
            figures.update(await bench_publish(work, mqtt, publish_events, settings))

        asyncio.run(main())
        figures["recovery_rows"] = recovery_rows
        figures["recovery_s"] = bench_recovery(work, recovery_rows)
    return figures
