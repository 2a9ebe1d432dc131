"""Consent on ``proxima.consent.v1``: every change reaches the compacted topic through the
Redis outbox, and the registry's consent can be rebuilt from the topic (real Redis, real
Tansu, the real CLI)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable

import pytest
import redis.asyncio as aioredis
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from contracts.models import ConsentRecord
from contracts.services import ServiceSettings
from contracts.topics import CONSENT
from stream.consent_log import aiokafka_send, pump_outbox, read_latest, rebuild_consent
from stream.registry import CustomerProfile, Purpose, Registry, shard_of
from tests.conftest import Procs
from tests.kit.cli import proxima
from tests.kit.customers import make_customer
from tests.kit.services import redis_dropped_after
from transport.kafka import ensure_topics, make_producer
from transport.redis import drop_prefix

pytestmark = pytest.mark.integration
STORES = ("s1", "s2")


def _profile(cid: str, n: int) -> CustomerProfile:
    return make_customer(customer_id=cid, identity_key=f"{n:02x}" * 16)


@pytest.fixture
async def env(
    kafka_url: str, namespace: str
) -> AsyncIterator[tuple[ServiceSettings, aioredis.Redis]]:
    services = ServiceSettings(namespace=namespace, kafka=kafka_url)
    await ensure_topics(services.kafka_bootstrap, services.topics.all_kafka, 2)
    async with redis_dropped_after(services) as r:
        yield services, r


async def _pump(services: ServiceSettings, r: aioredis.Redis) -> int:
    producer = make_producer(services.kafka_bootstrap, idempotent=False, client_id="test")
    await producer.start()
    try:
        return await pump_outbox(
            r, services.redis_prefix, aiokafka_send(producer), services.topics.kafka(CONSENT)
        )
    finally:
        await producer.stop()


async def _answers(reg: Registry, cids: list[str]) -> dict[str, object]:
    """Everything the registry says about these customers' consent."""
    out: dict[str, object] = {}
    for cid in cids:
        out[f"{cid} records"] = await reg.consent_records(cid)
        for p in Purpose:
            for store in STORES:
                out[f"{cid} {p.value}@{store}"] = await reg.has_consent(cid, p, store)
    return out


async def test_consent_topic_is_created_compacted(
    env: tuple[ServiceSettings, aioredis.Redis],
) -> None:
    services, _ = env
    admin = AIOKafkaAdminClient(bootstrap_servers=services.kafka_bootstrap)
    await admin.start()
    try:
        topic = services.topics.kafka(CONSENT)
        (resp,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        configs = {e[0]: e[1] for e in resp.resources[0][4]}
        assert configs.get("cleanup.policy") == "compact"
        events = services.topics.events
        (resp,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, events)])
        assert {e[0]: e[1] for e in resp.resources[0][4]}.get("cleanup.policy") != "compact"
    finally:
        await admin.close()


