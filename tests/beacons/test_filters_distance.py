"""RSSI filters and path-loss distance."""

from __future__ import annotations

import random

import pytest

from beacons.distance import (
    distance_m,
    frame_distance_m,
    rssi_at_1m,
    rssi_at_1m_from_eddystone,
    rssi_at_1m_from_ibeacon,
)
from beacons.filters import (
    AdaptivePercentileFilter,
    EwmaRssiFilter,
    KalmanRssiFilter,
    PassThroughFilter,
    RssiFilter,
)
from beacons.frames import IBeaconFrame
from tests.beacons.factories import make_eid, make_ibeacon, make_tlm, make_uid

FILTERS = [KalmanRssiFilter, EwmaRssiFilter, AdaptivePercentileFilter, PassThroughFilter]


@pytest.mark.parametrize("factory", FILTERS)
def test_protocol_and_reset(factory: type[RssiFilter]) -> None:
    f = factory()
    assert isinstance(f, RssiFilter)
    assert f.value is None
    assert f.update(-60.0, 0.0) == -60.0
    assert f.value == -60.0
    f.reset()
    assert f.value is None


@pytest.mark.parametrize("factory", [KalmanRssiFilter, EwmaRssiFilter, AdaptivePercentileFilter])
def test_filters_reduce_noise(factory: type[RssiFilter]) -> None:
    rng = random.Random(3)
    f = factory()
    raw_err = est_err = 0.0
    for i in range(400):
        sample = -70.0 + rng.gauss(0, 5)
        est = f.update(sample, i * 0.1)
        if i > 100:
            raw_err += abs(sample + 70.0)
            est_err += abs(est + 70.0)
    assert est_err < raw_err / 2


def test_kalman_follows_a_step_and_restarts_after_a_gap() -> None:
    f = KalmanRssiFilter()
    for i in range(50):
        f.update(-80.0, i * 0.2)
    for i in range(50, 70):
        f.update(-60.0, i * 0.2)
    assert f.value is not None
    assert f.value > -63.0
    assert f.update(-90.0, 100.0) == -90.0


def test_ewma_fixed_alpha_and_time_constant() -> None:
    f = EwmaRssiFilter(alpha=0.5)
    f.update(-60.0, 0.0)
    assert f.update(-70.0, 0.1) == -65.0
    g = EwmaRssiFilter(tau_s=1.0)
    g.update(-60.0, 0.0)
    # A sample one time constant later moves the estimate by 1 - 1/e of the difference.
    assert g.update(-70.0, 1.0) == pytest.approx(-60.0 - 10 * (1 - 0.36787944), abs=1e-6)
    with pytest.raises(ValueError, match="alpha"):
        EwmaRssiFilter(alpha=0.0)


def test_adaptive_percentile_ignores_outliers_and_forgets_old_samples() -> None:
    f = AdaptivePercentileFilter(window_s=10.0)
    for i, rssi in enumerate([-70, -71, -69, -70, -30, -70, -100, -71, -69, -70]):
        f.update(float(rssi), float(i))
    assert f.value == pytest.approx(-70.0, abs=0.6)
    for i in range(10):
        f.update(-50.0, 100.0 + i)
    assert f.value == -50.0


def test_adaptive_percentile_bounds_samples() -> None:
    f = AdaptivePercentileFilter(window_s=1e9, max_samples=8)
    for i in range(100):
        f.update(float(-i), float(i))
    assert len(f._sorted) <= 8


@pytest.mark.parametrize(
    ("rssi", "ref", "n", "offset", "expected"),
    [
        (-59, -59, 2.0, 0.0, 1.0),
        (-79, -59, 2.0, 0.0, 10.0),
        (-89, -59, 3.0, 0.0, 10.0),
        (-49, -59, 2.0, 0.0, 10 ** (-0.5)),
        (-79, -59, 2.0, 20.0, 100.0),
    ],
)
def test_distance(rssi: float, ref: float, n: float, offset: float, expected: float) -> None:
    assert distance_m(rssi, ref, n, offset) == pytest.approx(expected)


def test_distance_helpers() -> None:
    assert rssi_at_1m_from_ibeacon(-59) == -59.0
    assert rssi_at_1m_from_eddystone(-18) == -59.0
    assert rssi_at_1m(make_eid(tx_power=-18)) == -59.0
    assert rssi_at_1m(make_uid(tx_power=-20)) == -61.0
    assert rssi_at_1m(make_tlm()) is None
    assert rssi_at_1m(IBeaconFrame(b"\x00" * 16, 1, 1, None)) is None
    assert frame_distance_m(make_ibeacon(measured_power=-59), -79) == pytest.approx(10.0)
    assert frame_distance_m(make_tlm(), -79) is None
    with pytest.raises(ValueError, match="exponent"):
        distance_m(-70, -59, 0.0)
