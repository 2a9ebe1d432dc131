"""The radio model's statistics match its configuration (seeded, so exact every run)."""

from __future__ import annotations

import itertools
import json
import math
import random
import statistics

import pytest

from simulators.layout import GatewaySpec, RadioEnv
from simulators.radio import PHONE_HEIGHT_M, LinkState, RadioModel

N = 40_000


def _model(**env: float) -> tuple[RadioModel, GatewaySpec]:
    radio = RadioModel(RadioEnv(**env))  # type: ignore[arg-type]
    gw = GatewaySpec(id="gw", zone_id="z", x=0, y=0, rssi_1m=-61.5, path_loss_n=2.4)
    return radio, gw


def test_mean_rssi_at_one_metre_is_the_calibration_within_1_db() -> None:
    radio, gw = _model(shadowing_db=4.0)
    link = radio.link(gw)
    rng = random.Random(1)
    # Many independent links (each with its own stationary shadowing) at exactly 1 m.
    samples = [
        round(radio.sample_rssi(link, 1.0, 0.0, radio.shadowing_step(None, 0, 4.0, 3.0, rng), rng))
        for _ in range(N)
    ]
    assert abs(statistics.fmean(samples) - gw.rssi_1m) < 1.0


@pytest.mark.parametrize("sigma", [2.0, 4.0, 8.0])
def test_shadowing_spread_is_as_configured_and_stationary_over_time(sigma: float) -> None:
    radio, _ = _model(shadowing_db=sigma)
    rng = random.Random(2)
    fresh = [radio.shadowing_step(None, 0, sigma, 3.0, rng) for _ in range(N)]
    assert statistics.pstdev(fresh) == pytest.approx(sigma, rel=0.03)
    # Along one link in time (AR(1), 1 s steps, tau 3 s) the spread stays sigma ...
    s, walk = None, []
    for _ in range(N):
        s = radio.shadowing_step(s, 1.0, sigma, 3.0, rng)
        walk.append(s)
    assert statistics.pstdev(walk) == pytest.approx(sigma, rel=0.08)
    # ... and consecutive values are correlated as exp(-dt/tau).
    lag1 = statistics.correlation(walk[:-1], walk[1:])
    assert lag1 == pytest.approx(math.exp(-1 / 3.0), abs=0.03)


def test_fast_fading_is_zero_mean_in_db_with_rician_spread() -> None:
    radio, _ = _model(rician_k=4.0)
    rng = random.Random(3)
    draws = [radio.fading_db(rng) for _ in range(N)]
    assert abs(statistics.fmean(draws)) < 0.1
    assert 1.5 < statistics.pstdev(draws) < 4.0  # K=4: a few dB, less than Rayleigh's 5.6


def test_path_loss_falls_10n_db_per_decade() -> None:
    radio, gw = _model()
    link = radio.link(gw)
    assert radio.mean_rssi(link, 1.0) == pytest.approx(-61.5)
    assert radio.mean_rssi(link, 10.0) - radio.mean_rssi(link, 1.0) == pytest.approx(-24.0)
    assert radio.mean_rssi(link, 10.0, extra_loss_db=8.0) == pytest.approx(-61.5 - 24 - 8)


def test_packet_loss_grows_with_the_number_of_advertisers() -> None:
    radio, gw = _model(base_loss=0.03, collision_per_advertiser=0.002)
    link = radio.link(gw)
    p = [radio.reception_probability(link, n) for n in (0, 50, 200, 1000)]
    assert p[0] == pytest.approx(0.9 * 0.97)  # scan duty × (1 - base loss)
    assert p == sorted(p, reverse=True)
    assert p[-1] < 0.2
    rng = random.Random(4)
    heard = sum(rng.random() < p[2] for _ in range(N)) / N
    assert heard == pytest.approx(p[2], abs=0.01)


def test_body_blocks_the_gateway_behind_the_carrier() -> None:
    facing = RadioModel.body_loss_db(0.0, 1.0, 0.0, 6.0)
    behind = RadioModel.body_loss_db(math.pi, 1.0, 0.0, 6.0)
    assert facing == pytest.approx(0.0)
    assert behind == pytest.approx(6.0)


def test_a_patch_antenna_loses_its_front_to_back_ratio_behind_it_and_half_at_its_side() -> None:
    radio, gw = _model()
    patch = radio.link(gw.model_copy(update={"facing_deg": -90.0, "back_loss_db": 10.0}))

    def loss(x: float, y: float) -> float:  # a device at (x, y); the gateway is at (0, 0)
        return radio.antenna_loss_db(patch, 0.0 - x, 0.0 - y)

    assert loss(0.0, -3.0) == pytest.approx(0.0)  # straight ahead, on the street
    assert loss(0.0, 2.0) == pytest.approx(10.0)  # straight behind, through the door
    assert loss(4.0, 0.0) == pytest.approx(5.0) == loss(-4.0, 0.0)  # along the shop front
    assert 0.0 < loss(3.0, -3.0) < 5.0 < loss(3.0, 3.0) < 10.0
    assert radio.antenna_loss_db(radio.link(gw), 0.0, -2.0) == 0.0  # omnidirectional


