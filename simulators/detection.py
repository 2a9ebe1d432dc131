"""``proxima bench detection``: the detection figures of DESIGN.md on simulated stores, offline.

For each seed it simulates a scenario, runs every gateway's real decision path
(``edge.pipeline.Pipeline`` with the thresholds ``proxima replay`` gives it from the
layout's calibration, timers ticked each second of trace time), resolves the EIDs the way
the stream does (``beacons.resolver`` over the enrolled customers' keys), applies the
stream's arrival rule (the first in-store signal of a customer not seen for
``revisit_gap_s`` starts a visit; alerts only with ``arrival_alerts`` consent at that
moment) and scores the arrivals with ``simulators.score`` against the trace's truth.

No broker is involved, so it measures what the radio and the zone logic allow, quickly
(~5 s per boutique-rush seed) and for many seeds; the end-to-end test
(tests/simulators/test_end_to_end.py) scores one of these traces through the real
Mosquitto, Kafka and Redis pipeline and gets the same alerts. Latency is from the truth's
door crossing to the ``observed_at`` of the event that caused the alert (the pipeline
adds ~20-50 ms, ``proxima bench stream``/``notifier``).
"""

from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from beacons.presence import Transition
from beacons.resolver import EidResolver
from contracts.models import Alert, AlertKind
from contracts.trace import AdvRecord, read_trace
from edge.calibration import calibrated_thresholds
from edge.pipeline import Pipeline
from edge.settings import EdgeSettings
from edge.sources import advert_from_record
from simulators.engine import Simulation, build_scenario
from simulators.score import DEFAULT_REVISIT_GAP_S, Visit, load_truth, score

EVENT_NS = uuid.UUID("0d5e6c1e-7f43-4f0e-9a7c-3b1f2f1c9a11")


def gateway_transitions(
    trace: Path, defaults: EdgeSettings | None = None
) -> tuple[float, list[tuple[str, Transition]]]:
    """Every gateway's presence transitions for a trace, as ``proxima replay`` decides them."""
    defaults = defaults or EdgeSettings()
    with trace.open(encoding="utf-8") as fh:
        first = fh.readline()
    layout = json.loads(first).get("layout") or {}
    tuned = calibrated_thresholds(
        layout, defaults.enter_rssi, defaults.exit_rssi, linger_db=defaults.linger_db
    )
    pipes: dict[str, Pipeline] = {}
    for gw in layout.get("gateways") or []:
        settings = defaults.model_copy(
            update={
                "gateway_id": gw["id"],
                "zone_id": gw["zone_id"],
                "rssi_offset_db": float(gw.get("rssi_offset_db", 0.0)),
                **tuned.get(gw["id"], {}),
            }
        )
        pipes[gw["id"]] = Pipeline(settings)
    found: list[tuple[str, Transition]] = []
    out: list[Transition] = []
    with trace.open(encoding="utf-8") as fh:
        header, records = read_trace(fh)
        start = header.start.timestamp()
        next_tick = 1.0
        for rec in records:
            while rec.t >= next_tick:  # the agents' presence timers, once a second
                for gid, pipe in pipes.items():
                    pipe.tick(start + next_tick, out)
                    found += [(gid, tr) for tr in out]
                    out.clear()
                next_tick += 1.0
            if isinstance(rec, AdvRecord):
                heard_by = pipes.get(rec.gateway_id)
                if heard_by is not None:
                    heard_by.handle(advert_from_record(rec, start), out)
                    found += [(rec.gateway_id, tr) for tr in out]
                    out.clear()
    return start, found


