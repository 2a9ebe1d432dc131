"""Customers: CSV import with a report of rejected rows, the enrollment QR code, device
registration, and forget erasing every trace, against real Redis (and the real CLI)."""

from __future__ import annotations

import base64
import io
import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
import redis.asyncio as aioredis
import segno
from redis.asyncio.client import Pipeline

from beacons.eid import compute_eid
from contracts.models import Event
from contracts.services import ServiceSettings
from stream.customers import app_payload, import_csv, register_device
from stream.processor import EventProcessor
from stream.registry import Purpose, Registry
from tests.factories import event_dict
from tests.kit.cli import proxima
from tests.kit.customers import make_customer
from tests.kit.services import RedisNs

KEY = "0102030405060708090a111213141516"
T0 = datetime(2026, 3, 14, 10, 0, 0, tzinfo=UTC)

CSV = f"""customer_id,identity_key,rotation_exponent,name,tier,sizes,wishlist,visible,consent
ana,{KEY},10,Ana Lima,gold,dress=38;shoes=39,green dress,name;sizes,arrival_alerts;analytics
bea,,,Bea,,,,name,arrival_alerts;room_messages
bad-key,xyz,10,X,,,,name,arrival_alerts
bad-purpose,,10,X,,,,name,marketing
bad-field,,10,X,,,,name;password,arrival_alerts
bad-size,,10,X,,dress,,name,arrival_alerts
ana,,10,Ana again,,,,name,arrival_alerts
bad-k,,twenty,X,,,,name,arrival_alerts
,,10,nobody,,,,name,arrival_alerts
"""


async def test_import_enrolls_good_rows_and_reports_each_bad_one(
    redis_ns: RedisNs,
) -> None:
    r, prefix = redis_ns
    registry = Registry(r, prefix)
    done: list[int] = []
    report = await import_csv(registry, CSV, progress=done.append)
    assert report.enrolled == ["ana", "bea"]
    assert done == list(range(1, 10))  # every row told to the progress bar, in order
    reasons = {(bad.line, bad.customer_id): bad.reason for bad in report.rejected}
    assert "identity_key" in reasons[(4, "bad-key")]
    assert "consent: 'marketing' is not a valid Purpose" in reasons[(5, "bad-purpose")]
    assert (
        "purposes are arrival_alerts, personalization, analytics, room_messages"
        in (reasons[(5, "bad-purpose")])
    )
    assert "unknown visible field(s) password" in reasons[(6, "bad-field")]
    assert "sizes item 'dress': expected KEY=VALUE" in reasons[(7, "bad-size")]
    assert reasons[(8, "ana")] == "customer_id repeated in this file"
    assert "rotation_exponent 'twenty'" in reasons[(9, "bad-k")]
    assert reasons[(10, "")] == "customer_id is empty"
    assert len(report.rejected) == 7
    ana = await registry.get("ana")
    assert ana is not None
    assert ana.sizes == {"dress": "38", "shoes": "39"}
    assert await registry.has_consent("ana", Purpose.ANALYTICS, "store-1")
    assert await registry.has_consent("bea", Purpose.ROOM_MESSAGES, "store-1")
    assert not await registry.has_consent("ana", Purpose.ROOM_MESSAGES, "store-1")
    assert list(report.generated_keys) == ["bea"]
    bea = await registry.get("bea")
    assert bea is not None
    assert report.generated_keys["bea"] == (bea.identity_key, 10)
    again = await import_csv(registry, CSV)
    assert (2, "ana") in {(b.line, b.customer_id) for b in again.rejected}  # already enrolled


async def _traces(r: aioredis.Redis, prefix: str, *needles: str) -> list[str]:
    """Keys under ``prefix`` that still name one of ``needles`` in their name, a hash field
    or value, a set or sorted-set member or a string value (the audit streams aside)."""
    marks = [n.encode() for n in needles]

    def named(raw: object) -> bool:
        return isinstance(raw, bytes) and any(m in raw for m in marks)

    left = []
    async for key in r.scan_iter(f"{prefix}*", count=10000):
        if key.endswith(b"}audit"):  # the erasure's record (one audit stream per shard)
            continue
        kind = await r.type(key)
        if (
            named(key)
            or (kind == b"hash" and any(map(named, _flat(await r.hgetall(key)))))
            or (kind == b"zset" and any(map(named, await r.zrange(key, 0, -1))))
            or (kind == b"set" and any(map(named, await r.smembers(key))))
            or (kind == b"string" and named(await r.get(key)))
        ):
            left.append(key.decode())
    return sorted(left)


