"""``proxima bench detection``: the gateways' decision path and the arrival rule, offline."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from contracts.models import AlertKind
from deploy.cli import app
from edge.fusion import FUSION_GATEWAY_ID, evidence_of_transition
from edge.pipeline import to_draft
from edge.settings import EdgeSettings
from simulators.detection import (
    Signal,
    app_signals,
    fused_transitions,
    run_detection_bench,
    visit_alerts,
)
from simulators.engine import Simulation, build_scenario
from simulators.layout import DeviceClass, load_layout

# The advertising classes only: this offline bench reads adverts, not app lines.
ADVERTISING = {"device_classes": {"android_app": 0.9, "vip_tag": 0.1}}


def test_detection_bench_scores_a_simulated_rush_like_the_real_pipeline() -> None:
    # Seed 21 is the trace the end-to-end test replays through Mosquitto, Kafka and Redis:
    # 17 consenting visits, all alerted once, nobody else.
    got = run_detection_bench([21], population=ADVERTISING)
    assert got["expected_visits"] == 17
    assert got["recall"] == 1.0
    assert got["precision"] == 1.0
    assert got["alerts_without_consent"] == 0
    assert got["max_alerts_per_visit"] == 1
    assert got["latency_p50_s"] is not None
    assert got["latency_p50_s"] > 0


def test_without_lingering_the_lingerer_is_missed() -> None:
    # Rush seed 30 (advertising classes): cust-bout-0059 lingers at the entrance, never
    # close enough to the door gateway for its strong enter; lingering catches them.
    without = run_detection_bench(
        [30], defaults=EdgeSettings(linger_db=None), population=ADVERTISING, app=False
    )
    assert without["recall"] < 1.0
    assert "cust-bout-0059@837s (lingerer, android_app)" in without["missed"]
    with_lingering = run_detection_bench([30], population=ADVERTISING, app=False)
    assert "cust-bout-0059" not in str(with_lingering["missed"])


def test_bench_detection_command_names_a_bad_seed_list() -> None:
    result = CliRunner().invoke(app, ["bench", "detection", "--seeds", "21,x"])
    assert result.exit_code == 2
    assert "--seeds must be integers" in result.output


@pytest.mark.integration
@pytest.mark.timeout(180)
@pytest.mark.parametrize("layout", ["boutique", "boutique-pair"])
async def test_the_bench_predicts_the_fused_replay_event_for_event(
    namespace: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, layout: str
) -> None:
    # The same evidence, the same windows, the same StorePresence: what the bench decides
    # offline is what the store's coordinator publishes through Mosquitto in a replay.
    from contracts.models import parse_batch
    from contracts.services import ServiceSettings
    from simulators.replay import replay_trace
    from tests.edge.support import Collector

    full = tmp_path / "full.jsonl"
    build_scenario(
        "boutique-rush", seed=21, hours=6 / 60, population=ADVERTISING, layout=layout
    ).write(full)
    trace = tmp_path / "rush.jsonl"  # no consent lines: there is no stream to wait for
    with full.open(encoding="utf-8") as fh:
        trace.write_text("".join(line for line in fh if '"consent_' not in line), encoding="utf-8")
    monkeypatch.setenv("PROXIMA_NAMESPACE", namespace)
    services = ServiceSettings()
    async with Collector(services.mqtt, services.topics.all_gateway_events()) as col:
        stats = await replay_trace(trace, None)
        n = stats[FUSION_GATEWAY_ID][1]
        async with asyncio.timeout(30):
            while sum(len(parse_batch(b)) for _, b, _ in col.batches) < n:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    replayed = [
        (e.kind.value, e.subject.id, e.zone_id, e.observed_at.timestamp(), e.evidence)
        for _, payload, _ in col.batches
        for e in parse_batch(payload)
    ]
    _, fused = fused_transitions(trace)
    predicted = [
        (ev.kind, ev.subject, tr.zone_id, ev.at, to_draft(tr).evidence)
        for gw, tr in fused
        for ev in [evidence_of_transition(gw, tr)]
    ]
    assert len(predicted) >= 10  # a busy six minutes: 19 on this seed and radio
    assert {e[0] for e in predicted} >= {"zone_enter", "zone_exit"}
    if layout == "boutique-pair":  # the door pair's rule, decided at a window's end
        assert any(e[4] is not None and e[4].rule == "door_over_street" for e in predicted)
    assert replayed == predicted


def test_a_window_shopper_at_the_shop_front_is_not_put_on_the_floor() -> None:
    # Rush seed 47, the gateways alone: lingering 10 dB under the floor's enter threshold
    # (-92 dBm, over 20 s) took in a window shopper at the shop front, as it takes in
    # anyone the floor gateway hears at all. (Found on the draw before device classes; on
    # today's draw of the advertising classes the old level no longer shows it: the test
    # still holds the floor to no false arrival there.)
    got = run_detection_bench([47], population=ADVERTISING, app=False)
    assert got["false_alerts"] == 0
    assert got["precision"] == 1.0


def _signal(at: float, cid: str, in_store: bool, zone: str | None = None) -> Signal:
    return Signal(T0 + at, cid, in_store, zone, uuid.uuid4())


T0 = 1_770_000_000.0
CONSENT = {"ana": (True, None), "bea": (False, None), "cal": (True, 100.0)}


def test_the_bench_visit_rule_is_approach_then_one_arrival() -> None:
    signals = [
        _signal(0, "ana", False),  # the geofence
        _signal(60, "ana", True, "entrance"),
        _signal(70, "ana", True, "floor"),
        _signal(80, "ana", False),
        _signal(5, "bea", True, "entrance"),  # no consent: nothing
        _signal(150, "cal", True, "entrance"),  # revoked at 100 s: nothing
        _signal(20_000, "ana", False),  # after the revisit gap: a new visit, approaching
    ]
    alerts, times = visit_alerts(CONSENT, T0, "s1", signals)
    assert [(a.customer_id, a.kind, times[str(a.caused_by[0])] - T0) for a in alerts] == [
        ("ana", AlertKind.APPROACH, 0),
        ("ana", AlertKind.ARRIVAL, 60),
        ("ana", AlertKind.APPROACH, 20_000),
    ]


def test_in_store_evidence_first_is_the_arrival_and_a_later_geofence_adds_nothing() -> None:
    alerts, _ = visit_alerts(
        CONSENT, T0, "s1", [_signal(0, "ana", True, "floor"), _signal(30, "ana", False)]
    )
    assert [a.kind for a in alerts] == [AlertKind.ARRIVAL]


def test_app_lines_become_signals_by_device_and_beacon_zone(tmp_path: Path) -> None:
    layout = load_layout("boutique")
    entrance = next(b for b in layout.beacons if b.zone_id == "entrance")
    assert entrance.app_min_rssi is not None
    header = {"format": "proxima-trace", "version": 1, "store_id": layout.store_id,
              "start": "2026-02-01T09:00:00Z"}  # fmt: skip
    region = {"uuid": entrance.uuid, "major": entrance.major, "minor": entrance.minor}
    lines = [
        header,
        # The fix is well inside the 100 m circle: the ingest's engine enters on it, and the
        # OS's late report that follows is a repeat.
        {
            "t": 1.0,
            "kind": "app",
            "device_id": "dev-ana",
            "event": "location",
            "lat": layout.geofence.lat,
            "lon": layout.geofence.lon,
            "accuracy_m": 20.0,
        },
        {"t": 2.0, "kind": "app", "device_id": "dev-ana", "event": "geofence_enter"},
        {"t": 3.0, "kind": "app", "device_id": "dev-ana", "event": "location", "lat": 1},
        # The entrance region has a min_rssi (the layout's app_min_rssi): ranged weaker, an
        # approach on the street; at or above it, the entrance.
        {
            "t": 9.0,
            "kind": "app",
            "device_id": "dev-ana",
            "event": "beacon_region_enter",
            **region,
            "rssi": entrance.app_min_rssi - 1,
        },
        {"t": 9.5, "kind": "app", "device_id": "dev-zed", "event": "geofence_enter"},  # nobody
        {  # a region the store does not know (the ingest refuses it)
            "t": 10.0,
            "kind": "app",
            "device_id": "dev-ana",
            "event": "beacon_region_enter",
            "uuid": "00" * 16,
            "major": 1,
            "minor": 1,
        },
        {
            "t": 11.0,
            "kind": "app",
            "device_id": "dev-ana",
            "event": "beacon_region_enter",
            **region,
            "rssi": entrance.app_min_rssi,
        },
        {
            "t": 12.0,
            "kind": "app",
            "device_id": "old",
            "event": "geofence_enter",
            "customer_id": "bea",
        },
    ]
    trace = tmp_path / "t.jsonl"
    trace.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    got = app_signals(trace, {"dev-ana": "ana"}, layout)
    start = datetime(2026, 2, 1, 9, 0, tzinfo=UTC).timestamp()
    assert [(s.at - start, s.customer_id, s.in_store, s.zone_id) for s in got] == [
        (1.0, "ana", False, None),
        (9.0, "ana", False, "street"),
        (11.0, "ana", True, "entrance"),
        (12.0, "bea", False, None),  # an older trace names the customer on the line
    ]


def test_the_bench_reports_per_device_class_and_the_approach_lead() -> None:
    got = run_detection_bench([21])
    assert set(got["by_class"]) <= {
        "android_app", "iphone_app", "vip_tag", "no_app", "staff", "unknown"
    }  # fmt: skip
    assert sum(f["expected_visits"] for f in got["by_class"].values()) == got["expected_visits"]
    assert got["approach_lead_p50_s"] is not None


def test_an_iphone_visit_s_floor_is_the_app_s_first_ranging_second_after_the_door() -> None:
    from simulators.detection import floor_figures, ios_floors
    from simulators.score import Visit

    def visit(cid: str, arrive: float, alerts: list[float], cls: str = "iphone_app") -> Visit:
        return Visit(cid, arrive, arrive + 300.0, True, True, "visit", alerts, device_class=cls)

    ranging = {
        "ana": [(0.5, [(90.0, 120.0)])],  # awake at her door crossing (100.2)
        "bea": [(0.0, [(90.0, 120.0)]), (0.0, [(1000.0, 1030.0)])],  # woke again later, in
        "cid": [(0.0, [(10.0, 40.0)])],  # never woke after her door crossing
        "dan": [(0.0, [(90.0, 120.0)])],  # an Android phone: not iOS's to hold up
    }
    visits = [
        visit("ana", 100.2, [106.5]),
        visit("bea", 995.0, [1012.0]),
        visit("cid", 100.0, [130.0]),
        visit("dan", 100.0, [104.0], "android_app"),
        visit("ana", 2000.0, []),  # missed: no latency to split
    ]
    floors = ios_floors(ranging, visits)
    assert floors == [pytest.approx((0.3, 6.0)), pytest.approx((6.0, 11.0))]
    figures = floor_figures(floors)
    assert figures["iphone_floor_visits"] == 2
    assert figures["iphone_os_floor_p50_s"] == pytest.approx(3.15)
    assert figures["iphone_over_floor_p95_s"] == pytest.approx(10.75)


def _walk_in(layout: str, cls: DeviceClass = "android_app") -> tuple[Simulation, float, str]:
    """A staged visitor of class ``cls`` (her phone in a bag) walking in through the door of
    ``layout`` and on to the floor: the simulation, her door crossing (s of trace time) and
    her customer id."""
    import dataclasses
    import random

    from simulators.engine import build
    from simulators.movement import Walker
    from simulators.population import Person

    sim = build(
        layout,
        hours=5 / 60,
        seed=3,
        population={"customers": 1, "staff": 0, "static_noise": 0},
        arrivals={"hourly": [0]},
    )
    lay = sim.layout
    door = lay.doors[0]
    cust = dataclasses.replace(sim.customers[0], device_class=cls)
    walker = Walker(lay, random.Random(1), 10.0, door.x + 10.0, -1.5, lay.street.id)
    walker.walk_to(door.x + 0.2, -0.6, 1.2)
    walker.through(door, door.b, 0.9)
    walker.walk_to(door.x, 8.0, 0.9)
    walker.browse(60.0)
    carries = ["eid"] if cls == "android_app" else ["phone"]
    person = Person(
        cust.customer_id, "customer", "visit", walker, cust, carries, 1,
        device_class=cls, carry="bag",
    )  # fmt: skip
    sim.stage([person], [cust])
    arrive = next(e.t for e in walker.truth if e.event == "arrive")
    assert cust.customer_id is not None
    return sim, arrive, cust.customer_id


def test_a_door_pair_s_floor_is_where_the_door_s_median_level_first_clears_the_street_s() -> None:
    from simulators.detection import pair_floor_figures, pair_floors
    from simulators.score import Visit

    sim, arrive, cid = _walk_in("boutique-pair")

    def visit(alerts: list[float], cls: str = "android_app") -> Visit:
        return Visit(cid, arrive, arrive + 60.0, True, True, "visit", alerts, device_class=cls)

    floors, never = pair_floors(sim, [visit([arrive + 5.0])], 6.0)
    assert never == 0
    assert len(floors) == 1
    floor, over = floors[0]
    # She walks in at 0.9 m/s under the door gateway, 2.5 m inside: within a few seconds.
    assert 0.0 < floor < 3.0
    assert over == pytest.approx(5.0 - floor)
    (traj,) = [p.walker.traj for p in sim.people]

    def gain(t: float) -> float:
        return sim.median_dbm("gw-door", traj, t) - sim.median_dbm("gw-street", traj, t)

    assert gain(arrive + floor) >= 6.0 > gain(arrive + floor - 0.1)
    assert gain(arrive - 3.0) < 0  # on the pavement the street gateway hears her louder
    # Only alerted advertising visitors count; a margin the walk never gives is counted apart.
    assert pair_floors(sim, [visit([]), visit([arrive + 5.0], "iphone_app")], 6.0) == ([], 0)
    assert pair_floors(sim, [visit([arrive + 5.0])], 40.0) == ([], 1)
    figures = pair_floor_figures(floors, 1)
    assert figures["pair_floor_visits"] == 1
    assert figures["pair_floor_never"] == 1
    assert figures["pair_floor_p50_s"] == pytest.approx(floor)


def test_a_store_without_a_door_pair_has_no_pair_floor() -> None:
    from simulators.detection import pair_floors
    from simulators.score import Visit

    sim, arrive, cid = _walk_in("boutique")
    v = Visit(cid, arrive, arrive + 60.0, True, True, "visit", [arrive + 5.0])
    v.device_class = "android_app"
    assert pair_floors(sim, [v], 6.0) == ([], 0)


def test_the_iphone_app_s_pair_floor_is_where_an_in_store_beacon_first_counts(
    tmp_path: Path,
) -> None:
    from simulators.detection import app_pair_floors
    from simulators.score import Visit

    sim, arrive, cid = _walk_in("boutique-pair", "iphone_app")
    sim.write(tmp_path / "walk-in.jsonl")  # draws the side lines: the app's beacons
    v = Visit(cid, arrive, arrive + 60.0, True, True, "visit", [arrive + 6.0])
    v.device_class = "iphone_app"
    floors, never = app_pair_floors(sim, [v])
    assert never == 0
    assert len(floors) == 1
    floor, over = floors[0]
    assert 0.0 < floor < 4.0
    assert over == pytest.approx(6.0 - floor)
    side = sim.side
    assert side is not None
    (person,) = sim.people
    beacons = {b.id: b for b in sim.layout.beacons}

    def counts(t: float) -> bool:  # the entrance or the floor beacon: bars, 6 dB margin
        front = side.median_dbm(person, beacons["bcn-street"], t)
        return any(
            (level := side.median_dbm(person, beacons[b], t)) >= bar and level - front >= 6.0
            for b, bar in (("bcn-entrance", -82.0), ("bcn-floor", -94.0))
        )

    assert counts(arrive + floor)
    assert not counts(arrive + floor - 0.1)
    # Not alerted: no floor to split; left before it: counted as never.
    assert app_pair_floors(
        sim, [Visit(cid, arrive, arrive + 60.0, True, True, "visit", [], device_class="iphone_app")]
    ) == ([], 0)
    short = Visit(
        cid,
        arrive,
        arrive + floor / 2,
        True,
        True,
        "visit",
        [arrive + 6.0],
        device_class="iphone_app",
    )
    assert app_pair_floors(sim, [short]) == ([], 1)
    # Without a storefront beacon the app has nothing to compare with: no such floor.
    plain, arrive, cid = _walk_in("boutique", "iphone_app")
    plain.write(tmp_path / "plain.jsonl")
    v = Visit(cid, arrive, arrive + 60.0, True, True, "visit", [arrive + 6.0])
    v.device_class = "iphone_app"
    assert app_pair_floors(plain, [v]) == ([], 0)


def test_door_evidence_ages_the_street_s_level_only_while_she_is_outside_and_loud_at_the_door() -> (
    None
):
    import math

    from beacons.eid import compute_eid
    from beacons.fusion import Evidence
    from simulators.detection import door_evidence, door_evidence_figures
    from simulators.score import Visit

    sim, arrive, cid = _walk_in("boutique-pair")
    (cust,) = sim.customers
    start = sim.start.timestamp()

    def heard(gateway: str, t: float, rssi: float, eid: bytes | None = None) -> Evidence:
        at = start + t
        eid = eid or compute_eid(cust.identity_key, cust.rotation_exponent, int(at))
        return Evidence(gateway, eid.hex(), "sighting", at, rssi)

    # She walks up the pavement from 10 s and crosses the door at ``arrive`` (~19 s).
    assert 10.0 < arrive - 8.0 < arrive - 0.5
    sightings = [
        heard("gw-street", arrive - 8.0, -70.0),
        heard("gw-door", arrive - 7.0, -74.0),
        heard("gw-door", arrive - 4.0, -75.0),  # the street's -70 is 4 s old: counts
        heard("gw-street", arrive - 3.0, -64.0),
        heard("gw-door", arrive - 2.5, -85.0),  # under peak_min_rssi: no age
        heard("gw-street", arrive - 2.0, -63.0),
        heard("gw-door", arrive - 1.0, -72.0),  # outside, 1 s after the street's -63
        heard("gw-door", arrive + 1.0, -70.0),  # inside: not counted
        heard("gw-door", arrive + 2.5, -66.0),
        heard("gw-door", arrive + 4.0, -60.0),  # after EARLY_S
        heard("gw-street", arrive + 4.0, -84.0),
        heard("gw-floor", arrive - 4.0, -70.0),  # no gateway of the pair
        heard("gw-door", arrive - 4.0, -50.0, eid=bytes(8)),  # nobody enrolled
    ]

    def visit(cls: str, expected: bool = True) -> Visit:
        return Visit(cid, arrive, arrive + 60.0, True, expected, "visit", [], device_class=cls)

    visits = [visit("android_app"), visit("iphone_app"), visit("vip_tag", expected=False)]
    found = door_evidence(sim, sightings, visits)
    assert found.ages == [pytest.approx(4.0), pytest.approx(1.0)]
    assert found.outside == [-74.0, -75.0, -85.0, -72.0]
    assert found.entrants == [-66.0]  # the expected advertising visit only, its first 3 s
    figures = door_evidence_figures(found, 3.0)
    assert figures["pair_street_ages"] == 2
    assert figures["pair_street_age_max_s"] == pytest.approx(4.0)
    assert figures["pair_street_ages_over_2s"] == 1
    assert figures["pair_street_ages_over_window"] == 1
    assert door_evidence_figures(found, 5.0)["pair_street_ages_over_window"] == 0
    assert figures["pair_door_outside_p99_dbm"] == pytest.approx(-72.1)
    assert figures["pair_entrants_door_heard_3s"] == 1.0
    assert figures["pair_entrants_over_outside_p99_3s"] == 1.0
    # Unheard by the door in her first seconds: -inf, counted against both shares.
    unheard = door_evidence(sim, sightings[:7], visits)
    assert unheard.entrants == [-math.inf]
    assert door_evidence_figures(unheard, 3.0)["pair_entrants_door_heard_3s"] == 0.0
    # No sightings (the gateways judged alone) or a store without a pair: no evidence.
    assert door_evidence(sim, [], visits) == ([], [], [])
    plain, *_ = _walk_in("boutique")
    assert door_evidence(plain, sightings, visits) == ([], [], [])


def test_median_dbm_is_the_level_the_simulator_draws_around(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The floors are only as good as Simulation.median_dbm's copy of the hot loop's terms:
    # every mean the engine computes for the walker's phone (each gateway, each packet) is
    # median_dbm's, less the phone's carry loss and plus its transmit offset.
    sim, _, _ = _walk_in("boutique-pair")
    advertise, out_of_reach = sim._advertise, sim.radio.out_of_reach
    current: dict[str, Any] = {}
    seen: list[tuple[Any, float, str, float]] = []

    def spy_advertise(dev: Any, t: float, tr: float) -> Iterator[str]:
        current.update(dev=dev, t=t)
        yield from advertise(dev, t, tr)

    def spy_reach(link: Any, mean: float) -> bool:
        dev = current["dev"]
        if dev.traj is not None:
            seen.append((dev, current["t"], link.gateway_id, mean))
        return out_of_reach(link, mean)

    monkeypatch.setattr(sim, "_advertise", spy_advertise)
    monkeypatch.setattr(sim.radio, "out_of_reach", spy_reach)
    sim.write(tmp_path / "walk-in.jsonl")
    gateways = {gw for _, _, gw, _ in seen}
    assert {"gw-door", "gw-street", "gw-floor"} <= gateways
    assert len(seen) > 300  # every gateway, each of ~80 packets
    for dev, t, gw, mean in seen:
        expected = sim.median_dbm(gw, dev.traj, t) - dev.carry_db + dev.tx_offset_db
        assert expected == pytest.approx(mean, abs=1e-9), (gw, t)
