"""Device classes in the simulator: what each class puts on air and what its app reports."""

from __future__ import annotations

import itertools
import json
import random
import statistics
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from beacons.resolver import EidResolver
from contracts.trace import AdvRecord, read_trace
from simulators.devices import IOS_REGION_EXIT_AFTER_S, region_transitions
from simulators.engine import Simulation, build
from simulators.layout import CUSTOMER_CLASSES, StoreLayout, load_layout
from simulators.population import make_customers
from simulators.radio import CARRY_LOSS_DB

START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
BUSY = {"p_enrolled": 0.8, "customers": 80, "p_window_shopper": 0.2}


def _sim(**population: Any) -> Simulation:
    return build("boutique", hours=0.5, seed=5, start=START, population={**BUSY, **population},
                 arrivals={"hourly": [120]})  # fmt: skip


@pytest.fixture(scope="module")
def mixed() -> tuple[Simulation, list[dict[str, Any]]]:
    sim = _sim()
    return sim, [json.loads(line) for line in sim.lines()][1:]


def test_the_default_shares_are_stated_in_every_layout_and_respected_over_a_population() -> None:
    for name in ("boutique", "flagship"):
        shares = load_layout(name).population.device_classes
        assert shares == {"iphone_app": 0.55, "android_app": 0.30, "vip_tag": 0.05, "no_app": 0.10}
    layout = load_layout("boutique")
    layout = layout.model_copy(
        update={"population": layout.population.model_copy(update={"customers": 4000})}
    )
    got = Counter(c.device_class for c in make_customers(layout, 3, 3600.0))
    for cls, share in layout.population.device_classes.items():
        assert abs(got[cls] / 4000 - share) < 0.025, (cls, got)


def test_a_scenario_can_state_its_own_mix() -> None:
    sim = _sim(device_classes={"vip_tag": 1.0})
    assert {c.device_class for c in sim.customers} == {"vip_tag"}
    data = load_layout("boutique").model_dump()
    data["population"]["device_classes"] = {"staff": 1.0}
    with pytest.raises(ValidationError, match="device_classes: staff are not classes"):
        StoreLayout.model_validate(data)


def test_every_truth_line_about_a_person_names_their_device_class(
    mixed: tuple[Simulation, list[dict[str, Any]]],
) -> None:
    sim, lines = mixed
    cls_of = {p.pid: p.device_class for p in sim.people}
    truth = [d for d in lines if d["kind"] == "truth"]
    assert truth
    for d in truth:
        assert d["device_class"] == cls_of.get(d["customer_id"], d["device_class"]), d
        assert d["device_class"] in (*CUSTOMER_CLASSES, "staff", "unknown")
    seen = {d["device_class"] for d in truth}
    assert {"iphone_app", "android_app", "no_app", "staff", "unknown"} <= seen


def test_app_lines_name_a_device_never_a_customer(
    mixed: tuple[Simulation, list[dict[str, Any]]],
) -> None:
    sim, lines = mixed
    app = [d for d in lines if d["kind"] == "app"]
    by_device = {c.device_id: c for c in sim.customers}
    assert {"beacon_region_enter", "geofence_enter", "location"} <= {d["event"] for d in app}
    for d in app:
        assert len(d["device_id"]) == 32
        int(d["device_id"], 16)  # hex, as the ingest wants it
        if d["event"] in ("consent_revoke", "consent_grant"):
            continue  # an account action: it names the customer it changes
        assert "customer_id" not in d, d
        cust = by_device[d["device_id"]]
        assert cust.device_class in ("iphone_app", "android_app")  # tags and no-app: silent
        if d["event"].startswith("geofence") or d["event"] == "location":
            assert cust.shares_location
        if d["event"].startswith("beacon_region"):
            assert cust.device_class == "iphone_app"  # Android's app advertises instead


