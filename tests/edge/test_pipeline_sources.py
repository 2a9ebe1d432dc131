"""The decision pipeline (decode → filter → zone events, TLM health) and the scan watchdog."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from beacons.frames import (
    EddystoneTlmFrame,
    EddystoneUidFrame,
    encode_eddystone_eid,
    encode_eddystone_tlm,
    encode_eddystone_uid,
)
from beacons.presence import Transition
from contracts.models import EventKind, SubjectType
from contracts.topics import Topics
from edge.agent import EdgeAgent
from edge.backoff import backoff_delay
from edge.exceptions import SourceError
from edge.pipeline import Pipeline, to_draft
from edge.settings import EdgeSettings
from edge.sources import Advertisement, ScannerSource, TraceSource, WatchdogSource

EID = bytes.fromhex("a9b76a71c5f89290")
T0 = 1_767_261_600.0  # 2026-01-01T10:00:00Z


def eid_advert(t: float, rssi: int = -60, eid: bytes = EID) -> Advertisement:
    uuid, data = encode_eddystone_eid(eid, -20)
    return Advertisement(address="C0:00:00:00:00:01", rssi=rssi, at=t, service_data={uuid: data})


def settings(**kw: object) -> EdgeSettings:
    base: dict[str, object] = {
        "enter_rssi": -70.0,
        "exit_rssi": -80.0,
        "enter_min_s": 1.0,
        "enter_min_sightings": 2,
        "exit_timeout_s": 10.0,
        "dwell_s": 30.0,
    }
    base.update(kw)
    return EdgeSettings(**base)  # type: ignore[arg-type]


def test_eid_adverts_become_enter_dwell_exit_drafts_with_the_eid_as_subject() -> None:
    pipe = Pipeline(settings())
    out: list[Transition] = []
    for i in range(40):  # 1 Hz for 40 s, strong
        pipe.handle(eid_advert(T0 + i), out)
    pipe.tick(T0 + 39 + 10, out)  # silence → exit by timeout
    kinds = [tr.kind for tr in out]
    assert kinds == ["zone_enter", "zone_dwell", "zone_exit"]
    drafts = [to_draft(tr) for tr in out]
    assert {d.subject.type for d in drafts} == {SubjectType.EDDYSTONE_EID}
    assert {d.subject.id for d in drafts} == {EID.hex()}
    assert drafts[0].kind is EventKind.ZONE_ENTER
    assert drafts[0].observed_at.timestamp() == pytest.approx(T0 + 1)
    assert pipe.stats.eid_frames == 40


def test_fused_sightings_follow_a_walk_in_faster_with_their_own_filter() -> None:
    # A phone heard at -85 dBm for 10 s, then walking in under the door: -70, -66, -62.
    levels = [-85] * 10 + [-70, -66, -62]
    fast = Pipeline(settings(fused=True, fusion_sighting_q=20.0))  # a door pair's gateway
    slow = Pipeline(settings(fused=True))  # the zone machine's level
    sighted: list[list[float]] = []
    for pipe in (fast, slow):
        out: list[Transition] = []
        for i, rssi in enumerate(levels):
            pipe.handle(eid_advert(T0 + i, rssi=rssi), out)
            pipe.tick(T0 + i + 0.5, out)
        sighted.append([tr.rssi for tr in out if tr.kind == "sighting"])
    # With q 20 the sighting is within 6 dB of -62 after three samples of the walk; the
    # zone machine's level (q 2) is still ~10 dB behind. The machine is the same in both:
    # its filter does not change with fusion_sighting_q.
    assert sighted[0][-1] >= -68.0
    assert sighted[1][-1] <= -71.0
    subject = EID.hex()
    assert fast.tracker.filtered_rssi(subject) == slow.tracker.filtered_rssi(subject)
    assert sighted[1][-1] == slow.tracker.filtered_rssi(subject)
    assert fast.tracker.evidence_rssi(subject) == sighted[0][-1]


def test_a_live_change_of_the_sightings_filter_applies_to_subjects_heard_from_then_on() -> None:
    pipe = Pipeline(settings(fused=True))
    other = bytes.fromhex("0102030405060708")
    out: list[Transition] = []
    pipe.handle(eid_advert(T0, rssi=-85), out)  # heard before the change
    pipe.reconfigure(settings(fused=True, fusion_sighting_q=20.0))
    for i, rssi in enumerate([-85, -85, -62]):
        pipe.handle(eid_advert(T0 + 1 + i, rssi=rssi), out)
        pipe.handle(eid_advert(T0 + 1 + i, rssi=rssi, eid=other), out)
    tracker = pipe.tracker
    # The subject already known keeps the machine's level; the new one has its own filter.
    assert tracker.evidence_rssi(EID.hex()) == tracker.filtered_rssi(EID.hex())
    faster = tracker.evidence_rssi(other.hex())
    machine = tracker.filtered_rssi(other.hex())
    assert faster is not None
    assert machine is not None
    assert faster > machine + 3.0


def test_rssi_offset_is_applied_before_the_thresholds() -> None:
    pipe = Pipeline(settings(rssi_offset_db=-15.0))
    out: list[Transition] = []
    for i in range(10):
        pipe.handle(eid_advert(T0 + i, rssi=-60), out)  # -75 after calibration: never enters
    assert out == []


def test_broken_frame_is_counted_and_the_next_good_one_still_counts() -> None:
    pipe = Pipeline(settings())
    out: list[Transition] = []
    uuid, data = encode_eddystone_eid(EID, -20)
    broken = Advertisement("C0:00:00:00:00:02", -50, T0, service_data={uuid: data[:5]})
    pipe.handle(broken, out)
    pipe.handle(eid_advert(T0), out)
    pipe.handle(eid_advert(T0 + 1.5), out)
    assert pipe.stats.decode_errors == 1
    assert pipe.last_decode_error is not None
    assert "C0:00:00:00:00:02" in pipe.last_decode_error
    assert [tr.kind for tr in out] == ["zone_enter"]


def test_store_beacon_tlm_becomes_beacon_health_and_uid_names_it() -> None:
    pipe = Pipeline(settings())
    out: list[Transition] = []
    addr = "D0:00:00:00:00:01"
    tlm_uuid, tlm = encode_eddystone_tlm(EddystoneTlmFrame(2950, 21.5, 1234, 3600.0))
    uid_uuid, uid = encode_eddystone_uid(
        EddystoneUidFrame(tx_power=-20, namespace=b"\x01" * 10, instance=b"\x02" * 6)
    )
    pipe.handle(Advertisement(addr, -70, T0, service_data={tlm_uuid: tlm}), out)
    pipe.handle(Advertisement(addr, -70, T0 + 1, service_data={uid_uuid: uid}), out)
    health = pipe.beacons[addr]
    assert (health.battery_mv, health.temperature_c, health.adv_count) == (2950, 21.5, 1234)
    assert health.uptime_s == pytest.approx(3600.0)
    assert health.beacon_id == "eddystone_uid:" + "01" * 10 + "02" * 6
    assert out == []  # places are not people: no zone events for store beacons


# --- watchdog ---------------------------------------------------------------------------
class FakeTime:
    """A clock the watchdog reads and a sleep that advances it instead of waiting."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


