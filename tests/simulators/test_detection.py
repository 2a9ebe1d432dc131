"""``proxima bench detection``: the gateways' decision path and the arrival rule, offline."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deploy.cli import app
from edge.fusion import FUSION_GATEWAY_ID, evidence_of_transition
from edge.pipeline import to_draft
from edge.settings import EdgeSettings
from simulators.detection import fused_transitions, run_detection_bench
from simulators.engine import build_scenario

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


@pytest.mark.integration
@pytest.mark.timeout(180)
async def test_the_bench_predicts_the_fused_replay_event_for_event(
    namespace: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The same evidence, the same windows, the same StorePresence: what the bench decides
    # offline is what the store's coordinator publishes through Mosquitto in a replay.
    from contracts.models import parse_batch
    from contracts.services import ServiceSettings
    from deploy.cli import _replay
    from tests.edge.support import Collector

    full = tmp_path / "full.jsonl"
    build_scenario("boutique-rush", seed=21, hours=6 / 60, population=ADVERTISING).write(full)
    trace = tmp_path / "rush.jsonl"  # no consent lines: there is no stream to wait for
    with full.open(encoding="utf-8") as fh:
        trace.write_text("".join(line for line in fh if '"consent_' not in line), encoding="utf-8")
    monkeypatch.setenv("PROXIMA_NAMESPACE", namespace)
    services = ServiceSettings()
    async with Collector(services.mqtt, services.topics.all_gateway_events()) as col:
        stats = await _replay(trace, None)
        n = stats[FUSION_GATEWAY_ID][1]
        async with asyncio.timeout(30):
            while sum(len(parse_batch(b)) for _, b, _ in col.batches) < n:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    replayed = [
        (e.kind.value, e.subject.id, e.zone_id, e.observed_at.timestamp(), e.evidence)
        for _, payload, _ in col.batches
        for e in parse_batch(payload)
    ]
    _, fused = fused_transitions(trace)
    predicted = [
        (ev.kind, ev.subject, tr.zone_id, ev.at, to_draft(tr).evidence)
        for gw, tr in fused
        for ev in [evidence_of_transition(gw, tr)]
    ]
    assert len(predicted) > 20
    assert {e[0] for e in predicted} >= {"zone_enter", "zone_exit"}
    assert replayed == predicted


def test_a_window_shopper_at_the_shop_front_is_not_put_on_the_floor() -> None:
    # Rush seed 47: a window shopper (cust-bout-0056) at the shop front is heard now and
    # then by the floor gateway; lingering 10 dB under the floor's enter threshold
    # (-92 dBm, over 20 s) took them in, as it takes in anyone the gateway hears at all.
    got = run_detection_bench([47])
    assert got["false_alerts"] == 0
    assert got["precision"] == 1.0
