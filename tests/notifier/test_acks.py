"""Every lifecycle transition also reaches ``proxima.acks.v1`` as an AlertAck (at least once)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from datetime import timedelta

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer

from contracts.models import AckStatus, AlertAck, ConsentDecision, ConsentRecord, parse_model
from contracts.services import ServiceSettings
from notifier.lifecycle import AlertRecord, Lifecycle, ack_outbox_key
from notifier.outbox import Entry, Outbox
from notifier.service import Notifier
from notifier.settings import NotifierSettings
from tests.notifier.conftest import FAST_HASHER, FakeClock, make_alert
from tests.redis_slots import SlotCheckedRedis
from transport.kafka import ensure_topics, make_producer
from transport.mqtt import MqttClient

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


async def _acks(lifecycle: Lifecycle) -> list[AlertAck]:
    assert lifecycle.acks is not None
    out: list[AlertAck] = []

    async def take(entries: Sequence[Entry]) -> None:
        out.extend(parse_model(AlertAck, f["ack"]) for _, f in entries)

    while await lifecycle.acks.drain_once(take, block_ms=10):
        pass
    return out


async def test_each_transition_is_queued_as_an_ack_once(
    redis: aioredis.Redis, services: ServiceSettings, directory: object, clock: FakeClock
) -> None:
    from notifier.directory import Directory

    assert isinstance(directory, Directory)
    outbox = Outbox(redis, ack_outbox_key(services.redis_prefix), group="g", consumer="c")
    lifecycle = Lifecycle(redis, services.redis_prefix, directory, clock=clock, acks=outbox)
    for who in ("maria", "joao"):
        await directory.add("s1", who.title(), "password-1", associate_id=who)
        await directory.set_on_shift("s1", who, True)
    alert = make_alert(store_id="s1")
    alert_id = str(alert.alert_id)
    await lifecycle.create(alert)
    await lifecycle.claim(alert_id, "s1", "maria")
    await lifecycle.claim(alert_id, "s1", "maria")  # a repeat changes nothing: no second ack
    clock.advance(3)
    await lifecycle.decline(alert_id, "s1", "maria")
    await lifecycle.done(alert_id, "s1", "joao")
    acks = await _acks(lifecycle)
    assert [(a.associate_id, a.status) for a in acks] == [
        ("maria", AckStatus.CLAIMED),
        ("maria", AckStatus.DECLINED),
        ("joao", AckStatus.DONE),
    ]
    assert {str(a.alert_id) for a in acks} == {alert_id}
    assert acks[1].at == clock.now


async def test_the_ack_is_queued_with_the_transition_even_if_the_process_fails_right_after(
    redis: aioredis.Redis, services: ServiceSettings, directory: object, clock: FakeClock
) -> None:
    from notifier.directory import Directory

    assert isinstance(directory, Directory)
    outbox = Outbox(redis, ack_outbox_key(services.redis_prefix), group="g", consumer="c")

    class CrashAfterTransition(Lifecycle):
        """Dies on its first Redis read after the transition script has run."""

        reads = 0

        async def get_in_store(self, alert_id: str, store_id: str) -> AlertRecord:
            self.reads += 1
            if self.reads > 1:
                raise RuntimeError("process died after the transition")
            return await super().get_in_store(alert_id, store_id)

    lifecycle = CrashAfterTransition(
        redis, services.redis_prefix, directory, clock=clock, acks=outbox
    )
    await directory.add("s1", "Maria", "password-1", associate_id="maria")
    alert = make_alert(store_id="s1")
    await Lifecycle(redis, services.redis_prefix, directory, clock=clock).create(alert)
    with pytest.raises(RuntimeError, match="process died"):
        await lifecycle.claim(str(alert.alert_id), "s1", "maria")
    acks = await _acks(lifecycle)
    assert [(a.associate_id, a.status) for a in acks] == [("maria", AckStatus.CLAIMED)]


async def test_transitions_and_their_acks_stay_in_one_redis_cluster_slot(
    services: ServiceSettings, directory: object, clock: FakeClock
) -> None:
    """Each transition script writes the alert's hash and the ack outbox: on a cluster both
    keys must be in one slot (the client refuses a call whose keys are in two)."""
    from notifier.directory import Directory

    assert isinstance(directory, Directory)
    checked = SlotCheckedRedis.connect(services.redis, decode_responses=True)
    try:
        outbox = Outbox(checked, ack_outbox_key(services.redis_prefix), group="g", consumer="c")
        lifecycle = Lifecycle(checked, services.redis_prefix, directory, clock=clock, acks=outbox)
        for who in ("maria", "joao"):
            await directory.add("s1", who.title(), "password-1", associate_id=who)
            await directory.set_on_shift("s1", who, True)
        alert = make_alert(store_id="s1")
        alert_id = str(alert.alert_id)
        await lifecycle.create(alert)
        await lifecycle.claim(alert_id, "s1", "maria")
        await lifecycle.decline(alert_id, "s1", "maria")
        await lifecycle.done(alert_id, "s1", "joao")
        assert len(await _acks(lifecycle)) == 3
        # Three transitions (hash + outbox) and the create (hash + the customer's index and
        # erasure/consent marks), each in one slot.
        assert checked.checker.seen["multi-key EVALSHA"] == 4
        # Following a revocation and erasing the customer also keep to the slot rule.
        second = make_alert(store_id="s1", customer_id=alert.customer_id)
        await lifecycle.create(second)
        revoked = {"arrival_alerts": ConsentDecision(granted=False, at=clock.now)}
        consent = ConsentRecord(customer_id=alert.customer_id, consent=revoked, version=1)
        assert len(await lifecycle.follow_consent(consent)) == 1
        await lifecycle.erase_customer(alert.customer_id)
        assert await lifecycle.get(alert_id) is None
    finally:
        await checked.aclose()


def test_an_ack_outbox_outside_the_alerts_slot_is_refused(
    redis: aioredis.Redis, services: ServiceSettings, directory: object
) -> None:
    from notifier.directory import Directory

    assert isinstance(directory, Directory)
    outbox = Outbox(redis, f"{services.redis_prefix}acks", group="g", consumer="c")
    with pytest.raises(ValueError, match="hash tag"):
        Lifecycle(redis, services.redis_prefix, directory, acks=outbox)


async def test_an_ack_the_sink_refused_is_delivered_again(
    redis: aioredis.Redis, services: ServiceSettings
) -> None:
    outbox = Outbox(
        redis, f"{services.redis_prefix}acks", group="g", consumer="a", claim_idle=timedelta(0)
    )
    await outbox.put({"ack": "1"})

    async def broken(_entries: Sequence[Entry]) -> None:
        raise ConnectionError("Kafka is down")

    with pytest.raises(ConnectionError):
        await outbox.drain_once(broken, block_ms=10)
    assert await outbox.pending() == 1
    # Another instance (another consumer name) takes the stale entry over.
    other = Outbox(
        redis, f"{services.redis_prefix}acks", group="g", consumer="b", claim_idle=timedelta(0)
    )
    got: list[str] = []

    async def sink(entries: Sequence[Entry]) -> None:
        got.extend(f["ack"] for _, f in entries)

    assert await other.drain_once(sink, block_ms=10) == 1
    assert got == ["1"]
    assert await other.pending() == 0
    assert await other.drain_once(sink, block_ms=10) == 0


async def test_console_and_mqtt_acks_reach_the_acks_topic(
    kafka_url: str, namespace: str, redis: aioredis.Redis
) -> None:
    services = ServiceSettings(namespace=namespace, kafka=kafka_url)
    await ensure_topics(services.kafka_bootstrap, services.topics.all_kafka, 1)
    notifier = Notifier(services, settings=NotifierSettings(http_port=0, tick_s=0.2))
    notifier.directory.hasher = FAST_HASHER
    for who in ("maria", "joao"):
        await notifier.directory.add("s1", who.title(), "password-1", associate_id=who)
        await notifier.directory.set_on_shift("s1", who, True)
    alert = make_alert(store_id="s1", target={"associate_id": "maria"})
    ready = asyncio.Event()
    task = asyncio.create_task(notifier.run(ready), name="test-notifier")
    producer = make_producer(services.kafka_bootstrap, idempotent=False, client_id="test")
    consumer = AIOKafkaConsumer(
        services.topics.acks,
        bootstrap_servers=services.kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=f"{namespace}-test",
    )
    try:
        async with asyncio.timeout(60):
            await ready.wait()
            await producer.start()
            await consumer.start()
            feed = redis.pubsub()
            await feed.subscribe(notifier.lifecycle.channel("s1"))
            await producer.send_and_wait(services.topics.alerts, alert.to_json(), key=b"s1")
            # The alert is stored once the store's feed announces it.
            while await feed.get_message(ignore_subscribe_messages=True, timeout=1) is None:
                pass
            await feed.aclose()
            # A claim from the console's API ...
            base = f"http://127.0.0.1:{notifier.http_port}"
            jar = aiohttp.CookieJar(unsafe=True)  # the session cookie of an IP address host
            async with aiohttp.ClientSession(base_url=base, cookie_jar=jar) as http:
                body = {"store": "s1", "associate": "maria", "password": "password-1"}
                async with http.post("/api/session", json=body) as res:
                    csrf = (await res.json())["csrf"]
                path = f"/api/alerts/{alert.alert_id}/claim"
                async with http.post(path, headers={"X-CSRF-Token": csrf}) as res:
                    assert res.status == 200
            # ... and done from a handheld over MQTT.
            done = AlertAck(
                alert_id=alert.alert_id,
                store_id="s1",
                associate_id="maria",
                status=AckStatus.DONE,
                at=notifier.clock(),
            )
            async with MqttClient(services.mqtt) as handheld:
                await handheld.publish(
                    services.topics.associate_ack("s1", "maria", str(alert.alert_id)),
                    done.model_dump_json(by_alias=True).encode(),
                )
            seen: list[tuple[bytes | None, dict[str, str]]] = []
            while len(seen) < 2:
                record = await consumer.getone()
                seen.append((record.key, json.loads(record.value or b"{}")))
        assert [(k, v["status"], v["associate_id"]) for k, v in seen] == [
            (b"s1", "claimed", "maria"),
            (b"s1", "done", "maria"),
        ]
        assert all(parse_model(AlertAck, json.dumps(v)) for _k, v in seen)
    finally:
        await producer.stop()
        await consumer.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