def arrival_alerts(
    sim: Simulation,
    store_id: str,
    transitions: Iterable[tuple[str, Transition]],
    revisit_gap_s: float = DEFAULT_REVISIT_GAP_S,
) -> tuple[list[Alert], dict[str, float]]:
    """The arrival alerts the stream's rule makes of these transitions, and their causes' times."""
    resolver = EidResolver(drift_windows=1)
    consent: dict[str, tuple[bool, float | None]] = {}
    for c in sim.customers:
        if c.customer_id is None:
            continue
        resolver.add(c.customer_id, c.identity_key, c.rotation_exponent)
        consent[c.customer_id] = ("arrival_alerts" in c.consent, c.revoke_at)
    start = sim.start.timestamp()
    last_seen: dict[str, float] = {}
    alerts: list[Alert] = []
    times: dict[str, float] = {}
    for gateway_id, tr in sorted(transitions, key=lambda p: p[1].at):
        match = resolver.resolve(bytes.fromhex(tr.subject), int(tr.at))
        if match is None or tr.kind == "zone_exit":
            continue
        cid = match.identity_id
        new = cid not in last_seen or tr.at - last_seen[cid] >= revisit_gap_s
        last_seen[cid] = tr.at
        granted, revoke_at = consent.get(cid, (False, None))
        if not new or not granted or (revoke_at is not None and start + revoke_at <= tr.at):
            continue
        event_id = uuid.uuid5(EVENT_NS, f"{gateway_id}|{tr.subject}|{tr.kind}|{tr.at}")
        times[str(event_id)] = tr.at
        alerts.append(
            Alert(
                alert_id=uuid.uuid5(EVENT_NS, f"alert|{event_id}"),
                store_id=store_id,
                customer_id=cid,
                kind=AlertKind.ARRIVAL,
                title=f"{cid} is at the {tr.zone_id}",
                zone_id=tr.zone_id,
                caused_by=[event_id],
                created_at=datetime.fromtimestamp(tr.at, UTC),
            )
        )
    return alerts, times


def score_seed(
    scenario: str,
    seed: int,
    workdir: Path,
    defaults: EdgeSettings | None = None,
    population: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One seed's score figures (``proxima score`` names), plus its missed visits."""
    sim = build_scenario(scenario, seed, population=population)
    trace = workdir / f"{scenario}-{seed}.jsonl"
    sim.write(trace)
    try:
        _, transitions = gateway_transitions(trace, defaults)
        alerts, times = arrival_alerts(sim, sim.layout.store_id, transitions)
        result = score(load_truth(trace), alerts, times)
    finally:
        trace.unlink()
    latencies = [
        min(t for t in v.alerts) - v.arrive_t for v in result.visits if v.expected and v.alerts
    ]
    return {
        **result.figures,
        "latencies": latencies,
        "missed": [_missed(v) for v in result.missed],
    }


def _missed(v: Visit) -> str:
    return f"{v.customer_id}@{v.arrive_t:.0f}s ({v.behaviour})"


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return round(s[lo] + (s[hi] - s[lo]) * (k - lo), 2)


def run_detection_bench(
    seeds: Sequence[int] = (21, 22, 23, 24, 25, 26, 27),
    scenario: str = "boutique-rush",
    defaults: EdgeSettings | None = None,
    population: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Detection figures summed over ``seeds`` of ``scenario`` (see the module docstring);
    ``population`` overrides fields of the scenario's (e.g. ``device_classes``)."""
    expected = alerted = arrivals = false = without = dup_visits = 0
    max_per_visit = 0
    latencies: list[float] = []
    missed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="proxima-detection-") as tmp:
        for seed in seeds:
            fig = score_seed(scenario, seed, Path(tmp), defaults, population)
            expected += fig["expected_visits"]
            alerted += fig["alerted_expected_visits"]
            arrivals += fig["arrival_alerts"]
            false += fig["false_alerts"]
            without += fig["alerts_without_consent"]
            dup_visits += fig["visits_with_duplicates"]
            max_per_visit = max(max_per_visit, fig["max_alerts_per_visit"])
            latencies += fig["latencies"]
            missed += [f"seed {seed}: {m}" for m in fig["missed"]]
    return {
        "scenario": scenario,
        "seeds": ",".join(str(s) for s in seeds),
        "expected_visits": expected,
        "recall": round(alerted / expected, 4) if expected else None,
        "precision": round((arrivals - false) / arrivals, 4) if arrivals else None,
        "false_alerts": false,
        "alerts_without_consent": without,
        "max_alerts_per_visit": max_per_visit,
        "visits_with_duplicates": dup_visits,
        "latency_p50_s": _percentile(latencies, 0.5),
        "latency_p95_s": _percentile(latencies, 0.95),
        "latency_max_s": round(max(latencies), 2) if latencies else None,
        "missed": "; ".join(missed) or "-",
    }
