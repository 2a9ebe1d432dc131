"""The app-event ingest against a real aiohttp server on loopback, with a real SQLite outbox."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import math
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from contracts.models import Event
from edge.devices import MemoryDeviceRegistry
from edge.geofence import EARTH_RADIUS_M
from edge.ingest import (
    H_NONCE,
    H_SIGNATURE,
    H_TIMESTAMP,
    IngestServer,
    IngestSettings,
    StoreIngestConfig,
    canonical_string,
    sign_request,
)
from edge.outbox import Outbox
from tests.kit.clock import T0, FakeClock

pytestmark = pytest.mark.integration

STORE = "demo-store"
GW = "gw-door"
DEVICE = "00112233445566778899aabbccddeeff"
OTHER = "ffeeddccbbaa99887766554433221100"
LAT0, LON0 = 48.8566, 2.3522
REGION_ID = "f7826da64fa24e988024bc5b71e0893e" + "0001" + "0002"
FRONT_ID = "f7826da64fa24e988024bc5b71e0893e" + "0001" + "0003"  # a beacon by the shop front
TOKEN = "admin-secret-token"


def north(dy_m: float) -> tuple[float, float]:
    return LAT0 + math.degrees(dy_m / EARTH_RADIUS_M), LON0


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).isoformat().replace("+00:00", "Z")


STORE_CFG = StoreIngestConfig.model_validate(
    {
        "geofences": [
            {"kind": "circle", "id": "shop", "lat": LAT0, "lon": LON0, "radius_m": 100.0},
            {
                "kind": "polygon",
                "id": "car-park",
                "vertices": [[48.86, 2.36], [48.86, 2.361], [48.861, 2.361], [48.861, 2.36]],
            },
        ],
        "beacon_regions": [
            {"type": "ibeacon", "id": REGION_ID, "zone_id": "entrance"},
            {
                "type": "ibeacon",
                "id": FRONT_ID,
                "zone_id": "entrance",
                "min_rssi": -75,
                "approach_zone_id": "street",
                "pair_margin_db": 6,
                "sustained_min_rssi": -85,
            },
        ],
    }
)


class App:
    """A device talking to the running server, signing like the app does."""

    def __init__(
        self, server: IngestServer, session: aiohttp.ClientSession, key: Ed25519PrivateKey
    ) -> None:
        self.server = server
        self.session = session
        self.key = key
        self.base = f"http://127.0.0.1:{server.port}"

    def signed(
        self, path: str, body: bytes, *, device: str = DEVICE, key: Ed25519PrivateKey | None = None
    ) -> dict[str, str]:
        return sign_request(
            key or self.key, device, "POST", path, body, timestamp=int(self.server.clock())
        )

    async def post(
        self,
        kind: str,
        payload: Any,
        *,
        store: str = STORE,
        headers: dict[str, str] | None = None,
        **sign: Any,
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        path = f"/v1/stores/{store}/{kind}"
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        hdrs = self.signed(path, body, **sign) if headers is None else headers
        async with self.session.post(self.base + path, data=body, headers=hdrs) as resp:
            return resp.status, await resp.json(content_type=None), dict(resp.headers)


def fixes(*points: tuple[float, float, float], at: float = T0) -> dict[str, Any]:
    """Fixes given as (metres north of the shop's centre, accuracy, seconds after ``at``)."""
    return {
        "fixes": [
            {"lat": north(dy)[0], "lon": LON0, "accuracy_m": acc, "at": iso(at + dt)}
            for dy, acc, dt in points
        ]
    }


def settings(**overrides: Any) -> IngestSettings:
    base: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "rate_per_s": 1.0,
        "rate_burst": 5,
        "max_body_bytes": 4096,
        "geofence_dwell_s": 60.0,
        "admin_token": TOKEN,
    }
    base.update(overrides)
    return IngestSettings(**base)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def device_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def registry(device_key: Ed25519PrivateKey) -> MemoryDeviceRegistry:
    return MemoryDeviceRegistry({DEVICE: device_key.public_key()})


@pytest.fixture
async def outbox(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Outbox]:
    async with Outbox(tmp_path / "outbox.db", store_id=STORE, gateway_id=GW, clock=clock) as box:
        yield box


async def _serve(
    outbox: Outbox, registry: MemoryDeviceRegistry, clock: FakeClock, **overrides: Any
) -> IngestServer:
    server = IngestServer(
        settings(**overrides),
        store_id=STORE,
        store=STORE_CFG,
        registry=registry,
        sink=outbox,
        clock=clock,
    )
    await server.start(tick_s=None)
    return server


