"""Geofences: geometry, accuracy-aware hysteresis, dwell, and the enter/dwell/exit invariants."""

from __future__ import annotations

import math
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.exceptions import EdgeError
from edge.geofence import (
    EARTH_RADIUS_M,
    Circle,
    Fix,
    GeofenceEngine,
    GeofenceError,
    GeofenceTransition,
    Polygon,
    haversine_m,
)
from tests.kit.clock import FakeClock

LAT0, LON0 = 48.8566, 2.3522
DEVICE = "00112233445566778899aabbccddeeff"


def offset(dx_m: float, dy_m: float, lat0: float = LAT0, lon0: float = LON0) -> tuple[float, float]:
    """The point dx_m east and dy_m north of (lat0, lon0)."""
    lat = lat0 + math.degrees(dy_m / EARTH_RADIUS_M)
    lon = lon0 + math.degrees(dx_m / (EARTH_RADIUS_M * math.cos(math.radians(lat0))))
    return lat, lon


def polar(dist_m: float, bearing: float) -> tuple[float, float]:
    return offset(dist_m * math.sin(bearing), dist_m * math.cos(bearing))


def square(gid: str, half_m: float) -> Polygon:
    corners = [(-half_m, -half_m), (half_m, -half_m), (half_m, half_m), (-half_m, half_m)]
    return Polygon(gid, tuple(offset(x, y) for x, y in corners))


def fix(lat_lon: tuple[float, float], accuracy: float, at: float) -> Fix:
    return Fix(DEVICE, lat_lon[0], lat_lon[1], accuracy, at)


def engine(
    *fences: Circle | Polygon, clock: FakeClock | None = None, **kw: float
) -> GeofenceEngine:
    return GeofenceEngine(
        fences or (Circle("shop", LAT0, LON0, 100.0),), clock=clock or FakeClock(), **kw
    )  # type: ignore[arg-type]


# --- geometry -----------------------------------------------------------------------------
def test_haversine_one_degree_of_latitude() -> None:
    assert haversine_m(0.0, 0.0, 1.0, 0.0) == pytest.approx(111_195, rel=1e-4)


def test_circle_signed_distance_sign_and_size() -> None:
    c = Circle("c", LAT0, LON0, 100.0)
    assert c.signed_distance_m(*offset(0, 40)) == pytest.approx(60.0, abs=0.01)
    assert c.signed_distance_m(*offset(150, 0)) == pytest.approx(-50.0, abs=0.01)


def test_polygon_signed_distance_inside_and_outside() -> None:
    sq = square("sq", 50.0)
    assert sq.signed_distance_m(*offset(0, 0)) == pytest.approx(50.0, abs=0.05)
    assert sq.signed_distance_m(*offset(0, 40)) == pytest.approx(10.0, abs=0.05)
    assert sq.signed_distance_m(*offset(80, 0)) == pytest.approx(-30.0, abs=0.05)
    # Nearest point is the corner (50, 50): distance to (60, 60) is sqrt(200).
    assert sq.signed_distance_m(*offset(60, 60)) == pytest.approx(-math.sqrt(200), abs=0.05)


def test_polygon_across_the_antimeridian() -> None:
    poly = Polygon(
        "dateline", ((-17.0, 179.999), (-17.0, -179.999), (-17.001, -179.999), (-17.001, 179.999))
    )
    assert poly.signed_distance_m(-17.0005, 180.0) > 0
    assert poly.signed_distance_m(-17.0005, -179.99) < 0


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Circle("c", LAT0, LON0, 0.0), "radius_m"),
        (lambda: Circle("c", 91.0, LON0, 10.0), "latitude"),
        (lambda: Polygon("p", ((0.0, 0.0), (0.0, 0.001))), "at least 3"),
        (lambda: Polygon("p", ((0.0, 0.0), (0.0, 0.001), (0.0, 0.002))), "no area"),
        (lambda: Polygon("p", ((0.0, 0.0), (0.0, 1.0), (1.0, 0.0))), "spans"),
    ],
)
def test_bad_geofences_raise_our_error_naming_the_problem(make: object, message: str) -> None:
    with pytest.raises(GeofenceError, match=message) as info:
        make()  # type: ignore[operator]
    assert isinstance(info.value, EdgeError)


