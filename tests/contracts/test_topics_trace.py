"""Topic names follow the contract; traces parse and reject with line numbers."""

from __future__ import annotations

import json

import pytest

from contracts.exceptions import ContractError
from contracts.topics import Topics
from contracts.trace import AdvRecord, read_trace


def test_contract_topic_names_without_namespace() -> None:
    t = Topics()
    assert t.gateway_events("s1", "gw1") == "proxima/v1/stores/s1/gateways/gw1/events"
    assert t.associate_alerts("s1", "a1") == "proxima/v1/stores/s1/associates/a1/alerts"
    assert t.associate_ack("s1", "a1", "x") == "proxima/v1/stores/s1/associates/a1/acks/x"
    assert t.alert_ack("s1", "x") == "proxima/v1/stores/s1/alerts/x/ack"  # legacy
    assert t.parse_ack_topic(t.associate_ack("s1", "a1", "x")) == ("s1", "a1", "x")
    assert t.parse_ack_topic(t.alert_ack("s1", "x")) == ("s1", None, "x")
    with pytest.raises(ValueError, match="not an ack topic"):
        t.parse_ack_topic("proxima/v1/stores/s1/associates/a1/acks/x/more")
    assert t.events == "proxima.events.v1"
    assert t.all_gateway_events("grp") == "$share/grp/proxima/v1/stores/+/gateways/+/events"


def test_namespace_prefixes_every_name() -> None:
    t = Topics("t123")
    assert t.store_alerts("s1") == "t123/proxima/v1/stores/s1/alerts"
    assert t.alerts == "t123.proxima.alerts.v1"
    assert t.parse_gateway_topic("t123/proxima/v1/stores/s1/gateways/g/events") == (
        "s1",
        "g",
        "events",
    )
    with pytest.raises(ValueError, match="not under"):
        t.parse_gateway_topic("proxima/v1/stores/s1/gateways/g/events")


def test_an_alerts_namespace_moves_only_the_topics_people_use() -> None:
    t = Topics("demo1", alerts_namespace="")  # proxima up's demo
    assert t.store_alerts("s1") == "proxima/v1/stores/s1/alerts"
    assert t.all_store_alerts() == "proxima/v1/stores/+/alerts"
    assert t.associate_alerts("s1", "a1") == "proxima/v1/stores/s1/associates/a1/alerts"
    assert t.alert_ack("s1", "x") == "proxima/v1/stores/s1/alerts/x/ack"
    assert t.gateway_events("s1", "g") == "demo1/proxima/v1/stores/s1/gateways/g/events"
    assert t.alerts == "demo1.proxima.alerts.v1"
    assert Topics("demo1").store_alerts("s1") == "demo1/proxima/v1/stores/s1/alerts"
    with pytest.raises(ValueError, match="may not contain"):
        Topics("demo1", alerts_namespace="a/b")


def test_namespace_may_not_contain_wildcards() -> None:
    with pytest.raises(ValueError, match="may not contain"):
        Topics("a/#")


HEADER = {
    "format": "proxima-trace",
    "version": 1,
    "store_id": "s1",
    "start": "2026-01-01T10:00:00Z",
    "layout": {
        "zones": [{"id": "entrance", "kind": "entrance"}],
        "gateways": [{"id": "gw", "zone_id": "entrance"}],
    },
    "tool": "someone-else",
}


def test_trace_ignores_unknown_fields_and_kinds() -> None:
    lines = [
        json.dumps(HEADER),
        json.dumps(
            {"t": 0.5, "kind": "adv", "gateway_id": "gw", "address": "AA", "rssi": -60, "note": "x"}
        ),
        json.dumps({"t": 0.7, "kind": "weather", "sunny": True}),
        json.dumps({"t": 1.0, "kind": "truth", "customer_id": "c", "event": "arrive"}),
    ]
    header, records = read_trace(lines)
    assert header.store_id == "s1"
    got = list(records)
    assert [r.kind for r in got] == ["adv", "truth"]
    assert isinstance(got[0], AdvRecord)


def test_trace_rejects_decreasing_time_with_line_number() -> None:
    lines = [
        json.dumps(HEADER),
        json.dumps({"t": 2.0, "kind": "truth", "customer_id": "c", "event": "arrive"}),
        json.dumps({"t": 1.0, "kind": "truth", "customer_id": "c", "event": "leave"}),
    ]
    _, records = read_trace(lines)
    with pytest.raises(ContractError, match=r"line 3: t=1\.0 is before 2\.0"):
        list(records)


def test_trace_rejects_bad_header() -> None:
    with pytest.raises(ContractError, match="header"):
        read_trace([json.dumps({**HEADER, "format": "pcap"})])
