"""Scoring per device class and the approach lead time, on small hand-written traces."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from contracts.models import Alert, AlertKind
from deploy.cli import app
from simulators.score import Tally, load_truth, score

START = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)
HEADER = {
    "format": "proxima-trace",
    "version": 1,
    "store_id": "s1",
    "start": "2026-02-01T09:00:00Z",
    "duration_s": 1200,
    "customers": [
        {"customer_id": c, "consent": [] if c == "nc" else ["arrival_alerts"]}
        for c in ("and", "iph", "tag", "none", "old", "nc", "walk")
    ],
}


def truth(t: float, cid: str, event: str, cls: str | None = None) -> dict[str, object]:
    line: dict[str, object] = {"t": t, "kind": "truth", "customer_id": cid, "event": event}
    if cls is not None:
        line["device_class"] = cls
    return line


def write_trace(path: Path, lines: list[dict[str, object]], header: dict[str, object]) -> Path:
    body = sorted(lines, key=lambda line: float(line["t"]))  # type: ignore[arg-type]
    path.write_text("\n".join(json.dumps(x) for x in [header, *body]) + "\n")
    return path


def alert(cid: str, t: float, kind: AlertKind = AlertKind.ARRIVAL) -> Alert:
    return Alert(
        alert_id=uuid.uuid4(),
        store_id="s1",
        customer_id=cid,
        kind=kind,
        title=cid,
        caused_by=[uuid.uuid4()],
        created_at=START + timedelta(seconds=t),
    )


# One of each: an Android phone alerted 2 s after the door; an iPhone whose owner shares
# her location (geofence at 10 s, approach alert at 20 s, door at 100 s, arrival 6 s later);
# a VIP tag alerted twice; a no-app customer (not alerted); a line with no class (an older trace);
# an iPhone without consent alerted; a location sharer who walks by (approach, no visit).
LINES = [
    truth(100, "and", "arrive", "android_app"),
    truth(400, "and", "leave", "android_app"),
    truth(10, "iph", "enter_geofence", "iphone_app"),
    truth(100, "iph", "arrive", "iphone_app"),
    truth(500, "iph", "leave", "iphone_app"),
    truth(200, "tag", "arrive", "vip_tag"),
    truth(600, "tag", "leave", "vip_tag"),
    truth(300, "none", "arrive", "no_app"),
    truth(700, "none", "leave", "no_app"),
    truth(150, "old", "arrive"),
    truth(450, "old", "leave"),
    truth(320, "nc", "arrive", "iphone_app"),
    truth(620, "nc", "leave", "iphone_app"),
    truth(600, "walk", "enter_geofence", "iphone_app"),
    truth(700, "walk", "leave_geofence", "iphone_app"),
]
ALERTS = [
    alert("and", 102),
    alert("iph", 20, AlertKind.APPROACH),
    alert("iph", 106),
    alert("tag", 203),
    alert("tag", 250),
    alert("old", 151),
    alert("nc", 321),
    alert("walk", 610, AlertKind.APPROACH),
]


def test_figures_per_device_class_and_overall(tmp_path: Path) -> None:
    result = score(load_truth(write_trace(tmp_path / "t.jsonl", LINES, HEADER)), ALERTS)
    f, by = result.figures, result.figures["by_class"]
    assert sorted(by) == ["android_app", "iphone_app", "no_app", "unknown", "vip_tag"]
    assert (by["android_app"]["recall"], by["android_app"]["latency_p50_s"]) == (1.0, 2.0)
    iphone = by["iphone_app"]
    assert (iphone["expected_visits"], iphone["recall"], iphone["latency_p95_s"]) == (1, 1.0, 6.0)
    assert iphone["precision"] == 0.5  # the alert about the customer without consent
    assert iphone["alerts_without_consent"] == 1
    assert (iphone["approach_alerts"], iphone["approach_alerts_without_visit"]) == (2, 1)
    assert (iphone["location_sharing_visits"], iphone["approached_visits"]) == (1, 1)
    assert iphone["approach_lead_p50_s"] == 80.0
    tag = by["vip_tag"]
    assert (tag["max_alerts_per_visit"], tag["duplicates_per_visit"], tag["precision"]) == (
        2,
        1.0,
        0.5,
    )
    # Nothing on her to hear: her visit is counted, and expects no alert.
    assert (by["no_app"]["visits"], by["no_app"]["expected_visits"]) == (1, 0)
    assert by["no_app"]["recall"] is None
    assert by["unknown"]["recall"] == 1.0  # a truth line without a class still scores
    assert (f["visits"], f["expected_visits"], f["recall"]) == (6, 4, 1.0)
    assert f["alerts_without_consent"] == 1
    assert (f["arrival_alerts"], f["precision"]) == (6, round(4 / 6, 4))
    assert (f["duplicate_alerts"], f["duplicates_per_visit"]) == (1, 0.2)
    assert f["approach_lead_p50_s"] == 80.0
    assert f["other_alerts"] == {}  # approach alerts are scored, not "other"


def test_an_approach_after_the_door_has_a_negative_lead_and_misses_the_target(
    tmp_path: Path,
) -> None:
    lines = [truth(50, "iph", "enter_geofence", "iphone_app"), *LINES[3:5]]
    late = [alert("iph", 130, AlertKind.APPROACH), alert("iph", 106)]
    result = score(load_truth(write_trace(tmp_path / "t.jsonl", lines, HEADER)), late)
    assert result.figures["approach_lead_p50_s"] == -30.0
    assert "approach_lead_p50_s = -30.0 (target >= 60.0)" in result.failures()


def test_without_geofence_truth_every_customer_counts_as_sharing(tmp_path: Path) -> None:
    lines = [line for line in LINES if line["event"] != "enter_geofence"]
    result = score(load_truth(write_trace(tmp_path / "t.jsonl", lines, HEADER)), ALERTS)
    assert result.figures["location_sharing_visits"] == 4  # every expected visit
    assert result.figures["approached_visits"] == 1


def test_an_older_trace_scores_whole_under_unknown() -> None:
    hand = Path(__file__).parent / "data" / "handwritten.jsonl"
    result = score(load_truth(hand), [])
    assert list(result.figures["by_class"]) == ["unknown"]
    assert result.figures["by_class"]["unknown"]["expected_visits"] == 1


def test_tallies_of_several_traces_add_up() -> None:
    a = Tally(expected=2, alerted=1, max_per_visit=1, latencies=[1.0], leads=[70.0])
    b = Tally(expected=3, alerted=3, max_per_visit=2, latencies=[3.0, 5.0], leads=[90.0])
    a.add(b)
    f = a.figures()
    assert (f["expected_visits"], f["recall"], f["max_alerts_per_visit"]) == (5, 0.8, 2)
    assert (f["latency_p50_s"], f["approach_lead_p50_s"]) == (3.0, 80.0)


def test_score_command_prints_the_class_table_and_json(tmp_path: Path) -> None:
    trace = write_trace(tmp_path / "t.jsonl", LINES, HEADER)
    alerts = tmp_path / "a.jsonl"
    alerts.write_text("\n".join(a.model_dump_json(by_alias=True) for a in ALERTS) + "\n")
    runner = CliRunner(env={"COLUMNS": "120"})
    shown = runner.invoke(app, ["score", str(trace), "--alerts", str(alerts)])
    assert shown.exit_code == 0, shown.output
    assert "per device class" in shown.output
    assert "iphone_app" in shown.output
    as_json = runner.invoke(app, ["score", str(trace), "--alerts", str(alerts), "--json"])
    figures = json.loads(as_json.stdout.strip().splitlines()[-1])
    assert figures["by_class"]["android_app"]["recall"] == pytest.approx(1.0)


def test_an_approach_before_a_revocation_is_not_an_alert_without_consent(tmp_path: Path) -> None:
    header = {**HEADER, "customers": [{"customer_id": "iph", "consent": ["arrival_alerts"]}]}
    lines = [
        truth(10, "iph", "enter_geofence", "iphone_app"),
        truth(40, "iph", "revoke", "iphone_app"),  # on the way, she revokes
        truth(100, "iph", "arrive", "iphone_app"),
        truth(500, "iph", "leave", "iphone_app"),
    ]
    trace = load_truth(write_trace(tmp_path / "t.jsonl", lines, header))
    assert (
        score(trace, [alert("iph", 20, AlertKind.APPROACH)]).figures["alerts_without_consent"] == 0
    )
    assert (
        score(trace, [alert("iph", 50, AlertKind.APPROACH)]).figures["alerts_without_consent"] == 1
    )
