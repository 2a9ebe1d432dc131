"""``proxima bench detection``: the gateways' decision path and the arrival rule, offline."""

from __future__ import annotations

from typer.testing import CliRunner

from deploy.cli import app
from edge.settings import EdgeSettings
from simulators.detection import run_detection_bench

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
        [30], defaults=EdgeSettings(linger_db=None), population=ADVERTISING
    )
    assert without["recall"] < 1.0
    assert "cust-bout-0059@837s (lingerer)" in without["missed"]
    with_lingering = run_detection_bench([30], population=ADVERTISING)
    assert "cust-bout-0059" not in str(with_lingering["missed"])


def test_bench_detection_command_names_a_bad_seed_list() -> None:
    result = CliRunner().invoke(app, ["bench", "detection", "--seeds", "21,x"])
    assert result.exit_code == 2
    assert "--seeds must be integers" in result.output


def test_a_window_shopper_at_the_shop_front_is_not_put_on_the_floor() -> None:
    # Rush seed 47: a window shopper (cust-bout-0056) at the shop front is heard now and
    # then by the floor gateway; lingering 10 dB under the floor's enter threshold
    # (-92 dBm, over 20 s) took them in, as it takes in anyone the gateway hears at all.
    got = run_detection_bench([47])
    assert got["false_alerts"] == 0
    assert got["precision"] == 1.0