async def test_registry_rebuilt_from_topic_answers_as_before_and_forgotten_stay_forgotten(
    env: tuple[ServiceSettings, aioredis.Redis],
) -> None:
    services, r = env
    prefix = services.redis_prefix
    reg = Registry(r, prefix)
    await reg.enroll(_profile("ana", 1), [Purpose.ARRIVAL_ALERTS])
    await reg.enroll(_profile("bea", 2), [Purpose.ARRIVAL_ALERTS, Purpose.ANALYTICS], store="s1")
    await reg.enroll(_profile("cara", 3), [Purpose.ARRIVAL_ALERTS])
    await reg.set_consent("ana", Purpose.PERSONALIZATION, True, store="s2")
    await reg.set_consent("ana", Purpose.ARRIVAL_ALERTS, False)
    await reg.set_consent("bea", Purpose.PERSONALIZATION, True)
    await reg.set_consent("bea", Purpose.ARRIVAL_ALERTS, False, store="s1")
    assert await reg.forget("cara")
    # Every change is in the outbox until a pump has it on Kafka.
    assert await reg.outbox_len() == 8
    assert await _pump(services, r) == 3  # one whole-state record per customer
    assert await reg.outbox_len() == 0

    # The CLI publishes its own change at once (no worker running here).
    cli_env = dict(os.environ, PROXIMA_NAMESPACE=services.namespace, PROXIMA_KAFKA=services.kafka)
    res = proxima("customers", "grant", "ana", "analytics", "--store", "s1", env=cli_env)
    assert res.returncode == 0, res.stderr
    assert "not yet on" not in res.stderr
    assert await reg.outbox_len() == 0

    before = await _answers(reg, ["ana", "bea", "cara"])
    assert before["ana arrival_alerts@s1"] is False
    assert before["ana personalization@s2"] is True
    assert before["ana personalization@s1"] is False
    assert before["ana analytics@s1"] is True
    assert before["bea arrival_alerts@s1"] is False
    assert before["bea arrival_alerts@s2"] is False  # enrolled with consent at s1 only
    assert before["bea personalization@s2"] is True
    assert before["cara records"] == {}

    latest, bad = await read_latest(services.kafka_bootstrap, services.topics.kafka(CONSENT))
    assert bad == 0
    assert latest["cara"] is None
    ana = latest["ana"]
    assert isinstance(ana, ConsentRecord)
    assert set(ana.consent) == {"arrival_alerts", "personalization@s2", "analytics@s1"}

    # Lose the consent keys; an old backup brings back a hash of the forgotten customer.
    await r.delete(*(reg.consent_key(c) for c in ("ana", "bea", "cara")))
    await r.hset(reg.consent_key("cara"), "arrival_alerts", '{"granted": true, "at": "x"}')
    assert await reg.has_consent("cara", Purpose.ARRIVAL_ALERTS, "s1")
    version = await reg.version()

    res = proxima("customers", "rebuild-consent", env=cli_env)
    assert res.returncode == 0, res.stderr
    assert "2 customers' consent restored, 1 erased" in res.stdout
    assert await _answers(reg, ["ana", "bea", "cara"]) == before
    assert await reg.get("cara") is None
    assert await reg.version() > version  # workers rebuild their EID index

    # Idempotent: a second rebuild changes nothing.
    report = await rebuild_consent(
        r, prefix, services.kafka_bootstrap, services.topics.kafka(CONSENT)
    )
    assert (report.restored, report.erased, report.skipped) == (2, 1, 0)
    assert await _answers(reg, ["ana", "bea", "cara"]) == before


async def test_a_revocation_after_redis_lost_its_data_stays_revoked_through_rebuilds(
    env: tuple[ServiceSettings, aioredis.Redis],
) -> None:
    services, r = env
    prefix, topic = services.redis_prefix, services.topics.kafka(CONSENT)
    reg = Registry(r, prefix)
    # A long history: ana's shard is at version 500 when she grants (record version 501).
    await r.set(reg.keys.version(shard_of("ana")), 500)
    await reg.enroll(_profile("ana", 1), [Purpose.ARRIVAL_ALERTS])
    assert await _pump(services, r) == 1

    # Redis loses its data: profiles come back (an import), consent from the topic.
    await drop_prefix(services.redis, prefix)
    await reg.enroll(_profile("ana", 1), [])
    await rebuild_consent(r, prefix, services.kafka_bootstrap, topic)
    assert await reg.has_consent("ana", Purpose.ARRIVAL_ALERTS, "s1")

    await reg.set_consent("ana", Purpose.ARRIVAL_ALERTS, False)
    assert await _pump(services, r) == 1
    latest, _ = await read_latest(services.kafka_bootstrap, topic)
    ana = latest["ana"]
    assert ana is not None
    assert ana.consent["arrival_alerts"].granted is False
    assert ana.version > 501  # the rebuild moved the shard past every version it restored

    await rebuild_consent(r, prefix, services.kafka_bootstrap, topic)
    assert not await reg.has_consent("ana", Purpose.ARRIVAL_ALERTS, "s1")


async def test_the_later_record_wins_the_rebuild_over_an_older_one_with_a_higher_version(
    env: tuple[ServiceSettings, aioredis.Redis],
) -> None:
    services, r = env
    prefix, topic = services.redis_prefix, services.topics.kafka(CONSENT)
    reg = Registry(r, prefix)
    await r.set(reg.keys.version(shard_of("bea")), 500)
    await reg.enroll(_profile("bea", 2), [Purpose.ARRIVAL_ALERTS])
    assert await _pump(services, r) == 1  # granted, version 501

    # Redis comes back from an old backup (her grant in it, the counter far behind) and
    # she revokes before anyone rebuilds: the revocation goes out with version 2.
    await drop_prefix(services.redis, prefix)
    await reg.enroll(_profile("bea", 2), [Purpose.ARRIVAL_ALERTS])
    await reg.set_consent("bea", Purpose.ARRIVAL_ALERTS, False)
    assert await _pump(services, r) == 1

    report = await rebuild_consent(r, prefix, services.kafka_bootstrap, topic)
    assert (report.restored, report.erased, report.skipped) == (1, 0, 0)
    assert not await reg.has_consent("bea", Purpose.ARRIVAL_ALERTS, "s1")
    assert (await reg.consent_records("bea"))["arrival_alerts"]["granted"] is False


