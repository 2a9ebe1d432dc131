"""``proxima bench pipeline`` at a tiny size: every probe arrives through the real bridge,
stream worker and notifier, on Kafka, in every console and on a handheld, while the
region's other stores publish."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from deploy.pipeline_bench import run_pipeline_bench

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


async def test_every_probe_reaches_kafka_the_consoles_and_a_handheld_under_load(
    kafka_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROXIMA_KAFKA", kafka_url)
    monkeypatch.setenv("PROXIMA_BENCH_LOG", str(tmp_path / "logs"))
    figures = await run_pipeline_bench(stores=3, store_rate=5.0, associates=2, probes=6, rate=10.0)
    assert (figures["lost_kafka"], figures["lost_console"], figures["lost_handheld"]) == (0, 0, 0)
    assert figures["region_events_per_s"] > 5.0  # the other stores published meanwhile
    for name in ("kafka", "console_first", "console_all", "handheld"):
        assert not math.isnan(figures[f"{name}_p99_ms"]), name
        assert figures[f"{name}_p50_ms"] <= figures[f"{name}_p99_ms"], name
    assert figures["kafka_p50_ms"] <= figures["console_all_p50_ms"]
    assert {p.name for p in (tmp_path / "logs").iterdir()} == {
        "worker.log",
        "bridge.log",
        "notifier.log",
    }