def test_spot_offset_stays_while_still_and_decorrelates_over_metres_moved() -> None:
    radio, _ = _model(spot_db=3.0, spot_decorrelation_m=2.0)
    rng = random.Random(5)
    first = radio.spot_step(None, 0.0, 3.0, rng)
    assert radio.spot_step(first, 0.0, 3.0, rng) == first  # standing still keeps it
    s, walk = None, []
    for _ in range(N):  # 1 m steps: AR(1) over distance, rho = exp(-1 / 2)
        s = radio.spot_step(s, 1.0, 3.0, rng)
        walk.append(s)
    assert statistics.pstdev(walk) == pytest.approx(3.0, rel=0.05)
    assert statistics.correlation(walk[:-1], walk[1:]) == pytest.approx(math.exp(-0.5), abs=0.03)


def test_a_still_link_keeps_its_offset_and_a_moved_one_draws_another() -> None:
    radio, gw = _model(spot_db=3.0)
    link = radio.link(gw)
    rng = random.Random(6)
    state = LinkState()
    offsets = set()
    for i in range(50):
        radio.receive(link, state, i * 0.25, (3.0, 0.0, PHONE_HEIGHT_M), -70.0, 1, rng)
        offsets.add(state.spot)
    assert len(offsets) == 1
    radio.receive(link, state, 13.0, (13.0, 0.0, PHONE_HEIGHT_M), -80.0, 1, rng)
    assert state.spot not in offsets


def test_burst_channel_has_its_share_and_mean_duration() -> None:
    radio, _ = _model(burst_share=0.3, burst_mean_s=2.0)
    rng = random.Random(7)
    bad: bool | None = None
    states = []
    for _ in range(4 * N):  # sampled every 0.1 s
        bad = radio.burst_step(bad, 0.1, rng)
        states.append(bad)
    assert statistics.fmean(states) == pytest.approx(0.3, abs=0.03)
    runs = [len(list(g)) for k, g in itertools.groupby(states) if k]
    assert statistics.fmean(runs) * 0.1 == pytest.approx(2.0, rel=0.12)


def test_reception_has_a_soft_edge_that_a_burst_raises() -> None:
    radio, _ = _model(edge_dbm=-83.0, edge_width_db=2.5, burst_db=9.0)
    assert radio.edge_probability(-83.0, burst=False) == pytest.approx(0.5)
    assert radio.edge_probability(-74.0, burst=True) == pytest.approx(0.5)
    levels = [radio.edge_probability(r, burst=False) for r in range(-100, -60, 2)]
    assert levels == sorted(levels)
    assert levels[0] < 0.01
    assert levels[-1] > 0.99
    assert 0.1 < radio.edge_probability(-86.0, burst=False) < 0.4  # soft, not a cliff


# --- the equivalent of a measured indoor link ------------------------------------------
# UCI "BLE RSSI Dataset for Indoor Localization and Navigation" (CC BY 4.0): an iPhone
# scanning ceiling iBeacons in a library, 2 s scans. Our equivalent: the radio-survey
# scenario's still phone heard by a ceiling gateway, its packets grouped into 2 s scans
# (a scan hears the link if any packet in it is received; its reading is their mean).
MEASURED_DETECTION = {2.0: 0.98, 4.0: 0.79, 8.0: 0.55, 16.0: 0.06, 24.0: 0.02}
DETECTION_TOL = 0.08  # percentage points per distance
# Chance that the scan after one reading at this level misses: >= -75, -82..-76, < -82 dBm.
MEASURED_MISS_AFTER = {"strong": 0.06, "mid": 0.33, "weak": 0.74}
MISS_AFTER_TOL = 0.08
# A miss right after a hearing: the scan after it hears the link again this often. Low
# means misses come in runs (independent losses at these ranges would give ~0.6-0.9).
MEASURED_HEARD_AGAIN, HEARD_AGAIN_TOL = 0.44, 0.10
MEASURED_SPOT_SCATTER_DB, SPOT_SCATTER_TOL = 3.0, 0.6  # spot means around the fitted curve
MEASURED_SPREAD_DB, SPREAD_TOL = 2.9, 0.5  # median per-spot std of readings
MEASURED_LAG_CORR, LAG_CORR_TOL = 0.25, 0.08  # consecutive readings (2 s), spot mean removed
SURVEY_SEEDS = range(1, 201)  # 200 stays of 30 scans at each distance


