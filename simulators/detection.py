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
import math
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from beacons.fusion import FusionConfig, StorePresence
from beacons.presence import Transition
from beacons.resolver import EidResolver
from contracts.models import Alert, AlertKind
from contracts.trace import AdvRecord, AppRecord, read_trace
from edge.fusion import (
    FUSION_GATEWAY_ID,
    evidence_of_transition,
    fusable,
    fusion_roles,
    gateway_settings,
)
from edge.pipeline import Pipeline
from edge.settings import EdgeSettings
from edge.sources import advert_from_record
from simulators.engine import Simulation, build_scenario
from simulators.score import DEFAULT_REVISIT_GAP_S, Visit, load_truth, score

EVENT_NS = uuid.UUID("0d5e6c1e-7f43-4f0e-9a7c-3b1f2f1c9a11")


def gateway_windows(
    trace: Path, defaults: EdgeSettings | None = None
) -> Iterator[tuple[float | None, list[tuple[str, Transition]]]]:
    """Every gateway's transitions for a trace, one tick window at a time, as replay decides.

    Windows are 1 s of trace time (the agents' ``tick_s``); each is yielded with the time
    its timers fired, as :class:`edge.trace_clock.TraceClock` does at ``--speed max``; an
    ``app`` line cuts a window there (yielded with None: no timers fired).
    """
    defaults = defaults or EdgeSettings()
    with trace.open(encoding="utf-8") as fh:
        first = fh.readline()
    layout = json.loads(first).get("layout") or {}
    pipes = {
        gid: Pipeline(defaults.model_copy(update=tuned))
        for gid, tuned in gateway_settings(layout, defaults).items()
    }
    found: list[tuple[str, Transition]] = []
    out: list[Transition] = []

    def tick(at: float) -> list[tuple[str, Transition]]:
        for gid, pipe in pipes.items():
            pipe.tick(at, out)
            found.extend((gid, tr) for tr in out)
            out.clear()
        window = found[:]
        found.clear()
        return window

    with trace.open(encoding="utf-8") as fh:
        header, records = read_trace(fh)
        start = header.start.timestamp()
        window = 0
        for rec in records:
            k = math.floor(rec.t)
            if k > window:
                # As the TraceClock: timers fire at the start of the next window that has
                # records (they carry their due times, so empty windows need no tick).
                window = k
                yield start + k, tick(start + k)
            if isinstance(rec, AdvRecord):
                heard_by = pipes.get(rec.gateway_id)
                if heard_by is not None:
                    heard_by.handle(advert_from_record(rec, start), out)
                    found.extend((rec.gateway_id, tr) for tr in out)
                    out.clear()
            elif isinstance(rec, AppRecord):
                # The replay publishes what came before an app line first (no timers).
                yield None, found[:]
                found.clear()
        yield start + window + 1, tick(start + window + 1)
        # The trace is over: everyone present leaves when their timers say.
        yield math.inf, tick(math.inf)


def gateway_transitions(
    trace: Path, defaults: EdgeSettings | None = None
) -> tuple[float, list[tuple[str, Transition]]]:
    """Every gateway's presence transitions for a trace, as ``proxima replay`` decides them."""
    with trace.open(encoding="utf-8") as fh:
        header, _ = read_trace([fh.readline()])
    found = [p for _, window in gateway_windows(trace, defaults) for p in window]
    return header.start.timestamp(), found


