"""The radio model's statistics match its configuration (seeded, so exact every run)."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from simulators.layout import GatewaySpec, RadioEnv
from simulators.radio import RadioModel

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
