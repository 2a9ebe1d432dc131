"""The app path in replay: a trace's app lines through the real ingest, signed per device.

The hand-written trace (tests/simulators/data/app-handwritten.jsonl, not from our
simulator) has an iPhone app customer with no adverts at all whose app reports the floor
beacon's region, a consent-less passer-by who shares her location (geofence and a fix),
a device with no key in the keys file and one with a key but no registration.
"""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import stat
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from contracts.services import ServiceSettings
from contracts.trace import TraceProblems
from deploy.cli import app
from simulators.app_replay import (
    DeviceKeysError,
    device_keys_path,
    load_device_keys,
    region_ref,
    store_config,
)
from tests.conftest import Procs

DATA = Path(__file__).parent / "data"
HAND_APP = DATA / "app-handwritten.jsonl"
HAND_KEYS = DATA / "app-handwritten.device-keys.json"
D1, D2, D3, D4 = ("a1" * 16, "a2" * 16, "a3" * 16, "a4" * 16)
PUBLIC = {  # the public halves of the keys file's D1 and D2 (D4 is never registered)
    D1: "Jse9+Dr6ooE6w5tEXr1QsBsxFK2fxh7eBhJ+zzvEf5E=",
    D2: "XWvswJ2J0Y544//WinbcAM+F8h8I+24wVUNn/98KeMk=",
}
UUID = "f7826da64fa24e988024bc5b71e0893e"


