"""Per-gateway thresholds from a gateway's calibration and its zone's geometry."""

from __future__ import annotations

from typing import Any

import pytest

from edge.calibration import calibrated_thresholds, calibrations, predicted_rssi

BOUTIQUE: dict[str, Any] = {
    "zones": [
        {"id": "entrance", "kind": "entrance", "rect": [-3.0, 0.0, 3.0, 4.0]},
        {"id": "floor", "kind": "floor", "rect": [-8.0, 0.0, 8.0, 20.0]},
        {"id": "fitting", "kind": "fitting_room", "rect": [2.0, 16.0, 8.0, 20.0]},
        {"id": "upstairs", "kind": "floor", "floor": 1, "rect": [-40.0, 0.0, 40.0, 40.0]},
        {"id": "mezzanine", "kind": "floor", "floor": 1, "rect": [0.0, 0.0, 10.0, 10.0]},
        {"id": "street", "kind": "outside", "rect": [-45.0, -8.0, 45.0, 0.0]},
    ],
    "gateways": [
        {
            "id": "gw-door",
            "zone_id": "entrance",
            "x": 0,
            "y": 2.5,
            "rssi_1m": -58,
            "path_loss_n": 2.1,
        },
        {
            "id": "gw-floor",
            "zone_id": "floor",
            "x": 0,
            "y": 10,
            "rssi_1m": -60.5,
            "path_loss_n": 2.3,
        },
        {
            "id": "gw-fit",
            "zone_id": "fitting",
            "x": 6,
            "y": 18.5,
            "rssi_1m": -61,
            "path_loss_n": 2.6,
        },
        {
            "id": "gw-up",
            "zone_id": "upstairs",
            "floor": 1,
            "x": 0,
            "y": 20,
            "rssi_1m": -60,
            "path_loss_n": 2.0,
        },
        {"id": "gw-plain", "zone_id": "floor", "x": 0, "y": 5},
        {
            "id": "gw-mezz",
            "zone_id": "mezzanine",
            "floor": 1,
            "x": 5,
            "y": 5,
            "rssi_1m": -60,
            "path_loss_n": 2.0,
        },
    ],
}


def test_predicted_rssi_follows_the_log_distance_model() -> None:
    assert predicted_rssi(-60, 2.0, 10.0) == pytest.approx(-80.0)
    assert predicted_rssi(-60, 2.0, 0.2) == -60  # closer than 1 m counts as 1 m


def test_a_floor_gateway_covers_its_zone_but_not_the_street() -> None:
    got = calibrated_thresholds(BOUTIQUE, -72.0, -80.0)
    # Shop floor: its far corner (12.8 m) predicts -86 dBm, but the street is 10 m away
    # (-83.5 dBm), so the street plus a 4 dB margin bounds it: -79.5.
    assert got["gw-floor"]["enter_rssi"] == -79.5
    assert got["gw-floor"]["exit_rssi"] == -87.5
    # Upstairs there is no street; the mezzanine's own far corner (7.07 m) bounds it ...
    assert got["gw-mezz"]["enter_rssi"] == pytest.approx(round(predicted_rssi(-60, 2, 50**0.5), 1))
    # ... and where a whole floor is in reach, never below -85 dBm.
    assert got["gw-up"]["enter_rssi"] == -85.0


def test_thresholds_are_in_the_units_the_pipeline_compares_after_the_offset() -> None:
    # The pipeline adds rssi_offset_db to every reading (here normalising to -59 dBm at
    # 1 m), so the threshold must carry it too: 1.5 dB less sensitive than without.
    layout = {**BOUTIQUE, "gateways": [{**BOUTIQUE["gateways"][1], "rssi_offset_db": 1.5}]}
    got = calibrated_thresholds(layout, -72.0, -80.0)
    assert (got["gw-floor"]["enter_rssi"], got["gw-floor"]["exit_rssi"]) == (-78.0, -86.0)


def test_entrances_fitting_rooms_and_uncalibrated_gateways_keep_the_default() -> None:
    got = calibrated_thresholds(BOUTIQUE, -72.0, -80.0)
    assert "gw-door" not in got  # the street is nearer than the entrance's far side
    # a small zone inside the floor: wider would take the floor
    assert "enter_rssi" not in got["gw-fit"]
    assert calibrations(BOUTIQUE)["gw-fit"].enter_rssi(-72.0) == -72.0
    assert "gw-plain" not in got
    assert "gw-plain" not in calibrations(BOUTIQUE)


def test_a_calibration_never_makes_a_gateway_deafer_than_the_default() -> None:
    # A tiny zone right at the gateway would predict a threshold above the default.
    layout = {
        "zones": [{"id": "till", "kind": "floor", "rect": [0.0, 0.0, 0.5, 0.5]}],
        "gateways": [
            {"id": "gw", "zone_id": "till", "x": 0, "y": 0, "rssi_1m": -50, "path_loss_n": 2}
        ],
    }
    assert calibrations(layout)["gw"].enter_rssi(-72.0) == -72.0
    assert "enter_rssi" not in calibrated_thresholds(layout, -72.0, -80.0).get("gw", {})


def test_floors_linger_deeper_and_sooner_small_zones_not_at_all() -> None:
    got = calibrated_thresholds(BOUTIQUE, -72.0, -80.0, linger_db=10.0)
    # The entrance keeps the defaults (10 dB under enter for 60 s: window shoppers pass).
    assert "gw-door" not in got
    # A floor lingers at -88 dBm itself, over 15 s: not 10 dB under its enter threshold
    # (-89.5 here), where on a measured radio anything heard at all averages.
    assert got["gw-floor"]["linger_db"] == 8.5  # -79.5 - 8.5 = -88
    assert got["gw-floor"]["linger_min_s"] == 15.0
    # A fitting room inside the floor does not linger: floor shoppers linger at its level.
    assert got["gw-fit"] == {"linger_db": None}
    # Lingering off everywhere: no gateway gets anything for it.
    off = calibrated_thresholds(BOUTIQUE, -72.0, -80.0, linger_db=None)
    assert "gw-fit" not in off
    assert "linger_db" not in off["gw-floor"]
