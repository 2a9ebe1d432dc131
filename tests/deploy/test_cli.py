"""The command-line contract: `proxima beacons decode|eid`, `proxima customers enroll`."""

from __future__ import annotations

import json

import pytest

from simulators.exceptions import ScenarioError
from simulators.sources import load_scenario
from tests.kit.cli import proxima


def test_beacons_eid_prints_the_spec_vector() -> None:
    key = "0102030405060708090A111213141516"
    result = proxima(
        "beacons", "eid", "--identity-key", key, "--rotation-exponent", "10", "--time", "2000"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "4144413e45fefa58\n"


def test_beacons_decode_prints_one_json_object_per_frame() -> None:
    ibeacon = "1AFF4C000215E2C56DB5DFFB48D2B060D0F5A71096E000010002C5"
    eid = "0D16AAFE30EEA9B76A71C5F89290"
    result = proxima("beacons", "decode", "020106" + ibeacon + eid)
    assert result.returncode == 0, result.stderr
    frames = [json.loads(line) for line in result.stdout.splitlines()]
    assert [f["type"] for f in frames] == ["ibeacon", "eddystone_eid"]
    assert frames[0]["uuid"] == "e2c56db5dffb48d2b060d0f5a71096e0"
    assert (frames[0]["major"], frames[0]["minor"], frames[0]["measured_power"]) == (1, 2, -59)
    assert frames[1]["eid"] == "a9b76a71c5f89290"
    assert frames[1]["tx_power"] == -18


@pytest.mark.parametrize("raw", ["0201061AFF4C000215E2C56DB5", "zz"])
def test_beacons_decode_malformed_exits_2_with_one_line(raw: str) -> None:
    result = proxima("beacons", "decode", raw)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    if raw != "zz":
        assert "offset" in result.stderr


def test_customers_enroll_generates_a_key_and_rejects_unknown_purpose(namespace: str) -> None:
    import os

    env = dict(os.environ, PROXIMA_NAMESPACE=namespace)
    ok = proxima(
        "customers", "enroll", "c-1", "--consent", "arrival_alerts", "--visible", "name", env=env
    )
    assert ok.returncode == 0, ok.stderr
    printed = json.loads(ok.stdout)
    assert len(printed["identity_key"]) == 32
    bad = proxima("customers", "enroll", "c-2", "--consent", "spying", env=env)
    assert bad.returncode == 2
    assert "unknown purpose" in bad.stderr or "spying" in bad.stderr
    bad_field = proxima("customers", "enroll", "c-3", "--visible", "home_address", env=env)
    assert bad_field.returncode == 2
    assert "home_address" in bad_field.stderr
    assert proxima("customers", "forget", "c-1", env=env).returncode == 0
    assert proxima("customers", "forget", "c-1", env=env).returncode == 1


@pytest.mark.integration
def test_topics_ensure_creates_every_contract_topic_once(
    proxima_env: dict[str, str], kafka_url: str, namespace: str
) -> None:
    import asyncio

    from aiokafka.admin import AIOKafkaAdminClient

    from contracts.topics import Topics

    first = proxima("topics", "ensure", "--partitions", "2", env=proxima_env)
    assert first.returncode == 0, first.stderr
    again = proxima("topics", "ensure", "--partitions", "2", env=proxima_env)
    assert again.returncode == 0, again.stderr  # idempotent: existing topics are left alone

    async def partitions() -> dict[str, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_url.removeprefix("kafka://"))
        await admin.start()
        try:
            wanted = list(Topics(namespace).all_kafka)
            described = await admin.describe_topics(wanted)
        finally:
            await admin.close()
        return {d["topic"]: len(d["partitions"]) for d in described}

    assert asyncio.run(partitions()) == dict.fromkeys(Topics(namespace).all_kafka, 2)


def test_topics_ensure_without_a_broker_says_so() -> None:
    import os

    env = {k: v for k, v in os.environ.items() if k != "PROXIMA_KAFKA"}
    result = proxima("topics", "ensure", env=env)
    assert result.returncode == 2
    assert "PROXIMA_KAFKA is not set" in result.stderr


async def test_edge_sim_source_plays_a_layout_scenario_for_one_of_its_gateways() -> None:
    from edge.exceptions import EdgeError
    from edge.settings import EdgeSettings
    from edge.source_registry import make_source

    header, _ = load_scenario("boutique-rush@3")
    assert header.layout is not None
    assert "gw-floor" in [gw.id for gw in header.layout.gateways]
    source = make_source(EdgeSettings(source="sim:boutique-rush@3", gateway_id="gw-floor"))
    heard = []
    async for advert in source.adverts():
        heard.append(advert)
        if len(heard) == 50:
            break
    assert len(heard) == 50
    assert source.now() >= header.start.timestamp()
    with pytest.raises(EdgeError, match="'gw-nope' is not in the scenario's layout; use one of"):
        make_source(EdgeSettings(source="sim:boutique-rush", gateway_id="gw-nope"))


def test_edge_sim_source_names_unknown_scenarios_and_bad_seeds() -> None:
    from edge.exceptions import EdgeError
    from edge.settings import EdgeSettings
    from edge.source_registry import make_source

    with pytest.raises(ScenarioError, match="unknown scenario 'nowhere'; known: boutique-day"):
        load_scenario("nowhere")
    with pytest.raises(ScenarioError, match="the seed after @ must be an integer"):
        load_scenario("boutique-rush@x")
    # Through the entry point, as `proxima edge run --source sim:...` meets them:
    with pytest.raises(EdgeError, match="unknown scenario 'nowhere'"):
        make_source(EdgeSettings(source="sim:nowhere", gateway_id="gw-door"))


def test_the_sim_scheme_is_found_through_its_entry_point_not_a_module_global() -> None:
    from edge.source_registry import scheme, scheme_names
    from simulators.sources import SIM

    assert scheme("sim") is SIM
    assert scheme_names() == ["bleak", "replay", "sim"]


def test_a_source_with_an_unknown_scheme_or_a_missing_argument_is_refused_by_name() -> None:
    from pydantic import ValidationError

    from edge.exceptions import EdgeError
    from edge.settings import EdgeSettings
    from edge.source_registry import scheme

    with pytest.raises(ValidationError, match="unknown scheme 'usb': this installation has bleak"):
        EdgeSettings(source="usb:/dev/ttyACM0")
    with pytest.raises(ValidationError, match="replay needs an argument after 'replay:'"):
        EdgeSettings(source="replay:")
    with pytest.raises(ValidationError, match="bleak takes no argument"):
        EdgeSettings(source="bleak:hci0")
    with pytest.raises(EdgeError, match="unknown source scheme 'usb'; this installation has"):
        scheme("usb")
    assert EdgeSettings(source="sim:boutique-rush@3").source == "sim:boutique-rush@3"


def test_a_simulated_gateway_takes_its_place_and_calibration_from_the_layout() -> None:
    from edge.calibration import INTERIOR_LINGER_S, calibrated_thresholds
    from edge.cli import from_trace_layout
    from edge.exceptions import EdgeError
    from edge.settings import EdgeSettings

    header, _ = load_scenario("boutique-rush@3")
    floor = from_trace_layout(EdgeSettings(gateway_id="gw-floor"), header, zone=None, store=None)
    assert (floor.store_id, floor.zone_id) == ("boutique-01", "floor")
    assert floor.rssi_offset_db == 1.5  # the layout's per-gateway offset
    # Calibrated to cover the floor (edge.calibration), not the edge's default.
    tuned = calibrated_thresholds(header.layout.model_dump(), -72.0, -80.0)["gw-floor"]
    assert floor.enter_rssi == tuned["enter_rssi"] != EdgeSettings().enter_rssi
    assert floor.linger_min_s == INTERIOR_LINGER_S
    fitting = from_trace_layout(
        EdgeSettings(gateway_id="gw-fitting"), header, zone=None, store=None
    )
    assert fitting.linger_db is None  # small zones do not linger
    with pytest.raises(EdgeError, match="--zone 'entrance' contradicts the trace"):
        from_trace_layout(EdgeSettings(gateway_id="gw-floor"), header, zone="entrance", store=None)


def test_a_replayed_door_pair_gateway_gets_the_faster_sightings_as_replay_gives_them() -> None:
    # `proxima edge run --source replay:` places a gateway as `proxima replay` does
    # (edge.fusion.gateway_settings): a door pair's two gateways get the sightings' own
    # filter, every other gateway the machine's, and a store-wide setting stays its own.
    from contracts.trace import read_trace
    from edge.cli import from_trace_layout
    from edge.fusion import PAIR_SIGHTING_Q, gateway_settings
    from edge.settings import EdgeSettings
    from simulators.engine import build_scenario

    header, _ = read_trace(build_scenario("boutique-rush", 3, layout="boutique-pair").lines())
    assert header.layout is not None

    def placed(gateway: str, **kw: float) -> EdgeSettings:
        base = EdgeSettings(gateway_id=gateway, **kw)  # type: ignore[arg-type]
        return from_trace_layout(base, header, zone=None, store=None)

    assert placed("gw-door").fusion_sighting_q == PAIR_SIGHTING_Q
    assert placed("gw-street").fusion_sighting_q == PAIR_SIGHTING_Q
    assert placed("gw-floor").fusion_sighting_q is None
    assert placed("gw-door", fusion_sighting_q=8.0).fusion_sighting_q == 8.0
    # The same settings replay gives each gateway, field for field.
    plan = gateway_settings(header.layout.model_dump(mode="json"), EdgeSettings())
    for gateway, tuned in plan.items():
        got = placed(gateway)
        assert {k: getattr(got, k) for k in tuned} == tuned, gateway