def test_an_iphone_app_advertises_nothing_of_its_own_but_reports_beacon_regions(
    mixed: tuple[Simulation, list[dict[str, Any]]],
) -> None:
    sim, lines = mixed
    iphones = [c for c in sim.customers if c.device_class == "iphone_app"]
    visitors = {p.pid for p in sim.people if p.device_class == "iphone_app"}
    assert len(visitors) >= 5
    for dev in sim.devices:
        if dev.did.split("/")[0] in visitors:
            assert dev.kind == "phone" or dev.kind.startswith("wearable:"), dev.did
    resolver = EidResolver(drift_windows=1)
    for c in iphones:
        resolver.add(c.customer_id, c.identity_key, c.rotation_exponent)
    _, records = read_trace(sim.lines())
    for r in records:
        if isinstance(r, AdvRecord):
            for data in r.service_data.values():
                if data.startswith("30"):  # an Eddystone-EID frame
                    eid = bytes.fromhex(data[4:20])
                    assert resolver.resolve(eid, sim.t0 + int(r.t)) is None
    reporting = {
        d["device_id"] for d in lines if d["kind"] == "app" and "beacon_region" in d["event"]
    }
    assert len(reporting) >= 5
    assert {"uuid", "major", "minor"} <= next(
        set(d) for d in lines if d["kind"] == "app" and d["event"] == "beacon_region_enter"
    )


def test_a_vip_tag_advertises_its_eid_at_a_fixed_interval() -> None:
    sim = _sim(device_classes={"vip_tag": 1.0}, tag_interval_s=0.5)
    tags = [d for d in sim.devices if d.kind == "tag"]
    assert len(tags) >= 5
    assert {d.interval for d in tags} == {0.5}
    # On air: one tag's adverts heard by the door gateway come 0.5 s apart (or a multiple,
    # when one was lost), never closer, whatever its carrier does.
    resolver = EidResolver(drift_windows=1)
    for c in sim.customers:
        resolver.add(c.customer_id, c.identity_key, c.rotation_exponent)
    times: dict[str, list[float]] = defaultdict(list)
    _, records = read_trace(sim.lines())
    for r in records:
        if isinstance(r, AdvRecord) and r.gateway_id == "gw-door":
            for data in r.service_data.values():
                eid = bytes.fromhex(data[4:20]) if data.startswith("30") else None
                if eid and resolver.resolve(eid, sim.t0 + int(r.t)) is not None:
                    times[r.address].append(r.t)
    gaps = [b - a for ts in times.values() for a, b in itertools.pairwise(ts) if b - a < 5]
    assert len(gaps) > 200
    assert min(gaps) >= 0.49
    assert 0.49 <= statistics.median(gaps) <= 0.52


def test_android_advertises_faster_on_screen_and_bags_and_pockets_muffle_every_class() -> None:
    sim = _sim(device_classes={"android_app": 1.0})
    pop = sim.layout.population
    carried = [(p, kind) for p in sim.people for kind in p.carries]
    carries: set[str] = set()
    on_screen: set[str] = set()
    for dev, (who, kind) in zip(sim.devices[-len(carried) :], carried, strict=True):
        assert dev.kind == kind
        if kind not in ("eid", "phone"):
            continue
        assert dev.carry_db == CARRY_LOSS_DB[who.carry]
        carries.add(who.carry)
        if dev.kind == "eid" and who.device_class == "android_app":
            assert dev.interval in (
                *pop.android_foreground_intervals_s,
                *pop.android_background_intervals_s,
            )
            if who.carry != "hand":  # a phone in a pocket or bag is not on screen
                assert dev.interval in pop.android_background_intervals_s
            if dev.interval not in pop.android_background_intervals_s:
                on_screen.add(who.carry)
    assert carries == {"hand", "pocket", "bag"}
    assert on_screen == {"hand"}  # 100 ms: only an app on screen advertises that fast


def test_ios_reports_a_region_seconds_after_hearing_it_and_leaves_it_after_30_s_of_silence() -> (
    None
):
    rng = random.Random(1)
    assert region_transitions([], rng) == []
    heard = [10.0, 11.0, 13.0, 40.0, 41.0, 100.0]  # a gap of 29 s stays, one of 59 s leaves
    got = region_transitions(heard, rng)
    assert [tr.entered for tr in got] == [True, False, True, False]
    assert 10.0 < got[0].t <= 70.0
    assert got[1].t >= 41.0 + IOS_REGION_EXIT_AFTER_S
    assert got[2].t > 100.0
    assert got[3].t >= 100.0 + IOS_REGION_EXIT_AFTER_S
    delays = [region_transitions([0.0], random.Random(s))[0].t for s in range(500)]
    assert 3.0 < statistics.median(delays) < 10.0  # typically a few seconds ...
    assert max(delays) > 20.0  # ... tens of seconds at worst in the background


