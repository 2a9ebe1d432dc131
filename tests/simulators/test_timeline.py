"""``proxima score --timeline``: each zone decision drawn and written with why."""

from __future__ import annotations

import importlib.util
import json
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from contracts.models import SCHEMA_FOR_KIND, Event
from deploy.cli import app
from edge.fusion import FUSION_GATEWAY_ID
from edge.pipeline import to_draft
from simulators.detection import arrival_alerts, fused_transitions
from simulators.score import load_truth
from simulators.timeline import describe, sidecar_path
from tests.simulators.staged import door_cases

needs_matplotlib = pytest.mark.skipif(
    importlib.util.find_spec("matplotlib") is None, reason="the timeline needs matplotlib"
)


def test_a_coordinator_decision_is_described_with_its_rule_confidence_and_readings() -> None:
    event = {
        "kind": "zone_enter",
        "zone_id": "floor",
        "gateway_id": "fusion",
        "confidence": 0.82,
        "evidence": {
            "rule": "door_then_interior",
            "readings": [
                {"gateway_id": "gw-door", "rssi": -70.2},
                {"gateway_id": "gw-floor", "rssi": -81.6},
            ],
        },
    }
    assert describe(event) == (
        "zone_enter floor · door_then_interior 0.82 · gw-door -70, gw-floor -82 dBm"
    )
    assert describe({"kind": "zone_exit", "zone_id": "entrance", "gateway_id": "gw-door"}) == (
        "zone_exit entrance (gw-door)"
    )


@needs_matplotlib
def test_score_timeline_writes_each_decision_and_why_beside_the_png(tmp_path: Path) -> None:
    cases = door_cases(tmp_path / "door.jsonl", 10)
    sidecar_path(cases.trace).write_text(
        json.dumps(
            {
                "customers": [
                    {
                        "customer_id": c.customer_id,
                        "identity_key": c.identity_key.hex(),
                        "rotation_exponent": c.rotation_exponent,
                    }
                    for c in (cases.shopper, cases.visitor)
                ]
            }
        ),
        encoding="utf-8",
    )
    header = load_truth(cases.trace).header
    _, fused = fused_transitions(cases.trace)
    events = []
    for seq, (gw, tr) in enumerate(fused, start=1):
        draft = to_draft(tr)
        events.append(
            Event(
                schema_=SCHEMA_FOR_KIND[draft.kind],
                event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"{gw}|{tr.subject}|{tr.kind}|{tr.at}"),
                store_id=header.store_id,
                gateway_id=FUSION_GATEWAY_ID,
                observed_at=draft.observed_at,
                seq=seq,
                kind=draft.kind,
                subject=draft.subject,
                zone_id=draft.zone_id,
                rssi=draft.rssi,
                confidence=draft.confidence,
                evidence=draft.evidence,
            )
        )
    events_path = tmp_path / "events.jsonl"
    events_path.write_text(
        "\n".join("[" + e.to_json().decode() + "]" for e in events) + "\n", encoding="utf-8"
    )
    sim = type("Sim", (), {"customers": [cases.shopper, cases.visitor], "start": header.start})
    alerts, _ = arrival_alerts(sim, header.store_id, fused)  # type: ignore[arg-type]
    alerts_path = tmp_path / "alerts.jsonl"
    alerts_path.write_text("\n".join(a.to_json().decode() for a in alerts) + "\n")
    png = tmp_path / "timeline.png"
    result = CliRunner().invoke(
        app,
        ["score", str(cases.trace), "--alerts", str(alerts_path), "--events", str(events_path),
         "--timeline", str(png), "--visit", cases.visitor.customer_id],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert png.stat().st_size > 10_000
    text = png.with_suffix(".txt").read_text(encoding="utf-8")
    assert text.startswith(cases.visitor.customer_id)
    assert "zone_enter floor · door_then_interior" in text
    assert "gw-door" in text
    assert "arrival alert" in text
    # The console wraps a long path (a parallel run's temporary directory) across lines.
    assert "timeline.txt" in result.output.replace("\n", "")