@pytest.fixture
async def app(
    outbox: Outbox, registry: MemoryDeviceRegistry, clock: FakeClock, device_key: Ed25519PrivateKey
) -> AsyncIterator[App]:
    server = await _serve(outbox, registry, clock)
    async with aiohttp.ClientSession() as session:
        yield App(server, session, device_key)
    await server.stop()


def assert_rejected(
    app: App, status: int, body: dict[str, Any], got: int, reason: str, sent: bytes | None = None
) -> None:
    assert (got, body["status"], body["reason"]) == (status, "rejected", reason), body
    assert app.server.metrics.rejected[reason] >= 1
    parked = app.server.quarantine.recent(1)[0]
    assert parked["reason"] == reason
    assert parked["status"] == status
    if sent is not None:
        assert base64.b64decode(parked["body_b64"]) == sent


# --- happy paths --------------------------------------------------------------------------
async def test_signed_fix_crossing_into_a_geofence_yields_geofence_enter_in_the_outbox(
    app: App, outbox: Outbox
) -> None:
    status, body, _ = await app.post("locations", fixes((400.0, 10.0, -20), (300.0, 10.0, -10)))
    assert (status, body["events"]) == (202, [])
    status, body, _ = await app.post("locations", fixes((10.0, 8.0, 0)))
    assert status == 202
    assert [e["kind"] for e in body["events"]] == ["geofence_enter"]
    [event] = await outbox.pending()
    assert isinstance(event, Event)
    assert event.model_dump(mode="json", by_alias=True, exclude_none=True) | {"event_id": "-"} == {
        "schema": "proxima.geofence.v1",
        "event_id": "-",
        "store_id": STORE,
        "gateway_id": GW,
        "observed_at": "2026-01-01T10:00:00.000Z",
        "seq": 1,
        "kind": "geofence_enter",
        "subject": {"type": "device", "id": DEVICE},
        "zone_id": "shop",
        "distance_m": pytest.approx(10.0, abs=0.1),  # from the store
        "confidence": 1.0,
    }
    assert str(event.event_id) == body["events"][0]["event_id"]
    assert app.server.metrics.snapshot()["accepted"] == 2


async def test_noise_near_the_boundary_changes_nothing(app: App, outbox: Outbox) -> None:
    await app.post("locations", fixes((0.0, 5.0, 0)))
    # 95-105 m from the centre with 20 m accuracy: inside the hysteresis band.
    status, body, _ = await app.post(
        "locations", fixes((95.0, 20.0, 1), (105.0, 20.0, 2), (98.0, 20.0, 3))
    )
    assert (status, body["events"]) == (202, [])
    assert [e.kind.value for e in await outbox.pending()] == ["geofence_enter"]


async def test_dwell_comes_from_the_tick_on_the_injected_clock(
    app: App, outbox: Outbox, clock: FakeClock
) -> None:
    await app.post("locations", fixes((0.0, 5.0, 0)))
    clock.t += 59
    assert await app.server.tick() == []
    clock.t += 2
    [dwell] = await app.server.tick()
    assert (dwell.kind.value, dwell.zone_id, dwell.seq) == ("geofence_dwell", "shop", 2)
    assert dwell.observed_at == datetime.fromtimestamp(T0 + 60, tz=UTC)


async def test_os_geofence_transitions_are_accepted_and_deduplicated(
    app: App, outbox: Outbox
) -> None:
    report = {"transitions": [{"geofence_id": "car-park", "transition": "enter", "at": iso(T0)}]}
    status, body, _ = await app.post("geofence-transitions", report)
    assert (status, [e["kind"] for e in body["events"]]) == (202, ["geofence_enter"])
    status, body, _ = await app.post("geofence-transitions", report)
    assert (status, body["events"]) == (202, [])
    leave = {"transitions": [{"geofence_id": "car-park", "transition": "exit", "at": iso(T0 + 5)}]}
    status, body, _ = await app.post("geofence-transitions", leave)
    assert [e["kind"] for e in body["events"]] == ["geofence_exit"]
    assert [(e.kind.value, e.zone_id) for e in await outbox.pending()] == [
        ("geofence_enter", "car-park"),
        ("geofence_exit", "car-park"),
    ]


async def test_beacon_region_enter_and_exit_become_zone_events_of_the_device(
    app: App, outbox: Outbox
) -> None:
    events = [
        {
            "region": {"type": "ibeacon", "id": REGION_ID},
            "transition": "enter",
            "at": iso(T0),
            "rssi": -61,
        },
        {"region": {"type": "ibeacon", "id": REGION_ID}, "transition": "exit", "at": iso(T0 + 30)},
    ]
    status, body, _ = await app.post("beacon-regions", {"events": events})
    assert status == 202
    stored = await outbox.pending()
    assert [(e.schema_, e.kind.value, e.zone_id, e.rssi, e.subject.type.value) for e in stored] == [
        ("proxima.zone.v1", "zone_enter", "entrance", -61.0, "device"),
        ("proxima.zone.v1", "zone_exit", "entrance", None, "device"),
    ]
    assert [e["seq"] for e in body["events"]] == [1, 2]


