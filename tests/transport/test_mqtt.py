"""The MQTT client against the real Mosquitto: PUBACK-awaited publish, v5 user properties."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from contracts.services import ServiceSettings
from transport.mqtt import MqttClient, Will

pytestmark = pytest.mark.integration


async def _roundtrip(protocol: int, props: dict[str, str] | None) -> tuple[bytes, object]:
    topic = f"proxima-test/{uuid.uuid4().hex}/t"
    url = ServiceSettings().mqtt
    async with MqttClient(url, protocol=protocol) as sub, MqttClient(url, protocol=protocol) as pub:
        await sub.subscribe(topic, qos=1)
        await asyncio.sleep(0.2)  # let the SUBACK land before publishing
        await pub.publish(topic, b"payload", qos=1, user_properties=props)
        async with asyncio.timeout(5):
            message = await sub.messages.get()
    return message.payload, message.user_properties


async def test_user_properties_travel_with_the_payload_over_mqtt5() -> None:
    payload, props = await _roundtrip(5, {"proxima-kid": "k1", "proxima-sig": "v1=ab"})
    assert payload == b"payload"
    assert props == (("proxima-kid", "k1"), ("proxima-sig", "v1=ab"))


async def test_mqtt311_still_delivers_without_properties() -> None:
    payload, props = await _roundtrip(4, {"proxima-kid": "k1"})
    assert payload == b"payload"
    assert props == ()


def test_protocol_is_checked() -> None:
    with pytest.raises(ValueError, match="protocol must be 4"):
        MqttClient("mqtt://127.0.0.1:1883", protocol=3)


async def test_the_last_will_carries_its_user_properties() -> None:
    """A gateway signs its will (the offline status) like any status message."""
    topic = f"proxima-test/{uuid.uuid4().hex}/status"
    url = ServiceSettings().mqtt
    will = Will(topic, b"offline", retain=False, user_properties={"proxima-kid": "k1"})
    async with MqttClient(url) as sub:
        await sub.subscribe(topic, qos=1)
        gone = MqttClient(url, will=will)
        await gone.connect()
        paho = gone._client
        assert paho is not None
        # Drop the connection without DISCONNECT, as a power cut does: the broker sends the will.
        paho.loop_stop()
        sock = paho.socket()
        assert sock is not None
        sock.close()
        async with asyncio.timeout(20):
            message = await sub.messages.get()
    assert message.payload == b"offline"
    assert message.user_properties == (("proxima-kid", "k1"),)
