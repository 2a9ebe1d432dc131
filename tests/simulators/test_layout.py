"""Shipped layouts load, are consistent, and route people through their doors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contracts.trace import Layout
from simulators.exceptions import LayoutError
from simulators.layout import layout_names, load_layout


def test_shipped_layouts_are_the_boutique_and_the_flagship() -> None:
    assert {"boutique", "flagship"} <= set(layout_names())


@pytest.mark.parametrize("name", ["boutique", "flagship", "boutique-pair", "flagship-pair"])
def test_layout_has_every_zone_kind_and_a_door(name: str) -> None:
    lay = load_layout(name)
    kinds = {z.kind for z in lay.zones}
    assert kinds == {"entrance", "fitting_room", "floor", "checkout", "outside"}
    assert lay.doors, "a street → entrance portal"
    assert lay.beacons
    # The header's layout satisfies the trace contract's model.
    contract = Layout.model_validate(lay.trace_layout())
    assert {g.id for g in contract.gateways} == {g.id for g in lay.gateways}


def test_flagship_routes_up_the_escalators_to_the_second_floor_fitting_rooms() -> None:
    lay = load_layout("flagship")
    portals = [p.id for p, _ in lay.route("street", "fitting-2")]
    assert portals[0] in {"main-door", "side-door"}
    assert portals[-3:] == ["escalator-01", "escalator-12", "fitting-2-in"]
    assert lay.zone_at(2, 25.0, 30.0) == "fitting-2"
    assert lay.zone_at(0, 0.0, 1.0) == "entrance-main"


def test_calibration_offset_normalises_to_the_reference_phone() -> None:
    gw = next(g for g in load_layout("boutique").gateways if g.id == "gw-fitting")
    assert gw.rssi_1m == -61.0
    assert gw.rssi_offset_db == 2.0


def test_a_bad_layout_names_the_field(tmp_path: Path) -> None:
    data = json.loads(json.dumps(load_layout("boutique").model_dump(mode="json")))
    data["gateways"][0]["zone_id"] = "nowhere"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(LayoutError, match="unknown zone 'nowhere'"):
        load_layout(path)
    with pytest.raises(LayoutError, match="no such layout"):
        load_layout("atlantis")


def test_a_variant_is_its_base_with_the_gateways_it_adds_and_the_same_crowd() -> None:
    base, pair = load_layout("boutique"), load_layout("boutique-pair")
    assert pair.name == "boutique-pair"
    assert pair.zones == base.zones
    # Its own beacons: the base's, faster and paired with a storefront beacon outside.
    assert [b.id for b in pair.beacons] == [*(b.id for b in base.beacons), "bcn-street"]
    assert pair.zone(pair.beacons[-1].zone_id).kind == "outside"
    assert [b.app_pair_margin_db for b in pair.beacons if b.app_min_rssi is not None] == [6, 6]
    assert [g.id for g in pair.gateways] == [*(g.id for g in base.gateways), "gw-street"]
    street = pair.gateways[-1]
    assert pair.zone(street.zone_id).kind == "outside"
    # The same people walk the same paths for a seed, so the figures compare.
    assert pair.crowd_name == base.crowd_name == "boutique"


def test_the_patch_variant_points_its_street_gateway_at_the_street() -> None:
    pair, patch = load_layout("boutique-pair"), load_layout("boutique-pair-patch")
    omni, directional = pair.gateways[-1], patch.gateways[-1]
    assert (omni.facing_deg, omni.back_loss_db) == (None, 0.0)
    assert (directional.facing_deg, directional.back_loss_db) == (-90.0, 10.0)
    assert directional.model_copy(update={"facing_deg": None, "back_loss_db": 0.0}) == omni
    assert patch.crowd_name == pair.crowd_name


def test_a_bad_variant_names_what_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / "variant.json"
    for data, message in [
        ({"extends": "atlantis"}, "no such layout"),
        ({"extends": "boutique-pair"}, "is itself a variant"),
        ({"extends": "../boutique.json"}, "names a shipped layout"),
        ({"extends": "boutique", "add_gateways": {"id": "x"}}, "a list of gateways"),
        ({"extends": "boutique", "add_gateways": [{"id": "gw-x", "zone_id": "moon", "x": 0,
                                                   "y": 0}]}, "unknown zone 'moon'"),
        ({"extends": "boutique", "add_gateways": [{"id": "gw-x", "zone_id": "street", "x": 0,
                                                   "y": 0, "back_loss_db": 10}]},
         "'gw-x': back_loss_db needs facing_deg"),
    ]:  # fmt: skip
        path.write_text(json.dumps(data))
        with pytest.raises(LayoutError, match=message):
            load_layout(path)


def test_a_storefront_beacon_has_no_threshold_and_a_margin_needs_one(tmp_path: Path) -> None:
    data = json.loads(json.dumps(load_layout("boutique-pair").model_dump(mode="json")))
    data["beacons"][-1]["app_min_rssi"] = -70
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(LayoutError, match="'bcn-street' is a storefront beacon"):
        load_layout(path)
    data["beacons"][-1]["app_min_rssi"] = None
    data["beacons"][0]["app_min_rssi"] = None
    path.write_text(json.dumps(data))
    with pytest.raises(LayoutError, match="app_pair_margin_db needs app_min_rssi"):
        load_layout(path)
    data["beacons"][0]["app_min_rssi"] = -72
    no_front = {**data, "beacons": data["beacons"][:-1]}
    path.write_text(json.dumps(no_front))
    with pytest.raises(
        LayoutError, match="has app_pair_margin_db but the layout has no storefront"
    ):
        load_layout(path)
    eddystone = data["beacons"][2]  # bcn-fitting, moved out to the street
    data["beacons"][2] = {**eddystone, "zone_id": "street"}
    path.write_text(json.dumps(data))
    with pytest.raises(LayoutError, match="'bcn-fitting' is a storefront beacon: it must be an iB"):
        load_layout(path)