def test_the_app_ranges_on_a_region_wake_and_reports_again_once_a_beacon_is_near() -> None:
    """On iOS's wake the app ranges every store beacon (~30 s; all along while a location
    session runs): it reports its first reading of the beacon that woke it at once, and the
    first second in which any beacon reads at or above its min_rssi as that beacon's enter;
    never after the window, never more than two reports."""
    from simulators.devices import IOS_RANGING_WINDOW_S, Ranged

    def packets(*spans: tuple[float, float, float]) -> list[tuple[float, float]]:
        """(from, to, dBm) spans of packets every 0.5 s."""
        return [(a + k * 0.5, dbm) for a, b, dbm in spans for k in range(int((b - a) / 0.5))]

    window = IOS_RANGING_WINDOW_S
    walk_in = packets((100.0, 104.0, -86.0), (104.0, 200.0, -68.0))
    assert _plain_enters([Ranged(walk_in, None)], 0, 100.0) == [(100.0, 0, None)]  # no ranging
    door = Ranged(walk_in, -75.0)
    assert _plain_enters([door], 0, 100.0) == [(101.0, 0, -86.0), (105.0, 0, -68.0)]
    assert _plain_enters([door], 0, 104.0) == [(105.0, 0, -68.0)]  # near from its first
    # Woken by the door beacon, near the floor beacon first: that region's enter.
    floor = Ranged(packets((100.0, 103.5, -95.0), (103.5, 200.0, -80.0)), -88.0)
    assert _plain_enters([Ranged(packets((100.0, 200.0, -86.0)), -75.0), floor], 0, 100.0) == [
        (101.0, 0, -86.0),
        (104.0, 1, -80.0),
    ]
    passer_by = Ranged(packets((200.0, 260.0, -84.0)), -75.0)
    assert _plain_enters([passer_by], 0, 200.0) == [(201.0, 0, -84.0)]
    late = Ranged(
        packets((300.0, 300.0 + window + 5, -86.0), (300.0 + window + 5, 400.0, -60.0)), -75.0
    )
    assert _plain_enters([late], 0, 300.0) == [(301.0, 0, -86.0)]  # near only after the window
    # ... unless the app runs anyway (a location session inside the geofence) until then.
    assert _plain_enters([late], 0, 300.0, t_exit=400.0, running=[(290.0, 390.0)])[-1] == (
        300.0 + window + 5,
        0,
        -73.0,
    )  # fmt: skip (the second of the first loud packets: -86 and -60 average -73)
    gone = Ranged(packets((400.0, 402.0, -80.0)), -75.0)  # nothing heard after the wake
    assert _plain_enters([gone], 0, 405.0) == [(405.0 + window, 0, None)]


def _packets(*spans: tuple[float, float, float]) -> list[tuple[float, float]]:
    """(from, to, dBm) spans of packets every 0.5 s."""
    return [(a + k * 0.5, dbm) for a, b, dbm in spans for k in range(int((b - a) / 0.5))]


def _plain_enters(*args: Any, **kwargs: Any) -> list[tuple[float, int, float | None]]:
    """ranged_enters' reports as (t, beacon, rssi), none of them sustained (the beacons of
    these tests have no sustained_min_rssi)."""
    from simulators.devices import ranged_enters

    enters = ranged_enters(*args, **kwargs)
    assert not any(e.sustained for e in enters)
    return [(e.t, e.beacon, e.rssi) for e in enters]


