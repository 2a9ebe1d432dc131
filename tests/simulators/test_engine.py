"""The layout simulator: deterministic bytes for a seed, a valid trace, truthful truth."""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from beacons.eid import compute_eid
from contracts.trace import AdvRecord, read_trace
from deploy.cli import app
from simulators.engine import build, build_scenario

START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def rush() -> list[str]:
    return list(build_scenario("boutique-rush", seed=11, start=START).lines())


def test_same_seed_same_bytes_other_seed_other_bytes(rush: list[str]) -> None:
    again = list(build_scenario("boutique-rush", seed=11, start=START).lines())
    other = list(build_scenario("boutique-rush", seed=12, start=START).lines())
    assert again == rush
    assert other[1:] != rush[1:]


def test_simulate_command_writes_the_same_file_twice(tmp_path: Path) -> None:
    runner = CliRunner()
    paths = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    for p in paths:
        args = [
            "simulate",
            "--layout",
            "boutique",
            "--hours",
            "0.1",
            "--seed",
            "5",
            "--out",
            str(p),
        ]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].stat().st_size > 10_000
    keys = json.loads((tmp_path / "a.jsonl.customers.json").read_text())
    assert keys["store_id"] == "boutique-01"


def test_trace_satisfies_the_contract(rush: list[str]) -> None:
    header, records = read_trace(rush)  # validates every line and that t never decreases
    assert header.store_id == "boutique-01"
    assert header.layout is not None
    assert {g.id for g in header.layout.gateways} == {
        "gw-door", "gw-floor", "gw-fitting", "gw-checkout"
    }  # fmt: skip
    kinds = defaultdict(int)
    for r in records:
        kinds[r.kind] += 1
    assert kinds["adv"] > 10_000
    assert kinds["truth"] > 0
    assert kinds["app"] > 0


def test_every_arrival_has_a_departure_and_zones_between(rush: list[str]) -> None:
    open_: dict[str, float] = {}
    arrivals = 0
    for line in rush[1:]:
        d = json.loads(line)
        if d["kind"] != "truth" or d["event"] not in ("arrive", "leave", "enter_zone"):
            continue
        who = d["customer_id"]
        if d["event"] == "arrive":
            assert who not in open_, f"{who} arrived twice without leaving"
            open_[who] = d["t"]
            arrivals += 1
        elif d["event"] == "leave":
            assert who in open_, f"{who} left without arriving"
            del open_[who]
        elif not who.startswith("staff-"):
            assert who in open_, f"{who} entered a zone outside a visit"
    assert arrivals >= 10
    # Who is still inside at the end is inside a visit that the run cut short.
    assert all(t > 0 for t in open_.values())


def test_customer_adverts_carry_their_spec_eid(rush: list[str]) -> None:
    sim = build_scenario("boutique-rush", seed=11, start=START)
    _header, records = read_trace(rush)
    by_id = {c.customer_id: c for c in sim.customers}
    arrivals = {
        json.loads(line)["customer_id"]: json.loads(line)["t"]
        for line in rush[1:]
        if '"event":"arrive"' in line
        and '"role":"customer"' in line
        and '"device_class":"android_app"' in line
    }
    cid, t_arrive = sorted(arrivals.items(), key=lambda kv: kv[1])[0]
    cust = by_id[cid]
    t0 = int(START.timestamp())
    want = compute_eid(cust.identity_key, cust.rotation_exponent, t0 + int(t_arrive)).hex()
    heard = [
        r
        for r in records
        if isinstance(r, AdvRecord)
        and abs(r.t - t_arrive) < 5
        and any(v[4:20] == want for v in r.service_data.values())
    ]
    assert heard, f"no advert of {cid}'s EID near their arrival"
    assert any(r.gateway_id == "gw-door" for r in heard)


def test_hard_cases_all_happen() -> None:
    sim = build_scenario("hard-cases", seed=3, start=START)
    behaviours = {p.behaviour for p in sim.people}
    assert {"window_shopper", "lingerer", "between", "returner", "visit", "staff"} <= behaviours
    for p in sim.people:
        events = [e.event for e in p.truth]
        if p.behaviour == "window_shopper":
            assert "arrive" not in events
            assert "pass_by" in events
        if p.behaviour == "returner":
            assert events.count("arrive") == 2
            arrive2 = [e.t for e in p.truth if e.event == "arrive"][1]
            leave1 = next(e.t for e in p.truth if e.event == "leave")
            assert 600 < arrive2 - leave1 < 3600  # back within the hour
    kinds = {c.consent_class for c in sim.customers}
    assert kinds == {"consents", "no_consent", "revokes"}


