"""The records ``proxima bench stream`` feeds the worker, and what it reports of their
signature check (the bench itself runs against real services: ``proxima bench stream``)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from contracts.signing import SignatureError
from stream.bench import BUSY_HOUR_SIZES, make_events, make_records, verify_us_per_record

TOPIC = "proxima/v1/stores/bench-store/gateways/gw-door/events"
SECRET = bytes(range(32))


def _records(n: int, sizes: tuple[int, ...]) -> list[tuple[bytes, list[tuple[str, bytes]], int]]:
    events = make_events(n, customers=5, start=datetime(2026, 1, 5, 10, tzinfo=UTC))
    return make_records(events, sizes, TOPIC, "kid-bench", SECRET, seed=1)


def test_busy_hour_records_are_signed_batches_of_one_or_two_events() -> None:
    records = _records(300, BUSY_HOUR_SIZES)
    assert sum(n for _, _, n in records) == 300
    assert {n for _, _, n in records} == {1, 2}


def test_the_verify_cost_checks_every_record_s_signature() -> None:
    records = _records(200, (10,))
    assert verify_us_per_record(records, "kid-bench", SECRET, TOPIC) > 0
    # A record changed after signing fails the check the figure times: nothing is skipped.
    value, headers, n = records[-1]
    tampered = [*records[:-1], (value.replace(b"zone_", b"zonE_", 1), headers, n)]
    with pytest.raises(SignatureError, match="does not match"):
        verify_us_per_record(tampered, "kid-bench", SECRET, TOPIC)
    with pytest.raises(SignatureError):
        verify_us_per_record(records, "kid-bench", bytes(32), TOPIC)