def _survey_scans(seed: int) -> dict[float, list[int | None]]:
    """One radio-survey trace as 2 s scans per distance: the rounded mean RSSI, or None."""
    from simulators.survey import radio_survey

    stretches: list[tuple[float, float]] = []
    packets: list[tuple[float, int]] = []
    for line in radio_survey(seed).lines():
        rec = json.loads(line)
        if rec.get("kind") == "truth" and rec["event"] == "survey":
            stretches.append((rec["t"], rec["distance_m"]))
        elif rec.get("kind") == "adv":
            packets.append((rec["t"], rec["rssi"]))
    out: dict[float, list[int | None]] = {}
    for i, (start, d) in enumerate(stretches):
        end = stretches[i + 1][0] if i + 1 < len(stretches) else start + 60.0
        windows: list[list[int]] = [[] for _ in range(int((end - start) // 2))]
        for t, rssi in packets:
            if start <= t < end:
                windows[min(int((t - start) // 2), len(windows) - 1)].append(rssi)
        out[d] = [round(statistics.fmean(w)) if w else None for w in windows]
    return out


@pytest.fixture(scope="module")
def survey() -> list[dict[float, list[int | None]]]:
    return [_survey_scans(seed) for seed in SURVEY_SEEDS]


def test_survey_detection_by_distance_matches_the_measured_link(
    survey: list[dict[float, list[int | None]]],
) -> None:
    got = {}
    for d in MEASURED_DETECTION:
        scans = [r for stay in survey for r in stay[d]]
        got[d] = sum(r is not None for r in scans) / len(scans)
    for d, want in MEASURED_DETECTION.items():
        assert got[d] == pytest.approx(want, abs=DETECTION_TOL), (d, got)
    # Beyond the measured range: nearly always heard at 1 m, nearly never at 32 m.
    assert sum(r is not None for stay in survey for r in stay[1.0]) / (30 * len(survey)) > 0.95
    assert sum(r is not None for stay in survey for r in stay[32.0]) / (30 * len(survey)) < 0.03


def test_survey_misses_depend_on_signal_strength_and_come_in_runs(
    survey: list[dict[float, list[int | None]]],
) -> None:
    after: dict[str, list[bool]] = {"strong": [], "mid": [], "weak": []}
    again: list[bool] = []
    for stay in survey:
        for d in MEASURED_DETECTION:
            scans = stay[d]
            for a, b in itertools.pairwise(scans):
                if a is not None:
                    level = "strong" if a >= -75 else "mid" if a >= -82 else "weak"
                    after[level].append(b is None)
            for a, b, c in zip(scans, scans[1:], scans[2:], strict=False):
                if a is not None and b is None:
                    again.append(c is not None)
    for level, want in MEASURED_MISS_AFTER.items():
        assert len(after[level]) > 500
        assert statistics.fmean(after[level]) == pytest.approx(want, abs=MISS_AFTER_TOL), level
    assert statistics.fmean(again) == pytest.approx(MEASURED_HEARD_AGAIN, abs=HEARD_AGAIN_TOL)


def test_survey_spot_offsets_spread_and_correlation_match_the_measured_link(
    survey: list[dict[float, list[int | None]]],
) -> None:
    gw_z, phone_z = 2.5, PHONE_HEIGHT_M
    means: list[tuple[float, float]] = []
    spreads: list[float] = []
    pairs: list[tuple[float, float]] = []
    for stay in survey:
        for d in MEASURED_DETECTION:
            heard = [r for r in stay[d] if r is not None]
            if len(heard) < 5:
                continue
            m = statistics.fmean(heard)
            means.append((math.log10(math.hypot(d, gw_z - phone_z)), m))
            spreads.append(statistics.pstdev(heard))
            pairs += [
                (a - m, b - m)
                for a, b in itertools.pairwise(stay[d])
                if a is not None and b is not None
            ]
    fit = statistics.linear_regression([x for x, _ in means], [y for _, y in means])
    scatter = statistics.pstdev([y - (fit.intercept + fit.slope * x) for x, y in means])
    assert scatter == pytest.approx(MEASURED_SPOT_SCATTER_DB, abs=SPOT_SCATTER_TOL)
    assert statistics.median(spreads) == pytest.approx(MEASURED_SPREAD_DB, abs=SPREAD_TOL)
    lag = statistics.correlation([a for a, _ in pairs], [b for _, b in pairs])
    assert lag == pytest.approx(MEASURED_LAG_CORR, abs=LAG_CORR_TOL)