def test_duplicate_geofence_ids_are_refused() -> None:
    with pytest.raises(GeofenceError, match="duplicate geofence ids: a"):
        engine(Circle("a", LAT0, LON0, 10.0), Circle("a", LAT0, LON0, 20.0))


@given(
    dx=st.floats(-2000, 2000),
    dy=st.floats(-2000, 2000),
    lat0=st.floats(-70, 70),
    lon0=st.floats(-179, 179),
)
def test_haversine_matches_the_local_projection_at_store_scale(
    dx: float, dy: float, lat0: float, lon0: float
) -> None:
    lat, lon = offset(dx, dy, lat0, lon0)
    assert haversine_m(lat0, lon0, lat, lon) == pytest.approx(
        math.hypot(dx, dy), rel=2e-3, abs=0.01
    )


N_SIDES = 72
RADIUS = 80.0
POLY = Polygon("ring", tuple(polar(RADIUS, 2 * math.pi * k / N_SIDES) for k in range(N_SIDES)))
SAGITTA = RADIUS * (1 - math.cos(math.pi / N_SIDES))


@given(dist=st.floats(0, 300), bearing=st.floats(0, 2 * math.pi))
def test_polygon_approximating_a_circle_agrees_with_the_circle(dist: float, bearing: float) -> None:
    lat, lon = polar(dist, bearing)
    circle_d = RADIUS - dist
    poly_d = POLY.signed_distance_m(lat, lon)
    # The inscribed polygon lies between the circle and the circle shrunk by the sagitta.
    assert circle_d - SAGITTA - 0.05 <= poly_d <= circle_d + 0.05


# --- the state machine --------------------------------------------------------------------
def test_enter_needs_the_whole_accuracy_circle_inside_by_the_margin() -> None:
    eng = engine(margin_m=5.0)
    # 60 m inside the boundary, accuracy 56 m: 56 + 5 > 60, so the state holds (outside).
    assert eng.observe(fix(offset(0, 40), 56.0, 1.0)) == []
    assert not eng.is_inside(DEVICE, "shop")
    [enter] = eng.observe(fix(offset(0, 40), 54.0, 2.0))
    assert (enter.kind, enter.geofence_id, enter.at) == ("geofence_enter", "shop", 2.0)
    assert enter.distance_m == pytest.approx(40.0, abs=0.01)  # from the store, not the edge


def test_a_transition_says_how_far_from_the_store_it_is() -> None:
    """The stream's "on the way (~N min)": the fix's distance from the centre, or for an
    OS's report of a circle (no fix) the radius; a polygon's edge is at no one distance."""
    eng = engine(margin_m=5.0)
    [enter] = eng.report(DEVICE, "shop", True, 1.0)
    assert enter.distance_m == pytest.approx(100.0)
    [leave] = eng.observe(fix(offset(0, 150), 10.0, 2.0))
    assert (leave.kind, leave.distance_m) == ("geofence_exit", pytest.approx(150.0, abs=0.01))
    sq = square("sq", 50.0)
    assert sq.reach_m is None
    assert sq.from_centre_m(*offset(30, 40)) == pytest.approx(50.0, abs=0.1)


def test_exit_needs_the_whole_accuracy_circle_outside() -> None:
    eng = engine(margin_m=5.0)
    eng.observe(fix(offset(0, 0), 10.0, 1.0))
    assert eng.observe(fix(offset(0, 130), 26.0, 2.0)) == []  # 30 m out, 26 + 5 > 30
    assert eng.is_inside(DEVICE, "shop")
    [exit_] = eng.observe(fix(offset(0, 130), 24.0, 3.0))
    assert exit_.kind == "geofence_exit"
    assert not eng.is_inside(DEVICE, "shop")


def test_coarse_fix_over_a_small_fence_never_enters() -> None:
    eng = engine(Circle("kiosk", LAT0, LON0, 20.0))
    assert eng.observe(fix(offset(0, 0), 30.0, 1.0)) == []


