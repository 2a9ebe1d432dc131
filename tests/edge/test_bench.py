"""`proxima bench edge` runs end to end on small sizes and reports every figure."""

from __future__ import annotations

import math

import pytest

from edge.bench import run_edge_bench

pytestmark = pytest.mark.integration


def test_edge_bench_reports_every_figure() -> None:
    figures = run_edge_bench(
        0.2,
        adverts=2_000,
        passes=2,
        publish_events=1_000,
        recovery_rows=2_000,
        busy_visitors=200,
    )
    assert figures["adverts"] == 4_000
    assert figures["agent_events"] > 0  # the mix's phones do enter and leave
    assert figures["recovery_rows"] == 2_000
    assert figures["agent_busy_events"] == 400  # every visitor entered and left
    for key in (
        "pipeline_adverts_per_s",
        "agent_adverts_per_s",
        "agent_adverts_per_cpu_s",
        "agent_busy_events_per_s",
        "outbox_put1_events_per_s",
        "outbox_put100_events_per_s",
        "publish_events_per_s",
        "publish_batches_per_s",
        "recovery_s",
    ):
        assert math.isfinite(figures[key]), key
        assert figures[key] > 0, key