# --- keys file and store configuration (no services) ---------------------------------------
def test_the_hand_written_keys_file_loads() -> None:
    keys = load_device_keys(HAND_KEYS)
    assert set(keys) == {D1, D2, D4}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not JSON"),
        ('["a1"]', 'expected {"DEVICE_ID": "BASE64 KEY"}'),
        ('{"phone-1": "AAAA"}', "'phone-1': a device id is 16-64 lowercase hex digits"),
        (f'{{"{D1}": 7}}', "the key must be a base64 string"),
        (f'{{"{D1}": "no base64!"}}', "the key is not base64"),
        (f'{{"{D1}": "{base64.b64encode(bytes(16)).decode()}"}}', "32 raw bytes, this one is 16"),
    ],
)
def test_a_bad_keys_file_is_an_error_naming_the_entry(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "keys.json"
    path.write_text(content)
    with pytest.raises(DeviceKeysError, match=r"device keys .*keys\.json") as err:
        load_device_keys(path)
    assert message in str(err.value)


def test_proxima_replay_refuses_a_bad_keys_file_before_touching_anything(tmp_path: Path) -> None:
    bad = tmp_path / "keys.json"
    bad.write_text(f'{{"{D1}": "{base64.b64encode(bytes(31)).decode()}"}}')
    result = CliRunner().invoke(app, ["replay", str(HAND_APP), "--device-keys", str(bad)])
    assert result.exit_code == 2
    assert "32 raw bytes, this one is 31" in " ".join(result.output.split())


def test_the_ingest_learns_the_store_s_regions_and_geofence_from_the_header() -> None:
    header = json.loads(HAND_APP.read_text().splitlines()[0])
    cfg = store_config(header["layout"], header["store_id"])
    assert [(r.type, r.id, r.zone_id) for r in cfg.beacon_regions] == [
        ("ibeacon", f"{UUID}00070001", "entrance"),
        ("ibeacon", f"{UUID}00070002", "floor"),
        ("ibeacon", f"{UUID}00070009", "street"),  # the storefront beacon: an approach
    ]
    (fence,) = cfg.geofences
    assert (fence.id, fence.radius_m) == ("hand-app-store", 100)
    # Without an id the geofence is the store's; an Eddystone-UID beacon is a region too.
    cfg = store_config(
        {"geofence": {"lat": 1.0, "lon": 2.0},
         "beacons": [{"zone_id": "floor", "namespace": "ab" * 10, "instance": "cd" * 6}]},
        "s-1",
    )  # fmt: skip
    assert cfg.geofences[0].id == "s-1"
    assert [(r.type, r.id) for r in cfg.beacon_regions] == [("eddystone_uid", "ab" * 10 + "cd" * 6)]
    assert region_ref({"event": "beacon_region_enter"}) is None


def test_a_storefront_beacon_is_a_region_of_the_street_and_the_others_carry_its_margin() -> None:
    from simulators.layout import load_layout

    layout = load_layout("boutique-pair")
    cfg = store_config(layout.trace_layout(), layout.store_id)
    regions = {r.id[-4:]: r for r in cfg.beacon_regions}
    street = regions["0009"]  # bcn-street, minor 9
    assert (street.zone_id, street.min_rssi, street.pair_margin_db) == ("street", None, None)
    assert street.zone_for(-40.0) == "street"  # however loud: an approach
    entrance = regions["0001"]
    assert (entrance.zone_id, entrance.approach_zone_id) == ("entrance", "street")
    assert (entrance.min_rssi, entrance.pair_margin_db) == (-72.0, 6.0)
    assert entrance.sustained_min_rssi == -82.0


def test_a_sustained_app_line_is_sent_as_a_sustained_enter() -> None:
    """The app line's ``sustained`` reaches the ingest's request; a line without it (or
    with anything but true) sends none, so the ingest judges it by min_rssi."""
    from contracts.trace import AppRecord, read_trace
    from simulators.app_replay import AppReplay

    with HAND_APP.open(encoding="utf-8") as fh:
        header, _ = read_trace(fh)
    first = HAND_APP.read_text(encoding="utf-8").splitlines()[0]
    replay = AppReplay(header, json.loads(first)["layout"], {})
    region = {"uuid": "f7826da64fa24e988024bc5b71e0893e", "major": 7, "minor": 1}
    line = {"t": 3.0, "kind": "app", "device_id": "ab" * 8, "event": "beacon_region_enter"}
    items = [
        replay._request(AppRecord.model_validate(line | region | extra))[1]["events"][0]
        for extra in ({"rssi": -80, "sustained": True}, {"rssi": -80}, {"sustained": "yes"})
    ]
    assert [(i.get("rssi"), i.get("sustained")) for i in items] == [
        (-80, True), (-80, None), (None, None),
    ]  # fmt: skip


# --- through the real ingest (Mosquitto and Redis) ------------------------------------------
async def _register(services: ServiceSettings) -> None:
    from stream.customers import register_device
    from stream.registry import CustomerProfile, Registry
    from transport.redis import connect_redis

    r = connect_redis(services.redis)
    try:
        for cid in ("cust-app-1", "cust-app-2"):
            profile = CustomerProfile(customer_id=cid, identity_key="11" * 16, rotation_exponent=10)
            await Registry(r, services.redis_prefix).enroll(profile, [])
        await register_device(r, services.redis_prefix, "cust-app-1", D1, PUBLIC[D1])
        await register_device(r, services.redis_prefix, "cust-app-2", D2, PUBLIC[D2])
    finally:
        await r.aclose()


Seen = list[tuple[str, str, str, str, float, str]]


async def _replayed(speed: float | None, summary: list[str]) -> Seen:
    from simulators.replay import replay_trace
    from tests.edge.support import Collector

    services = ServiceSettings()
    async with Collector(services.mqtt, services.topics.all_gateway_events()) as col:
        stats = await replay_trace(HAND_APP, speed, TraceProblems("t"), HAND_KEYS, summary)
        await col.wait_for(sum(events for _, events in stats.values()), timeout=30)
    return sorted(
        (e.gateway_id, e.kind.value, e.subject.type.value, e.subject.id, e.observed_at.timestamp(),
         str(e.event_id))
        for e in col.events()
    )  # fmt: skip


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_app_lines_reach_the_ingest_signed_on_the_trace_s_clock_at_any_speed(
    namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROXIMA_NAMESPACE", namespace)
    await _register(ServiceSettings())
    summaries: dict[str, list[str]] = {"max": [], "20": []}
    seen = {"max": await _replayed(None, summaries["max"])}
    seen["20"] = await _replayed(20.0, summaries["20"])
    start = 1_769_943_600.0  # 2026-02-01T11:00:00Z, the trace's start
    want = [
        ("gw-door", "geofence_enter", "device", D2, start + 5.0),
        ("gw-door", "geofence_exit", "device", D2, start + 70.0),
        ("gw-door", "zone_enter", "device", D1, start + 24.0),  # the storefront region
        ("gw-door", "zone_enter", "device", D1, start + 36.5),
        ("gw-door", "zone_exit", "device", D1, start + 185.0),
    ]
    assert [s[:5] for s in seen["max"]] == sorted(want)
    # Nonces derive from the lines: a paced replay names the same events (deduplicated
    # downstream), as the virtual clock does.
    assert seen["20"] == seen["max"]
    for said in summaries.values():
        (line,) = said
        assert "app lines: 7 sent to gw-door's ingest, 6 accepted (5 events)" in line
        assert f"1 skipped: no device key for 1 device(s) (first: {D3})" in line
        # The ingest does not tell an unauthenticated caller that a device is unknown: an
        # unregistered device's request is answered as a bad signature.
        assert "1 rejected by the ingest: 1 bad_signature" in line
        assert "1 skipped, fields missing: 1 location: location needs lon, accuracy_m" in line


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_simulate_enroll_registers_app_devices_and_keeps_their_keys_out_of_the_trace(
    tmp_path: Path, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edge.devices import RedisDeviceRegistry, encode_public_key
    from transport.redis import connect_redis

    monkeypatch.setenv("PROXIMA_NAMESPACE", namespace)
    trace = tmp_path / "rush.jsonl"
    runner = CliRunner()
    result = runner.invoke(
        app, ["simulate", "--scenario", "boutique-rush", "--seed", "21", "--enroll", "--out",
              str(trace)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    keys_file = device_keys_path(trace)
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    keys = load_device_keys(keys_file)
    sidecar = json.loads((tmp_path / "rush.jsonl.customers.json").read_text())
    apps = {
        c["device_id"]
        for c in sidecar["customers"]
        if c["device_class"] in ("iphone_app", "android_app")
    }
    assert set(keys) == apps
    assert len(apps) >= 20
    text = trace.read_text()
    raw = json.loads(keys_file.read_text())
    assert not any(secret in text for secret in raw.values())
    assert not any(c["identity_key"] in text for c in sidecar["customers"])

    async def registered() -> dict[str, str | None]:
        services = ServiceSettings()
        registry = RedisDeviceRegistry(connect_redis(services.redis), services.redis_prefix)
        try:
            return {
                d: (
                    None
                    if (k := await registry.get(d)) is None
                    else encode_public_key(k.public_key)
                )
                for d in keys
            }
        finally:
            await registry.aclose()

    got = asyncio.run(registered())
    assert got == {d: encode_public_key(k.public_key()) for d, k in keys.items()}

    # Replayed with those keys, every app line the simulator wrote reaches the ingest. (No
    # stream runs here: consent lines, which wait for it, are left out.)
    lines = text.splitlines(keepends=True)
    quick = tmp_path / "no-consent.jsonl"
    quick.write_text("".join(x for x in lines if '"consent_revoke"' not in x))
    visiting = {
        d["device_id"]
        for d in map(json.loads, lines[1:])
        if d["kind"] == "app" and d["event"] != "consent_revoke"
    }
    result = runner.invoke(
        app, ["replay", str(quick), "--speed", "max", "--device-keys", str(keys_file)]
    )
    assert result.exit_code == 0, result.output
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("app lines:")]
    sent = int(line.split()[2])
    assert sent >= 50
    assert f"{sent} accepted" in line
    assert "skipped" not in line
    assert "rejected" not in line
    # Without them, each is skipped and counted, and the keys file beside it is named.
    moved = tmp_path / "rush.jsonl"
    quick.replace(moved)  # the keys file beside the trace is named in the summary
    result = runner.invoke(app, ["replay", str(moved), "--speed", "max"])
    assert result.exit_code == 0, result.output
    said = " ".join(result.stderr.split())
    assert f"{sent} skipped: no device key for {len(visiting)} device(s)" in said
    assert f"give --device-keys {keys_file}" in said


# --- end to end: bridge, stream worker, notifier ---------------------------------------------
@pytest.mark.integration
@pytest.mark.timeout(300)
async def test_an_iphone_app_customer_with_no_adverts_is_alerted_through_the_ingest(
    procs: Procs, proxima_env: dict[str, str]
) -> None:
    from tests.simulators.test_end_to_end import (
        _alerts_on_kafka,
        _pipeline,
        _published,
        _score,
        _wait_processed,
    )

    services, alerts, events = await _pipeline(procs, proxima_env)
    procs.run("enroll-1", "customers", "enroll", "cust-app-1", "--identity-key", "33" * 16,
              "--name", "Ines", "--visible", "name", "--consent", "arrival_alerts")  # fmt: skip
    procs.run("enroll-2", "customers", "enroll", "cust-app-2", "--identity-key", "44" * 16,
              "--name", "Vera", "--visible", "name")  # fmt: skip
    for cid, device in (("cust-app-1", D1), ("cust-app-2", D2)):
        procs.run(f"device-{cid}", "customers", "device", cid, device,
                  "--public-key", PUBLIC[device])  # fmt: skip
    out = procs.run("replay", "replay", str(HAND_APP), "--speed", "max",
                    "--device-keys", str(HAND_KEYS))  # fmt: skip
    said = " ".join(procs.log("replay").split())
    assert f"1 skipped: no device key for 1 device(s) (first: {D3})" in said
    assert "1 rejected by the ingest: 1 bad_signature" in said  # an unregistered device
    await _wait_processed(services, _published(out), procs, timeout=180)
    (alert,) = await _alerts_on_kafka(services, "cust-app-1", 1)
    assert alert["kind"] == "arrival"
    assert alert["zone_id"] == "floor"  # the interior beacon's region: in-store evidence
    # The notifier delivers right behind the worker; the recorder writes (and flushes) the
    # alert when it has it. Wait for that rather than a fixed time: on a loaded machine the
    # notifier's hop took over 3 s.
    async with asyncio.timeout(60):
        while not (alerts.exists() and alerts.read_text().strip()):  # noqa: ASYNC110
            await asyncio.sleep(0.2)
    procs.kill("recorder", signal.SIGTERM)

    recorded = [json.loads(x) for x in alerts.read_text().splitlines()]
    assert {a["customer_id"] for a in recorded} == {"cust-app-1"}  # Vera did not consent
    # Her storefront beacon's region (at 24 s, before the door) made the visit approach:
    # no alert of its own (no booking), and not her arrival.
    assert [a["kind"] for a in recorded] == ["arrival"]
    published: dict[str, dict[str, Any]] = {
        e["event_id"]: e for x in events.read_text().splitlines() for e in json.loads(x)
    }
    first, cause = alert["caused_by"]  # type: ignore[misc]
    assert (published[first]["kind"], published[first]["zone_id"]) == ("zone_enter", "street")
    assert published[cause]["kind"] == "zone_enter"
    assert published[cause]["subject"] == {"type": "device", "id": D1}
    hers = [e for e in published.values() if e["subject"] == {"type": "device", "id": D1}]
    assert [(e["kind"], e["zone_id"]) for e in hers][:2] == [
        ("zone_enter", "street"),
        ("zone_enter", "floor"),
    ]
    figures = _score(procs, HAND_APP, alerts, events, "app")
    (procs.log_dir / "app-score.json").write_text(json.dumps(figures, indent=1))
    assert figures["expected_visits"] == 1
    assert figures["recall"] == 1.0
    assert figures["precision"] == 1.0
    assert figures["alerts_without_consent"] == 0
    assert figures["latency_p50_s"] == 6.5  # door at 30 s, the region reported at 36.5 s