def test_an_in_store_reading_counts_only_once_it_beats_the_storefront_beacon() -> None:
    """With a storefront beacon (outside, on the shop front) and ``pair_margin_db``, a
    reading at or above min_rssi counts as in the store only when it is also that much
    louder than the storefront's loudest reading of the last 3 s: a passer-by at the open
    door reads the entrance beacon loud, the storefront beacon louder still."""
    from simulators.devices import Ranged

    front = _packets((100.0, 110.0, -62.0), (110.0, 200.0, -80.0))  # passes the front at 110
    # A passer-by: the entrance beacon reads -70 (above its -72) but never 6 dB over the
    # front, and fades with the front: never in the store; the enter is reported without
    # its reading (above the threshold the ingest would have taken it in-store).
    passing = Ranged(_packets((100.0, 110.0, -70.0), (110.0, 200.0, -95.0)), -72.0, 6.0)
    store_front = Ranged(front, None, storefront=True)
    assert _plain_enters([passing, store_front], 0, 100.0) == [(101.0, 0, None)]
    # An entrant: past the door the entrance beacon reads -66 while the front fades to
    # -80. Over the front's latest (-80) at 111, but not over its loudest of the window
    # (-62, before the door): counted once a second such reading confirms it, at 112, not
    # when the -62 has left the window (113).
    entering = Ranged(_packets((100.0, 110.0, -70.0), (110.0, 200.0, -66.0)), -72.0, 6.0)
    assert _plain_enters([entering, store_front], 0, 100.0) == [(101.0, 0, None), (112.0, 0, -66.0)]
    # One such second is not enough: a storefront second that reads low (noise, a burst
    # of losses) between loud ones lets one entrance reading through, never two.
    flicker = _packets((100.0, 120.0, -62.0))
    flicker = [(t, -80.0 if 110.0 < t <= 111.0 else db) for t, db in flicker]
    at_door = Ranged(_packets((100.0, 120.0, -70.0)), -72.0, 6.0)
    front_flicker = Ranged(flicker, None, storefront=True)
    assert _plain_enters([at_door, front_flicker], 0, 100.0) == [(101.0, 0, None)]
    # Without a margin (the layout sets none) the same entrant counts at its first reading.
    plain = Ranged(entering.heard, -72.0)
    assert _plain_enters([plain, store_front], 0, 100.0) == [(101.0, 0, -70.0)]
    # No storefront reading in the window (deep in the store): the threshold alone decides.
    inside = Ranged(_packets((300.0, 400.0, -70.0)), -72.0, 6.0)
    assert _plain_enters([inside, store_front], 0, 300.0) == [(301.0, 0, -70.0)]


def test_a_storefront_wake_is_an_approach_and_the_app_ranges_on() -> None:
    """iOS waking the app for the storefront beacon's region: reported at once without a
    reading (the ingest makes it an approach), and the app ranges the store's beacons, so
    the entrance beacon is judged from the first second she is inside."""
    from simulators.devices import Ranged

    store_front = Ranged(
        _packets((100.0, 105.0, -64.0), (105.0, 200.0, -84.0)), None, storefront=True
    )
    entrance = Ranged(_packets((100.0, 105.0, -85.0), (105.0, 200.0, -64.0)), -72.0, 6.0)
    assert _plain_enters([entrance, store_front], 1, 100.0) == [(100.0, 1, None), (107.0, 0, -64.0)]
    # A storefront beacon itself is never in the store, however loud.
    assert _plain_enters([store_front], 0, 100.0) == [(100.0, 0, None)]


def test_the_pair_window_holds_only_what_the_app_ranged() -> None:
    """The storefront's loud packets before the wake were never ranged: the app cannot
    hold them against the entrance beacon (found by review: it did, 2 s too long)."""
    from simulators.devices import Ranged

    store_front = Ranged(_packets((97.0, 100.5, -60.0)), None, storefront=True)
    entrance = Ranged(_packets((100.0, 130.0, -66.0)), -72.0, 6.0)
    assert _plain_enters([entrance, store_front], 0, 100.0) == [(101.0, 0, -66.0)]


def test_every_region_s_stay_ranges_on_the_phone_s_one_clock() -> None:
    """iOS delivers one ranging result a second per phone: whichever region woke the app,
    its readings come at the phone's ``phase`` + whole seconds, so two regions entered at
    different moments judge the same seconds (before, each stay ranged on its own clock: a
    second chance for a passer-by to cross a threshold, and a second report)."""
    from simulators.devices import Ranged

    entrance = Ranged(_packets((100.0, 103.2, -80.0), (103.2, 200.0, -66.0)), -72.0)
    floor = Ranged(_packets((100.0, 200.0, -95.0)), -88.0)
    beacons = [entrance, floor]
    by_entrance = _plain_enters(beacons, 0, 100.3, phase=0.6)
    by_floor = _plain_enters(beacons, 1, 101.9, phase=0.6)
    assert by_entrance == [(100.6, 0, -80.0), (103.6, 0, -66.0)]
    # Woken 1.6 s later by the floor's region, the app's seconds are the same: the in-store
    # enter it finds is the very one above (a phone reports it once, side_lines).
    assert by_floor[-1] == (103.6, 0, -66.0)
    # On the phone's clock, not the wake's: with phase 0 the same wake ranges at 101, 102, ...
    assert _plain_enters(beacons, 0, 100.3)[0] == (101.0, 0, -80.0)


