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
# The same store with a door pair: a gateway outside on the shop front above the door.
PAIR_ROLES = (
    dataclasses.replace(ROLES[0], pair="gw-street"),
    *ROLES[1:],
    GatewayRole("gw-street", "street", "street", enter_rssi=-72.0),
)
CFG = FusionConfig()


def sight(gw: str, t: float, rssi: float, subject: str = "aa") -> Evidence:
    return Evidence(gw, subject, "sighting", t, rssi)


def machine(gw: str, kind: str, t: float, rssi: float, subject: str = "aa") -> Evidence:
    return Evidence(gw, subject, kind, t, rssi, 0.8)  # type: ignore[arg-type]


def run(
    evidence: list[Evidence],
    config: FusionConfig = CFG,
    until: float | None = None,
    roles: tuple[GatewayRole, ...] = ROLES,
) -> list[Transition]:
    """Feed evidence one 1 s window at a time (as the coordinator does), ticking each second."""
    presence = StorePresence(roles, config)
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


def pair_crossing(door: list[float], street: list[float | None]) -> list[Evidence]:
    """A second's levels at the door and at the street gateway (None: it heard nothing)."""
    out = []
    for i, (d, st_) in enumerate(zip(door, street, strict=True)):
        out.append(sight("gw-door", i + 0.5, d))
        if st_ is not None:
            out.append(sight("gw-street", i + 0.6, st_))
    return out


def test_a_door_heard_well_above_its_pair_outside_is_inside_without_interior_evidence() -> None:
    # A phone in a bag walks in: too weak for door_strong, no floor evidence yet, but the
    # door gains on the street gateway as it passes under the door (t=3) and on.
    door = [-84.0, -80.0, -77.0, -74.0, -72.0, -71.0, -72.0, -73.0]
    street = [-72.0, -70.0, -72.0, -78.0, -82.0, None, None, None]
    out = run(pair_crossing(door, street), roles=PAIR_ROLES)
    enter = out[0]
    assert (enter.kind, enter.zone_id) == ("zone_enter", "entrance")
    assert enter.why is not None
    assert enter.why.rule == "door_over_street"
    assert [g for g, _ in enter.why.readings] == ["gw-door", "gw-street"]
    # The street gateway's latest level of the last pair_window_s (3 s) counts, not its
    # loudest (her approach under it, which held her back until 8.0): at 3.5 that is its
    # -72 of 2.6; at 4.5 its -78 of 3.6 (door 6 dB over) and at 5.5 its -82 (11 dB over)
    # hold for pair_s, judged at the end of the window of 5.5.
    assert enter.at == 6.0
    # The same levels without the pair: the door alone cannot tell.
    assert run(pair_crossing(door, street), until=20) == []


def test_a_phone_outside_the_door_louder_at_the_street_gateway_is_outside() -> None:
    # A held phone at the shop front beside the door: the door hears it well, the street
    # gateway above it better.
    door = [-75.0, -72.0, -70.0, -70.0, -71.0, -70.0, -72.0, -75.0]
    street = [-66.0, -62.0, -60.0, -61.0, -60.0, -62.0, -64.0, -68.0]
    assert run(pair_crossing(door, street), roles=PAIR_ROLES, until=30) == []


def test_a_phone_standing_in_the_doorway_as_loud_outside_is_at_the_front_not_inside() -> None:
    # Loud at the door (door_strong's level) and its machine present for 90 s (door_linger):
    # alone, the door takes it inside; the street gateway hears it as loud: the front.
    ev = [machine("gw-door", "zone_enter", 0.5, -62.0), machine("gw-door", "zone_exit", 90.5, -70)]
    ev += pair_crossing([-62.0] * 90, [-62.0] * 90)
    assert run(ev, roles=PAIR_ROLES, until=100) == []
    alone = [e for e in ev if e.gateway_id == "gw-door"]
    assert [tr.why.rule for tr in run(alone, until=100) if tr.why][:1] == ["door_strong"]


def test_the_front_veto_is_of_now_a_stale_or_unheard_one_blocks_nobody() -> None:
    # Heard once in the opening, louder under the street gateway; then only the floor
    # gateway hears the phone (in a bag, deep inside): the old veto must not keep it out.
    floor = [machine("gw-floor", "zone_enter", 4.0, -66.0)]
    floor += [sight("gw-floor", t + 0.6, -66.0) for t in range(4, 60)]
    once = [sight("gw-street", 0.4, -60.0), sight("gw-door", 0.5, -63.0)]
    out = run(once + floor, roles=PAIR_ROLES, until=70)
    assert [(tr.kind, tr.zone_id) for tr in out][:1] == [("zone_enter", "floor")]
    assert out[0].at <= 4.0 + CFG.fresh_s + 1
    # A door level at the edge of hearing, the street gateway never hearing it: no veto.
    faint = [sight("gw-street", 0.3, -70.0, subject="zz"), sight("gw-door", 2.5, -91.0)]
    out = run(faint + floor, roles=PAIR_ROLES, until=70)
    assert [(tr.kind, tr.zone_id) for tr in out if tr.subject == "aa"][:1] == [
        ("zone_enter", "floor")
    ]


