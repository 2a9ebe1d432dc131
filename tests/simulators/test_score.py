"""Scoring on hand-made alert files against a hand-written trace's truth."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from contracts.models import Alert, AlertKind
from deploy.cli import app
from simulators.score import load_alerts, load_event_times, load_truth, score

DATA = Path(__file__).parent / "data"
HAND = DATA / "handwritten.jsonl"
START = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)


def make_alert(customer: str, at_s: float, *, kind: AlertKind = AlertKind.ARRIVAL,
               cause: uuid.UUID | None = None, store: str = "hand-store") -> Alert:  # fmt: skip
    return Alert(
        alert_id=uuid.uuid4(),
        store_id=store,
        customer_id=customer,
        kind=kind,
        title=f"{customer} is at the entrance",
        caused_by=[cause or uuid.uuid4()],
        created_at=START + timedelta(seconds=at_s),
    )


def write_alerts(path: Path, alerts: list[Alert], extra: list[str] = ()) -> Path:  # type: ignore[assignment]
    lines = [a.model_dump_json(by_alias=True) for a in alerts] + list(extra)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_one_timely_alert_for_the_consenting_customer_scores_perfectly(tmp_path: Path) -> None:
    truth = load_truth(HAND)
    assert [(v.customer_id, v.expected) for v in truth.visits] == [
        ("cust-hand-1", True),
        ("cust-hand-2", False),
    ]
    result = score(truth, [make_alert("cust-hand-1", 11.6)])
    f = result.figures
    assert f["recall"] == 1.0
    assert f["precision"] == 1.0
    assert f["alerts_without_consent"] == 0
    assert f["max_alerts_per_visit"] == 1
    assert f["latency_p50_s"] == pytest.approx(2.5)
    assert f["latency_basis"] == "created_at"
    assert result.failures() == []


def test_no_alert_is_a_miss() -> None:
    result = score(load_truth(HAND), [])
    assert result.figures["recall"] == 0.0
    assert [v.customer_id for v in result.missed] == ["cust-hand-1"]
    assert any("recall" in f for f in result.failures())


def test_alert_about_the_customer_without_consent_is_counted_and_false() -> None:
    result = score(load_truth(HAND), [make_alert("cust-hand-1", 12), make_alert("cust-hand-2", 30)])
    f = result.figures
    assert f["alerts_without_consent"] == 1
    assert f["precision"] == 0.5
    assert any("alerts_without_consent" in x for x in result.failures())


def test_duplicates_count_per_visit_and_against_precision() -> None:
    alerts = [
        make_alert("cust-hand-1", 12),
        make_alert("cust-hand-1", 40),
        make_alert("cust-hand-1", 70),
    ]
    f = score(load_truth(HAND), alerts).figures
    assert f["recall"] == 1.0
    assert f["max_alerts_per_visit"] == 3
    assert f["duplicate_alerts"] == 2
    assert f["precision"] == pytest.approx(1 / 3, abs=1e-3)


def test_an_alert_long_after_the_visit_is_false(tmp_path: Path) -> None:
    f = score(
        load_truth(HAND), [make_alert("cust-hand-1", 12), make_alert("cust-hand-1", 2000)]
    ).figures
    assert f["false_alerts"] == 1
    assert f["precision"] == 0.5


def test_event_times_give_latency_on_the_trace_clock(tmp_path: Path) -> None:
    cause = uuid.uuid4()
    events = tmp_path / "events.jsonl"
    observed = (START + timedelta(seconds=12.25)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    events.write_text(json.dumps([{"event_id": str(cause), "observed_at": observed}]) + "\n")
    # created_at is a wall clock far from the trace (a max-speed replay a year later).
    alert = make_alert("cust-hand-1", 365 * 86400, cause=cause)
    f = score(load_truth(HAND), [alert], load_event_times(events)).figures
    assert f["latency_basis"] == "event_time"
    assert f["latency_p50_s"] == pytest.approx(12.25 - 9.1)
    assert f["recall"] == 1.0


def test_without_any_usable_time_alerts_match_visits_in_order() -> None:
    alert = make_alert("cust-hand-1", 365 * 86400)
    f = score(load_truth(HAND), [alert]).figures
    assert f["latency_basis"] == "order"
    assert f["recall"] == 1.0
    assert f["latency_p50_s"] is None


def test_revisit_within_the_gap_is_one_visit_and_after_it_two(tmp_path: Path) -> None:
    lines = HAND.read_text().splitlines()
    lines += [
        '{"t":2000.0,"kind":"truth","customer_id":"cust-hand-1","event":"arrive","zone_id":"entrance"}',
        '{"t":2100.0,"kind":"truth","customer_id":"cust-hand-1","event":"leave","zone_id":"entrance"}',
    ]
    trace = tmp_path / "revisit.jsonl"
    trace.write_text("\n".join(lines) + "\n")
    assert len([v for v in load_truth(trace, revisit_gap_s=3600).visits if v.expected]) == 1
    assert len([v for v in load_truth(trace, revisit_gap_s=600).visits if v.expected]) == 2


def test_revocation_makes_later_alerts_violations(tmp_path: Path) -> None:
    lines = HAND.read_text().splitlines()
    at = next(i for i, x in enumerate(lines[1:], 1) if json.loads(x)["t"] > 60)
    lines.insert(
        at,
        '{"t":60.0,"kind":"app","device_id":"app-hand-1","event":"consent_revoke","customer_id":"cust-hand-1","purpose":"arrival_alerts"}',
    )
    trace = tmp_path / "revoke.jsonl"
    trace.write_text("\n".join(lines) + "\n")
    truth = load_truth(trace)
    assert truth.revoke_at == {"cust-hand-1": 60.0}
    assert score(truth, [make_alert("cust-hand-1", 12)]).figures["alerts_without_consent"] == 0
    assert score(truth, [make_alert("cust-hand-1", 70)]).figures["alerts_without_consent"] == 1


def test_bad_alert_lines_are_reported_and_the_rest_scored(tmp_path: Path) -> None:
    good = make_alert("cust-hand-1", 12)
    path = write_alerts(
        tmp_path / "alerts.jsonl", [good, good], ['{"alert_id": "nope"}', "not json"]
    )
    loaded = load_alerts(path)
    assert len(loaded.alerts) == 1  # the same alert twice (QoS 1 redelivery) is one
    assert len(loaded.rejected) == 2
    assert "line 3" in loaded.rejected[0]


def test_score_command_prints_json_and_checks_targets(tmp_path: Path) -> None:
    runner = CliRunner()
    good = write_alerts(tmp_path / "good.jsonl", [make_alert("cust-hand-1", 11.0)])
    result = runner.invoke(app, ["score", str(HAND), "--alerts", str(good), "--json", "--check"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["recall"] == 1.0
    bad = write_alerts(tmp_path / "bad.jsonl", [make_alert("cust-hand-2", 30.0)])
    result = runner.invoke(app, ["score", str(HAND), "--alerts", str(bad), "--check"])
    assert result.exit_code == 1
    assert "alerts_without_consent" in result.output


def test_score_command_names_a_bad_trace_line_and_scores_the_rest(tmp_path: Path) -> None:
    trace = tmp_path / "bad.jsonl"
    lines = HAND.read_text().splitlines()
    lines[5] = '{"t": 1.0, "kind": "truth"'  # a note line, cut off
    trace.write_text("\n".join(lines) + "\n")
    alerts = write_alerts(tmp_path / "a.jsonl", [make_alert("cust-hand-1", 11.0)])
    result = CliRunner().invoke(app, ["score", str(trace), "--alerts", str(alerts), "--json"])
    assert result.exit_code == 0, result.output
    assert "not JSON (first at line 6)" in result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["skipped_trace_lines"] == 1
    assert figures["recall"] == 1.0