async def test_a_storefront_region_heard_weakly_is_an_approach_until_the_app_ranges_it_near(
    app: App, outbox: Outbox
) -> None:
    """A region with min_rssi: an enter ranged weaker (or not ranged) is in its approach
    zone (the street), one at least that loud in its own; an exit closes both."""
    front = {"type": "ibeacon", "id": FRONT_ID}
    events = [
        {"region": front, "transition": "enter", "at": iso(T0), "rssi": -84},
        {"region": front, "transition": "enter", "at": iso(T0 + 4), "rssi": -71},
        {"region": front, "transition": "exit", "at": iso(T0 + 40)},
        {"region": front, "transition": "enter", "at": iso(T0 + 50)},
    ]
    status, body, _ = await app.post("beacon-regions", {"events": events})
    assert status == 202, body
    stored = await outbox.pending()
    assert [(e.kind.value, e.zone_id, e.rssi) for e in stored] == [
        ("zone_enter", "street", -84.0),
        ("zone_enter", "entrance", -71.0),
        ("zone_exit", "entrance", None),
        ("zone_exit", "street", None),
        ("zone_enter", "street", None),
    ]
    assert len({e.event_id for e in stored}) == 5
    assert [e.evidence.rule if e.evidence else None for e in stored] == [
        "app_region_far", "app_region_near", None, None, "app_region_unranged",
    ]  # fmt: skip


async def test_a_sustained_enter_is_judged_by_the_region_s_lower_bar(
    app: App, outbox: Outbox
) -> None:
    """A bagged phone read in the store over several seconds: the app marks the enter
    ``sustained`` and the ingest takes it in-store from ``sustained_min_rssi`` (-85) up;
    the same reading unmarked is an approach, and a sustained one under the lower bar too."""
    front = {"type": "ibeacon", "id": FRONT_ID}
    events = [
        {"region": front, "transition": "enter", "at": iso(T0), "rssi": -80},
        {"region": front, "transition": "enter", "at": iso(T0 + 1), "rssi": -86, "sustained": True},
        {"region": front, "transition": "enter", "at": iso(T0 + 2), "rssi": -80, "sustained": True},
    ]
    status, body, _ = await app.post("beacon-regions", {"events": events})
    assert status == 202, body
    stored = await outbox.pending()
    assert [(e.zone_id, e.rssi) for e in stored] == [
        ("street", -80.0), ("street", -86.0), ("entrance", -80.0),
    ]  # fmt: skip
    # Each says why, for the timeline: the reading against the bar it was judged by.
    assert [(e.evidence.rule, e.evidence.detail) for e in stored if e.evidence] == [
        ("app_region_far", "ranged -80 dBm, under -75"),
        ("app_region_far", "ranged -86 dBm, held over seconds, under -85"),
        ("app_region_sustained", "ranged -80 dBm, held over seconds, bar -85"),
    ]
    status, body, _ = await app.post(
        "beacon-regions",
        {"events": [{"region": front, "transition": "enter", "at": iso(T0 + 3), "sustained": 1}]},
    )
    assert status == 422, body
    assert "sustained" in body["detail"], body


def test_a_sustained_bar_needs_the_threshold_it_lowers() -> None:
    from edge.ingest.store import BeaconRegionSpec

    with pytest.raises(ValidationError, match="sustained_min_rssi needs min_rssi"):
        BeaconRegionSpec(type="ibeacon", id=FRONT_ID, zone_id="entrance", sustained_min_rssi=-85)
    with pytest.raises(ValidationError, match="may not be above it"):
        BeaconRegionSpec(
            type="ibeacon", id=FRONT_ID, zone_id="entrance", min_rssi=-75,
            approach_zone_id="street", pair_margin_db=6, sustained_min_rssi=-70,
        )  # fmt: skip
    # Without the storefront to beat, a shopper at the glass reads as much for seconds.
    with pytest.raises(ValidationError, match="sustained_min_rssi needs pair_margin_db"):
        BeaconRegionSpec(
            type="ibeacon", id=FRONT_ID, zone_id="entrance", min_rssi=-75,
            approach_zone_id="street", sustained_min_rssi=-85,
        )  # fmt: skip
    plain = BeaconRegionSpec(
        type="ibeacon", id=FRONT_ID, zone_id="entrance", min_rssi=-75, approach_zone_id="street"
    )
    # Without the lower bar a sustained enter is judged by min_rssi like any other.
    assert [plain.zone_for(-80.0, sustained=True), plain.zone_for(-75.0, sustained=True)] == [
        "street", "entrance",
    ]  # fmt: skip


