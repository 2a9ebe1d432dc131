"""deploy/mosquitto: the shipped ACL holds gateways and associates to their own topics.

Runs a private Mosquitto (the Debian binary) on a free loopback port with the shipped
ACL file and a password file made with mosquitto_passwd, then publishes and subscribes
as each role over real sockets.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.kit.mosquitto import Mosquitto, private_mosquitto
from transport.mqtt import MqttClient

ACL = Path(__file__).parents[2] / "deploy" / "mosquitto" / "proxima.acl"
USERS = [
    "s1/gateways/gw-door",
    "s1/associates/maria",
    "s1/associates/joao",
    "proxima-bridge",
    "proxima-notifier",
]

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    with private_mosquitto(tmp_path_factory.mktemp("mosquitto"), users=USERS, acl=ACL) as mq:
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
