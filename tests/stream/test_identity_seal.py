"""Identity keys sealed at rest in Redis (stream.sealing), against real Redis and the real CLI."""

from __future__ import annotations

import json
import os

import pytest
import redis.asyncio as aioredis
from pydantic import ValidationError

from beacons.eid import compute_eid
from contracts.models import Subject, SubjectType
from stream.identity import IdentityIndex
from stream.registry import CustomerProfile, Purpose, Registry
from stream.sealing import IdentitySealer, SealError, new_seal_key
from stream.settings import StreamSettings
from tests.kit.cli import proxima
from tests.kit.customers import make_customer
from tests.kit.services import RedisNs
from transport.redis import replace_if_same

pytestmark = pytest.mark.integration

KEY = "0102030405060708090a111213141516"
OTHER_KEY = "ffeeddccbbaa99887766554433221100"
K1, K2 = new_seal_key(), new_seal_key()
T = 1_767_261_600


def sealer(*keys: str) -> IdentitySealer:
    return IdentitySealer([bytes.fromhex(k) for k in keys])


def profile(cid: str = "ana", key: str = KEY) -> CustomerProfile:
    return make_customer(customer_id=cid, identity_key=key, name="Ana")


async def raw_profile(r: aioredis.Redis, registry: Registry, cid: str) -> bytes:
    raw = await r.get(registry.keys.customer(cid))
    assert raw is not None
    return bytes(raw)


async def test_a_sealed_identity_key_is_not_in_redis_and_still_resolves_eids(
    redis_ns: RedisNs,
) -> None:
    r, prefix = redis_ns
    registry = Registry(r, prefix, sealer=sealer(K1))
    await registry.enroll(profile(), [Purpose.ARRIVAL_ALERTS])
    raw = await raw_profile(r, registry, "ana")
    assert KEY.encode() not in raw
    assert bytes.fromhex(KEY) not in raw
    assert json.loads(raw)["identity_key"].startswith("sealed:v1:")
    got = await registry.get("ana")
    assert got is not None
    assert (got.identity_key, got.name) == (KEY, "Ana")
    index = IdentityIndex(registry, drift_windows=1)
    eid = compute_eid(bytes.fromhex(KEY), 10, T).hex()
    assert await index.resolve(Subject(type=SubjectType.EDDYSTONE_EID, id=eid), T) == "ana"


async def test_without_the_seal_key_a_reader_gets_a_clear_error_not_the_key(
    redis_ns: RedisNs,
) -> None:
    r, prefix = redis_ns
    await Registry(r, prefix, sealer=sealer(K1)).enroll(profile(), [])
    with pytest.raises(SealError, match=r"'ana'.*PROXIMA_STREAM_IDENTITY_SEAL_KEYS is not set"):
        await Registry(r, prefix, sealer=None).get("ana")
    with pytest.raises(SealError, match=r"sealed with key [0-9a-f]{8}, which"):
        await Registry(r, prefix, sealer=sealer(K2)).get("ana")


async def test_a_sealed_key_copied_onto_another_customer_does_not_open(
    redis_ns: RedisNs,
) -> None:
    r, prefix = redis_ns
    registry = Registry(r, prefix, sealer=sealer(K1))
    await registry.enroll(profile("ana"), [])
    await registry.enroll(profile("bea", OTHER_KEY), [])
    ana = json.loads(await raw_profile(r, registry, "ana"))
    bea = json.loads(await raw_profile(r, registry, "bea"))
    await r.set(
        registry.keys.customer("bea"), json.dumps({**bea, "identity_key": ana["identity_key"]})
    )
    with pytest.raises(SealError, match=r"'bea'.*does not open"):
        await Registry(r, prefix, sealer=sealer(K1)).get("bea")


