"""A trace written by another tool replays as its clean twin (DESIGN.md, trace format).

The foreign trace is the hand-written one with what other recorders produce: extra header
and line fields, a kind this version does not know, truth lines about a person nobody can
name (``"customer_id": null``) or in another tool's shape, and malformed extra lines (a line
cut off mid-line, one not UTF-8, one not an object, one whose ``t`` goes back). The truth
lines are never read by the pipeline; each malformed line is skipped, counted and reported
once, and the replay publishes exactly the events of the clean trace.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from beacons.frames import encode_eddystone_eid
from contracts.models import parse_batch
from contracts.services import ServiceSettings
from contracts.trace import (
    BAD_FIELDS,
    NOT_AN_OBJECT,
    NOT_JSON,
    NOT_UTF8,
    T_BACKWARDS,
    TraceProblems,
)
from simulators.replay import ConsentReplay
from simulators.score import load_truth, score
from tests.simulators.test_score import make_alert

HAND = Path(__file__).parent / "data" / "handwritten.jsonl"

Published = tuple[str, str, str, str, float]  # gateway, kind, subject, zone, observed_at


def _strong_advert(t: float, eid_byte: int, **extra: object) -> dict[str, object]:
    """A strong advert of a subject the clean trace does not have: read, it makes events."""
    uuid, data = encode_eddystone_eid(bytes([eid_byte]) * 8, -20)
    return {"t": t, "kind": "adv", "gateway_id": "gw-a", "address": "C0:BA:D0:00:00:01",
            "rssi": -45, "service_data": {uuid: data.hex()}, **extra}  # fmt: skip


def foreign_trace(clean: Path, out: Path) -> Path:
    """The clean trace as another tool might have written it (see module docstring)."""
    lines = clean.read_text(encoding="utf-8").splitlines()
    header = json.loads(lines[0])
    header.update(tool="other-recorder 3.1", site={"country": "PT"})
    body: list[bytes] = []
    for line in lines[1:]:
        data = json.loads(line)
        if data["kind"] == "adv":  # fields of the other tool's own on every advert
            data.update(channel=37, x_raw_pdu="0201061aff", x_seen={"by": "other-recorder"})
        body.append(json.dumps(data).encode())
        if data["t"] == 2.0:
            body += [
                json.dumps(
                    {
                        "t": 2.0,
                        "kind": "truth",
                        "customer_id": None,
                        "event": "arrive",
                        "zone_id": "entrance",
                        "person": "walk-in-7",
                    }
                ).encode(),
                json.dumps({"t": "soon", "kind": "truth", "who": {"badge": 3}}).encode(),
                json.dumps({"t": 2.1, "kind": "radar", "blip": [1, 2]}).encode(),
                b"",
            ]
        if data["t"] == 9.07:
            cut = json.dumps(_strong_advert(9.08, 0xC1)).encode()
            body.append(cut[: len(cut) // 2])  # the recorder died mid-line, then went on
        if data["t"] == 11.09:  # otherwise valid, but its local name is Latin-1
            latin1 = json.dumps(_strong_advert(11.1, 0xC2, local_name="CAFE")).encode()
            body.append(latin1.replace(b"CAFE", b"caf\xe9"))
        if data["t"] == 14.0:
            body.append(b'[14.5, "adv"]')
        if data["t"] == 27.4:
            body.append(json.dumps(_strong_advert(3.0, 0xC3)).encode())
    out.write_bytes(b"\n".join([json.dumps(header).encode(), *body]) + b"\n")
    return out


EXPECTED_SKIPS = {NOT_JSON: 1, NOT_UTF8: 1, NOT_AN_OBJECT: 1, T_BACKWARDS: 1}


async def test_two_gateways_readers_of_a_foreign_trace_hear_the_clean_adverts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """At a finite speed every agent reads the file itself; each bad line is reported once."""
    foreign = foreign_trace(HAND, tmp_path / "foreign.jsonl")
    heard: dict[str, list[tuple[str, int, float]]] = {}
    for name, path in (("clean", HAND), ("foreign", foreign)):
        replay = ConsentReplay()  # the trace has no consent lines: Redis is never asked
        try:
            for gw in ("gw-a", "gw-b"):
                async for a in replay.source(path, gw, None).adverts():
                    heard.setdefault(name, []).append((gw, a.rssi, a.at))
        finally:
            replay.close()
        if name == "foreign":
            problems = replay.problems
    assert len(heard["clean"]) > 50
    assert heard["foreign"] == heard["clean"]
    assert dict(problems.skipped) == EXPECTED_SKIPS
    assert dict(problems.ignored_kinds) == {"note": 1, "radar": 1}
    reports = [r.getMessage() for r in caplog.records if "line skipped" in r.getMessage()]
    assert len(reports) == 4  # two readers, each line once
    assert any("line 21: not JSON" in m for m in reports), reports


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_a_foreign_trace_publishes_exactly_the_events_of_its_clean_twin(
    tmp_path: Path, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from simulators.replay import replay_trace
    from tests.edge.support import Collector

    monkeypatch.setenv("PROXIMA_NAMESPACE", namespace)
    services = ServiceSettings()
    foreign = foreign_trace(HAND, tmp_path / "foreign.jsonl")
    seen: dict[str, list[Published]] = {}
    problems: dict[str, TraceProblems] = {}
    for name, path in (("clean", HAND), ("foreign", foreign)):
        problems[name] = TraceProblems(str(path))
        async with Collector(services.mqtt, services.topics.all_gateway_events()) as col:
            stats = await replay_trace(path, None, problems[name])
            n = sum(events for _, events in stats.values())
            async with asyncio.timeout(30):
                while sum(len(parse_batch(b)) for _, b, _ in col.batches) < n:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
        seen[name] = [
            (e.gateway_id, e.kind.value, e.subject.id, e.zone_id or "",
             e.observed_at.timestamp())
            for e in col.events()
        ]  # fmt: skip
    assert len(seen["clean"]) >= 4  # both phones enter and leave
    assert seen["foreign"] == seen["clean"]
    assert problems["clean"].total_skipped == 0
    assert dict(problems["foreign"].skipped) == EXPECTED_SKIPS
    summary = problems["foreign"].summary()
    assert summary is not None
    assert "skipped 4 malformed line(s)" in summary
    assert "1 'radar'" in summary


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_proxima_replay_of_a_foreign_trace_exits_0_and_says_what_it_skipped(
    tmp_path: Path,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from deploy.cli import app

    monkeypatch.setenv("PROXIMA_NAMESPACE", namespace)
    foreign = foreign_trace(HAND, tmp_path / "foreign.jsonl")
    with caplog.at_level(logging.WARNING):
        result = CliRunner().invoke(app, ["replay", str(foreign), "--speed", "max"])
    assert result.exit_code == 0, result.output
    assert "gw-a:" in result.stdout
    assert "events published" in result.stdout
    assert "skipped 4 malformed line(s)" in result.stderr
    assert "not JSON (first at line 21)" in result.stderr


def test_a_foreign_trace_scores_as_its_clean_twin(tmp_path: Path) -> None:
    """Score reads truth lines: a null customer is nobody to alert about, a truth line in
    another tool's shape is skipped like any malformed line, and the figures stay."""
    foreign = foreign_trace(HAND, tmp_path / "foreign.jsonl")
    alerts = [make_alert("cust-hand-1", 11.6), make_alert("cust-hand-2", 30.0)]
    clean = score(load_truth(HAND), alerts).figures
    truth = load_truth(foreign)
    got = score(truth, alerts).figures
    assert got.pop("skipped_trace_lines") == 5
    assert got.pop("truth_without_customer") == 1
    assert clean.pop("skipped_trace_lines") == 0
    assert clean.pop("truth_without_customer") == 0
    assert got == clean
    assert (got["visits"], got["recall"], got["alerts_without_consent"]) == (2, 1.0, 1)
    assert dict(truth.problems.skipped) == {**EXPECTED_SKIPS, BAD_FIELDS: 1}