class StallingSource(ScannerSource):
    """Each session yields its adverts, then stalls forever like a wedged BlueZ scan."""

    name = "fake"

    def __init__(self, sessions: list[list[Advertisement] | Exception], time: FakeTime) -> None:
        self.sessions = sessions
        self.time = time
        self.starts = 0
        self.closed = 0

    def now(self) -> float:
        return self.time.now

    async def adverts(self) -> AsyncIterator[Advertisement]:
        session = self.sessions[self.starts]
        self.starts += 1
        if isinstance(session, Exception):
            raise session
        self.state = "scanning"
        try:
            for advert in session:
                await self.time.sleep(1.0)
                yield advert
            await asyncio.Event().wait()
        finally:
            self.closed += 1
            self.state = "idle"


async def take(source: ScannerSource, n: int) -> list[Advertisement]:
    got: list[Advertisement] = []
    async with asyncio.timeout(10):
        async for advert in source.adverts():
            got.append(advert)
            if len(got) == n:
                break
    return got


async def test_watchdog_restarts_a_stalled_scan_and_delivers_the_new_session() -> None:
    fake = FakeTime()
    first = [eid_advert(T0 + i) for i in range(2)]
    second = [eid_advert(T0 + 100 + i) for i in range(2)]
    inner = StallingSource([first, second], fake)
    dog = WatchdogSource(inner, 30.0, poll_s=5.0, clock=fake.clock, sleep=fake.sleep)
    got = await take(dog, 4)
    assert got == first + second
    assert (inner.starts, inner.closed, dog.restarts) == (2, 1, 1)
    assert fake.now >= 30.0  # restarted only after the configured silence