async def test_plain_keys_stay_readable_and_seal_keys_seals_them_then_rotates(
    redis_ns: RedisNs,
) -> None:
    r, prefix = redis_ns
    await Registry(r, prefix, sealer=None).enroll(profile("ana"), [Purpose.ARRIVAL_ALERTS])
    await Registry(r, prefix, sealer=sealer(K1)).enroll(profile("bea", OTHER_KEY), [])
    registry = Registry(r, prefix, sealer=sealer(K1))
    assert KEY.encode() in await raw_profile(r, registry, "ana")  # as older versions wrote it
    assert (await registry.get("ana")).identity_key == KEY  # type: ignore[union-attr]
    version = await registry.version()

    dry = await registry.seal_identity_keys(dry_run=True)
    assert (dry.customers, dry.sealed, dry.resealed, dry.current) == (2, 1, 0, 1)
    assert KEY.encode() in await raw_profile(r, registry, "ana")

    done = await registry.seal_identity_keys()
    assert (done.sealed, done.resealed, done.current, done.changed) == (1, 0, 1, 0)
    assert KEY.encode() not in await raw_profile(r, registry, "ana")
    assert (await Registry(r, prefix, sealer=sealer(K1)).get("ana")).identity_key == KEY  # type: ignore[union-attr]
    assert await registry.version() == version  # same keys: workers keep their EID index
    assert (await registry.seal_identity_keys()).current == 2

    rotating = Registry(r, prefix, sealer=sealer(K2, K1))
    rotated = await rotating.seal_identity_keys()
    assert (rotated.resealed, rotated.current) == (2, 0)
    fresh = Registry(r, prefix, sealer=sealer(K2))  # the old key can go now
    got = await fresh.get_many(["ana", "bea"])
    assert {cid: p.identity_key for cid, p in got.items() if p} == {"ana": KEY, "bea": OTHER_KEY}


async def test_the_seal_write_never_overwrites_a_profile_that_changed(
    redis_ns: RedisNs,
) -> None:
    r, prefix = redis_ns
    key = f"{prefix}cas-probe"
    await r.set(key, b"enrolled again meanwhile")
    assert await replace_if_same(r, key, b"what seal-keys read", "sealed") is False
    assert await r.get(key) == b"enrolled again meanwhile"
    assert await replace_if_same(r, key, b"enrolled again meanwhile", "sealed") is True
    assert await r.get(key) == b"sealed"
    assert await r.ttl(key) == -1  # a key without a TTL keeps none (the visits' keep theirs)


def test_seal_keys_settings_name_a_bad_key() -> None:
    with pytest.raises(ValidationError, match="key 2 is 4 bytes"):
        StreamSettings(identity_seal_keys=f"{K1},00112233")
    with pytest.raises(ValidationError, match="key 1 is not hex"):
        StreamSettings(identity_seal_keys="zz")


async def test_the_cli_enrolls_sealed_under_the_setting_and_seal_keys_migrates(
    redis_ns: RedisNs, namespace: str
) -> None:
    r, prefix = redis_ns
    plain_env = dict(os.environ, PROXIMA_NAMESPACE=namespace)
    plain_env.pop("PROXIMA_STREAM_IDENTITY_SEAL_KEYS", None)
    sealed_env = dict(plain_env, PROXIMA_STREAM_IDENTITY_SEAL_KEYS=K1)
    res = proxima("customers", "enroll", "ana", "--identity-key", KEY, env=plain_env)
    assert res.returncode == 0, res.stderr
    res = proxima("customers", "enroll", "bea", "--identity-key", OTHER_KEY, env=sealed_env)
    assert res.returncode == 0, res.stderr
    registry = Registry(r, prefix, sealer=sealer(K1))
    assert OTHER_KEY.encode() not in await raw_profile(r, registry, "bea")
    assert KEY.encode() in await raw_profile(r, registry, "ana")

    res = proxima("customers", "seal-keys", env=plain_env)
    assert res.returncode == 1
    assert "PROXIMA_STREAM_IDENTITY_SEAL_KEYS" in res.stderr
    res = proxima("customers", "seal-keys", env=sealed_env)
    assert res.returncode == 0, res.stderr
    assert "2 customers: sealed 1 plain and 0 with an older key; 1 already sealed" in res.stdout
    assert KEY.encode() not in await raw_profile(r, registry, "ana")
    shown = proxima("customers", "show", "ana", env=sealed_env)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["customer_id"] == "ana"
