"""Settings that must agree with each other are refused at start, naming both."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from contracts.models import DLQ_RECORD_MAX
from stream.settings import StreamSettings


def test_the_defaults_agree() -> None:
    s = StreamSettings()
    assert s.bridge_max_payload * 2 <= s.kafka_max_request_size
    assert s.event_max_age_s < s.dedupe_ttl_s
    assert s.kafka_max_request_size >= DLQ_RECORD_MAX * 2


def test_a_batch_limit_near_kafkas_message_limit_is_refused() -> None:
    with pytest.raises(
        ValidationError, match=r"bridge_max_payload \(1000000\) must be at most half"
    ):
        StreamSettings(bridge_max_payload=1_000_000)
    StreamSettings(bridge_max_payload=1_000_000, kafka_max_request_size=2_000_000)


def test_a_kafka_limit_too_small_for_a_dlq_record_is_refused() -> None:
    with pytest.raises(ValidationError, match="kafka_max_request_size"):
        StreamSettings(bridge_max_payload=1000, kafka_max_request_size=DLQ_RECORD_MAX)


def test_events_may_not_outlive_their_dedupe_marks() -> None:
    with pytest.raises(ValidationError, match=r"event_max_age_s .* shorter than dedupe_ttl_s"):
        StreamSettings(event_max_age_s=3 * 86400)
    with pytest.raises(ValidationError, match="shorter than dedupe_ttl_s"):
        StreamSettings(dedupe_ttl_s=3600)
    StreamSettings(dedupe_ttl_s=3600, event_max_age_s=1800)