def test_a_pair_margin_needs_the_threshold_it_adds_to() -> None:
    from edge.ingest.store import BeaconRegionSpec

    with pytest.raises(ValidationError, match="pair_margin_db needs min_rssi"):
        BeaconRegionSpec(type="ibeacon", id=FRONT_ID, zone_id="entrance", pair_margin_db=6)
    spec = BeaconRegionSpec(
        type="ibeacon", id=FRONT_ID, zone_id="entrance", min_rssi=-72,
        approach_zone_id="street", pair_margin_db=6,
    )  # fmt: skip
    # The app applies the margin; the ingest's own rule is the threshold's, unchanged.
    assert [spec.zone_for(r) for r in (-72.0, -73.0)] == ["entrance", "street"]


def test_min_rssi_and_approach_zone_come_together() -> None:
    from edge.ingest.store import BeaconRegionSpec

    with pytest.raises(ValidationError, match="min_rssi and approach_zone_id go together"):
        BeaconRegionSpec(type="ibeacon", id=FRONT_ID, zone_id="entrance", min_rssi=-75)
    spec = BeaconRegionSpec(
        type="ibeacon", id=FRONT_ID, zone_id="entrance", min_rssi=-75, approach_zone_id="street"
    )
    assert [spec.zone_for(r) for r in (-75.0, -75.5, None, -40.0)] == [
        "entrance", "street", "street", "entrance",
    ]  # fmt: skip


def test_sign_request_signs_the_documented_canonical_string() -> None:
    key = Ed25519PrivateKey.generate()
    body = b'{"fixes":[]}'
    headers = sign_request(
        key, DEVICE, "post", "/v1/stores/s/locations", body, timestamp=1700000000, nonce="n" * 22
    )
    assert headers[H_TIMESTAMP] == "1700000000"
    assert headers[H_NONCE] == "n" * 22
    raw = headers[H_SIGNATURE].removeprefix("v1=")
    sig = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    expected = (
        "proxima-app-v1\nPOST\n/v1/stores/s/locations\n1700000000\n"
        + "n" * 22
        + f"\n{DEVICE}\n"
        + hashlib.sha256(body).hexdigest()
    )
    assert (
        canonical_string("POST", "/v1/stores/s/locations", "1700000000", "n" * 22, DEVICE, body)
        == expected.encode()
    )
    key.public_key().verify(sig, expected.encode())


# --- rejections ---------------------------------------------------------------------------
async def test_missing_signature_headers_are_401(app: App, outbox: Outbox) -> None:
    body = json.dumps(fixes((0.0, 5.0, 0))).encode()
    status, resp, _ = await app.post(
        "locations", body, headers={"Content-Type": "application/json"}
    )
    assert_rejected(app, 401, resp, status, "missing_signature", body)
    assert "X-Proxima-Device" in resp["detail"]
    assert await outbox.pending() == []


async def test_signature_by_another_key_is_401(app: App, outbox: Outbox) -> None:
    status, resp, _ = await app.post(
        "locations", fixes((0.0, 5.0, 0)), key=Ed25519PrivateKey.generate()
    )
    assert_rejected(app, 401, resp, status, "bad_signature")
    assert await outbox.pending() == []


async def test_a_tampered_body_is_401(app: App, outbox: Outbox) -> None:
    path = f"/v1/stores/{STORE}/locations"
    signed = json.dumps(fixes((400.0, 5.0, 0))).encode()
    sent = json.dumps(fixes((0.0, 5.0, 0))).encode()
    status, resp, _ = await app.post("locations", sent, headers=app.signed(path, signed))
    assert_rejected(app, 401, resp, status, "bad_signature", sent)
    assert await outbox.pending() == []


async def test_a_signature_for_another_path_is_401(app: App) -> None:
    body = json.dumps(fixes((0.0, 5.0, 0))).encode()
    headers = app.signed(f"/v1/stores/{STORE}/geofence-transitions", body)
    status, resp, _ = await app.post("locations", body, headers=headers)
    assert_rejected(app, 401, resp, status, "bad_signature")