def test_dwell_fires_once_on_tick_dated_enter_plus_dwell() -> None:
    clock = FakeClock(0.0)
    eng = engine(clock=clock, dwell_s=120.0)
    eng.observe(fix(offset(0, 0), 5.0, 10.0))
    clock.t = 129.0
    assert eng.tick() == []
    clock.t = 131.0
    [dwell] = eng.tick()
    assert (dwell.kind, dwell.at) == ("geofence_dwell", 130.0)
    clock.t = 500.0
    assert eng.tick() == []
    assert eng.observe(fix(offset(0, 0), 5.0, 600.0)) == []


def test_a_late_fix_emits_the_pending_dwell_before_its_exit() -> None:
    eng = engine(dwell_s=60.0)
    eng.observe(fix(offset(0, 0), 5.0, 0.0))
    kinds = [(t.kind, t.at) for t in eng.observe(fix(offset(0, 400), 5.0, 100.0))]
    assert kinds == [("geofence_dwell", 60.0), ("geofence_exit", 100.0)]


def test_exit_before_dwell_time_means_no_dwell() -> None:
    clock = FakeClock(0.0)
    eng = engine(clock=clock, dwell_s=60.0)
    eng.observe(fix(offset(0, 0), 5.0, 0.0))
    eng.observe(fix(offset(0, 400), 5.0, 30.0))
    clock.t = 1000.0
    assert eng.tick() == []


def test_older_fix_is_ignored() -> None:
    eng = engine()
    eng.observe(fix(offset(0, 400), 5.0, 100.0))
    assert eng.observe(fix(offset(0, 0), 5.0, 50.0)) == []
    assert not eng.is_inside(DEVICE, "shop")


def test_os_report_and_a_fix_do_not_make_two_enters() -> None:
    eng = engine()
    [enter] = eng.report(DEVICE, "shop", True, 1.0)
    assert enter.kind == "geofence_enter"
    assert eng.observe(fix(offset(0, 0), 5.0, 2.0)) == []
    assert eng.report(DEVICE, "shop", True, 3.0) == []
    [exit_] = eng.report(DEVICE, "shop", False, 4.0)
    assert exit_.kind == "geofence_exit"
    assert eng.report(DEVICE, "shop", False, 5.0) == []


def test_report_of_an_unknown_geofence_raises() -> None:
    with pytest.raises(GeofenceError, match="unknown geofence 'nope'"):
        engine().report(DEVICE, "nope", True, 1.0)


def test_stale_device_is_forgotten_with_a_low_confidence_exit() -> None:
    clock = FakeClock(1000.0)
    eng = engine(clock=clock, stale_s=600.0, dwell_s=10_000.0)
    eng.observe(fix(offset(0, 0), 5.0, 1000.0))
    clock.t = 1599.0
    assert eng.tick() == []
    clock.t = 1600.0
    [exit_] = eng.tick()
    assert (exit_.kind, exit_.confidence, exit_.at) == ("geofence_exit", 0.5, 1600.0)
    assert len(eng) == 0


def test_device_cap_evicts_the_least_recent_with_an_exit() -> None:
    eng = engine(max_devices=2)
    for i, dev in enumerate(("aa" * 8, "bb" * 8, "cc" * 8)):
        out = eng.observe(Fix(dev, LAT0, LON0, 5.0, float(i)))
    assert len(eng) == 2
    assert [(t.device_id, t.kind) for t in out] == [
        ("aa" * 8, "geofence_exit"),
        ("cc" * 8, "geofence_enter"),
    ]


def test_snapshot_and_restore_undo_a_step() -> None:
    eng = engine()
    before = eng.snapshot(DEVICE)
    eng.observe(fix(offset(0, 0), 5.0, 1.0))
    eng.restore(DEVICE, before)
    assert len(eng) == 0
    eng.observe(fix(offset(0, 0), 5.0, 1.0))
    inside = eng.snapshot(DEVICE)
    eng.observe(fix(offset(0, 500), 5.0, 2.0))
    eng.restore(DEVICE, inside)
    assert eng.is_inside(DEVICE, "shop")


# --- properties ---------------------------------------------------------------------------
MARGIN = 5.0
FENCES = (Circle("shop", LAT0, LON0, 100.0), square("square", 60.0))


