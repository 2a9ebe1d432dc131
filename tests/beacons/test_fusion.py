"""Store presence fused across gateways (beacons.fusion): rules, hysteresis, properties."""

from __future__ import annotations

import dataclasses
import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from beacons.fusion import Evidence, FusionConfig, GatewayRole, StorePresence
from beacons.presence import Transition

ROLES = (
    GatewayRole("gw-door", "entrance", "entrance", enter_rssi=-72.0, street_rssi=-67.4),
    GatewayRole("gw-floor", "floor", "interior", enter_rssi=-78.0),
    GatewayRole("gw-fitting", "fitting-rooms", "small", enter_rssi=-72.0),
)
CFG = FusionConfig()


def sight(gw: str, t: float, rssi: float, subject: str = "aa") -> Evidence:
    return Evidence(gw, subject, "sighting", t, rssi)


def machine(gw: str, kind: str, t: float, rssi: float, subject: str = "aa") -> Evidence:
    return Evidence(gw, subject, kind, t, rssi, 0.8)  # type: ignore[arg-type]


def run(
    evidence: list[Evidence], config: FusionConfig = CFG, until: float | None = None
) -> list[Transition]:
    """Feed evidence one 1 s window at a time (as the coordinator does), ticking each second."""
    presence = StorePresence(ROLES, config)
    out: list[Transition] = []
    end = until if until is not None else max(e.at for e in evidence) + 1
    t = 1.0
    while t <= end:
        out += presence.window([e for e in evidence if t - 1 <= e.at < t], t)
        t += 1.0
    return out


def walk_in(bag_db: float = 8.0) -> list[Evidence]:
    """A phone in a bag: the door peaks at -70, then it walks on and the floor rises."""
    door = [-84, -80, -76, -73, -70, -70, -71, -75, -80, -84]
    floor = [-95, -94, -93, -93, -92, -91, -88, -85, -82, -80]
    out = []
    for i, (d, f) in enumerate(zip(door, floor, strict=True)):
        out += [
            sight("gw-door", i + 0.5, d + 8 - bag_db),
            sight("gw-floor", i + 0.6, f + 8 - bag_db),
        ]
    return out


def window_shopper() -> list[Evidence]:
    """A held phone outside the door: the door peaks as high, the floor fades with it."""
    door = [-84, -79, -74, -70, -68, -69, -71, -75, -80, -84]
    floor = [-90, -89, -88, -87, -87, -88, -89, -91, -93, -95]
    out = [machine("gw-door", "zone_enter", 3.7, -69.0), machine("gw-door", "zone_exit", 9.7, -81)]
    for i, (d, f) in enumerate(zip(door, floor, strict=True)):
        out += [sight("gw-door", i + 0.5, d), sight("gw-floor", i + 0.6, f)]
    return sorted(out, key=Evidence.order)


def test_a_door_peak_then_an_interior_rise_is_inside() -> None:
    out = run(walk_in())
    enter = out[0]
    assert (enter.kind, enter.zone_id) == ("zone_enter", "floor")
    assert enter.why is not None
    assert enter.why.rule == "door_then_interior"
    assert [g for g, _ in enter.why.readings] == ["gw-door", "gw-floor"]
    assert "peaked at -70 dBm" in enter.why.detail
    assert 0.5 <= enter.confidence <= 1.0


def test_a_door_peak_with_no_interior_evidence_is_outside() -> None:
    # The door's own machine entered: alone, that is a window shopper as much as a visitor.
    assert run(window_shopper(), until=40) == []


def test_a_door_presence_that_stays_is_inside_after_door_stay_s() -> None:
    # An entrance lingerer: the door's machine present for a minute is someone inside.
    ev = [machine("gw-door", "zone_enter", 0.5, -70.0)]
    ev += [sight("gw-door", t + 0.5, -71.0) for t in range(80)]
    out = run(ev, dataclasses.replace(CFG, strong_margin_db=None))
    assert [(tr.kind, tr.zone_id) for tr in out][:1] == [("zone_enter", "entrance")]
    assert out[0].at == pytest.approx(0.5 + CFG.door_stay_s, abs=1.0)
    assert out[0].why is not None
    assert out[0].why.rule == "door_linger"


