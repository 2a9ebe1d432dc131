"""deploy/mosquitto: the shipped ACL holds gateways and associates to their own topics.

Runs a private Mosquitto (the Debian binary) on a free loopback port with the shipped
ACL file and a password file made with mosquitto_passwd, then publishes and subscribes
as each role over real sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.kit.mosquitto import Mosquitto, private_mosquitto
from transport.mqtt import MqttClient

ACL = Path(__file__).parents[2] / "deploy" / "mosquitto" / "proxima.acl"
USERS = [
    "s1/gateways/gw-door",
    "s1/gateways/fusion",
    "s1/associates/maria",
    "s1/associates/joao",
    "proxima-bridge",
    "proxima-notifier",
]

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    work = tmp_path_factory.mktemp("mosquitto")
    # The shipped file, plus the per-store block it says a fused store's coordinator needs.
    acl = work / "proxima.acl"
    acl.write_text(
        ACL.read_text()
        + "\nuser s1/gateways/fusion\ntopic read proxima/v1/stores/s1/gateways/+/evidence\n"
    )
    with private_mosquitto(work / "broker", users=USERS, acl=acl) as mq:
        yield mq


@pytest.fixture
async def bridge(broker: Mosquitto) -> AsyncIterator[MqttClient]:
    async with MqttClient(broker.url("proxima-bridge")) as client:
        await client.subscribe("$share/acl-test/proxima/v1/stores/+/gateways/+/events")
        await asyncio.sleep(0.2)
        yield client


async def _received(client: MqttClient, wait: float = 1.0) -> list[tuple[str, bytes]]:
    got = []
    try:
        async with asyncio.timeout(wait):
            while True:
                message = await client.messages.get()
                got.append((message.topic, message.payload))
    except TimeoutError:
        pass
    return got


async def test_a_gateway_publishes_only_under_its_own_topic(
    broker: Mosquitto, bridge: MqttClient
) -> None:
    own = "proxima/v1/stores/s1/gateways/gw-door/events"
    other = "proxima/v1/stores/s1/gateways/gw-fitting/events"
    other_store = "proxima/v1/stores/s2/gateways/gw-door/events"
    async with MqttClient(broker.url("s1/gateways/gw-door")) as gateway:
        await gateway.publish(own, b"own")
        # Mosquitto acknowledges a denied QoS 1 publish (so a client learns nothing) and
        # drops it: the bridge must see only the gateway's own batch.
        await gateway.publish(other, b"forged")
        await gateway.publish(other_store, b"forged")
    assert await _received(bridge) == [(own, b"own")]


async def test_a_fused_stores_gateway_sends_evidence_only_to_its_coordinator(
    broker: Mosquitto, bridge: MqttClient
) -> None:
    own = "proxima/v1/stores/s1/gateways/gw-door/evidence"
    forged = "proxima/v1/stores/s1/gateways/gw-fitting/evidence"
    async with MqttClient(broker.url("s1/gateways/fusion")) as coordinator:
        await coordinator.subscribe("proxima/v1/stores/s1/gateways/+/evidence")
        await asyncio.sleep(0.2)
        async with MqttClient(broker.url("s1/gateways/gw-door")) as gateway:
            await gateway.publish(own, b"evidence")
            await gateway.publish(forged, b"forged")
        assert await _received(coordinator) == [(own, b"evidence")]
    # Store-local: the bridge (subscribed to events) never sees it.
    assert await _received(bridge, 0.3) == []


async def test_an_associate_reads_only_their_own_alerts(broker: Mosquitto) -> None:
    mine = "proxima/v1/stores/s1/associates/maria/alerts"
    theirs = "proxima/v1/stores/s1/associates/joao/alerts"
    async with (
        MqttClient(broker.url("s1/associates/maria")) as maria,
        MqttClient(broker.url("proxima-notifier")) as notifier,
    ):
        await maria.subscribe(mine)
        await maria.subscribe(theirs)  # granted a failure code by the broker, never delivered
        await maria.subscribe("proxima/v1/stores/s1/gateways/+/events")
        await asyncio.sleep(0.2)
        await notifier.publish(mine, b"for maria")
        await notifier.publish(theirs, b"for joao")
        async with MqttClient(broker.url("s1/gateways/gw-door")) as gateway:
            await gateway.publish("proxima/v1/stores/s1/gateways/gw-door/events", b"batch")
        assert await _received(maria) == [(mine, b"for maria")]


async def test_an_associate_cannot_publish_alerts(broker: Mosquitto) -> None:
    topic = "proxima/v1/stores/s1/associates/joao/alerts"
    async with (
        MqttClient(broker.url("s1/associates/joao")) as joao,
        MqttClient(broker.url("s1/associates/maria")) as maria,
        MqttClient(broker.url("proxima-notifier")) as notifier,
    ):
        await joao.subscribe(topic)
        await asyncio.sleep(0.2)
        await maria.publish(topic, b"spoofed " + uuid.uuid4().bytes)
        # The broker acknowledged maria's publish before the notifier's was sent: had it
        # passed, it would reach joao first. The notifier's shows that joao does listen.
        await notifier.publish(topic, b"from the notifier")
        assert await _received(joao) == [(topic, b"from the notifier")]


async def test_an_associate_sets_only_their_own_shift(broker: Mosquitto) -> None:
    mine = "proxima/v1/stores/s1/associates/maria/shift"
    theirs = "proxima/v1/stores/s1/associates/joao/shift"
    async with MqttClient(broker.url("proxima-notifier")) as notifier:
        await notifier.subscribe("proxima/v1/stores/+/associates/+/shift")
        await asyncio.sleep(0.2)
        async with MqttClient(broker.url("s1/associates/maria")) as maria:
            await maria.publish(mine, b'{"on_shift": true}')
            await maria.publish(theirs, b'{"on_shift": false}')
        assert await _received(notifier) == [(mine, b'{"on_shift": true}')]


async def test_an_associate_acks_only_on_its_own_ack_topic(broker: Mosquitto) -> None:
    mine = "proxima/v1/stores/s1/associates/maria/acks/a-1"
    theirs = "proxima/v1/stores/s1/associates/joao/acks/a-1"
    store_wide = "proxima/v1/stores/s1/alerts/a-1/ack"  # the 0.1 topic: granted to nobody
    async with MqttClient(broker.url("proxima-notifier")) as notifier:
        await notifier.subscribe("proxima/v1/stores/+/associates/+/acks/+")
        await notifier.subscribe("proxima/v1/stores/+/alerts/+/ack")
        await asyncio.sleep(0.2)
        async with MqttClient(broker.url("s1/associates/maria")) as maria:
            await maria.publish(theirs, b"forged")
            await maria.publish(store_wide, b"forged")
            await maria.publish(mine, b"mine")
        assert await _received(notifier) == [(mine, b"mine")]


async def test_a_handheld_cannot_ack_in_another_associates_name(
    broker: Mosquitto, tmp_path: Path
) -> None:
    """The shipped ACL and the notifier together: Joao's forged acks change nothing."""
    from contracts.models import AckStatus, AlertAck
    from contracts.services import ServiceSettings
    from notifier.lifecycle import AlertState
    from notifier.service import Notifier
    from notifier.settings import NotifierSettings
    from tests.notifier.conftest import FAST_HASHER, make_alert
    from tests.private_redis import private_redis

    def ack(who: str, status: AckStatus) -> bytes:
        return AlertAck(
            alert_id=alert.alert_id, store_id="s1", associate_id=who, status=status,
            at=datetime.now(UTC),
        ).model_dump_json(by_alias=True).encode()  # fmt: skip

    alert = make_alert(store_id="s1")
    alert_id = str(alert.alert_id)
    # The ACL names the contract's topics (no namespace), so Redis is this test's own.
    with private_redis(tmp_path) as redis_server:
        services = ServiceSettings(mqtt=broker.url("proxima-notifier"), redis=redis_server.url)
        notifier = Notifier(services, settings=NotifierSettings(http_port=0))
        notifier.directory.hasher = FAST_HASHER
        for who in ("maria", "joao"):
            await notifier.directory.add("s1", who.title(), "password-1", associate_id=who)
            await notifier.directory.set_on_shift("s1", who, True)
        topics = services.topics
        try:
            async with notifier.mqtt:
                await notifier.handle(alert.to_json())
                for ack_filter in notifier.ack_filters:
                    await notifier.mqtt.subscribe(ack_filter, qos=1)
                await asyncio.sleep(0.2)
                loop = asyncio.create_task(notifier.ack_loop(), name="test-ack-loop")
                try:
                    async with MqttClient(broker.url("s1/associates/joao")) as joao:
                        # Joao's own topic, Maria's name: the broker lets it through,
                        # the notifier refuses it.
                        own = topics.associate_ack("s1", "joao", alert_id)
                        await joao.publish(own, ack("maria", AckStatus.CLAIMED))
                        # Maria's topic, or the 0.1 store-wide one: the broker drops it.
                        maria_topic = topics.associate_ack("s1", "maria", alert_id)
                        await joao.publish(maria_topic, ack("maria", AckStatus.DONE))
                        await joao.publish(
                            topics.alert_ack("s1", alert_id), ack("maria", AckStatus.DONE)
                        )
                    refused = {"reason": "associate_mismatch"}
                    async with asyncio.timeout(10):
                        while True:
                            if notifier.metrics.value(
                                "proxima_notifier_acks_refused_total", **refused
                            ):
                                break
                            await asyncio.sleep(0.05)
                    async with MqttClient(broker.url("s1/associates/maria")) as maria:
                        await maria.publish(
                            topics.associate_ack("s1", "maria", alert_id),
                            ack("maria", AckStatus.CLAIMED),
                        )
                    # A claim is counted once it is applied (its record written first):
                    # wait for the count, then read the record (waiting for the record and
                    # reading the count raced the ack loop's cancellation).
                    claimed = {"source": "mqtt", "result": "claimed"}
                    async with asyncio.timeout(10):
                        while True:
                            if notifier.metrics.value("proxima_notifier_acks_total", **claimed):
                                break
                            await asyncio.sleep(0.05)
                    record = await notifier.lifecycle.get(alert_id)
                    assert record is not None
                finally:
                    loop.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await loop
            acks = notifier.metrics.value(
                "proxima_notifier_acks_total", source="mqtt", result="claimed"
            )
            rejected = await notifier.redis.xrange(f"{services.redis_prefix}notifier:rejected")
        finally:
            await notifier.close()
    # Maria's own claim, not the forged "done" on her topic that the broker dropped.
    assert record.state is AlertState.CLAIMED
    assert record.claimed_by == "maria"
    assert acks == 1
    assert [f["reason"].split(": ")[1] for _id, f in rejected] == ["associate_mismatch"]