async def test_without_its_key_nobody_learns_whether_a_device_is_registered_or_revoked(
    app: App, registry: MemoryDeviceRegistry
) -> None:
    stranger = Ed25519PrivateKey.generate()
    wrong_key = await app.post("locations", fixes((0.0, 5.0, 0)), key=stranger)
    unregistered = await app.post("locations", fixes((0.0, 5.0, 0)), device=OTHER, key=stranger)
    registry.add(DEVICE, app.key.public_key(), revoked=True)
    revoked = await app.post("locations", fixes((0.0, 5.0, 0)), key=stranger)
    answers = [(status, resp) for status, resp, _ in (wrong_key, unregistered, revoked)]
    assert answers == [answers[0]] * 3
    assert answers[0][0] == 401
    assert answers[0][1]["reason"] == "bad_signature"
    # Operators see the cause: counted and parked as such.
    assert app.server.metrics.rejected == {"bad_signature": 1, "unknown_device": 2}
    parked = app.server.quarantine.recent(2)
    assert [(r["reason"], r["answered"]) for r in parked] == [
        ("unknown_device", "bad_signature")
    ] * 2
    assert "not registered" in parked[0]["detail"]
    assert "revoked" in parked[1]["detail"]


async def test_a_revoked_device_signing_with_its_own_key_is_told_it_is_revoked(
    app: App, registry: MemoryDeviceRegistry, outbox: Outbox
) -> None:
    registry.add(DEVICE, app.key.public_key(), revoked=True)
    status, resp, _ = await app.post("locations", fixes((0.0, 5.0, 0)))
    assert_rejected(app, 401, resp, status, "unknown_device")
    assert "revoked" in resp["detail"]
    assert await outbox.pending() == []


async def test_an_unregistered_device_with_a_skewed_clock_hears_about_the_clock(app: App) -> None:
    path = f"/v1/stores/{STORE}/locations"
    body = json.dumps(fixes((0.0, 5.0, 0))).encode()
    key = Ed25519PrivateKey.generate()
    headers = sign_request(key, OTHER, "POST", path, body, timestamp=int(app.server.clock()) - 900)
    status, resp, _ = await app.post("locations", body, headers=headers)
    assert_rejected(app, 401, resp, status, "clock_skew")


@pytest.mark.parametrize("offset_s", [-301, 301])
async def test_a_timestamp_too_far_off_is_401(app: App, offset_s: int) -> None:
    path = f"/v1/stores/{STORE}/locations"
    body = json.dumps(fixes((0.0, 5.0, 0))).encode()
    headers = sign_request(
        app.key, DEVICE, "POST", path, body, timestamp=int(app.server.clock()) + offset_s
    )
    status, resp, _ = await app.post("locations", body, headers=headers)
    assert_rejected(app, 401, resp, status, "clock_skew")
    assert f"{offset_s:+d} s" in resp["detail"]


async def test_a_replayed_nonce_is_409_and_stores_nothing_twice(app: App, outbox: Outbox) -> None:
    path = f"/v1/stores/{STORE}/locations"
    body = json.dumps(fixes((0.0, 5.0, 0))).encode()
    headers = app.signed(path, body)
    first, _, _ = await app.post("locations", body, headers=headers)
    again, resp, _ = await app.post("locations", body, headers=headers)
    assert first == 202
    assert_rejected(app, 409, resp, again, "replayed_nonce", body)
    assert len(await outbox.pending()) == 1


async def test_the_nonce_is_remembered_for_the_whole_skew_window(
    app: App, clock: FakeClock, outbox: Outbox
) -> None:
    path = f"/v1/stores/{STORE}/beacon-regions"
    payload = {
        "events": [
            {"region": {"type": "ibeacon", "id": REGION_ID}, "transition": "enter", "at": iso(T0)}
        ]
    }
    body = json.dumps(payload).encode()
    headers = app.signed(path, body)
    assert (await app.post("beacon-regions", body, headers=headers))[0] == 202
    clock.t += 299  # the timestamp is still acceptable: the nonce must still be known
    assert (await app.post("beacon-regions", body, headers=headers))[0] == 409
    clock.t += 2  # now the timestamp itself is too old
    status, resp, _ = await app.post("beacon-regions", body, headers=headers)
    assert (status, resp["reason"]) == (401, "clock_skew")


async def test_unknown_store_is_404(app: App) -> None:
    status, resp, _ = await app.post("locations", fixes((0.0, 5.0, 0)), store="other-store")
    assert_rejected(app, 404, resp, status, "unknown_store")
    assert "'other-store'" in resp["detail"]


async def test_an_endpoint_the_store_does_not_have_is_404_naming_the_ones_it_has(app: App) -> None:
    status, resp, _ = await app.post("heartbeats", {"beat": 1})
    assert_rejected(app, 404, resp, status, "unknown_endpoint", sent=b'{"beat": 1}')
    assert resp["detail"] == (
        "no endpoint 'heartbeats'; use one of geofence-transitions, beacon-regions, locations"
    )
    status, resp, _ = await app.post("heartbeats", {"beat": 1}, store="other-store")
    assert_rejected(app, 404, resp, status, "unknown_store")  # the store is checked first


