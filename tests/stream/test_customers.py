"""Customers: CSV import with a report of rejected rows, the enrollment QR code, device
registration, and forget erasing every trace, against real Redis (and the real CLI)."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import segno

from beacons.eid import compute_eid
from contracts.models import Event
from contracts.services import ServiceSettings
from stream.customers import app_payload, import_csv, register_device
from stream.processor import EventProcessor
from stream.registry import CustomerProfile, Purpose, Registry
from tests.factories import event_dict

KEY = "0102030405060708090a111213141516"
T0 = datetime(2026, 3, 14, 10, 0, 0, tzinfo=UTC)

CSV = f"""customer_id,identity_key,rotation_exponent,name,tier,sizes,wishlist,visible,consent
ana,{KEY},10,Ana Lima,gold,dress=38;shoes=39,green dress,name;sizes,arrival_alerts;analytics
bea,,,Bea,,,,name,arrival_alerts
bad-key,xyz,10,X,,,,name,arrival_alerts
bad-purpose,,10,X,,,,name,marketing
bad-field,,10,X,,,,name;password,arrival_alerts
bad-size,,10,X,,dress,,name,arrival_alerts
ana,,10,Ana again,,,,name,arrival_alerts
bad-k,,twenty,X,,,,name,arrival_alerts
,,10,nobody,,,,name,arrival_alerts
"""


@pytest.fixture
async def redis(namespace: str) -> AsyncIterator[tuple[aioredis.Redis, str]]:
    services = ServiceSettings(namespace=namespace)
    r = aioredis.from_url(services.redis)
    yield r, services.redis_prefix
    keys = [k async for k in r.scan_iter(f"{services.redis_prefix}*")]
    if keys:
        await r.delete(*keys)
    await r.aclose()


async def test_import_enrolls_good_rows_and_reports_each_bad_one(
    redis: tuple[aioredis.Redis, str],
) -> None:
    r, prefix = redis
    registry = Registry(r, prefix)
    report = await import_csv(registry, CSV)
    assert report.enrolled == ["ana", "bea"]
    reasons = {(bad.line, bad.customer_id): bad.reason for bad in report.rejected}
    assert "identity_key" in reasons[(4, "bad-key")]
    assert "consent: 'marketing' is not a valid Purpose" in reasons[(5, "bad-purpose")]
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
    assert list(report.generated_keys) == ["bea"]
    bea = await registry.get("bea")
    assert bea is not None
    assert report.generated_keys["bea"] == (bea.identity_key, 10)
    again = await import_csv(registry, CSV)
    assert (2, "ana") in {(b.line, b.customer_id) for b in again.rejected}  # already enrolled


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deploy.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.integration
def test_cli_import_exit_code_report_and_enroll_qr(namespace: str, tmp_path: Path) -> None:
    env = dict(os.environ, PROXIMA_NAMESPACE=namespace)
    src = tmp_path / "customers.csv"
    src.write_text(CSV)
    keys = tmp_path / "keys.csv"
    res = _cli(env, "customers", "import", str(src), "--keys-out", str(keys))
    assert res.returncode == 1, res.stderr
    assert "2 enrolled, 7 rejected" in res.stdout
    assert "line 5 (bad-purpose): consent:" in res.stdout
    assert keys.read_text().splitlines()[0] == "customer_id,identity_key,rotation_exponent"
    assert keys.stat().st_mode & 0o077 == 0

    png = tmp_path / "cara.png"
    res = _cli(env, "customers", "enroll", "cara", "--consent", "arrival_alerts", "--qr", str(png))
    assert res.returncode == 0, res.stderr
    printed = json.loads(res.stdout)
    # The PNG is exactly the QR code of the app payload (same symbol, same rendering).
    want = io.BytesIO()
    payload = app_payload("cara", printed["identity_key"], 10)
    segno.make(payload, error="m", micro=False).save(want, kind="png", scale=6)
    assert png.read_bytes() == want.getvalue()
    assert png.read_bytes().startswith(b"\x89PNG")
    res = _cli(env, "customers", "show", "cara")
    shown = json.loads(res.stdout)
    assert shown["consent_records"]["arrival_alerts"]["granted"] is True
    assert "identity_key" not in res.stdout
    _cli(env, "customers", "forget", "ana")
    _cli(env, "customers", "forget", "bea")
    _cli(env, "customers", "forget", "cara")


async def test_forget_erases_profile_visits_dedupe_devices_and_index(
    redis: tuple[aioredis.Redis, str],
) -> None:
    r, prefix = redis
    proc = EventProcessor(r, prefix)
    profile = CustomerProfile(
        customer_id="ana",
        identity_key=KEY,
        rotation_exponent=10,
        name="Ana",
        visible_fields=["name"],
    )
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

    left = []
    async for key in r.scan_iter(f"{prefix}*"):
        k = key.decode()
        if k.endswith("}audit"):  # the erasure's record (one audit stream per registry shard)
            continue
        kind = await r.type(key)
        if b"ana" in key or b"d00dfeed" in key:
            left.append(k)
        elif kind == b"hash":
            if any(b"ana" in f or b"ana" in v for f, v in (await r.hgetall(key)).items()):
                left.append(k)
        elif kind == b"zset":
            if await r.zscore(key, "ana") is not None:
                left.append(k)
        elif (kind == b"string" and b"ana" in (await r.get(key) or b"")) or (
            kind == b"set" and await r.sismember(key, "ana")
        ):
            left.append(k)
    assert left == []
    audit = await proc.registry.audit("ana")
    assert audit[-1]["action"] == "forget"
    await proc.identity.refresh(force=True)
    assert await proc.registry.customer_for_device("d00dfeed00000001") is None
    assert await proc.process(event) == []
    assert proc.stats.counts["unresolved"] == 1  # the EID no longer resolves