@settings(max_examples=150, deadline=None)
@given(
    start_inside=st.booleans(),
    noise=st.lists(
        st.tuples(
            st.floats(0, 60),  # accuracy
            st.floats(-0.99, 0.99),  # where in the band, as a fraction of accuracy + margin
            st.floats(0, 2 * math.pi),  # bearing
        ),
        min_size=1,
        max_size=40,
    ),
)
def test_noise_inside_the_hysteresis_band_never_toggles(
    start_inside: bool, noise: list[tuple[float, float, float]]
) -> None:
    circle = FENCES[0]
    eng = engine(circle, margin_m=MARGIN, dwell_s=1e9)
    eng.observe(fix(offset(0, 0) if start_inside else offset(0, 1000), 1.0, 0.0))
    assert eng.is_inside(DEVICE, "shop") is start_inside
    for i, (acc, frac, bearing) in enumerate(noise, start=1):
        signed = frac * (acc + MARGIN)
        assert eng.observe(fix(polar(circle.radius_m - signed, bearing), acc, float(i))) == []
        assert eng.is_inside(DEVICE, "shop") is start_inside


step = st.one_of(
    st.tuples(
        st.just("fix"),
        st.floats(-250, 250),
        st.floats(-250, 250),
        st.floats(0, 80),
        st.floats(0, 90),
    ),
    st.tuples(st.just("tick"), st.just(0.0), st.just(0.0), st.just(0.0), st.floats(0, 200)),
    st.tuples(
        st.just("report"),
        st.sampled_from([0.0, 1.0]),  # geofence index
        st.sampled_from([0.0, 1.0]),  # exit/enter
        st.just(0.0),
        st.floats(0, 90),
    ),
)


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(step, min_size=1, max_size=60))
def test_per_fence_output_alternates_enter_dwell_exit(
    steps: list[tuple[str, float, float, float, float]],
) -> None:
    dwell_s = 120.0
    clock = FakeClock(0.0)
    eng = engine(*FENCES, clock=clock, margin_m=MARGIN, dwell_s=dwell_s, stale_s=1e9)
    out: list[GeofenceTransition] = []
    for op, a, b, acc, dt in steps:
        clock.t += dt
        if op == "fix":
            out += eng.observe(fix(offset(a, b), acc, clock.t))
        elif op == "tick":
            out += eng.tick()
        else:
            out += eng.report(DEVICE, FENCES[int(a)].id, bool(b), clock.t)
    per_fence: dict[str, list[GeofenceTransition]] = defaultdict(list)
    for tr in out:
        per_fence[tr.geofence_id].append(tr)
    for gid, seq in per_fence.items():
        inside, dwelled, entered_at, last_at = False, False, 0.0, -1.0
        for tr in seq:
            assert tr.at >= last_at, f"{gid}: time went backwards"
            last_at = tr.at
            if tr.kind == "geofence_enter":
                assert not inside, f"{gid}: enter while inside"
                inside, dwelled, entered_at = True, False, tr.at
            elif tr.kind == "geofence_dwell":
                assert inside, f"{gid}: dwell outside a visit"
                assert not dwelled, f"{gid}: two dwells in one visit"
                assert tr.at == pytest.approx(entered_at + dwell_s)
                dwelled = True
            else:
                assert inside, f"{gid}: exit without enter"
                inside = False
        assert eng.is_inside(DEVICE, gid) is inside


def test_replacing_geofences_exits_devices_of_removed_fences_and_keeps_the_rest() -> None:
    clock = FakeClock(50.0)
    shop, sq = Circle("shop", LAT0, LON0, 100.0), square("square", 60.0)
    eng = engine(shop, sq, clock=clock)
    kinds = [(t.geofence_id, t.kind) for t in eng.observe(fix(offset(0, 0), 5.0, 10.0))]
    assert sorted(kinds) == [("shop", "geofence_enter"), ("square", "geofence_enter")]
    [exit_] = eng.replace_geofences([Circle("shop", LAT0, LON0, 150.0)])
    assert (exit_.geofence_id, exit_.kind, exit_.at, exit_.confidence) == (
        "square",
        "geofence_exit",
        50.0,
        0.5,
    )
    assert eng.is_inside(DEVICE, "shop")
    assert eng.observe(fix(offset(0, 0), 5.0, 60.0)) == []  # still inside, no second enter
    with pytest.raises(GeofenceError, match="duplicate"):
        eng.replace_geofences([shop, shop])