def test_a_door_presence_shorter_than_door_stay_s_is_not_inside() -> None:
    ev = [machine("gw-door", "zone_enter", 0.5, -70.0)]
    ev += [sight("gw-door", t + 0.5, -71.0) for t in range(40)]
    ev += [machine("gw-door", "zone_exit", 40.6, -82.0)]
    assert run(ev, dataclasses.replace(CFG, strong_margin_db=None), until=120) == []


def test_an_interior_linger_heard_louder_at_the_door_is_the_doorway_not_inside() -> None:
    # A held phone outside the window: the floor's slow average creeps up to its linger
    # level, but the door hears it louder all along.
    ev = []
    for t in range(40):
        ev += [sight("gw-door", t + 0.5, -80.0), sight("gw-floor", t + 0.6, -87.0)]
    ev += [machine("gw-floor", "zone_enter", 30.6, -87.0)]
    assert run(ev, until=60) == []
    # The same floor evidence with the door silent: someone deep inside, in a bag.
    alone = [e for e in ev if e.gateway_id == "gw-floor"]
    out = run(alone, until=60)
    assert [(tr.kind, tr.zone_id) for tr in out][:1] == [("zone_enter", "floor")]


def test_a_door_level_the_street_cannot_reach_is_inside() -> None:
    # street_rssi -67.4 + strong_margin_db: only the entrance under the gateway reads -60.
    ev = [sight("gw-door", t + 0.5, -60.0) for t in range(4)]
    out = run(ev)
    assert out[0].why is not None
    assert (out[0].zone_id, out[0].why.rule) == ("entrance", "door_strong")


def test_an_interior_gateway_enter_is_inside_at_once() -> None:
    out = run([machine("gw-floor", "zone_enter", 2.3, -75.0), sight("gw-floor", 2.4, -75.0)])
    assert (out[0].kind, out[0].zone_id, out[0].at) == ("zone_enter", "floor", 2.3)
    assert out[0].why is not None
    assert out[0].why.rule == "interior_gateway"


def test_a_move_waits_for_its_zone_to_hold_and_enters_before_it_exits() -> None:
    ev = [machine("gw-floor", "zone_enter", 0.5, -75.0)]
    ev += [sight("gw-floor", t + 0.5, -75.0) for t in range(20)]
    ev += [machine("gw-fitting", "zone_enter", 10.5, -65.0)]
    ev += [sight("gw-fitting", t + 0.6, -65.0) for t in range(10, 20)]
    out = run(ev)
    moves = [tr for tr in out if tr.at > 1]
    assert [(tr.kind, tr.zone_id) for tr in moves] == [
        ("zone_enter", "fitting-rooms"),
        ("zone_exit", "floor"),
    ]
    assert moves[0].at == moves[1].at >= 10.5 + CFG.hold_s


def test_the_exit_comes_keep_s_after_the_last_evidence_of_inside_at_its_due_time() -> None:
    ev = [machine("gw-floor", "zone_enter", 0.5, -75.0), sight("gw-floor", 0.6, -75.0)]
    ev += [sight("gw-floor", 4.6, -75.0), machine("gw-floor", "zone_exit", 6.0, -82.0)]
    out = run(ev, until=50)
    assert [(tr.kind, tr.zone_id) for tr in out] == [
        ("zone_enter", "floor"),
        ("zone_exit", "floor"),
    ]
    assert out[1].at == pytest.approx(6.0 + CFG.keep_s)  # the floor machine held it until 6.0
    assert out[1].why is not None
    assert out[1].why.rule == "quiet"