def test_a_subject_placed_by_the_pair_stays_while_the_door_stays_louder() -> None:
    # A bagged phone standing in the entrance: its door machine never enters, the pair
    # keeps saying "inside" every window: one enter, no exit while it lasts.
    out = run(pair_crossing([-73.0] * 80, [-85.0] * 80), roles=PAIR_ROLES, until=80)
    assert [(tr.kind, tr.zone_id) for tr in out if tr.kind != "zone_dwell"] == [
        ("zone_enter", "entrance")
    ]


def test_a_silent_street_gateway_leaves_the_door_judged_alone() -> None:
    # The street gateway is down (no evidence of anyone): a held phone outside reading -70
    # at the door is no door_over_street (it would beat "unheard" by 20 dB); the door is
    # judged as an unpaired one, and -70 is below door_strong's level.
    ev = [sight("gw-door", t + 0.5, -70.0) for t in range(70, 80)]
    assert run(ev, roles=PAIR_ROLES, until=90) == []
    # With the street gateway working (it hears someone else), the same door levels and
    # nothing of this subject outside: the pair's rule.
    alive = [sight("gw-street", t + 0.3, -75.0, subject="zz") for t in range(60, 80)]
    rules = [tr.why.rule for tr in run(ev + alive, roles=PAIR_ROLES, until=90) if tr.why]
    assert rules[:1] == ["door_over_street"]


def test_live_a_street_gateway_s_level_a_window_late_still_keeps_the_front_outside() -> None:
    # A held phone at the front, louder at the street gateway, whose levels reach a live
    # coordinator a window after the door's (each gateway sends its own second): the 1 s
    # hold needs a second door level, and by then the street's first is in.
    door = [sight("gw-door", t + 0.5, -70.0) for t in range(10)]
    street = [sight("gw-street", t + 0.6, -62.0) for t in range(10)]
    presence = StorePresence(PAIR_ROLES, CFG)
    out = presence.window([sight("gw-street", 0.1, -80.0, subject="zz")], None)
    for t in range(1, 13):
        late = [e for e in street if t - 2 <= e.at < t - 1]  # one window late
        out += presence.window([e for e in door if t - 1 <= e.at < t] + late, float(t))
    assert out == []
    # Without its hold the rule would have taken the first door level alone.
    presence = StorePresence(PAIR_ROLES, dataclasses.replace(CFG, pair_s=0.0))
    out = presence.window([sight("gw-street", 0.1, -80.0, subject="zz")], None)
    out += presence.window(door[:1], 1.0)
    assert [tr.why.rule for tr in out if tr.why] == ["door_over_street"]


def test_live_a_street_level_that_comes_late_does_not_stand_for_a_newer_one() -> None:
    # A held phone at the front, louder at the street gateway (-62) than at the door (-70).
    # Live, a street window can reach the coordinator after a newer one: its older, weaker
    # level (-85 at 1.6, a fade) arrives after the -62 of 2.6. The street's level is its
    # latest by time, not the last to arrive: at 3.5 that is still -62, the front.
    presence = StorePresence(PAIR_ROLES, CFG)
    out = presence.window([sight("gw-street", 0.1, -80.0, subject="zz")], None)
    windows = [
        [sight("gw-door", 2.5, -70.0), sight("gw-street", 2.6, -62.0)],
        [sight("gw-door", 3.5, -70.0), sight("gw-street", 1.6, -85.0)],  # the late window
        [sight("gw-door", 4.5, -70.0), sight("gw-street", 4.6, -62.0)],
    ]
    for t, evidence in enumerate(windows, start=3):
        out += presence.window(evidence, float(t))
    assert out == []


def test_a_street_gateway_that_misses_a_second_does_not_make_the_door_louder() -> None:
    # Someone passing the door: the street gateway loses two seconds of packets (a burst)
    # while the door hears the passer-by at -72; its last level still counts.
    door = [-80.0, -76.0, -73.0, -72.0, -72.0, -76.0, -82.0]
    street = [-70.0, -68.0, -68.0, None, None, -70.0, -74.0]
    assert run(pair_crossing(door, street), roles=PAIR_ROLES, until=30) == []