def test_a_phone_reports_each_in_store_enter_once_whichever_regions_woke_it(
    tmp_path: Path,
) -> None:
    from simulators.engine import build_scenario

    trace = tmp_path / "rush.jsonl"
    build_scenario("boutique-rush", 21, layout="boutique-pair").write(trace)
    with trace.open(encoding="utf-8") as fh:
        lines = [json.loads(line) for line in fh if '"beacon_region_enter"' in line]
    # The storefront's, the entrance's and the floor's regions all wake a phone walking in;
    # before, each stay ranged on its own clock and reported the in-store enter it found,
    # fractions of a second apart. Now one phone's ranging seconds are one second apart.
    times: dict[tuple[str, int], list[float]] = defaultdict(list)
    for line in lines:
        times[line["device_id"], line["minor"]].append(line["t"])
    assert sum(len(ts) for ts in times.values()) > 50
    gaps = [b - a for ts in times.values() for a, b in itertools.pairwise(sorted(ts))]
    assert min(gaps) >= 1.0


def test_a_reading_at_the_bars_counts_only_once_another_confirms_it() -> None:
    """iOS's reading of a second is a mean of packets, a few dB either side of the level: a
    reading that clears the threshold and the storefront's margin by 2 dB counts at once,
    one within 2 dB of them only with a second in-store reading within 2 s (a window
    shopper at the glass reads the entrance beacon at its bar now and then, on noise)."""
    from simulators.devices import APP_CONFIRM_DB, Ranged

    assert APP_CONFIRM_DB == 2.0
    # (A second's reading is the mean of the packets of the second up to it.)
    # At the threshold once, then below it: never in the store (the first reading at the
    # wake, -74, is reported below the bar: an approach).
    spike = _packets((100.0, 103.5, -74.0), (103.5, 104.5, -72.0), (104.5, 200.0, -76.0))
    assert _plain_enters([Ranged(spike, -72.0)], 0, 100.0) == [(101.0, 0, -74.0)]
    # At it twice, 2 s apart: in at the second.
    twice = _packets(
        (100.0, 103.5, -74.0), (103.5, 104.5, -72.0), (104.5, 105.5, -76.0), (105.5, 200.0, -71.0)
    )
    assert _plain_enters([Ranged(twice, -72.0)], 0, 100.0) == [(101.0, 0, -74.0), (106.0, 0, -71.0)]
    # 2 dB over it: in at once.
    clear = _packets((100.0, 103.5, -74.0), (103.5, 200.0, -70.0))
    assert _plain_enters([Ranged(clear, -72.0)], 0, 100.0) == [(101.0, 0, -74.0), (104.0, 0, -70.0)]
    # The storefront's margin is a bar too: 6 dB over the front is at it, 8 dB clear of it.
    front = Ranged(_packets((100.0, 200.0, -78.0)), None, storefront=True)
    at_margin = Ranged(_packets((100.0, 103.5, -80.0), (103.5, 104.5, -72.0)), -80.0, 6.0)
    assert _plain_enters([at_margin, front], 0, 100.0) == [(101.0, 0, None)]
    over = Ranged(_packets((100.0, 103.5, -80.0), (103.5, 200.0, -70.0)), -80.0, 6.0)
    assert _plain_enters([over, front], 0, 100.0) == [(101.0, 0, None), (104.0, 0, -70.0)]


def test_a_bagged_phone_read_in_the_store_for_seconds_is_a_sustained_enter() -> None:
    """A phone in a bag walks in reading the entrance beacon at -78 dBm, under its -72
    threshold, for as long as she stays: four readings at or above its sustained bar (-82)
    in eight ranged seconds, each 6 dB over the storefront's of the last 3 s, with the
    loudest 6 dB over the storefront's loudest of those eight seconds, make an enter
    marked sustained, with that loudest reading."""
    from simulators.devices import AppEnter, Ranged, ranged_enters

    # The storefront is loud while she passes under it (to 110), then behind her.
    store_front = Ranged(
        _packets((100.0, 110.0, -64.0), (110.0, 200.0, -90.0)), None, storefront=True
    )
    walk_in = _packets((100.0, 110.0, -84.0), (110.0, 200.0, -78.0))
    bagged = Ranged(walk_in, -72.0, 6.0, sustained_min_rssi=-82.0)
    # Readings of -78 from 111, each 12 dB over the front's -90 (its -64 leaves the 3 s
    # comparison at 113): four by 116, but the front's -64 of 110 is in the eight seconds
    # until 118.
    assert ranged_enters([bagged, store_front], 1, 100.0) == [
        AppEnter(100.0, 1, None),
        AppEnter(118.0, 0, -78.0, sustained=True),
    ]
    # The same phone without the lower bar: never in, however long it reads -78.
    plain = Ranged(walk_in, -72.0, 6.0)
    assert ranged_enters([plain, store_front], 1, 100.0) == [AppEnter(100.0, 1, None)]