def _flat(fields: dict[Any, Any]) -> list[object]:
    return [*fields, *fields.values()]


@pytest.mark.integration
def test_cli_import_exit_code_report_and_enroll_qr(namespace: str, tmp_path: Path) -> None:
    env = dict(os.environ, PROXIMA_NAMESPACE=namespace)
    src = tmp_path / "customers.csv"
    src.write_text(CSV)
    keys = tmp_path / "keys.csv"
    res = proxima("customers", "import", str(src), "--keys-out", str(keys), env=env)
    assert res.returncode == 1, res.stderr
    assert "2 enrolled, 7 rejected" in res.stdout
    assert "line 5 (bad-purpose): consent:" in res.stdout
    assert keys.read_text().splitlines()[0] == "customer_id,identity_key,rotation_exponent"
    assert keys.stat().st_mode & 0o077 == 0

    png = tmp_path / "cara.png"
    res = proxima(
        "customers", "enroll", "cara", "--consent", "arrival_alerts", "--qr", str(png), env=env
    )
    assert res.returncode == 0, res.stderr
    printed = json.loads(res.stdout)
    # The PNG is exactly the QR code of the app payload (same symbol, same rendering).
    want = io.BytesIO()
    payload = app_payload("cara", printed["identity_key"], 10)
    segno.make(payload, error="m", micro=False).save(want, kind="png", scale=6)
    assert png.read_bytes() == want.getvalue()
    assert png.read_bytes().startswith(b"\x89PNG")
    res = proxima("customers", "show", "cara", env=env)
    shown = json.loads(res.stdout)
    assert shown["consent_records"]["arrival_alerts"]["granted"] is True
    assert "identity_key" not in res.stdout
    proxima("customers", "forget", "ana", env=env)
    proxima("customers", "forget", "bea", env=env)
    proxima("customers", "forget", "cara", env=env)


async def test_forget_erases_profile_visits_dedupe_devices_and_index(
    redis_ns: RedisNs,
) -> None:
    r, prefix = redis_ns
    proc = EventProcessor(r, prefix)
    profile = make_customer(identity_key=KEY, name="Ana", visible_fields=["name"])
    await proc.registry.enroll(profile, [Purpose.ARRIVAL_ALERTS, Purpose.ANALYTICS])
    pub = base64.b64encode(bytes(32)).decode()
    await register_device(r, prefix, "ana", "d00dfeed00000001", pub)
    eid = compute_eid(bytes.fromhex(KEY), 10, int(T0.timestamp()))
    event = Event.model_validate(
        event_dict(
            observed_at=T0.isoformat(),
            subject={"type": "eddystone_eid", "id": eid.hex()},
            event_id=str(uuid.uuid4()),
        )
    )
    (alert,) = await proc.process(event)
    await proc.mark_sent(alert)
    await proc.decide(
        Event.model_validate(
            event_dict(
                observed_at=T0.isoformat(),
                kind="zone_exit",
                subject={"type": "eddystone_eid", "id": eid.hex()},
                event_id=str(uuid.uuid4()),
            )
        )
    )
    assert await proc.registry.customer_for_device("d00dfeed00000001") == "ana"

    assert await proc.registry.forget("ana")

    assert await _traces(r, prefix, "ana", "d00dfeed") == []
    audit = await proc.registry.audit("ana")
    assert audit[-1]["action"] == "forget"
    await proc.identity.refresh(force=True)
    assert await proc.registry.customer_for_device("d00dfeed00000001") is None
    assert await proc.process(event) == []
    assert proc.stats.counts["unresolved"] == 1  # the EID no longer resolves


class Crash(Exception):
    """The process died here."""