async def test_an_oversized_body_is_413_declared_or_streamed(app: App, outbox: Outbox) -> None:
    big = b'{"fixes": [' + b" " * 5000 + b"]}"
    status, resp, _ = await app.post("locations", big)
    assert_rejected(app, 413, resp, status, "body_too_large")

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b" " * 1000

    path = f"/v1/stores/{STORE}/locations"
    async with app.session.post(app.base + path, data=chunks(), headers=app.signed(path, b"")) as r:
        assert (r.status, (await r.json())["reason"]) == (413, "body_too_large")
    assert app.server.metrics.rejected["body_too_large"] == 2
    assert await outbox.pending() == []


@pytest.mark.parametrize(
    ("kind", "payload", "field"),
    [
        ("locations", b"{not json", "(body)"),
        (
            "locations",
            {"fixes": [{"lat": 91, "lon": 2.0, "accuracy_m": 5, "at": iso(T0)}]},
            "fixes.0.lat",
        ),
        (
            "locations",
            {"fixes": [{"lat": 1, "lon": 2.0, "accuracy_m": 5, "at": "2026-01-01T10:00:00"}]},
            "fixes.0.at",
        ),
        (
            "locations",
            {"fixes": [{"lat": 1, "lon": 2, "accuracy_m": 5, "at": iso(T0), "x": 1}]},
            "fixes.0.x",
        ),
        ("locations", {"fixes": []}, "fixes"),
        (
            "locations",
            {"fixes": [{"lat": 1, "lon": 2, "accuracy_m": 5, "at": iso(T0 + 3600)}]},
            "fixes.0.at: 3600 s in the future",
        ),
        (
            "geofence-transitions",
            {"transitions": [{"geofence_id": "nope", "transition": "enter", "at": iso(T0)}]},
            "transitions.0.geofence_id",
        ),
        (
            "geofence-transitions",
            {"transitions": [{"geofence_id": "shop", "transition": "dwell", "at": iso(T0)}]},
            "transitions.0.transition",
        ),
        (
            "beacon-regions",
            {
                "events": [
                    {
                        "region": {"type": "ibeacon", "id": "abcd"},
                        "transition": "enter",
                        "at": iso(T0),
                    }
                ]
            },
            "events.0.region",
        ),
    ],
)
async def test_invalid_bodies_are_422_naming_the_field(
    app: App, outbox: Outbox, kind: str, payload: Any, field: str
) -> None:
    status, resp, _ = await app.post(kind, payload)
    sent = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    assert_rejected(app, 422, resp, status, "invalid_body", sent)
    assert field in resp["detail"]
    assert await outbox.pending() == []


async def test_rate_limit_per_device_is_429_with_retry_after(
    app: App, clock: FakeClock, registry: MemoryDeviceRegistry
) -> None:
    other_key = Ed25519PrivateKey.generate()
    registry.add(OTHER, other_key.public_key())
    statuses = [(await app.post("locations", fixes((400.0, 5.0, 0))))[0] for _ in range(5)]
    status, resp, headers = await app.post("locations", fixes((400.0, 5.0, 0)))
    assert statuses == [202] * 5
    assert_rejected(app, 429, resp, status, "rate_limited")
    assert headers["Retry-After"] == "1"
    # Another device has its own bucket.
    assert (await app.post("locations", fixes((400.0, 5.0, 0)), device=OTHER, key=other_key))[
        0
    ] == 202
    clock.t += 1.0
    assert (await app.post("locations", fixes((400.0, 5.0, 1))))[0] == 202


async def test_outbox_full_is_503_nothing_half_written_and_state_rolled_back(
    tmp_path: Path, registry: MemoryDeviceRegistry, clock: FakeClock, device_key: Ed25519PrivateKey
) -> None:
    async with Outbox(
        tmp_path / "small.db", store_id=STORE, gateway_id=GW, clock=clock, max_rows=2
    ) as box:
        server = await _serve(box, registry, clock)
        try:
            async with aiohttp.ClientSession() as session:
                app = App(server, session, device_key)
                assert (
                    await app.post(
                        "geofence-transitions",
                        {
                            "transitions": [
                                {"geofence_id": "car-park", "transition": "enter", "at": iso(T0)}
                            ]
                        },
                    )
                )[0] == 202
                # Two events (shop enter, car-park exit) need 2 rows; only 1 is left.
                report = {
                    "transitions": [
                        {"geofence_id": "shop", "transition": "enter", "at": iso(T0 + 1)},
                        {"geofence_id": "car-park", "transition": "exit", "at": iso(T0 + 2)},
                    ]
                }
                path = f"/v1/stores/{STORE}/geofence-transitions"
                body = json.dumps(report).encode()
                headers = app.signed(path, body)
                status, resp, _ = await app.post("geofence-transitions", body, headers=headers)
                assert_rejected(app, 503, resp, status, "unavailable", body)
                assert "outbox full" in resp["detail"]
                assert [e.kind.value for e in await box.pending()] == ["geofence_enter"]
                assert not server.engine.is_inside(DEVICE, "shop")
                assert server.engine.is_inside(DEVICE, "car-park")
                # Room again: the very same signed request (same nonce) is accepted now.
                batch = await box.next_batch(max_events=10, max_latency_s=0)
                await box.ack(batch)
                status, resp, _ = await app.post("geofence-transitions", body, headers=headers)
                assert status == 202
                assert [e["kind"] for e in resp["events"]] == ["geofence_enter", "geofence_exit"]
        finally:
            await server.stop()


