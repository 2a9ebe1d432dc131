"""``proxima bench ingest``: how many signed app requests one core verifies and accepts.

Figures:

- ``verify_parse_per_s``: Ed25519 verification of the canonical string plus pydantic
  validation of a one-fix body (pure CPU, no HTTP);
- ``geofence_fixes_per_s``: fixes through :class:`edge.geofence.GeofenceEngine` over 10
  geofences (5 circles, 5 octagons);
- ``http_rejected_per_s``: requests with a wrong signature through the real server on
  loopback (HTTP, parsing, signature check, quarantine), the client in the same process;
- ``http_accepted_per_s``: signed location fixes through the real server into a real
  SQLite outbox (``synchronous=FULL``: one fsync per request), each fix crossing a
  geofence so every request writes one event; 32 requests in flight.
"""

from __future__ import annotations

import asyncio
import json
import math
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.devices import MemoryDeviceRegistry
from edge.geofence import EARTH_RADIUS_M, Circle, Fix, GeofenceEngine, Polygon
from edge.ingest import (
    IngestServer,
    IngestSettings,
    LocationReport,
    StoreIngestConfig,
    canonical_string,
    sign_request,
)
from edge.outbox import Outbox

LAT0, LON0 = 48.8566, 2.3522
STORE, GW = "bench-store", "gw-bench"
CONCURRENCY = 32


def _north(dy_m: float) -> float:
    return LAT0 + math.degrees(dy_m / EARTH_RADIUS_M)


def _body(dy_m: float, at: float) -> bytes:
    iso = datetime.fromtimestamp(at, tz=UTC).isoformat()
    fix = {"lat": _north(dy_m), "lon": LON0, "accuracy_m": 8.0, "at": iso}
    return json.dumps({"fixes": [fix]}, separators=(",", ":")).encode()


def _fences() -> list[Circle | Polygon]:
    fences: list[Circle | Polygon] = []
    for i in range(5):
        fences.append(Circle(f"c{i}", _north(i * 300.0), LON0, 100.0 + 20 * i))
        ring = tuple(
            (
                _north(i * 300.0 + 150 + 60 * math.cos(k * math.pi / 4)),
                LON0 + math.degrees(60 * math.sin(k * math.pi / 4) / (EARTH_RADIUS_M * 0.66)),
            )
            for k in range(8)
        )
        fences.append(Polygon(f"p{i}", ring))
    return fences


def _bench_verify(seconds: float) -> float:
    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    body = _body(0.0, time.time())
    path = f"/v1/stores/{STORE}/locations"
    device = "ab" * 16
    msg = canonical_string("POST", path, "1767261600", "n" * 24, device, body)
    sig = key.sign(msg)
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(200):
            public.verify(sig, canonical_string("POST", path, "1767261600", "n" * 24, device, body))
            LocationReport.model_validate_json(body)
        n += 200
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


def _bench_geofence(seconds: float) -> float:
    engine = GeofenceEngine(_fences(), clock=time.time, dwell_s=1e9, stale_s=1e9)
    fixes = [
        Fix(f"{d:032x}", _north((k * 37.0) % 1600 - 100), LON0, 10.0, float(k))
        for k in range(4000)
        for d in (k % 500,)
    ]
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for fix in fixes:
            engine.observe(Fix(fix.device_id, fix.lat, fix.lon, fix.accuracy_m, fix.at + n))
        n += len(fixes)
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


async def _bench_http(seconds: float, *, accept: bool) -> float:
    devices = 200
    keys = {f"{i:032x}": Ed25519PrivateKey.generate() for i in range(devices)}
    registry = MemoryDeviceRegistry({d: k.public_key() for d, k in keys.items()})
    wrong = Ed25519PrivateKey.generate()
    settings = IngestSettings(
        host="127.0.0.1",
        port=0,
        rate_per_s=1e6,
        rate_burst=1_000_000,
        nonce_cache_max=10_000_000,
    )
    store = StoreIngestConfig.model_validate(
        {"geofences": [{"kind": "circle", "id": "shop", "lat": LAT0, "lon": LON0, "radius_m": 100}]}
    )
    path = f"/v1/stores/{STORE}/locations"
    with tempfile.TemporaryDirectory(prefix="proxima-bench-ingest-") as tmp:
        async with Outbox(Path(tmp) / "outbox.db", store_id=STORE, gateway_id=GW) as outbox:
            server = IngestServer(
                settings, store_id=STORE, store=store, registry=registry, sink=outbox
            )
            await server.start(tick_s=None)
            url = f"http://127.0.0.1:{server.port}{path}"
            # Sign ahead of time: the figure is the server's, not the client's signing.
            now = time.time()
            per_device = max(4, int(seconds * 2000 / devices))
            requests: list[tuple[bytes, dict[str, str]]] = []
            for k in range(per_device):
                for d, key in keys.items():
                    body = _body(0.0 if k % 2 == 0 else 500.0, now + k)
                    signer = key if accept else wrong
                    requests.append((body, sign_request(signer, d, "POST", path, body)))
            queue = iter(requests)
            done = 0
            ok_status = 202 if accept else 401
            bad: dict[int, int] = {}
            deadline = time.perf_counter() + seconds

            async def worker(session: aiohttp.ClientSession) -> None:
                nonlocal done
                for body, headers in queue:
                    if time.perf_counter() >= deadline:
                        return
                    async with session.post(url, data=body, headers=headers) as resp:
                        await resp.read()
                        if resp.status == ok_status:
                            done += 1
                        else:
                            bad[resp.status] = bad.get(resp.status, 0) + 1

            try:
                conn = aiohttp.TCPConnector(limit=CONCURRENCY)
                async with aiohttp.ClientSession(connector=conn) as session:
                    start = time.perf_counter()
                    await asyncio.gather(*(worker(session) for _ in range(CONCURRENCY)))
                    elapsed = time.perf_counter() - start
            finally:
                await server.stop()
            if bad:
                raise RuntimeError(f"bench requests answered unexpectedly: {bad}")
            if accept and outbox.stats.written != done:
                raise RuntimeError(f"{done} accepted but {outbox.stats.written} events written")
            return done / elapsed


def run_ingest_bench(seconds: float = 2.0) -> dict[str, Any]:
    """Measure the figures of the module doc; ``seconds`` per figure."""
    return {
        "verify_parse_per_s": _bench_verify(seconds),
        "geofence_fixes_per_s": _bench_geofence(seconds),
        "http_rejected_per_s": asyncio.run(_bench_http(seconds, accept=False)),
        "http_accepted_per_s": asyncio.run(_bench_http(seconds, accept=True)),
        "concurrency": CONCURRENCY,
        "seconds": seconds,
    }