class CrashingRedis(aioredis.Redis):
    """A real client whose process dies (:class:`Crash`) just before its ``crash_at``-th
    call (a command or a whole pipeline). SCAN and HSCAN pages do not count: they only
    read, so dying before one is dying after the call before it."""

    crash_at = 0
    calls = 0

    def tick(self, name: object) -> None:
        if str(name).upper() in {"SCAN", "HSCAN"}:
            return
        self.calls += 1
        if self.calls == self.crash_at:
            raise Crash

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        self.tick(args[0])
        return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        pipe = _CrashingPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )
        pipe.owner = self
        return pipe


class _CrashingPipeline(Pipeline):
    owner: CrashingRedis

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        self.owner.tick("pipeline")
        return await super().execute(raise_on_error)


async def test_forget_interrupted_anywhere_is_finished_by_forget_again(
    redis_ns: RedisNs, namespace: str
) -> None:
    r, prefix = redis_ns
    registry = Registry(r, prefix)
    # Someone else's device, which no erasure of another customer may touch.
    await registry.enroll(make_customer(customer_id="keep", identity_key=KEY), [])
    await register_device(r, prefix, "keep", "0a0a", base64.b64encode(bytes(32)).decode())
    crashing = cast(
        CrashingRedis, CrashingRedis.from_url(ServiceSettings(namespace=namespace).redis)
    )
    died_after_the_transaction = []
    try:
        for k in range(1, 60):
            cid, phone, watch = f"crash{k:02d}x", f"c0ffee{k:02x}", f"beef{k:02x}"
            profile = make_customer(customer_id=cid, identity_key=KEY)
            await registry.enroll(profile, [Purpose.ARRIVAL_ALERTS])
            await register_device(r, prefix, cid, phone, base64.b64encode(bytes(32)).decode())
            await registry.register_device(cid, watch)
            await r.set(f"{prefix}visit:{cid}:s1", "state")
            await r.set(f"{prefix}cooldown:{cid}:s1:vip", "1")
            await r.zadd(f"{prefix}departing:s1", {cid: 1.0})

            crashing.calls, crashing.crash_at = 0, k
            try:
                await Registry(crashing, prefix).forget(cid)
            except Crash:
                died_after_the_transaction.append(await registry.get(cid) is None)
            else:
                break  # forget made fewer than k calls: every crash point was tried
            await registry.forget(cid)  # the operator runs it again

            assert await _traces(r, prefix, cid, phone, watch) == [], f"died before call {k}"
            assert await registry.customer_for_device(phone) is None
        else:
            pytest.fail("forget never finished without a crash")
    finally:
        await crashing.aclose()
    assert True in died_after_the_transaction  # the window between the two parts was tried
    assert await registry.customer_for_device("0a0a") == "keep"
    assert await r.exists(f"{prefix}devices:0a0a")


async def test_forget_leaves_a_device_that_now_belongs_to_someone_else(
    redis_ns: RedisNs,
) -> None:
    r, prefix = redis_ns
    registry = Registry(r, prefix)
    for cid in ("ana", "bea"):
        profile = make_customer(customer_id=cid, identity_key=KEY)
        await registry.enroll(profile, [])
    await register_device(r, prefix, "ana", "d00d", base64.b64encode(bytes(32)).decode())
    # An erasure of ana died after releasing her device and before her own keys went: the
    # device is still in her set, and bea has registered it since, with her own key.
    await r.hdel(registry.keys.device_owner, "d00d")
    await r.delete(f"{prefix}devices:d00d")
    assert await registry.devices("ana") == ["d00d"]
    bea_key = base64.b64encode(bytes(range(32))).decode()
    await register_device(r, prefix, "bea", "d00d", bea_key)

    assert await registry.forget("ana")

    assert await registry.devices("ana") == []
    assert await registry.customer_for_device("d00d") == "bea"
    assert await r.hget(f"{prefix}devices:d00d", "public_key") == bea_key.encode()


def test_the_consent_commands_help_names_every_purpose() -> None:
    from stream.customers_cli import _PURPOSES

    assert _PURPOSES.split(", ") == [p.value for p in Purpose]
