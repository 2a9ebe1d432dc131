"""The wire models accept valid payloads whole and reject invalid ones naming the field."""

from __future__ import annotations

import json

import pytest

from contracts.exceptions import ContractError
from contracts.models import (
    Alert,
    AlertAck,
    EventKind,
    GatewayStatus,
    parse_alert,
    parse_batch,
    parse_model,
    split_batch,
)
from tests.factories import alert_dict, event_dict


def test_valid_batch_round_trips() -> None:
    batch = parse_batch(json.dumps([event_dict(), event_dict(seq=2, kind="zone_exit")]))
    assert [e.kind for e in batch] == [EventKind.ZONE_ENTER, EventKind.ZONE_EXIT]
    again = json.loads(batch[0].to_json())
    assert again["schema"] == "proxima.zone.v1"
    assert again["observed_at"] == "2026-01-01T10:00:00.000Z"


def test_observed_at_is_normalised_to_utc_milliseconds() -> None:
    (event,) = parse_batch(json.dumps([event_dict(observed_at="2026-01-01T11:00:00.123456+01:00")]))
    assert json.loads(event.to_json())["observed_at"] == "2026-01-01T10:00:00.123Z"


def test_naive_timestamp_is_rejected() -> None:
    with pytest.raises(ContractError, match=r"0\.observed_at: .*timezone"):
        parse_batch(json.dumps([event_dict(observed_at="2026-01-01T10:00:00")]))


def test_unknown_kind_is_rejected_naming_the_field() -> None:
    with pytest.raises(ContractError, match=r"1\.kind: Input should be 'zone_enter'"):
        parse_batch(json.dumps([event_dict(), event_dict(kind="teleport")]))


def test_extra_field_is_rejected_naming_it() -> None:
    with pytest.raises(ContractError, match=r"0\.customer_name: Extra inputs are not permitted"):
        parse_batch(json.dumps([event_dict(customer_name="Ana")]))


def test_kind_must_match_schema_family() -> None:
    with pytest.raises(ContractError, match=r"belongs to schema 'proxima\.geofence\.v1'"):
        parse_batch(json.dumps([event_dict(kind="geofence_enter")]))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("[]", "at least 1 item"),
        ("{}", "valid array"),
        ("not json", "Invalid JSON"),
    ],
)
def test_batch_shape_errors(payload: str, message: str) -> None:
    with pytest.raises(ContractError, match=message):
        parse_batch(payload)


@pytest.mark.parametrize(
    ("field", "value", "where"),
    [
        ("subject", {"type": "eddystone_eid", "id": "A9B7"}, "subject.id"),
        ("subject", {"type": "bluetooth_name", "id": "a9"}, "subject.type"),
        ("seq", 0, "seq"),
        ("confidence", 1.5, "confidence"),
        ("store_id", "store/1", "store_id"),
        ("event_id", "not-a-uuid", "event_id"),
    ],
)
def test_bad_field_values_name_the_field(field: str, value: object, where: str) -> None:
    with pytest.raises(ContractError, match=rf"0\.{where}"):
        parse_batch(json.dumps([event_dict(**{field: value})]))


def test_split_batch_keeps_good_neighbours_of_a_bad_event() -> None:
    good1, good2 = event_dict(seq=1), event_dict(seq=3)
    events, rejected = split_batch(json.dumps([good1, event_dict(seq=2, kind="teleport"), good2]))
    assert [e.seq for e in events] == [1, 3]
    assert len(rejected) == 1
    assert rejected[0].index == 1
    assert "event 1: kind" in rejected[0].reason
    assert json.loads(rejected[0].raw)["kind"] == "teleport"


def test_split_batch_rejects_oversized_batch_whole() -> None:
    events, rejected = split_batch(
        json.dumps([event_dict(seq=i + 1) for i in range(3)]), max_events=2
    )
    assert events == []
    assert "more than the limit 2" in rejected[0].reason


def test_alert_parses_and_rejects_unknown_kind() -> None:
    alert = parse_alert(json.dumps(alert_dict()))
    assert isinstance(alert, Alert)
    assert json.loads(alert.to_json())["schema"] == "proxima.alert.v1"
    with pytest.raises(ContractError, match=r"kind: Input should be 'arrival'"):
        parse_alert(json.dumps(alert_dict(kind="birthday")))


def test_alert_requires_a_cause() -> None:
    with pytest.raises(ContractError, match="caused_by"):
        parse_alert(json.dumps(alert_dict(caused_by=[])))


def test_ack_and_status_models() -> None:
    ack = parse_model(
        AlertAck,
        json.dumps(
            {
                "alert_id": alert_dict()["alert_id"],
                "store_id": "s1",
                "associate_id": "a1",
                "status": "claimed",
                "at": "2026-01-01T10:00:00Z",
            }
        ),
    )
    assert ack.status == "claimed"
    with pytest.raises(ContractError, match="status"):
        parse_model(
            AlertAck, json.dumps({**ack.model_dump(mode="json", by_alias=True), "status": "maybe"})
        )
    status = parse_model(
        GatewayStatus,
        json.dumps(
            {"store_id": "s1", "gateway_id": "gw", "state": "offline", "at": "2026-01-01T10:00:00Z"}
        ),
    )
    assert status.state == "offline"


def test_split_batch_reads_a_good_batch_as_the_item_by_item_path_does() -> None:
    """The one-pass path for good batches gives the same events as validating each item."""
    from contracts.models import Event

    items = [
        event_dict(seq=1, observed_at="2026-01-01T11:00:00.123456+01:00"),
        event_dict(seq=2, observed_at="2026-01-01T10:00:00Z", kind="zone_exit"),
        event_dict(seq=3, observed_at="2026-01-01T05:30:00.5-04:30"),
    ]
    events, rejected = split_batch(json.dumps(items))
    assert rejected == []
    assert events == [Event.model_validate(item) for item in items]
    assert [e.observed_at.isoformat() for e in events] == [
        "2026-01-01T10:00:00.123000+00:00",
        "2026-01-01T10:00:00+00:00",
        "2026-01-01T10:00:00.500000+00:00",
    ]