async def test_a_pump_that_lost_its_lock_stops_before_its_next_batch(namespace: str) -> None:
    services = ServiceSettings(namespace=namespace)
    prefix = services.redis_prefix
    r = aioredis.from_url(services.redis)
    reg = Registry(r, prefix)
    first = "ana"
    second = next(c for c in ("bea", "cara", "dan", "eva") if shard_of(c) > shard_of(first))
    try:
        for n, cid in enumerate((first, second)):
            await reg.enroll(_profile(cid, n + 1), [Purpose.ARRIVAL_ALERTS])
        sent: list[bytes] = []

        async def stalls(topic: str, key: bytes, value: bytes | None) -> Awaitable[object]:
            # This pump stalled past LOCK_MS: the lock expired and another pump holds it.
            await r.set(reg.keys.outbox_lock, "another pump")
            sent.append(key)
            done: asyncio.Future[object] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done

        assert await pump_outbox(r, prefix, stalls, "consent") == 1
        assert sent == [first.encode()]
        assert await reg.outbox_len() == 1  # the second shard's change, left to the holder
        assert await r.get(reg.keys.outbox_lock) == b"another pump"
    finally:
        await drop_prefix(services.redis, prefix)
        await r.aclose()


async def test_outbox_keeps_changes_kafka_did_not_acknowledge(
    env: tuple[ServiceSettings, aioredis.Redis],
) -> None:
    services, r = env
    reg = Registry(r, services.redis_prefix)
    await reg.enroll(_profile("dan", 4), [Purpose.ARRIVAL_ALERTS])
    await reg.set_consent("dan", Purpose.ARRIVAL_ALERTS, False)

    async def failing(topic: str, key: bytes, value: bytes | None) -> Awaitable[object]:
        loop = asyncio.get_running_loop()
        ack: asyncio.Future[object] = loop.create_future()
        ack.set_exception(ConnectionError("broker went away"))
        return ack

    with pytest.raises(ConnectionError):
        await pump_outbox(r, services.redis_prefix, failing, services.topics.kafka(CONSENT))
    assert await reg.outbox_len() == 2  # nothing lost, the lock is released
    assert await _pump(services, r) == 1
    assert await reg.outbox_len() == 0
    latest, _ = await read_latest(services.kafka_bootstrap, services.topics.kafka(CONSENT))
    dan = latest["dan"]
    assert dan is not None
    assert dan.consent["arrival_alerts"].granted is False


async def test_worker_publishes_changes_other_writers_left_in_the_outbox(
    procs: Procs, proxima_env: dict[str, str]
) -> None:
    services = ServiceSettings(
        namespace=proxima_env["PROXIMA_NAMESPACE"], kafka=proxima_env["PROXIMA_KAFKA"]
    )
    await ensure_topics(services.kafka_bootstrap, services.topics.all_kafka, 2)
    r = aioredis.from_url(services.redis)
    reg = Registry(r, services.redis_prefix)
    try:
        # What a CSV import or the simulators do: Redis only, nobody pumps.
        await reg.enroll(_profile("eva", 5), [Purpose.ARRIVAL_ALERTS, Purpose.ANALYTICS])
        await reg.set_consent("eva", Purpose.ANALYTICS, False)
        assert await reg.outbox_len() == 2
        procs.env["PROXIMA_STREAM_CONSENT_PUBLISH_S"] = "0.5"
        procs.start("worker", "stream", "worker")
        try:
            async with asyncio.timeout(60):
                while await reg.outbox_len():  # noqa: ASYNC110 - another process drains it
                    await asyncio.sleep(0.2)
        except TimeoutError:
            pytest.fail("the worker did not drain the outbox\n" + procs.log("worker")[-3000:])
        latest, _ = await read_latest(services.kafka_bootstrap, services.topics.kafka(CONSENT))
        eva = latest["eva"]
        assert eva is not None
        assert {k: d.granted for k, d in eva.consent.items()} == {
            "arrival_alerts": True,
            "analytics": False,
        }
    finally:
        await drop_prefix(services.redis, services.redis_prefix)
        await r.aclose()
