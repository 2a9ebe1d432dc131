"""What the store coordinator and the bench share: a layout's gateway roles, evidence."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from beacons.presence import Transition
from edge.exceptions import EdgeError
from edge.fusion import (
    PAIR_SIGHTING_Q,
    evidence_of_transition,
    fusable,
    fusion_roles,
    gateway_settings,
    load_layout,
)
from edge.settings import EdgeSettings
from simulators.layout import load_layout as load_store_layout

HAND = Path(__file__).parents[1] / "simulators" / "data" / "handwritten.jsonl"


def test_the_boutique_plan_gives_each_gateway_its_role_and_the_door_its_street_level() -> None:
    roles = {r.gateway_id: r for r in fusion_roles(load_store_layout("boutique").trace_layout())}
    assert {g: r.kind for g, r in roles.items()} == {
        "gw-door": "entrance",
        "gw-floor": "interior",
        "gw-fitting": "small",
        "gw-checkout": "small",
    }
    # The door gateway hangs 2.5 m inside: the pavement at the door reads about -69 dBm.
    assert roles["gw-door"].street_rssi == pytest.approx(-68.9)
    assert roles["gw-floor"].enter_rssi < -72.0  # calibrated to cover the floor
    assert fusable(list(roles.values()))


def test_a_street_gateway_outside_a_door_is_that_door_s_pair() -> None:
    roles = {
        r.gateway_id: r for r in fusion_roles(load_store_layout("boutique-pair").trace_layout())
    }
    assert roles["gw-street"].kind == "street"
    assert roles["gw-door"].pair == "gw-street"
    assert all(r.pair is None for g, r in roles.items() if g != "gw-door")
    # Each of the flagship's doors is paired with the street gateway above it, not the
    # other door's (25 m along the front).
    flagship = fusion_roles(load_store_layout("flagship-pair").trace_layout())
    pairs = {r.gateway_id: r.pair for r in flagship if r.kind == "entrance"}
    assert pairs == {"gw-main-door": "gw-main-street", "gw-side-door": "gw-side-street"}
    # A door with no street gateway within 6 m on its floor has no pair.
    assert all(r.pair is None for r in fusion_roles(load_store_layout("flagship").trace_layout()))
    plan = load_store_layout("boutique").trace_layout()  # gw-door at (0, 2.5), floor 0
    street = {"zone_id": "street", "rssi_1m": -58.0, "path_loss_n": 2.5, "rssi_offset_db": 0.0}
    far = {**street, "id": "gw-far", "x": 0.0, "y": -4.6, "floor": 0}  # 7.1 m away
    upstairs = {**street, "id": "gw-up", "x": 0.0, "y": 2.0, "floor": 1}
    plan["gateways"] = [*plan["gateways"], far, upstairs]
    roles = {r.gateway_id: r for r in fusion_roles(plan)}
    assert roles["gw-far"].kind == roles["gw-up"].kind == "street"
    assert roles["gw-door"].pair is None
    near = {**street, "id": "gw-near", "x": 0.5, "y": -0.2, "floor": 0}
    plan["gateways"] = [*plan["gateways"], near]
    assert {r.gateway_id: r.pair for r in fusion_roles(plan)}["gw-door"] == "gw-near"


def test_only_a_door_pair_s_gateways_get_the_faster_sightings() -> None:
    def sighting_q(layout: str, defaults: EdgeSettings | None = None) -> dict[str, object]:
        plan = load_store_layout(layout).trace_layout()
        return {
            g: st.get("fusion_sighting_q") for g, st in gateway_settings(plan, defaults).items()
        }

    q = PAIR_SIGHTING_Q
    assert sighting_q("boutique-pair") == {
        "gw-door": q, "gw-street": q, "gw-floor": None, "gw-fitting": None, "gw-checkout": None,
    }  # fmt: skip
    flagship = sighting_q("flagship-pair")
    assert {g for g, v in flagship.items() if v == q} == {
        "gw-main-door", "gw-main-street", "gw-side-door", "gw-side-street",
    }  # fmt: skip
    # A door without a pair keeps the zone machine's levels (its rules were tuned on them).
    assert set(sighting_q("boutique").values()) == {None}
    # A store that sets one filter for every gateway gets it as it is: nothing to add.
    assert set(sighting_q("boutique-pair", EdgeSettings(fusion_sighting_q=8.0)).values()) == {None}


def test_a_plan_without_the_doors_calibration_is_not_fused() -> None:
    # The hand-written trace's gateways carry no rssi_1m/path_loss_n: nothing says what the
    # street can produce at its door, so it is replayed gateway by gateway.
    layout, store = load_layout(HAND)
    assert store == "hand-store"
    roles = fusion_roles(layout)
    assert [r.kind for r in roles] == ["entrance", "interior"]
    assert not fusable(roles)


def test_a_bad_layout_file_is_refused_with_what_is_wrong(tmp_path: Path) -> None:
    bad = tmp_path / "plan.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(EdgeError, match="not JSON"):
        load_layout(bad)
    bad.write_text(json.dumps({"zones": []}), encoding="utf-8")
    with pytest.raises(EdgeError, match="'gateways'"):
        load_layout(bad)
    with pytest.raises(EdgeError, match="cannot read"):
        load_layout(tmp_path / "missing.json")


def test_evidence_carries_what_the_event_will_carry_rounded_as_the_contract_does() -> None:
    at = datetime(2026, 1, 5, 10, 0, 0, 123_456, tzinfo=UTC).timestamp()
    ev = evidence_of_transition(
        "gw-door", Transition("0a" * 8, "entrance", "sighting", at, -70.26, 1.0)
    )
    assert ev.at == datetime(2026, 1, 5, 10, 0, 0, 123_000, tzinfo=UTC).timestamp()
    assert ev.rssi == -70.3
    assert ev.confidence is None  # a level, not a decision