async def test_a_retry_after_a_lost_answer_maps_to_the_same_event_ids(
    app: App, outbox: Outbox
) -> None:
    path = f"/v1/stores/{STORE}/locations"
    body = json.dumps(fixes((0.0, 5.0, 0))).encode()
    headers = app.signed(path, body)
    _, first, _ = await app.post("locations", body, headers=headers)
    # The gateway restarts (nonces and geofence state gone) while the event is still queued:
    app.server.nonces.release(DEVICE, headers[H_NONCE])
    app.server.engine.restore(DEVICE, None)
    status, resp, _ = await app.post("locations", body, headers=headers)
    assert (status, resp["reason"]) == (409, "replayed_nonce")
    assert len(await outbox.pending()) == 1
    # ... and once it was published, the retry is accepted with the same event id, which
    # the pipeline deduplicates.
    await outbox.ack(await outbox.next_batch(max_latency_s=0))
    app.server.nonces.release(DEVICE, headers[H_NONCE])
    app.server.engine.restore(DEVICE, None)
    status, second, _ = await app.post("locations", body, headers=headers)
    assert status == 202
    assert first["events"][0]["event_id"] == second["events"][0]["event_id"]
    assert first["events"][0]["seq"] < second["events"][0]["seq"]


# --- admin --------------------------------------------------------------------------------
async def test_admin_endpoints_need_the_token_and_show_rejections(app: App) -> None:
    await app.post("locations", fixes((0.0, 5.0, 0)), store="nope")
    url = app.base + "/admin/quarantine"
    async with app.session.get(url) as r:
        assert r.status == 401
    async with app.session.get(url, headers={"Authorization": "Bearer wrong"}) as r:
        assert r.status == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with app.session.get(url, headers=auth) as r:
        parked = (await r.json())["rejected"]
    assert [p["reason"] for p in parked] == ["unknown_store"]
    assert parked[0]["device_id"] == DEVICE
    async with app.session.get(app.base + "/admin/metrics", headers=auth) as r:
        metrics = await r.json()
    assert metrics["rejected"] == {"unknown_store": 1}
    # In a registry, as the agent's /metrics serves them, read with prometheus_client's parser.
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from edge.ingest.metrics import IngestCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(IngestCollector(app.server.metrics, {"store": "s", "gateway": "g"}))
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(generate_latest(registry).decode())
        for s in f.samples
    }
    where = (("gateway", "g"), ("store", "s"))
    assert (
        samples[
            ("proxima_ingest_rejected_total", (*where[:1], ("reason", "unknown_store"), where[1]))
        ]
        == 1.0
    )
    assert samples[("proxima_ingest_requests_total", where)] == 1.0


async def test_admin_endpoints_are_off_without_a_token(
    outbox: Outbox, registry: MemoryDeviceRegistry, clock: FakeClock
) -> None:
    server = await _serve(outbox, registry, clock, admin_token="")
    url = f"http://127.0.0.1:{server.port}/admin/quarantine"
    try:
        async with aiohttp.ClientSession() as session, session.get(url) as r:
            assert r.status == 404
    finally:
        await server.stop()


async def test_quarantine_file_rotates(tmp_path: Path) -> None:
    from edge.ingest import Quarantine

    q = Quarantine(max_items=3, path=tmp_path / "q.jsonl", max_file_bytes=300)
    for i in range(10):
        q.park({"reason": "invalid_body", "i": i, "pad": "x" * 60})
    assert [r["i"] for r in q.recent()] == [7, 8, 9]
    current = [json.loads(line)["i"] for line in (tmp_path / "q.jsonl").read_text().splitlines()]
    backup = [json.loads(line)["i"] for line in (tmp_path / "q.jsonl.1").read_text().splitlines()]
    assert current[-1] == 9
    assert backup[-1] == current[0] - 1
    assert (tmp_path / "q.jsonl").stat().st_size <= 300


