"""Scenarios are deterministic for a seed and carry what the pipeline needs."""

from __future__ import annotations

from datetime import UTC, datetime

from beacons.eid import compute_eid
from beacons.frames import decode_fields
from contracts.trace import AdvRecord, TruthRecord
from simulators.scenarios import skeleton

START = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)


def test_same_seed_same_trace_other_seed_other_trace() -> None:
    a, b, c = skeleton(START, 7), skeleton(START, 7), skeleton(START, 8)
    assert a.records == b.records
    assert a.records != c.records


def test_adverts_carry_the_spec_eid_of_their_person() -> None:
    sc = skeleton(START, 7)
    ana = next(p for p in sc.people if p.customer_id == "cust-ana")
    eids = set()
    for record in sc.records:
        if isinstance(record, AdvRecord):
            data = {k: bytes.fromhex(v) for k, v in record.service_data.items()}
            (frame,) = decode_fields({}, data)
            eids.add(frame.to_json_dict()["eid"])
    t = int(START.timestamp() + 1)
    assert compute_eid(ana.identity_key, ana.rotation_exponent, t).hex() in eids


def test_truth_marks_each_enrolled_arrival_once() -> None:
    sc = skeleton(START, 7)
    arrivals = [
        r.customer_id for r in sc.records if isinstance(r, TruthRecord) and r.event == "arrive"
    ]
    assert sorted(arrivals) == ["cust-ana", "cust-bruno"]
