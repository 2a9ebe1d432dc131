"""The notifier process's pieces over real Mosquitto and Redis (and Kafka for ``run``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiokafka import ConsumerRecord

from contracts.models import (
    AckStatus,
    Alert,
    AlertAck,
    AlertView,
    AlertWithdrawn,
    parse_alert_message,
    parse_model,
)
from contracts.services import ServiceSettings
from notifier.lifecycle import AlertState
from notifier.service import Notifier
from notifier.settings import NotifierSettings
from stream.registry import CustomerProfile, Purpose, Registry
from tests.notifier.conftest import FAST_HASHER, FakeClock, make_alert
from tests.private_redis import private_redis
from tests.redis_traces import redis_traces
from transport.kafka import ensure_topics, make_producer
from transport.mqtt import Message, MqttClient

# Generous: a fresh consumer group on Tansu takes 10-20 s to settle, more on a loaded machine.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
WAIT = 10.0  # a deadline for things that must happen, never a speed assertion


@pytest.fixture
async def notifier(services: ServiceSettings, clock: FakeClock) -> AsyncIterator[Notifier]:
    n = Notifier(services, settings=NotifierSettings(http_port=0), clock=clock)
    n.directory.hasher = FAST_HASHER
    for who, zones, role in [
        ("maria", [], "associate"),
        ("joao", ["entrance"], "associate"),
        ("boss", [], "manager"),
    ]:
        await n.directory.add(
            "s1", who.title(), "password-1", associate_id=who, zones=zones, role=role
        )
    await n.directory.set_on_shift("s1", "maria", True)
    await n.directory.set_on_shift("s1", "joao", True)
    async with n.mqtt:
        yield n
    await n.redis.aclose()


@pytest.fixture
async def listener(services: ServiceSettings) -> AsyncIterator[MqttClient]:
    async with MqttClient(services.mqtt) as client:
        await client.subscribe(f"{services.topics.mqtt_root}/stores/+/alerts", qos=1)
        await client.subscribe(f"{services.topics.mqtt_root}/stores/+/associates/+/alerts", qos=1)
        await asyncio.sleep(0)  # let the SUBSCRIBE go out before anything is published
        yield client


async def _next(client: MqttClient) -> Message:
    async with asyncio.timeout(WAIT):
        return await client.messages.get()


async def _subscribed(client: MqttClient, topic: str) -> None:
    """Wait until the broker has our subscription: publish a probe and see it come back."""
    probe = f"{topic.rsplit('/', 1)[0]}/probe"
    await client.subscribe(probe, qos=1)
    await client.publish(probe, b"probe", qos=1)
    while (await _next(client)).topic != probe:
        pass


def _kinds(services: ServiceSettings, msg: Message) -> tuple[str, str]:
    rest = msg.topic[len(services.topics.mqtt_root) :]
    return rest, json.loads(msg.payload)["alert_id"]


async def test_alert_goes_to_store_and_first_tier_once(
    notifier: Notifier, listener: MqttClient, services: ServiceSettings
) -> None:
    await _subscribed(listener, f"{services.topics.mqtt_root}/stores/s1/x")
    alert = make_alert(store_id="s1", target={"associate_id": "maria"})
    await notifier.handle(alert.to_json())
    got = {_kinds(services, await _next(listener)) for _ in range(2)}
    assert got == {
        ("/stores/s1/alerts", str(alert.alert_id)),
        ("/stores/s1/associates/maria/alerts", str(alert.alert_id)),
    }
    await notifier.handle(alert.to_json())  # Kafka redelivery
    second = make_alert(store_id="s1", target={"associate_id": "maria"})
    await notifier.handle(second.to_json())
    # Had the duplicate been published, it would come before the second alert.
    assert _kinds(services, await _next(listener))[1] == str(second.alert_id)
    assert notifier.metrics.value("proxima_notifier_alerts_total", outcome="duplicate") == 1


async def test_alert_stored_but_never_published_is_published_on_redelivery(
    notifier: Notifier, listener: MqttClient, services: ServiceSettings
) -> None:
    await _subscribed(listener, f"{services.topics.mqtt_root}/stores/s1/x")
    alert = make_alert(store_id="s1", target={"associate_id": "maria"})
    await notifier.lifecycle.create(alert)  # the instance died right after this
    await notifier.handle(alert.to_json())
    got = {_kinds(services, await _next(listener)) for _ in range(2)}
    assert got == {
        ("/stores/s1/alerts", str(alert.alert_id)),
        ("/stores/s1/associates/maria/alerts", str(alert.alert_id)),
    }


async def test_escalation_publishes_to_the_next_tier(
    notifier: Notifier, listener: MqttClient, services: ServiceSettings, clock: FakeClock
) -> None:
    await _subscribed(listener, f"{services.topics.mqtt_root}/stores/s1/x")
    alert = make_alert(store_id="s1", target={"associate_id": "maria"}, zone_id="entrance")
    await notifier.handle(alert.to_json())
    for _ in range(2):
        await _next(listener)
    clock.advance(45)
    await notifier.tick()
    assert _kinds(services, await _next(listener)) == (
        "/stores/s1/associates/joao/alerts",
        str(alert.alert_id),
    )
    clock.advance(75)
    await notifier.tick()
    assert _kinds(services, await _next(listener))[0] == "/stores/s1/associates/boss/alerts"
    assert notifier.metrics.value("proxima_notifier_escalations_total", tier="manager") == 1


def _ack(alert: Alert, who: str, status: AckStatus, clock: FakeClock, store: str = "s1") -> bytes:
    return (
        AlertAck(
            alert_id=alert.alert_id, store_id=store, associate_id=who, status=status, at=clock.now
        )
        .model_dump_json(by_alias=True)
        .encode()
    )


async def test_acks_over_mqtt_claim_and_close(
    notifier: Notifier, services: ServiceSettings, clock: FakeClock
) -> None:
    alert = make_alert(store_id="s1")
    await notifier.handle(alert.to_json())
    feed = notifier.redis.pubsub()
    await feed.subscribe(notifier.lifecycle.channel("s1"))
    for ack_filter in notifier.ack_filters:
        await notifier.mqtt.subscribe(ack_filter, qos=1)
    loop = asyncio.create_task(notifier.ack_loop(), name="test-ack-loop")
    topic = services.topics.associate_ack("s1", "joao", str(alert.alert_id))
    try:
        async with MqttClient(services.mqtt) as handheld:
            # A shared subscription is live once an ack sent through it is applied.
            async with asyncio.timeout(WAIT):
                while True:
                    await handheld.publish(topic, _ack(alert, "joao", AckStatus.CLAIMED, clock))
                    msg = await feed.get_message(ignore_subscribe_messages=True, timeout=0.5)
                    if msg is not None:
                        break
            assert json.loads(msg["data"])["alert"]["claimed_by"] == "joao"
            await handheld.publish(topic, _ack(alert, "joao", AckStatus.DONE, clock))
            async with asyncio.timeout(WAIT):
                while True:
                    msg = await feed.get_message(ignore_subscribe_messages=True, timeout=1)
                    if msg and json.loads(msg["data"])["alert"]["state"] == "done":
                        break
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
        await feed.aclose()
    assert notifier.metrics.value("proxima_notifier_acks_total", source="mqtt", result="done") == 1


async def test_bad_acks_are_parked_with_a_reason(notifier: Notifier, clock: FakeClock) -> None:
    alert = make_alert(store_id="s1")
    await notifier.handle(alert.to_json())
    topics = notifier.topics
    alert_id = str(alert.alert_id)
    cases = [
        (topics.associate_ack("s2", "joao", alert_id), _ack(alert, "joao", AckStatus.CLAIMED, clock)),
        (topics.associate_ack("s1", "joao", alert_id), b"{not json"),
        (topics.associate_ack("s1", "nobody", alert_id), _ack(alert, "nobody", AckStatus.CLAIMED, clock)),
        # The 0.1 store-wide topic says nothing of who sent it: off unless configured.
        (topics.alert_ack("s1", alert_id), _ack(alert, "joao", AckStatus.CLAIMED, clock)),
    ]  # fmt: skip
    for topic, payload in cases:
        assert await notifier.handle_ack(Message(topic, payload, 1, False, 1)) is None
    parked = await notifier.redis.xrange(f"{notifier.services.redis_prefix}notifier:rejected")
    reasons = [fields["reason"] for _id, fields in parked]
    assert "sent on the topic of store 's2'" in reasons[0]
    assert "invalid AlertAck" in reasons[1]
    assert "no associate 'nobody' in store 's1'" in reasons[2]
    assert "legacy_topic" in reasons[3]
    record = await notifier.lifecycle.get(alert_id)
    assert record is not None
    assert record.state is AlertState.DELIVERED
    refused = {r: notifier.metrics.value("proxima_notifier_acks_refused_total", reason=r)
               for r in ("topic_mismatch", "payload", "unknown_associate", "legacy_topic")}  # fmt: skip
    assert refused == dict.fromkeys(refused, 1)


async def test_an_ack_naming_another_associate_than_its_topic_is_refused(
    notifier: Notifier, services: ServiceSettings, clock: FakeClock
) -> None:
    """Joao may write only his own ack topic (the shipped ACL): he cannot claim as Maria."""
    alert = make_alert(store_id="s1")
    await notifier.handle(alert.to_json())
    alert_id = str(alert.alert_id)
    for ack_filter in notifier.ack_filters:
        await notifier.mqtt.subscribe(ack_filter, qos=1)
    loop = asyncio.create_task(notifier.ack_loop(), name="test-ack-loop")
    rejected = f"{services.redis_prefix}notifier:rejected"
    joao_as_maria = _ack(alert, "maria", AckStatus.CLAIMED, clock)
    try:
        async with MqttClient(services.mqtt) as handheld:
            # Over the real broker: a shared subscription is live once a message gets through.
            async with asyncio.timeout(WAIT):
                while not await notifier.redis.xlen(rejected):
                    topic = services.topics.associate_ack("s1", "joao", alert_id)
                    await handheld.publish(topic, joao_as_maria)
                    await asyncio.sleep(0.2)
            # ... and the other way round: Joao's own name on Maria's topic.
            await handheld.publish(
                services.topics.associate_ack("s1", "maria", alert_id),
                _ack(alert, "joao", AckStatus.CLAIMED, clock),
            )
            async with asyncio.timeout(WAIT):
                while True:
                    parked = await notifier.redis.xrange(rejected)
                    if "topic of associate 'maria'" in parked[-1][1]["reason"]:
                        break
                    await asyncio.sleep(0.05)
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
    record = await notifier.lifecycle.get(alert_id)
    assert record is not None
    assert record.state is AlertState.DELIVERED
    assert record.claimed_by is None
    assert all("associate_mismatch" in fields["reason"] for _id, fields in parked)
    refused = notifier.metrics.value(
        "proxima_notifier_acks_refused_total", reason="associate_mismatch"
    )
    assert refused == len(parked)
    assert (
        "naming associate 'maria' sent on the topic of associate 'joao'" in parked[0][1]["reason"]
    )
    assert (
        "naming associate 'joao' sent on the topic of associate 'maria'" in parked[-1][1]["reason"]
    )


async def test_the_legacy_store_wide_ack_topic_works_only_when_turned_on(
    services: ServiceSettings, clock: FakeClock
) -> None:
    settings = NotifierSettings(http_port=0, legacy_ack_topic=True)
    notifier = Notifier(services, settings=settings, clock=clock)
    notifier.directory.hasher = FAST_HASHER
    try:
        await notifier.directory.add("s1", "Joao", "password-1", associate_id="joao")
        await notifier.directory.set_on_shift("s1", "joao", True)
        alert = make_alert(store_id="s1")
        await notifier.lifecycle.create(alert)
        assert notifier.topics.all_legacy_acks(notifier.group_id) in notifier.ack_filters
        topic = notifier.topics.alert_ack("s1", str(alert.alert_id))
        payload = _ack(alert, "joao", AckStatus.CLAIMED, clock)
        record = await notifier.handle_ack(Message(topic, payload, 1, False, 1))
    finally:
        await notifier.close()
    assert record is not None
    assert record.claimed_by == "joao"
    counted = {"source": "mqtt-legacy", "result": "claimed"}
    assert notifier.metrics.value("proxima_notifier_acks_total", **counted) == 1


async def test_run_consumes_kafka_and_serves_the_console(
    kafka_url: str, namespace: str, redis: aioredis.Redis
) -> None:
    services = ServiceSettings(namespace=namespace, kafka=kafka_url)
    await ensure_topics(services.kafka_bootstrap, services.topics.all_kafka, 1)
    notifier = Notifier(services, settings=NotifierSettings(http_port=0, tick_s=0.2))
    ready = asyncio.Event()
    task = asyncio.create_task(notifier.run(ready), name="test-notifier")
    alert = make_alert(store_id="s1")
    producer = make_producer(services.kafka_bootstrap, idempotent=False, client_id="test")
    try:
        async with asyncio.timeout(90), MqttClient(services.mqtt) as listener:
            await listener.subscribe(services.topics.store_alerts("s1"), qos=1)
            await _subscribed(listener, services.topics.store_alerts("s1"))
            await ready.wait()
            await producer.start()
            await producer.send_and_wait(services.topics.alerts, alert.to_json(), key=b"s1")
            msg = await listener.messages.get()
            assert json.loads(msg.payload)["alert_id"] == str(alert.alert_id)
            assert notifier.http_port
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://127.0.0.1:{notifier.http_port}/healthz") as res,
            ):
                assert res.status == 200
                assert (await res.json())["mqtt"] is True
    finally:
        await producer.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_ladder_comes_from_settings(services: ServiceSettings) -> None:
    n = Notifier(services, settings=NotifierSettings(escalate_after_s=30, manager_after_s=90))
    assert n.lifecycle.ladder.escalate_after == timedelta(seconds=30)
    assert n.lifecycle.ladder.manager_after == timedelta(seconds=90)


async def test_shift_set_from_a_handheld_over_mqtt(
    notifier: Notifier, services: ServiceSettings
) -> None:
    feed = notifier.redis.pubsub()
    await feed.subscribe(notifier.lifecycle.channel("s1"))
    await notifier.mqtt.subscribe(notifier.shift_filter, qos=1)
    loop = asyncio.create_task(notifier.ack_loop(), name="test-shift-loop")
    topic = f"{services.topics.mqtt_root}/stores/s1/associates/boss/shift"
    try:
        async with MqttClient(services.mqtt) as handheld:
            async with asyncio.timeout(WAIT):
                while True:  # the shared subscription is live once a message gets through
                    await handheld.publish(topic, b'{"on_shift": true}')
                    msg = await feed.get_message(ignore_subscribe_messages=True, timeout=0.5)
                    if msg is not None:
                        break
            assert json.loads(msg["data"]) == {
                "type": "shift",
                "associate": json.loads(msg["data"])["associate"],
            }
            assert json.loads(msg["data"])["associate"]["on_shift"] is True
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
        await feed.aclose()
    boss = await notifier.directory.get("s1", "boss")
    assert boss is not None
    assert boss.on_shift


async def test_bad_shift_messages_are_parked(notifier: Notifier) -> None:
    root = notifier.topics.mqtt_root
    cases = [
        (f"{root}/stores/s1/associates/boss/shift", b'{"on_shift": "yes"}', "on_shift"),
        (f"{root}/stores/s1/associates/ghost/shift", b'{"on_shift": true}', "no associate"),
        (f"{root}/stores/s1/associates/boss/shift", b"[]", "invalid ShiftUpdate"),
    ]
    for topic, payload, _ in cases:
        assert await notifier.handle_shift(Message(topic, payload, 1, False, 1)) is None
    parked = await notifier.redis.xrange(f"{notifier.services.redis_prefix}notifier:rejected")
    for (_id, fields), (_t, _p, reason) in zip(parked, cases, strict=True):
        assert fields["what"] == "shift"
        assert reason in fields["reason"]
    boss = await notifier.directory.get("s1", "boss")
    assert boss is not None
    assert not boss.on_shift


async def test_decline_by_everyone_told_reaches_the_next_tier_at_once(
    notifier: Notifier, listener: MqttClient, services: ServiceSettings
) -> None:
    await _subscribed(listener, f"{services.topics.mqtt_root}/stores/s1/x")
    alert = make_alert(store_id="s1", target={"associate_id": "maria"}, zone_id="entrance")
    await notifier.handle(alert.to_json())
    for _ in range(2):
        await _next(listener)
    await notifier.lifecycle.decline(str(alert.alert_id), "s1", "maria")
    assert _kinds(services, await _next(listener)) == (
        "/stores/s1/associates/joao/alerts",
        str(alert.alert_id),
    )
    assert notifier.metrics.value("proxima_notifier_escalations_total", tier="zone") == 1


async def test_the_kafka_loop_waits_out_a_redis_restart(
    kafka_url: str, namespace: str, tmp_path: Path
) -> None:
    """Redis stopped while an alert arrives: the loop retries it, then delivers it."""
    with private_redis(tmp_path) as server:
        services = ServiceSettings(namespace=namespace, kafka=kafka_url, redis=server.url)
        await ensure_topics(services.kafka_bootstrap, services.topics.all_kafka, 1)
        settings = NotifierSettings(
            http_port=0, tick_s=0.2, retry_backoff_s=0.05, retry_backoff_max_s=0.2
        )
        notifier = Notifier(services, settings=settings)
        ready = asyncio.Event()
        task = asyncio.create_task(notifier.run(ready), name="test-notifier")
        alert = make_alert(store_id="s1")
        producer = make_producer(services.kafka_bootstrap, idempotent=False, client_id="test")
        try:
            async with asyncio.timeout(90), MqttClient(services.mqtt) as listener:
                await listener.subscribe(services.topics.store_alerts("s1"), qos=1)
                await _subscribed(listener, services.topics.store_alerts("s1"))
                await ready.wait()
                server.stop()
                await producer.start()
                await producer.send_and_wait(services.topics.alerts, alert.to_json(), key=b"s1")
                retried = {"loop": "alerts", "step": "handle"}
                while not notifier.metrics.value("proxima_notifier_retries_total", **retried):
                    assert not task.done(), "the notifier stopped while Redis was away"
                    await asyncio.sleep(0.05)
                server.start()
                msg = await listener.messages.get()
                assert json.loads(msg.payload)["alert_id"] == str(alert.alert_id)
                assert not task.done()
        finally:
            await producer.stop()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_a_record_that_keeps_failing_is_parked_and_the_loop_goes_on(
    services: ServiceSettings,
) -> None:
    settings = NotifierSettings(kafka_record_attempts=2, retry_backoff_s=0.01)
    notifier = Notifier(services, settings=settings)
    record: ConsumerRecord[bytes, bytes] = ConsumerRecord(
        topic="alerts-topic", partition=0, offset=7, timestamp=0, timestamp_type=0,
        key=None, value=b'{"some": "alert"}', checksum=None, serialized_key_size=0,
        serialized_value_size=17, headers=(),
    )  # fmt: skip
    tries: list[int] = []

    async def broken(_record: ConsumerRecord[bytes, bytes]) -> None:
        tries.append(1)
        raise ValueError("a bug, not a service away")

    try:
        await notifier._handle_record("alerts", broken, record)
        parked = await notifier.redis.xrange(f"{services.redis_prefix}notifier:rejected")
    finally:
        await notifier.close()
    assert len(tries) == 2
    ((_id, fields),) = parked
    assert fields["reason"] == (
        "alerts at alerts-topic[0]@7: ValueError: a bug, not a service away"
    )
    assert fields["raw"] == '{"some": "alert"}'
    assert notifier.metrics.value("proxima_notifier_records_parked_total", loop="alerts") == 1


async def test_handhelds_and_store_screens_get_no_customer_visit_or_event_ids(
    notifier: Notifier, listener: MqttClient, services: ServiceSettings
) -> None:
    await _subscribed(listener, f"{services.topics.mqtt_root}/stores/s1/x")
    alert = make_alert(store_id="s1", visit_id="visit-ana-1", target={"associate_id": "maria"})
    await notifier.handle(alert.to_json())
    for _ in range(2):  # the store's topic and Maria's
        msg = await _next(listener)
        assert b"cust-ana" not in msg.payload
        assert b"visit-ana-1" not in msg.payload
        assert str(alert.caused_by[0]).encode() not in msg.payload
        view = parse_model(AlertView, msg.payload)
        assert view == alert.view()
        assert view.fields == {"name": "Ana"}  # what the customer made visible still is there


async def test_forget_and_revocation_reach_the_notifier_through_kafka(
    kafka_url: str, namespace: str, redis: aioredis.Redis, clock: FakeClock
) -> None:
    """`proxima customers forget` and `revoke`, as an operator runs them, withdraw the
    customer's open alerts on every channel; forget leaves nothing of them in Redis."""
    services = ServiceSettings(namespace=namespace, kafka=kafka_url)
    await ensure_topics(services.kafka_bootstrap, services.topics.all_kafka, 1)
    registry = Registry(redis, services.redis_prefix)
    gone, revoking = f"cust-gone-{namespace}", f"cust-rev-{namespace}"
    for cid in (gone, revoking):
        profile = CustomerProfile(
            customer_id=cid, identity_key="11" * 16, rotation_exponent=10, name="Zelda Quux"
        )
        await registry.enroll(profile, [Purpose.ARRIVAL_ALERTS])
    notifier = Notifier(services, settings=NotifierSettings(http_port=0, tick_s=0.2), clock=clock)
    notifier.directory.hasher = FAST_HASHER
    for who in ("maria", "joao"):
        await notifier.directory.add("s1", who.title(), "password-1", associate_id=who)
        await notifier.directory.set_on_shift("s1", who, True)
    alerts = {
        cid: make_alert(
            store_id="s1", customer_id=cid, fields={"name": "Zelda Quux"},
            target={"associate_id": "maria"},
        )
        for cid in (gone, revoking)
    }  # fmt: skip
    ready = asyncio.Event()
    task = asyncio.create_task(notifier.run(ready), name="test-notifier")
    producer = make_producer(services.kafka_bootstrap, idempotent=False, client_id="test")
    env = dict(os.environ, PROXIMA_KAFKA=kafka_url, PROXIMA_NAMESPACE=namespace)
    try:
        async with asyncio.timeout(100), MqttClient(services.mqtt) as listener:
            await listener.subscribe(services.topics.store_alerts("s1"), qos=1)
            await _subscribed(listener, services.topics.store_alerts("s1"))
            await ready.wait()
            await producer.start()
            for alert in alerts.values():
                await producer.send_and_wait(services.topics.alerts, alert.to_json(), key=b"s1")
            for _ in alerts:
                assert isinstance(
                    parse_alert_message((await listener.messages.get()).payload), AlertView
                )
            for args in (["forget", gone], ["revoke", revoking, "arrival_alerts"]):
                done = await asyncio.to_thread(
                    subprocess.run,
                    [sys.executable, "-m", "deploy.cli", "customers", *args],
                    env=env, capture_output=True, text=True, check=False,
                )  # fmt: skip
                assert done.returncode == 0, done.stderr
                assert "not yet on proxima.consent.v1" not in done.stderr
            withdrawn = set()
            for _ in alerts:
                message = parse_alert_message((await listener.messages.get()).payload)
                assert isinstance(message, AlertWithdrawn)
                withdrawn.add((str(message.alert_id), message.reason.value))
            expected = {
                (str(alerts[gone].alert_id), "erased"),
                (str(alerts[revoking].alert_id), "consent_revoked"),
            }
            assert withdrawn == expected
        clock.advance(600)  # escalation and the manager would have been due long ago
        assert await notifier.lifecycle.tick() == []
        record = await notifier.lifecycle.get(str(alerts[revoking].alert_id))
        assert record is not None
        assert record.state is AlertState.WITHDRAWN
        assert "Zelda" not in record.alert.model_dump_json()
        assert await notifier.lifecycle.get(str(alerts[gone].alert_id)) is None
    finally:
        await producer.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    # Nothing of the forgotten customer anywhere under the prefix (the registry's audit
    # stream keeps the erasure's record, by design).
    assert await redis_traces(redis, services.redis_prefix, gone, skip_suffixes=("}audit",)) == []
