"""The door's two hard cases, staged: a held phone standing at the door, a bagged walk-in.

The door gateway alone takes the window shopper's held phone for a visitor and the phone
in a bag for someone outside; the store's coordinator, fusing door and floor, tells them
apart. Offline over ten seeds (simulators.detection, the same code the coordinator runs),
and end to end on one seed through Mosquitto, the coordinator, the bridge, Kafka and the
stream worker.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from beacons.fusion import Evidence
from beacons.resolver import EidResolver
from contracts.models import parse_alert
from simulators.detection import (
    DoorEvidence,
    arrival_alerts,
    door_evidence,
    door_evidence_figures,
    fused_transitions,
    gateway_transitions,
)
from simulators.score import load_truth
from tests.conftest import Procs
from tests.simulators.staged import DoorCases, door_cases
from tests.simulators.test_end_to_end import _pipeline, _published, _score, _wait_processed

# Seed 10 is the one where the door gateway alone alerts the shopper; fused, all ten
# seeds are right.
E2E_SEED = 10


def _subjects(cases: DoorCases, who: Any) -> set[str]:
    """The EIDs (hex) ``who`` advertised in the trace, as the resolver names them."""
    resolver = EidResolver(drift_windows=1)
    resolver.add(who.customer_id, who.identity_key, who.rotation_exponent)
    start = load_truth(cases.trace).header.start.timestamp()
    found: set[str] = set()
    with cases.trace.open(encoding="utf-8") as fh:
        for line in fh:
            if '"adv"' not in line:
                continue
            for data in json.loads(line).get("service_data", {}).values():
                frame = bytes.fromhex(data)
                if frame[:1] == b"\x30" and resolver.resolve(
                    frame[2:10], int(start + json.loads(line)["t"])
                ):
                    found.add(frame[2:10].hex())
    return found


def _alerted(cases: DoorCases, fused: bool) -> set[str]:
    header = load_truth(cases.trace).header
    sim = SimpleNamespace(customers=[cases.shopper, cases.visitor], start=header.start)
    _, transitions = (fused_transitions if fused else gateway_transitions)(cases.trace)
    alerts, _ = arrival_alerts(sim, header.store_id, transitions)
    return {a.customer_id for a in alerts}


def test_fused_the_shopper_at_the_door_is_not_alerted_and_the_bagged_visitor_is(
    tmp_path: Path,
) -> None:
    for seed in range(1, 11):
        cases = door_cases(tmp_path / f"door-{seed}.jsonl", seed)
        assert _alerted(cases, fused=True) == {cases.visitor.customer_id}, f"seed {seed}"


def test_with_a_door_pair_the_bagged_visitor_is_placed_at_the_door_and_the_shopper_never(
    tmp_path: Path,
) -> None:
    # boutique-pair: the same boutique with a gateway outside, above the door.
    at_the_door = 0
    for seed in range(1, 11):
        cases = door_cases(tmp_path / f"pair-{seed}.jsonl", seed, layout="boutique-pair")
        assert _alerted(cases, fused=True) == {cases.visitor.customer_id}, f"seed {seed}"
        _, transitions = fused_transitions(cases.trace)
        visitor = _subjects(cases, cases.visitor)
        rules = {
            tr.why.rule
            for _, tr in transitions
            if tr.kind == "zone_enter" and tr.why and tr.subject in visitor
        }
        at_the_door += "door_over_street" in rules
    # Placed by the pair as she passes the door on most seeds (7 of 10 when written), not
    # only once she reaches the floor gateway.
    assert at_the_door >= 6


def test_a_held_phone_at_the_door_line_silences_the_street_for_seconds_and_outshouts_a_bag(
    tmp_path: Path,
) -> None:
    # Why the pair's rule waits (docs/presence.md, "What the pair has to work with"): the
    # street gateway's losses come in bursts, so now and then it misses whole windows of a
    # held phone standing right under it (its last level over 2 s old) while the door
    # gateway hears that phone; and the door hears that phone louder than it hears a
    # bagged entrant in her first 3 s.
    found = DoorEvidence([], [], [])
    for seed in range(1, 11):
        cases = door_cases(
            tmp_path / f"line-{seed}.jsonl", seed, shopper_x=0.0, layout="boutique-pair"
        )
        sightings: list[Evidence] = []
        fused_transitions(cases.trace, sightings=sightings)
        got = door_evidence(cases.sim, sightings, load_truth(cases.trace).visits)
        for mine, theirs in zip(found, got, strict=True):
            mine.extend(theirs)
    figures = door_evidence_figures(found, 3.0)
    assert figures["pair_street_ages"] > 50
    assert figures["pair_street_ages_over_2s"] >= 3
    assert figures["pair_entrants"] == 10
    assert figures["pair_entrants_door_heard_3s"] >= 0.8
    assert figures["pair_entrants_over_outside_p99_3s"] == 0.0


def test_alone_the_door_gateway_alerts_the_shopper_on_the_end_to_end_seed(tmp_path: Path) -> None:
    cases = door_cases(tmp_path / "door.jsonl", E2E_SEED)
    assert cases.shopper.customer_id in _alerted(cases, fused=False)


@pytest.mark.integration
@pytest.mark.timeout(300)
async def test_through_the_real_pipeline_only_the_bagged_visitor_gets_an_arrival_alert(
    procs: Procs, proxima_env: dict[str, str]
) -> None:
    services, alerts, events = await _pipeline(procs, proxima_env)
    cases = door_cases(procs.log_dir / "door.jsonl", E2E_SEED)
    for c in (cases.shopper, cases.visitor):
        procs.run(f"enroll-{c.customer_id}", "customers", "enroll", c.customer_id,
                  "--identity-key", c.identity_key.hex(), "--rotation-exponent",
                  str(c.rotation_exponent), "--name", c.name, "--visible", "name",
                  "--consent", "arrival_alerts")  # fmt: skip
    out = procs.run("replay-door", "replay", str(cases.trace), "--speed", "max", timeout=200)
    await _wait_processed(services, _published(out), procs, timeout=120)
    await asyncio.sleep(5.0)  # the notifier delivers right behind the worker
    procs.kill("recorder", signal.SIGTERM)

    got = [parse_alert(line) for line in alerts.read_text().splitlines() if line.strip()]
    assert {a.customer_id for a in got} == {cases.visitor.customer_id}, got
    figures = _score(procs, cases.trace, alerts, events, "door")
    assert figures["recall"] == 1.0
    assert figures["false_alerts"] == 0
    # The alert's cause is the coordinator's decision, and it says why.
    (alert,) = got
    caused = [
        ev
        for line in events.read_text().splitlines()
        for ev in json.loads(line)
        if ev["event_id"] in {str(c) for c in alert.caused_by}
    ]
    assert caused, "the alert's causing event was not captured"
    assert caused[0]["gateway_id"] == "fusion"
    assert caused[0]["evidence"]["rule"] in {"door_then_interior", "interior_gateway"}
    assert {r["gateway_id"] for r in caused[0]["evidence"]["readings"]} & {"gw-door", "gw-floor"}
