"""``proxima bench notifier`` end to end at a tiny size: every alert is seen on both paths."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from notifier.bench import run_notifier_bench

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def test_bench_sees_every_alert_in_consoles_and_on_mqtt(
    kafka_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROXIMA_BENCH_LOG", str(tmp_path / "notifier.log"))
    figures = run_notifier_bench(kafka_url, associates=4, alerts=6, rate=50)
    assert figures["associates_connected"] == 4
    assert figures["alerts"] == 6
    assert figures["lost_sse"] == 0
    assert figures["lost_mqtt"] == 0
    for name in ("sse_target_p50_ms", "sse_all_sessions_p99_ms", "mqtt_p99_ms"):
        assert not math.isnan(figures[name]), name