def test_a_gateway_that_went_silent_while_present_stops_holding_the_subject_inside() -> None:
    # Its zone_exit was lost: after stale_s without a word from it, it no longer counts.
    out = run(
        [machine("gw-floor", "zone_enter", 0.5, -75.0)],
        until=CFG.stale_s + CFG.keep_s + 5,
    )
    assert [tr.kind for tr in out if tr.kind != "zone_dwell"] == ["zone_enter", "zone_exit"]
    assert out[-1].at <= CFG.stale_s + CFG.keep_s + 1


def test_evidence_of_a_gateway_without_a_role_is_counted_and_ignored() -> None:
    presence = StorePresence(ROLES, CFG)
    assert presence.window([machine("gw-elsewhere", "zone_enter", 1.0, -60.0)], 2.0) == []
    assert presence.stats.unknown_gateway == 1


def test_a_window_decides_the_same_whatever_order_its_evidence_came_in() -> None:
    evidence = walk_in() + window_shopper()
    shuffled = evidence[:]
    random.Random(4).shuffle(shuffled)
    assert run(evidence) == run(shuffled)


def test_bad_config_is_refused_with_the_name_of_the_setting() -> None:
    with pytest.raises(ValueError, match="keep_s"):
        FusionConfig(keep_s=0)
    with pytest.raises(ValueError, match="kind"):
        GatewayRole("gw", "z", "street", -70.0)  # type: ignore[arg-type]


# --- properties ------------------------------------------------------------------------
GATEWAYS = [r.gateway_id for r in ROLES]
evidence_items = st.tuples(
    st.floats(min_value=0.0, max_value=3.0),  # time step
    st.sampled_from(GATEWAYS),
    st.sampled_from(["zone_enter", "zone_exit", "zone_dwell", "sighting", "sighting"]),
    st.floats(min_value=-100.0, max_value=-50.0),
    st.sampled_from(["aa", "bb"]),
)


@settings(max_examples=300, deadline=None)
@given(items=st.lists(evidence_items, min_size=1, max_size=120), hold=st.floats(0.0, 8.0))
def test_a_fused_zone_machine_never_exits_without_an_enter_nor_changes_zone_faster_than_hold(
    items: list[tuple[float, str, str, float, str]], hold: float
) -> None:
    config = dataclasses.replace(CFG, hold_s=hold, door_stay_s=5.0, keep_s=4.0)
    t = 0.0
    evidence = []
    for step, gw, kind, rssi, subject in items:
        t += step
        evidence.append(Evidence(gw, subject, kind, round(t, 3), rssi, 0.7))  # type: ignore[arg-type]
    out = run(evidence, config, until=t + config.keep_s + config.stale_s + hold + 3)
    for subject in ("aa", "bb"):
        mine = [tr for tr in out if tr.subject == subject]
        zone: str | None = None
        moving_from: str | None = None  # a move enters the new zone, then exits the old one
        changes: list[float] = []
        for tr in mine:
            if tr.kind == "zone_enter":
                assert moving_from is None, f"two enters in a row: {mine}"
                moving_from = zone
                zone = tr.zone_id
                changes.append(tr.at)
            elif tr.kind == "zone_exit" and moving_from is not None:
                assert (tr.zone_id, tr.at) == (moving_from, changes[-1]), mine
                moving_from = None
            elif tr.kind == "zone_exit":
                assert zone is not None, f"exit without an enter: {mine}"
                assert tr.zone_id == zone, f"exit of {tr.zone_id} while in {zone}: {mine}"
                zone = None
                changes.append(tr.at)
            else:
                assert tr.kind == "zone_dwell"
                assert tr.zone_id == zone, f"dwell in {tr.zone_id} while in {zone}: {mine}"
        gaps = [b - a for a, b in itertools.pairwise(changes)]
        assert all(g >= hold - 1e-9 for g in gaps), f"zone changes {changes} closer than {hold}"
        assert zone is None, f"still inside long after the last evidence: {mine}"
