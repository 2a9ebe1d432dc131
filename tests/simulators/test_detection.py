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


def test_without_lingering_the_bagged_phone_and_the_lingerer_are_missed() -> None:
    got = run_detection_bench(
        [21, 27], defaults=EdgeSettings(linger_db=None), population=ADVERTISING
    )  # seed 21 has the bagged phone, 27 the lingerer
    assert got["recall"] < 1.0
    assert "lingerer" in got["missed"]


def test_bench_detection_command_names_a_bad_seed_list() -> None:
    result = CliRunner().invoke(app, ["bench", "detection", "--seeds", "21,x"])
    assert result.exit_code == 2
    assert "--seeds must be integers" in result.output