def test_app_events_come_late_like_os_geofences_and_revocations_are_announced() -> None:
    sim = build("boutique", hours=1.5, seed=4, start=START)
    lines = [json.loads(x) for x in list(sim.lines())[1:] if '"kind":"adv"' not in x]
    app_lines = [d for d in lines if d["kind"] == "app"]
    events = {d["event"] for d in app_lines}
    assert {"geofence_enter", "location", "beacon_region_enter"} <= events
    owner = {c.device_id: c.customer_id for c in sim.customers}
    crossed: dict[str, float] = {}  # the customer's latest true crossing, in trace order
    delays = []
    for d in lines:
        if d["kind"] == "truth" and d["event"] == "enter_geofence":
            crossed[d["customer_id"]] = d["t"]
        elif d["kind"] == "app" and d["event"] == "geofence_enter":
            crossed_at = crossed.get(owner[d["device_id"]])
            if crossed_at is not None:
                delays.append(d["t"] - crossed_at)
    assert len(delays) >= 5
    assert min(delays) > 0
    assert max(delays) > 30  # OS region monitoring is seconds to minutes late
    revokers = {c.customer_id: c.revoke_at for c in sim.customers if c.revoke_at is not None}
    announced = {d["customer_id"]: d["t"] for d in app_lines if d["event"] == "consent_revoke"}
    assert announced
    assert all(revokers[c] == t for c, t in announced.items())
    for d in lines:
        if d["kind"] == "truth" and d["event"] == "arrive" and d["customer_id"] in revokers:
            assert d["consent"] is (d["t"] < revokers[d["customer_id"]])


def test_arrivals_follow_the_hourly_rates() -> None:
    sim = build("boutique", hours=2, seed=9, start=START, arrivals={"hourly": [20, 200]})
    starts = [p.walker.traj.start for p in sim.people if p.behaviour != "staff"]
    first = sum(1 for t in starts if t < 3600)
    second = sum(1 for t in starts if 3600 <= t < 7200)
    assert second > 4 * first


def test_a_store_beacon_is_heard_at_its_path_loss_mean_plus_its_spot_offset() -> None:
    """End to end through the engine: a fixed beacon's RSSI averages the model's median plus
    the offset its position keeps (it never moves, so the offset never changes)."""
    sim = build("boutique", hours=0.25, seed=8, start=START)
    beacon = next(b for b in sim.layout.beacons if b.id == "bcn-entrance")
    j, gw = next((j, g) for j, g in enumerate(sim.layout.gateways) if g.id == "gw-door")
    d = math.dist((beacon.x, beacon.y, 2.2), (gw.x, gw.y, gw.height_m))
    median = gw.rssi_1m - 10 * gw.path_loss_n * math.log10(d)
    dev = next(dev for dev in sim.devices if dev.did == "bcn-entrance")
    heard = [
        json.loads(line)["rssi"]
        for line in sim.lines()
        if f'"address":"{dev.address}"' in line and '"gateway_id":"gw-door"' in line
    ]
    offset = dev.links[j].spot
    assert offset is not None
    assert offset != 0.0
    assert len(heard) > 600  # ~900 adverts at 1 s, less scan duty, loss and bursts
    assert abs(statistics.fmean(heard) - (median + offset)) < 1.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scenario", "atlantis"], "unknown scenario 'atlantis'; known: skeleton, boutique-day"),
        (
            ["--layout", "atlantis"],
            "layout atlantis: no such layout; shipped: boutique, boutique-pair, boutique-pair-patch, flagship",
        ),
        (["--layout", "boutique", "--hours", "-1"], "hours must be > 0"),
        (["--layout", "boutique", "--scenario", "skeleton"], "has its own store"),
        (["--layout", "boutique", "--device-classes", "iphone"], "'iphone' is not CLASS=SHARE"),
        (
            ["--layout", "boutique", "--device-classes", "staff=1"],
            "device_classes: staff are not classes of enrolled customers",
        ),
        (["--device-classes", "iphone_app=1"], "needs a layout or a layout scenario"),
    ],
)
def test_simulate_names_what_is_wrong(args: list[str], message: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["simulate", *args, "--out", str(tmp_path / "t.jsonl")])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
