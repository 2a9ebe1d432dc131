"""Device registries for the ingest: the synced file and Redis."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from edge.devices import (
    DeviceRegistryError,
    FileDeviceRegistry,
    RedisDeviceRegistry,
    RegistryUnavailable,
    encode_public_key,
    new_device_key,
    open_registry,
    parse_device_file,
)
from tests.kit.clock import FakeClock
from tests.kit.services import RedisNs

DEV_A = "aa" * 16
DEV_B = "bb" * 16


def write(path: Path, devices: list[dict[str, object]], mtime_ns: int) -> None:
    path.write_text(json.dumps({"devices": devices}))
    os.utime(path, ns=(mtime_ns, mtime_ns))


async def test_file_registry_reloads_on_change_and_keeps_the_last_good_file(
    tmp_path: Path,
) -> None:
    key_a, pub_a = new_device_key()
    _, pub_b = new_device_key()
    path = tmp_path / "devices.json"
    write(path, [{"device_id": DEV_A, "public_key": pub_a}], 1_000_000_000)
    clock = FakeClock(0.0)
    reg = FileDeviceRegistry(path, reload_s=5.0, clock=clock)
    found = await reg.get(DEV_A)
    assert found is not None
    assert encode_public_key(found.public_key) == pub_a
    assert encode_public_key(key_a.public_key()) == pub_a
    assert await reg.get(DEV_B) is None

    write(path, [{"device_id": DEV_B, "public_key": pub_b, "revoked": True}], 2_000_000_000)
    clock.t = 4.0
    assert await reg.get(DEV_B) is None  # not re-checked before reload_s
    clock.t = 5.0
    b = await reg.get(DEV_B)
    assert b is not None
    assert b.revoked
    assert await reg.get(DEV_A) is None

    path.write_text("{broken")
    os.utime(path, ns=(3_000_000_000, 3_000_000_000))
    clock.t = 10.0
    assert await reg.get(DEV_B) is not None  # last good registry kept
    assert reg.reload_errors == 1
    assert reg.last_error is not None
    assert "does not parse" in reg.last_error


def test_toml_registry_files_parse_too() -> None:
    _, pub = new_device_key()
    raw = f'[[devices]]\ndevice_id = "{DEV_A}"\npublic_key = "{pub}"\n'.encode()
    assert list(parse_device_file(raw, "devices.toml")) == [DEV_A]


@pytest.mark.parametrize(
    ("devices", "message"),
    [
        ([{"device_id": "AB" * 8, "public_key": "x"}], "devices.0.device_id"),
        ([{"device_id": DEV_A, "public_key": "AAAA"}], "32 bytes"),
        (
            [{"device_id": DEV_A, "public_key": new_device_key()[1], "owner": "x"}],
            "devices.0.owner",
        ),
        (
            [
                {"device_id": DEV_A, "public_key": new_device_key()[1]},
                {"device_id": DEV_A, "public_key": new_device_key()[1]},
            ],
            "listed twice",
        ),
    ],
)
def test_bad_registry_files_name_the_problem(devices: list[dict[str, str]], message: str) -> None:
    with pytest.raises(DeviceRegistryError, match=message):
        parse_device_file(json.dumps({"devices": devices}).encode(), "devices.json")


def test_a_missing_file_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(DeviceRegistryError, match=r"devices\.json"):
        open_registry(f"file:{tmp_path / 'devices.json'}")


@pytest.mark.integration
async def test_redis_registry_reads_registers_caches_and_revokes(redis_ns: RedisNs) -> None:
    redis_client, prefix = redis_ns
    clock = FakeClock(0.0)
    reg = RedisDeviceRegistry(redis_client, prefix, cache_s=30.0, clock=clock)
    assert await reg.get(DEV_A) is None
    _, pub = new_device_key()
    await reg.register(DEV_A, pub)
    assert await reg.get(DEV_A) is None  # the negative answer is cached
    clock.t = 30.0
    found = await reg.get(DEV_A)
    assert found is not None
    assert encode_public_key(found.public_key) == pub
    assert not found.revoked
    await redis_client.hset(f"{prefix}devices:{DEV_A}", "revoked", "1")
    clock.t = 60.0
    revoked = await reg.get(DEV_A)
    assert revoked is not None
    assert revoked.revoked


@pytest.mark.integration
async def test_redis_registry_unreachable_raises_registry_unavailable() -> None:
    client = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    reg = RedisDeviceRegistry(client, "x:")
    try:
        with pytest.raises(RegistryUnavailable):
            await reg.get(DEV_A)
    finally:
        await client.aclose()