def test_a_loud_storefront_a_few_readings_or_weak_ones_make_no_sustained_enter() -> None:
    """Through the glass a shopper reads the entrance beacon at -78 too, but the storefront
    beacon louder: never sustained. One loud storefront reading holds the enter off for the
    eight seconds it is in the window (and only those: a storefront unheard for eight
    seconds is a phone deep in the store, or one whose storefront link is lost; the app
    cannot tell those apart). Three readings in eight seconds are not enough, nor readings
    under the sustained bar."""
    from simulators.devices import AppEnter, Ranged, ranged_enters

    front_loud = Ranged(_packets((100.0, 300.0, -70.0)), None, storefront=True)
    at_glass = Ranged(_packets((100.0, 300.0, -78.0)), -72.0, 6.0, sustained_min_rssi=-82.0)
    assert ranged_enters([at_glass, front_loud], 1, 100.0) == [AppEnter(100.0, 1, None)]
    # The storefront heard once in the eight seconds, loud, blocks the window it is in even
    # when the 3 s comparison of each reading passes (the shopper's bursts of losses).
    # Here: held at 101-102 and from 106 (103-105 are within 3 s of the front's -70), four
    # by 107, but the -70 of 103 is in the window until 111.
    front_once = Ranged([(102.5, -70.0), (130.5, -70.0)], None, storefront=True)
    steady = Ranged(_packets((100.0, 200.0, -78.0)), -72.0, 6.0, sustained_min_rssi=-82.0)
    assert ranged_enters([steady, front_once], 0, 100.0)[-1] == AppEnter(
        111.0, 0, -78.0, sustained=True
    )
    sparse = Ranged(
        [(t + 0.5, -78.0) for t in (100.0, 103.0, 106.0, 109.0, 112.0)], -72.0, 6.0,
        sustained_min_rssi=-82.0,
    )  # fmt: skip
    assert not any(e.sustained for e in ranged_enters([sparse], 0, 100.0))
    weak = Ranged(_packets((100.0, 200.0, -84.0)), -72.0, 6.0, sustained_min_rssi=-82.0)
    assert not any(e.sustained for e in ranged_enters([weak], 0, 100.0))


def test_the_app_may_range_for_its_wake_and_while_a_location_session_runs_in_the_stay() -> None:
    from simulators.devices import IOS_RANGING_WINDOW_S, ranging_spans

    assert ranging_spans(100.0, 110.0) == [(100.0, 100.0 + IOS_RANGING_WINDOW_S)]
    # A location session that runs past the stay ranges only within it; one over before it
    # adds nothing.
    assert ranging_spans(100.0, 300.0, [(50.0, 500.0), (10.0, 40.0)]) == [
        (100.0, 100.0 + IOS_RANGING_WINDOW_S),
        (100.0, 300.0),
    ]


def test_the_first_ranging_second_after_the_door_is_on_the_phone_s_clock_and_in_a_span() -> None:
    from simulators.devices import first_ranging, ranged_enters, ranging_spans

    spans = [(100.0, 130.0), (200.0, 230.0)]
    # Awake at the door: the next second of the phone's clock (phase 0.25).
    assert first_ranging(spans, 0.25, 110.6) == 111.25
    # Not awake at the door: the first second after the next wake.
    assert first_ranging(spans, 0.25, 150.0) == 200.25
    # Past every span: iOS never lets the app read anything after it.
    assert first_ranging(spans, 0.25, 240.0) is None
    # The seconds ranged_enters reads are those seconds: a beacon heard from the wake on at
    # its threshold is reported at the first of them.
    from simulators.devices import AppEnter, Ranged

    loud = Ranged([(t / 10, -60.0) for t in range(900, 1400)], -72.0, None)
    enters = ranged_enters([loud], 0, 100.0, phase=0.25)
    assert enters == [AppEnter(first_ranging(ranging_spans(100.0, None), 0.25, 100.0), 0, -60.0)]
