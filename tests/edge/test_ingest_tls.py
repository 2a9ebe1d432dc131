"""The app-event ingest over real TLS, and its refusal to serve plain HTTP beyond loopback."""

from __future__ import annotations

import datetime as dt
import json
import os
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.devices import MemoryDeviceRegistry
from edge.ingest import (
    IngestConfigError,
    IngestServer,
    IngestSettings,
    StoreIngestConfig,
    sign_request,
)
from edge.outbox import Outbox
from tests.kit.tls import self_signed

pytestmark = pytest.mark.integration

STORE = "demo-store"
DEVICE = "00112233445566778899aabbccddeeff"
LAT0, LON0 = 48.8566, 2.3522
STORE_CFG = StoreIngestConfig.model_validate(
    {"geofences": [{"kind": "circle", "id": "shop", "lat": LAT0, "lon": LON0, "radius_m": 100}]}
)


def ingest_settings(**overrides: Any) -> IngestSettings:
    base: dict[str, Any] = {"host": "127.0.0.1", "port": 0}
    base.update(overrides)
    return IngestSettings(**base)


@pytest.fixture
async def outbox(tmp_path: Path) -> AsyncIterator[Outbox]:
    async with Outbox(tmp_path / "outbox.db", store_id=STORE, gateway_id="gw-door") as box:
        yield box


@pytest.fixture
def device_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def server_for(settings: IngestSettings, outbox: Outbox, key: Ed25519PrivateKey) -> IngestServer:
    return IngestServer(
        settings,
        store_id=STORE,
        store=STORE_CFG,
        registry=MemoryDeviceRegistry({DEVICE: key.public_key()}),
        sink=outbox,
    )


def signed_fix(key: Ed25519PrivateKey) -> tuple[str, bytes, dict[str, str]]:
    path = f"/v1/stores/{STORE}/locations"
    at = dt.datetime.now(dt.UTC).isoformat()
    body = json.dumps({"fixes": [{"lat": LAT0, "lon": LON0, "accuracy_m": 5.0, "at": at}]})
    return path, body.encode(), sign_request(key, DEVICE, "POST", path, body.encode())


async def test_the_ingest_serves_https_with_its_certificate(
    tmp_path: Path, outbox: Outbox, device_key: Ed25519PrivateKey
) -> None:
    cert = self_signed(tmp_path)
    settings = ingest_settings(tls_cert_file=cert.cert, tls_key_file=cert.key)
    server = server_for(settings, outbox, device_key)
    await server.start(tick_s=None)
    try:
        assert server.scheme == "https"
        trusting = ssl.create_default_context(cafile=str(cert.cert))
        path, body, headers = signed_fix(device_key)
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"https://127.0.0.1:{server.port}{path}", data=body, headers=headers, ssl=trusting
            ) as resp,
        ):
            answer = await resp.json()
        assert resp.status == 202, answer
        assert [e["kind"] for e in answer["events"]] == ["geofence_enter"]
        assert len(await outbox.pending()) == 1
        # It is TLS with that certificate: a client that does not trust it, or that speaks
        # plain HTTP to the port, gets nothing through.
        path, body, headers = signed_fix(device_key)
        attempts: list[tuple[str, ssl.SSLContext | bool]] = [
            (f"https://127.0.0.1:{server.port}{path}", ssl.create_default_context()),
            (f"http://127.0.0.1:{server.port}{path}", True),
        ]
        for url, verify in attempts:
            async with aiohttp.ClientSession() as session:
                with pytest.raises(aiohttp.ClientError):
                    async with session.post(url, data=body, headers=headers, ssl=verify) as resp:
                        await resp.read()
        assert len(await outbox.pending()) == 1
    finally:
        await server.stop()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10"])
async def test_plain_http_beyond_loopback_is_refused_before_binding(
    host: str, outbox: Outbox, device_key: Ed25519PrivateKey
) -> None:
    server = server_for(ingest_settings(host=host), outbox, device_key)
    with pytest.raises(IngestConfigError) as info:
        await server.start(tick_s=None)
    message = str(info.value)
    assert f"plain HTTP on {host!r}" in message
    assert "PROXIMA_INGEST_TLS_CERT_FILE" in message
    assert "PROXIMA_INGEST_TLS_TERMINATED_BY_PROXY" in message
    assert server.port is None
    assert not server.started.is_set()


async def test_a_declared_tls_front_end_lets_plain_http_listen_beyond_loopback(
    outbox: Outbox, device_key: Ed25519PrivateKey
) -> None:
    settings = ingest_settings(host="0.0.0.0", tls_terminated_by_proxy=True)
    server = server_for(settings, outbox, device_key)
    await server.start(tick_s=None)
    try:
        path, body, headers = signed_fix(device_key)
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"http://127.0.0.1:{server.port}{path}", data=body, headers=headers) as r,
        ):
            assert r.status == 202
    finally:
        await server.stop()


def test_a_certificate_and_key_that_do_not_match_are_refused_naming_the_files(
    tmp_path: Path,
) -> None:
    one, other = self_signed(tmp_path, "one"), self_signed(tmp_path, "other")
    with pytest.raises(IngestConfigError, match=r"one\.crt.*other\.key"):
        ingest_settings(tls_cert_file=one.cert, tls_key_file=other.key).server_ssl_context()
    with pytest.raises(ValueError, match="must be set together"):
        ingest_settings(tls_cert_file=one.cert)


def test_edge_run_with_the_ingest_on_every_interface_without_tls_exits_with_the_reason(
    tmp_path: Path,
) -> None:
    env = dict(os.environ, PROXIMA_INGEST_ENABLED="true", PROXIMA_INGEST_HOST="0.0.0.0")
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("proxima")),
            "edge",
            "run",
            "--source",
            "sim:skeleton",
            "--outbox",
            str(tmp_path / "outbox.sqlite"),
            "--mqtt",
            "mqtt://127.0.0.1:1",  # never reached: the check comes first
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode != 0
    text = " ".join((result.stdout + result.stderr).split())
    assert "refusing to serve the app-event ingest over plain HTTP on '0.0.0.0'" in text
    assert not (tmp_path / "outbox.sqlite").exists()  # refused before the agent started