async def test_an_unreachable_registry_is_503_and_the_request_may_be_retried(
    outbox: Outbox, clock: FakeClock, device_key: Ed25519PrivateKey
) -> None:
    import redis.asyncio as aioredis

    from edge.devices import RedisDeviceRegistry

    client = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    server = IngestServer(
        settings(),
        store_id=STORE,
        store=STORE_CFG,
        registry=RedisDeviceRegistry(client, "x:"),
        sink=outbox,
        clock=clock,
    )
    await server.start(tick_s=None)
    try:
        async with aiohttp.ClientSession() as session:
            app = App(server, session, device_key)
            status, resp, _ = await app.post("locations", fixes((0.0, 5.0, 0)))
        assert_rejected(app, 503, resp, status, "unavailable")
        assert "registry unreachable" in resp["detail"]
    finally:
        await server.stop()
        await client.aclose()


async def test_from_settings_serves_the_store_file_and_device_file_until_cancelled(
    tmp_path: Path, outbox: Outbox, device_key: Ed25519PrivateKey
) -> None:
    import asyncio

    from edge.devices import encode_public_key

    store_file = tmp_path / "store.toml"
    store_file.write_text(
        f'[[geofences]]\nkind = "circle"\nid = "shop"\nlat = {LAT0}\nlon = {LON0}\nradius_m = 100.0\n'
    )
    devices = tmp_path / "devices.json"
    pub = encode_public_key(device_key.public_key())
    devices.write_text(json.dumps({"devices": [{"device_id": DEVICE, "public_key": pub}]}))
    server = IngestServer.from_settings(
        settings(store_file=str(store_file), devices=f"file:{devices}"),
        store_id=STORE,
        sink=outbox,
    )
    task = asyncio.create_task(server.serve(), name="test-ingest")
    await server.started.wait()
    async with aiohttp.ClientSession() as session:
        app = App(server, session, device_key)
        status, resp, _ = await app.post("locations", fixes((0.0, 5.0, 0), at=time.time()))
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert (status, [e["kind"] for e in resp["events"]]) == (202, ["geofence_enter"])
    assert not server.started.is_set()  # stopped on cancel


class BrokenOnceSink:
    """Our EventSink interface, failing its first put with a bug-like error."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.failed = False

    async def put(self, drafts: Any) -> list[Event]:
        if not self.failed:
            self.failed = True
            raise RuntimeError("boom")
        return await self.outbox.put(drafts)


async def test_an_unexpected_error_costs_one_request_not_the_server(
    outbox: Outbox, registry: MemoryDeviceRegistry, clock: FakeClock, device_key: Ed25519PrivateKey
) -> None:
    server = IngestServer(
        settings(),
        store_id=STORE,
        store=STORE_CFG,
        registry=registry,
        sink=BrokenOnceSink(outbox),
        clock=clock,
    )
    await server.start(tick_s=None)
    try:
        async with aiohttp.ClientSession() as session:
            app = App(server, session, device_key)
            status, resp, _ = await app.post("locations", fixes((0.0, 5.0, 0)))
            assert_rejected(app, 500, resp, status, "internal_error")
            assert not server.engine.is_inside(DEVICE, "shop")
            status, resp, _ = await app.post("locations", fixes((0.0, 5.0, 1)))
        assert (status, [e["kind"] for e in resp["events"]]) == (202, ["geofence_enter"])
    finally:
        await server.stop()


async def test_a_live_store_update_exits_removed_fences_and_adds_regions(
    app: App, outbox: Outbox
) -> None:
    await app.post("locations", fixes((0.0, 5.0, 0)))
    new_region = "aa" * 20
    stored = await app.server.update_store(
        StoreIngestConfig.model_validate(
            {
                "geofences": [
                    {"kind": "circle", "id": "mall", "lat": LAT0, "lon": LON0, "radius_m": 500}
                ],
                "beacon_regions": [{"type": "ibeacon", "id": new_region, "zone_id": "fitting-1"}],
            }
        )
    )
    assert [(e.kind.value, e.zone_id, e.confidence) for e in stored] == [
        ("geofence_exit", "shop", 0.5)
    ]
    event = {"region": {"type": "ibeacon", "id": new_region}, "transition": "enter", "at": iso(T0)}
    status, resp, _ = await app.post("beacon-regions", {"events": [event]})
    assert (status, resp["events"][0]["kind"]) == (202, "zone_enter")
    old = {"region": {"type": "ibeacon", "id": REGION_ID}, "transition": "enter", "at": iso(T0)}
    status, resp, _ = await app.post("beacon-regions", {"events": [old]})
    assert (status, resp["reason"]) == (422, "invalid_body")
    status, resp, _ = await app.post("locations", fixes((0.0, 5.0, 1)))
    assert [e["kind"] for e in resp["events"]] == ["geofence_enter"]
    assert [e.zone_id for e in await outbox.pending()][-1] == "mall"
