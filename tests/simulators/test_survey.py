"""``proxima simulate --scenario radio-survey``: a still phone at 1-32 m from one gateway."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from contracts.trace import AdvRecord, TruthRecord, read_trace
from deploy.cli import app


def test_radio_survey_writes_a_stretch_per_distance_each_starting_with_its_truth(
    tmp_path: Path,
) -> None:
    out = tmp_path / "survey.jsonl"
    result = CliRunner().invoke(
        app, ["simulate", "--scenario", "radio-survey", "--seed", "4", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    with out.open(encoding="utf-8") as fh:
        header, records = read_trace(fh)
        recs = list(records)
    assert header.layout is not None
    assert [g.id for g in header.layout.gateways] == ["gw-survey"]
    truth = [r for r in recs if isinstance(r, TruthRecord)]
    assert [r.event for r in truth] == ["survey"] * 7
    raw = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()[1:]]
    starts = [(r["t"], r["distance_m"]) for r in raw if r["kind"] == "truth"]
    assert starts == [(60.0 * i, d) for i, d in enumerate([1.0, 2.0, 4.0, 8.0, 16.0, 24.0, 32.0])]
    adverts = [r for r in recs if isinstance(r, AdvRecord)]
    assert {r.address for r in adverts} == {adverts[0].address}  # one phone, never rotating
    # Each stretch is heard less than the one before it (1 m: nearly every advert).
    per = [[r.rssi for r in adverts if t <= r.t < t + 60.0] for t, _ in starts]
    assert len(per[0]) > 50
    assert max(a.t for a in adverts) < 420.0
    means = [sum(p) / len(p) for p in per if len(p) >= 5]
    assert means == sorted(means, reverse=True)


def test_radio_survey_is_the_same_for_the_same_seed(tmp_path: Path) -> None:
    paths = [tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"]
    for path, seed in zip(paths, ["4", "4", "5"], strict=True):
        args = ["simulate", "--scenario", "radio-survey", "--seed", seed, "--out", str(path)]
        assert CliRunner().invoke(app, args).exit_code == 0
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].read_bytes() != paths[2].read_bytes()
