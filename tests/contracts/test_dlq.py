"""DLQ records are bounded whatever they park: an oversized input keeps its size, its hash
and a prefix, so the record itself always fits a Kafka message."""

from __future__ import annotations

import base64
import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.models import DLQ_ORIGINAL_MAX, DLQ_RECORD_MAX, DlqRecord, parse_model


def test_a_small_input_is_kept_whole_with_its_size_and_hash() -> None:
    raw = b"\x00garbage"
    record = DlqRecord.of("payload is not JSON", raw, source="bridge", store_id="s1")
    assert base64.b64decode(record.original_b64) == raw
    assert record.original_size == len(raw)
    assert record.original_sha256 == hashlib.sha256(raw).hexdigest()
    assert not record.original_truncated
    assert parse_model(DlqRecord, record.to_json()) == record


def test_an_oversized_input_keeps_a_prefix_its_size_and_its_hash() -> None:
    raw = b"x" * (3 * 1024 * 1024)
    record = DlqRecord.of("batch too big", raw, source="bridge")
    assert base64.b64decode(record.original_b64) == raw[:DLQ_ORIGINAL_MAX]
    assert record.original_truncated
    assert record.original_size == 3 * 1024 * 1024
    assert record.original_sha256 == hashlib.sha256(raw).hexdigest()
    assert len(record.to_json()) < DLQ_RECORD_MAX


@settings(max_examples=50, deadline=None)
@given(
    reason=st.text(min_size=0, max_size=5000),
    ids=st.text(min_size=1, max_size=5000),
    size=st.integers(0, 200_000),
)
def test_no_record_is_larger_than_the_bound(reason: str, ids: str, size: int) -> None:
    """Control characters (six bytes each in JSON) in every text field, a long input."""
    worst = "\x01" * len(reason)
    record = DlqRecord.of(
        reason + worst, b"\xff" * size, source=worst, store_id=ids + worst, gateway_id=worst
    )
    assert len(record.to_json()) <= DLQ_RECORD_MAX


def test_records_written_before_the_size_fields_still_parse() -> None:
    old = (
        b'{"schema":"proxima.dlq.v1","reason":"r","source":"bridge",'
        b'"received_at":"2026-01-01T10:00:00.000Z","original_b64":"AA==",'
        b'"store_id":null,"gateway_id":null}'
    )
    record = parse_model(DlqRecord, old)
    assert record.original_size is None
    assert not record.original_truncated
