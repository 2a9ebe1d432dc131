"""A trace's consent revocation reaches the real Redis registry at its place in the replay."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from contracts.services import ServiceSettings
from contracts.trace import AppRecord
from simulators.replay import ConsentReplay
from stream.registry import Purpose, Registry
from tests.kit.customers import make_customer

pytestmark = pytest.mark.integration

HEADER = (
    '{"format":"proxima-trace","version":1,"store_id":"s1","start":"2026-02-01T09:00:00Z",'
    '"layout":{"zones":[{"id":"e","kind":"entrance"}],"gateways":[{"id":"gw","zone_id":"e"}]}}'
)
ADV = (
    '{{"t":{t},"kind":"adv","gateway_id":"gw","address":"D1:11:22:33:44:55","rssi":-60,'
    '"service_data":{{"0000feaa-0000-1000-8000-00805f9b34fb":"30ee8a56731bd62f2cd4"}}}}'
)


async def test_revocation_is_stored_before_any_later_advert_is_replayed(
    namespace: str, tmp_path: Path
) -> None:
    services = ServiceSettings(namespace=namespace)
    r = aioredis.from_url(services.redis)
    registry = Registry(r, services.redis_prefix)
    profile = make_customer(customer_id="c1", identity_key="11" * 16)
    await registry.enroll(profile, [Purpose.ARRIVAL_ALERTS])
    trace = tmp_path / "t.jsonl"
    trace.write_text(
        "\n".join(
            [
                HEADER,
                ADV.format(t=1.0),
                '{"t":2.0,"kind":"app","device_id":"d1","event":"consent_revoke",'
                '"customer_id":"c1","purpose":"arrival_alerts"}',
                '{"t":2.5,"kind":"app","device_id":"d9","event":"consent_revoke"}',
                ADV.format(t=3.0),
            ]
        )
        + "\n"
    )
    replay = ConsentReplay(services)
    try:
        consent_when_heard = []
        for gw in ("gw", "gw"):  # two agents read the same line; it is applied once
            async for advert in replay.source(trace, gw, None).adverts():
                consent_when_heard.append(
                    (advert.at, await registry.has_consent("c1", Purpose.ARRIVAL_ALERTS, "s1"))
                )
    finally:
        replay.close()
        await r.aclose()
    start = 1769936400.0
    assert consent_when_heard[:2] == [(start + 1.0, True), (start + 3.0, False)]
    assert replay.applied == 1
    assert replay.failed == 2  # the line without a customer, read by both agents, is skipped


def _revoke(t: float) -> AppRecord:
    return AppRecord.model_validate(
        {"t": t, "kind": "app", "device_id": "d1", "event": "consent_revoke",
         "customer_id": "c1", "purpose": "arrival_alerts"}
    )  # fmt: skip


async def test_at_max_speed_a_revocation_waits_until_the_stream_has_decided_what_came_before(
    namespace: str,
) -> None:
    services = ServiceSettings(namespace=namespace)
    r = aioredis.from_url(services.redis)
    registry = Registry(r, services.redis_prefix)
    await registry.enroll(
        make_customer(customer_id="c1", identity_key="11" * 16),
        [Purpose.ARRIVAL_ALERTS],
    )
    published = [uuid.uuid4() for _ in range(3)]
    replay = ConsentReplay(services, processed_timeout_s=5.0)
    consent_while_unprocessed: list[bool] = []

    async def stream_worker() -> None:
        # The stream decides the events in order, a little after they were published.
        for event_id in published:
            await asyncio.sleep(0.2)
            consent_while_unprocessed.append(
                await registry.has_consent("c1", Purpose.ARRIVAL_ALERTS, "s1")
            )
            await r.set(f"{services.redis_prefix}event:{event_id}", 1, ex=60)

    try:
        worker = asyncio.create_task(stream_worker())
        await replay.on_app(_revoke(2.0), published)
        assert await registry.has_consent("c1", Purpose.ARRIVAL_ALERTS, "s1") is False
        await worker
    finally:
        replay.close()
        await r.aclose()
    assert consent_while_unprocessed == [True, True, True]  # the revocation came after them
    assert (replay.applied, replay.unconfirmed) == (1, 0)


async def test_without_a_stream_the_revocation_is_applied_after_the_timeout(
    namespace: str,
) -> None:
    services = ServiceSettings(namespace=namespace)
    r = aioredis.from_url(services.redis)
    registry = Registry(r, services.redis_prefix)
    await registry.enroll(
        make_customer(customer_id="c1", identity_key="11" * 16),
        [Purpose.ARRIVAL_ALERTS],
    )
    replay = ConsentReplay(services, processed_timeout_s=0.3)
    try:
        await replay.on_app(_revoke(2.0), [uuid.uuid4()])
        assert await registry.has_consent("c1", Purpose.ARRIVAL_ALERTS, "s1") is False
    finally:
        replay.close()
        await r.aclose()
    assert (replay.applied, replay.unconfirmed) == (1, 1)