async def test_watchdog_leaves_a_live_scan_alone() -> None:
    fake = FakeTime()
    steady = [eid_advert(T0 + i) for i in range(50)]  # one per fake second, 50 s in all
    inner = StallingSource([steady], fake)
    dog = WatchdogSource(inner, 10.0, poll_s=2.0, clock=fake.clock, sleep=fake.sleep)
    assert await take(dog, 50) == steady
    assert fake.now > 10.0
    assert (inner.starts, dog.restarts) == (1, 0)


async def test_watchdog_retries_a_scan_that_fails_to_start() -> None:
    fake = FakeTime()
    ok = [eid_advert(T0)]
    inner = StallingSource([SourceError("adapter hci0 not found"), ok], fake)
    dog = WatchdogSource(inner, 10.0, clock=fake.clock, sleep=fake.sleep, restart_delay_s=3.0)
    assert await take(dog, 1) == ok
    assert (inner.starts, dog.start_failures) == (2, 1)


def test_backoff_is_jittered_and_capped() -> None:
    assert backoff_delay(0, 0.5, 30.0, lambda: 1.0) == 0.5
    assert backoff_delay(3, 0.5, 30.0, lambda: 1.0) == 4.0
    assert backoff_delay(20, 0.5, 30.0, lambda: 1.0) == 30.0
    assert backoff_delay(20, 0.5, 30.0, lambda: 0.25) == 7.5
    assert backoff_delay(500, 0.5, 30.0, lambda: 0.0) == 0.0


async def test_replay_skips_and_counts_a_bad_line_and_keeps_its_neighbours(tmp_path: Path) -> None:
    uuid, data = encode_eddystone_eid(EID, -20)
    lines = [
        json.dumps(
            {
                "format": "proxima-trace",
                "version": 1,
                "store_id": "s1",
                "start": "2026-01-01T10:00:00Z",
            }
        )
    ]
    for t, payload in ((0.0, data.hex()), (0.5, "zz-not-hex"), (1.0, data.hex())):
        lines.append(
            json.dumps(
                {
                    "t": t,
                    "kind": "adv",
                    "gateway_id": "gw-1",
                    "address": "C0:00:00:00:00:01",
                    "rssi": -60,
                    "service_data": {uuid: payload},
                }
            )
        )
    trace = tmp_path / "t.jsonl"
    trace.write_text("\n".join(lines) + "\n")
    source = TraceSource.from_file(trace, "gw-1")
    got = [a async for a in source.adverts()]
    assert [a.at - source.start for a in got] == [0.0, 1.0]
    assert source.bad_records == 1
    assert source.state == "finished"


class Endless(ScannerSource):
    """A source the agent has never heard of: it must get by on the ScannerSource API."""

    name = "custom"

    def __init__(self, *, supervised: bool = False) -> None:
        self.supervised = supervised
        self.stall_timeouts: list[float] = []

    def now(self) -> float:
        return 0.0

    async def adverts(self) -> AsyncIterator[Advertisement]:
        await asyncio.Event().wait()
        yield  # type: ignore[misc]  # never reached: an idle radio

    def set_stall_timeout(self, seconds: float) -> None:
        self.stall_timeouts.append(seconds)


async def test_the_agent_asks_a_source_what_it_needs_and_never_its_class(tmp_path: Path) -> None:
    settings = EdgeSettings(store_id="store-1", gateway_id="gw-door", zone_id="entrance")

    def agent(source: ScannerSource, name: str) -> EdgeAgent:
        return EdgeAgent(
            settings,
            source,
            Topics("t-sources"),
            mqtt_url="mqtt://127.0.0.1:1",  # never connected: the agent does not run here
            outbox_path=tmp_path / f"{name}.sqlite",
        )

    watched = agent(Endless(), "watched")
    assert isinstance(watched.source, WatchdogSource)  # an endless radio gets a watchdog
    assert not watched._clocked
    own = Endless(supervised=True)  # one that restarts its own stalled scans does not
    trusted = agent(own, "trusted")
    assert trusted.source is own
    assert trusted.apply_config(b'{"watchdog_s": 42}')
    assert own.stall_timeouts == [42.0]  # live config reaches it through the interface
    for a in (watched, trusted):
        await a.outbox.close()