def fused_transitions(
    trace: Path, defaults: EdgeSettings | None = None, config: FusionConfig | None = None
) -> tuple[float, list[tuple[str, Transition]]]:
    """The store coordinator's decisions for a trace (gateways with ``fused`` on).

    Each window's evidence goes through :meth:`StorePresence.window` as the coordinator
    gets it in a replay: the gateways' events, rounded as the contract carries them.
    """
    defaults = (defaults or EdgeSettings()).model_copy(update={"fused": True})
    with trace.open(encoding="utf-8") as fh:
        first = fh.readline()
    header, _ = read_trace([first])
    presence = StorePresence(fusion_roles(json.loads(first).get("layout") or {}, defaults), config)
    found: list[tuple[str, Transition]] = []
    for end, window in gateway_windows(trace, defaults):
        evidence = [evidence_of_transition(gid, tr) for gid, tr in window]
        found += [(FUSION_GATEWAY_ID, tr) for tr in presence.window(evidence, end)]
    return header.start.timestamp(), found


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
        if tr.kind in ("zone_exit", "sighting"):
            continue
        match = resolver.resolve(bytes.fromhex(tr.subject), int(tr.at))
        if match is None:
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
    *,
    fusion: bool = True,
    config: FusionConfig | None = None,
) -> dict[str, Any]:
    """One seed's score figures (``proxima score`` names), plus its missed visits.

    ``fusion``: the store's coordinator decides (as ``proxima replay`` runs it); off, each
    gateway's own decisions go to the stream, as before fusion.
    """
    sim = build_scenario(scenario, seed, population=population)
    trace = workdir / f"{scenario}-{seed}.jsonl"
    sim.write(trace)
    try:
        roles = fusion_roles(sim.layout.trace_layout(), defaults)
        if fusion and fusable(roles):  # as proxima replay decides
            _, transitions = fused_transitions(trace, defaults, config)
        else:
            _, transitions = gateway_transitions(trace, defaults)
        alerts, times = arrival_alerts(sim, sim.layout.store_id, transitions)
        truth = load_truth(trace)
        result = score(truth, alerts, times)
        door_arrivals = _door_arrivals(trace)
    finally:
        trace.unlink()
    latencies = [
        min(t for t in v.alerts) - v.arrive_t for v in result.visits if v.expected and v.alerts
    ]
    return {
        **result.figures,
        "latencies": latencies,
        "missed": [_missed(v) for v in result.missed],
        "false": [f"{f['customer_id']}@{f['t']:.0f}s ({f['why']})" for f in result.false_alerts],
        # What reaches Kafka: every event but the gateways' sightings (store-local evidence).
        "kafka_events": sum(1 for _, tr in transitions if tr.kind != "sighting"),
        "door_arrivals": door_arrivals,
    }


def _door_arrivals(trace: Path) -> int:
    """Everyone's door crossings in the trace's truth (customers, unknown phones, all)."""
    with trace.open(encoding="utf-8") as fh:
        return sum(1 for line in fh if '"truth"' in line and '"arrive"' in line)


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
    *,
    fusion: bool = True,
    config: FusionConfig | None = None,
) -> dict[str, Any]:
    """Detection figures summed over ``seeds`` of ``scenario`` (see the module docstring);
    ``population`` overrides fields of the scenario's (e.g. ``device_classes``)."""
    expected = alerted = arrivals = false = without = dup_visits = 0
    kafka_events = door_arrivals = 0
    max_per_visit = 0
    latencies: list[float] = []
    missed: list[str] = []
    false_alerts: list[str] = []
    with tempfile.TemporaryDirectory(prefix="proxima-detection-") as tmp:
        for seed in seeds:
            fig = score_seed(
                scenario, seed, Path(tmp), defaults, population, fusion=fusion, config=config
            )
            expected += fig["expected_visits"]
            alerted += fig["alerted_expected_visits"]
            arrivals += fig["arrival_alerts"]
            false += fig["false_alerts"]
            without += fig["alerts_without_consent"]
            dup_visits += fig["visits_with_duplicates"]
            max_per_visit = max(max_per_visit, fig["max_alerts_per_visit"])
            latencies += fig["latencies"]
            missed += [f"seed {seed}: {m}" for m in fig["missed"]]
            false_alerts += [f"seed {seed}: {m}" for m in fig["false"]]
            kafka_events += fig["kafka_events"]
            door_arrivals += fig["door_arrivals"]
    return {
        "scenario": scenario,
        "seeds": ",".join(str(s) for s in seeds),
        "fusion": fusion,
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
        "false": "; ".join(false_alerts) or "-",
        "door_arrivals": door_arrivals,
        "kafka_events_per_arrival": round(kafka_events / door_arrivals, 2)
        if door_arrivals
        else None,
    }
