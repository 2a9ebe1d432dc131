"""The MQTT client against the real Mosquitto: PUBACK-awaited publish, SUBACK-awaited
subscribe, v5 user properties."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from contracts.services import ServiceSettings
from transport.mqtt import MqttClient, MqttUrl, Will

pytestmark = pytest.mark.integration


async def _roundtrip(protocol: int, props: dict[str, str] | None) -> tuple[bytes, object]:
    topic = f"proxima-test/{uuid.uuid4().hex}/t"
    url = ServiceSettings().mqtt
    async with MqttClient(url, protocol=protocol) as sub, MqttClient(url, protocol=protocol) as pub:
        await sub.subscribe(topic, qos=1)
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


class _SlowUplink:
    """A TCP relay to the broker that holds every client → broker chunk for ``delay_s``.

    It stands for a slow link (a store's uplink): the broker sees a SUBSCRIBE late, so a
    subscribe that returned before its SUBACK would miss what is published meanwhile.
    """

    def __init__(self, host: str, port: int, delay_s: float) -> None:
        self.target = (host, port)
        self.delay_s = delay_s
        self.server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> int:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        for src, dst, delay in ((reader, up_writer, self.delay_s), (up_reader, writer, 0.0)):
            task = asyncio.create_task(self._pipe(src, dst, delay), name="slow-uplink-pipe")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, delay: float) -> None:
        try:
            while chunk := await src.read(65536):
                if delay:
                    await asyncio.sleep(delay)
                dst.write(chunk)
                await dst.drain()
        finally:
            dst.close()


async def test_subscribe_returns_only_once_the_broker_has_granted_it() -> None:
    broker = MqttUrl.parse(ServiceSettings().mqtt)
    topic = f"proxima-test/{uuid.uuid4().hex}/t"
    slow = _SlowUplink(broker.host, broker.port, delay_s=0.5)
    async with slow as port, MqttClient(f"mqtt://127.0.0.1:{port}") as sub:
        await sub.subscribe(topic, qos=1)
        # No sleep: once subscribe() has returned, the broker routes the topic to us.
        async with MqttClient(ServiceSettings().mqtt) as pub:
            await pub.publish(topic, b"right after", qos=1)
        async with asyncio.timeout(5):
            message = await sub.messages.get()
    assert message.payload == b"right after"


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