def test_a_shorter_street_window_is_faster_for_an_entrant_and_takes_the_burst_passer_by() -> None:
    # pair_window_s is the store's trade-off (PROXIMA_EDGE_FUSION_DOOR_PAIR_WINDOW_S): how
    # long the street's last level stands once it hears the phone no more.
    # A bagged entrant the street gateway last heard under it (-66 at 2.6), then never
    # again: with 3 s its -66 stands until 5.6, with 1.5 s until 4.1.
    door = [-84.0, -80.0, -77.0, -74.0, -72.0, -71.0, -72.0, -73.0, -73.0]
    street = [-72.0, -70.0, -66.0, None, None, None, None, None, None]
    short = dataclasses.replace(CFG, pair_window_s=1.5)
    (enter, *_) = run(pair_crossing(door, street), short, roles=PAIR_ROLES)
    assert enter.why is not None
    assert (enter.why.rule, enter.at) == ("door_over_street", 6.0)
    (enter, *_) = run(pair_crossing(door, street), roles=PAIR_ROLES)
    assert enter.at == 8.0
    # A passer-by at the door whose street gateway loses three seconds of her packets in
    # a burst: with 3 s its -68 of 2.6 stands for her; with 1.5 s she is taken inside.
    door = [-80.0, -76.0, -73.0, -72.0, -72.0, -73.0, -82.0]
    street = [-70.0, -68.0, -68.0, None, None, None, -74.0]
    assert run(pair_crossing(door, street), roles=PAIR_ROLES, until=30) == []
    taken = run(pair_crossing(door, street), short, roles=PAIR_ROLES, until=30)
    assert [tr.why.rule for tr in taken if tr.why][:1] == ["door_over_street"]


def test_the_street_window_is_a_coordinator_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from edge.fusion import fusion_config
    from edge.settings import EdgeSettings

    assert fusion_config(EdgeSettings()).pair_window_s == 3.0
    monkeypatch.setenv("PROXIMA_EDGE_FUSION_DOOR_PAIR_WINDOW_S", "1.5")
    assert fusion_config(EdgeSettings()).pair_window_s == 1.5
    monkeypatch.setenv("PROXIMA_EDGE_FUSION_DOOR_PAIR_WINDOW_S", "0")
    with pytest.raises(ValueError, match="fusion_door_pair_window_s"):
        EdgeSettings()


def test_a_street_gateway_places_nobody_inside_and_keeps_nobody_there() -> None:
    # Its own machine entering its (street) zone is no evidence of inside ...
    ev = [machine("gw-street", "zone_enter", 0.5, -60.0)]
    ev += [sight("gw-street", t + 0.5, -60.0) for t in range(90)]
    assert run(ev, roles=PAIR_ROLES) == []
    # ... and someone inside who walks back out past it leaves on time.
    inside = [
        machine("gw-floor", "zone_enter", 0.5, -70.0),
        machine("gw-floor", "zone_exit", 5.5, -85),
    ]
    out = run(inside + ev, roles=PAIR_ROLES, until=60)
    kinds = [(tr.kind, tr.zone_id) for tr in out]
    assert kinds == [("zone_enter", "floor"), ("zone_exit", "floor")], kinds
    assert out[1].at == 5.5 + CFG.keep_s


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
        GatewayRole("gw", "z", "lobby", -70.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="only an entrance gateway has a pair"):
        GatewayRole("gw", "z", "interior", -70.0, pair="gw-street")
    with pytest.raises(ValueError, match="no street gateway"):
        StorePresence([GatewayRole("gw-door", "entrance", "entrance", -70.0, pair="gw-floor"),
                       GatewayRole("gw-floor", "floor", "interior", -75.0)])  # fmt: skip


# --- properties ------------------------------------------------------------------------
GATEWAYS = [r.gateway_id for r in PAIR_ROLES]
evidence_items = st.tuples(
    st.floats(min_value=0.0, max_value=3.0),  # time step
    st.sampled_from(GATEWAYS),
    st.sampled_from(["zone_enter", "zone_exit", "zone_dwell", "sighting", "sighting"]),
    st.floats(min_value=-100.0, max_value=-50.0),
    st.sampled_from(["aa", "bb"]),
)


@pytest.mark.parametrize("roles", [ROLES, PAIR_ROLES], ids=["door", "door-pair"])
@settings(max_examples=300, deadline=None)
@given(items=st.lists(evidence_items, min_size=1, max_size=120), hold=st.floats(0.0, 8.0))
def test_a_fused_zone_machine_never_exits_without_an_enter_nor_changes_zone_faster_than_hold(
    roles: tuple[GatewayRole, ...], items: list[tuple[float, str, str, float, str]], hold: float
) -> None:
    config = dataclasses.replace(CFG, hold_s=hold, door_stay_s=5.0, keep_s=4.0)
    t = 0.0
    evidence = []
    for step, gw, kind, rssi, subject in items:
        t += step
        evidence.append(Evidence(gw, subject, kind, round(t, 3), rssi, 0.7))  # type: ignore[arg-type]
    known = {r.gateway_id for r in roles}
    evidence = [e for e in evidence if e.gateway_id in known]
    if not evidence:
        return
    out = run(evidence, config, until=t + config.keep_s + config.stale_s + hold + 3, roles=roles)
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
