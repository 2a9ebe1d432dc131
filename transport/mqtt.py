"""An asyncio face on paho-mqtt 2.x (CallbackAPIVersion.VERSION2).

paho runs its network loop in its own thread (``loop_start``); callbacks hop onto the
asyncio loop with ``call_soon_threadsafe``. ``publish`` returns only after the broker's
PUBACK for QoS 1, which is what the outbox and the notifier need to be at-least-once.
With ``manual_ack=True`` a received QoS 1 message is acknowledged to the broker only when
the consumer calls :meth:`MqttClient.ack`, which the bridge does after Kafka has the data.

MQTT 5 by default (Mosquitto ≥ 1.6, EMQX, HiveMQ, VerneMQ all speak it): user properties
carry a batch's gateway signature beside the payload, so the payload stays the contract's
plain JSON list. ``clean_session=False`` becomes clean start off plus a session expiry
interval (MQTT 5 sessions otherwise end with the connection), so the broker keeps queueing
QoS 1 messages for a stopped bridge. ``protocol=4`` talks MQTT 3.1.1 to older brokers;
user properties are then neither sent nor received.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypedDict
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from contracts.services import ServiceSettings, redact_url

log = logging.getLogger(__name__)


class MqttError(Exception):
    """An MQTT operation failed (connect refused, publish not acknowledged in time)."""


@dataclass(frozen=True, slots=True)
class MqttUrl:
    """A parsed ``mqtt://user:pass@host:port`` or ``mqtts://`` URL."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str) -> MqttUrl:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError(f"MQTT URL {redact_url(url)!r}: scheme must be mqtt:// or mqtts://")
        if not parts.hostname:
            raise ValueError(f"MQTT URL {redact_url(url)!r}: no host")
        tls = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname,
            port=parts.port or (8883 if tls else 1883),
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


class MqttTls(TypedDict):
    """:class:`MqttClient`'s TLS keyword arguments."""

    ca_file: str | None
    cert_file: str | None
    key_file: str | None


def tls_files(ca_file: Path | None, cert_file: Path | None, key_file: Path | None) -> MqttTls:
    """:class:`MqttClient`'s TLS keywords from configured paths (None: not set)."""

    def text(path: Path | None) -> str | None:
        return None if path is None else str(path)

    return MqttTls(ca_file=text(ca_file), cert_file=text(cert_file), key_file=text(key_file))


def service_tls(services: ServiceSettings) -> MqttTls:
    """The CA and client certificate a service's :class:`MqttClient` uses for mqtts://
    (``PROXIMA_MQTT_CA_FILE``, ``PROXIMA_MQTT_CERT_FILE``, ``PROXIMA_MQTT_KEY_FILE``)."""
    return tls_files(services.mqtt_ca_file, services.mqtt_cert_file, services.mqtt_key_file)


@dataclass(frozen=True, slots=True)
class Message:
    """One received message; ``mid`` is what :meth:`MqttClient.ack` takes."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int
    user_properties: tuple[tuple[str, str], ...] = ()

    def user_property(self, name: str) -> str | None:
        """The first user property called ``name`` (MQTT 5), or None."""
        for key, value in self.user_properties:
            if key == name:
                return value
        return None


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True
    user_properties: dict[str, str] | None = None  # MQTT 5 only (e.g. a gateway's signature)


class MqttClient:
    """Async context manager around one paho client. Reusable, not re-entrant."""

    def __init__(
        self,
        url: str,
        *,
        client_id: str | None = None,
        will: Will | None = None,
        manual_ack: bool = False,
        clean_session: bool = True,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        publish_timeout: float = 30.0,
        queue_size: int = 10_000,
        protocol: int = 5,
        session_expiry_s: int = 7 * 86400,
    ) -> None:
        if protocol not in (4, 5):
            raise ValueError(f"MQTT protocol must be 4 (3.1.1) or 5, not {protocol!r}")
        self.url = MqttUrl.parse(url)
        self.client_id = client_id or f"proxima-{uuid.uuid4().hex[:12]}"
        self._will = will
        self._manual_ack = manual_ack
        self._clean_session = clean_session
        self._tls = (ca_file, cert_file, key_file)
        self._publish_timeout = publish_timeout
        self._queue_size = queue_size
        self._protocol = protocol
        self._session_expiry_s = session_expiry_s
        self._client: paho.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._pending: dict[int, asyncio.Future[None]] = {}
        self._early: set[int] = set()
        # SUBACKs: a waiting subscribe's future, or the reason codes of a SUBACK that came
        # back before its future was registered (paho's network thread can be that fast).
        self._pending_sub: dict[int, asyncio.Future[list[ReasonCode]]] = {}
        self._early_sub: dict[int, list[ReasonCode]] = {}
        self._resubscribe_mids: set[int] = set()
        self._connected = asyncio.Event()
        self._subscriptions: dict[str, int] = {}
        self.messages: asyncio.Queue[Message] = asyncio.Queue(maxsize=queue_size)
        self.reconnects = 0
        self.on_connect_hooks: list[Callable[[], None]] = []

    # lifecycle -----------------------------------------------------------------
    async def __aenter__(self) -> MqttClient:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.disconnect()

    async def connect(self, timeout: float = 10.0) -> None:
        if self._client is not None:
            raise MqttError("client is already connected (not re-entrant)")
        self._loop = asyncio.get_running_loop()
        self._connected = asyncio.Event()
        v5 = self._protocol == 5
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
            # paho refuses clean_session for MQTT 5; there it is clean_start on connect.
            clean_session=None if v5 else self._clean_session,
            manual_ack=self._manual_ack,
        )
        client.max_queued_messages_set(self._queue_size)
        client.max_inflight_messages_set(100)
        # paho's own reconnect backoff: capped exponential; paho adds no jitter,
        # so the first delay is randomised per client to spread a store's reconnect storm.
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        if self.url.username:
            client.username_pw_set(self.url.username, self.url.password)
        if self.url.tls:
            ca, cert, key = self._tls
            client.tls_set(
                ca_certs=ca, certfile=cert, keyfile=key, tls_version=ssl.PROTOCOL_TLS_CLIENT
            )
        if self._will:
            will_props: Properties | None = None
            if self._will.user_properties and v5:
                will_props = Properties(PacketTypes.WILLMESSAGE)  # type: ignore[no-untyped-call]
                will_props.UserProperty = list(self._will.user_properties.items())
            client.will_set(
                self._will.topic,
                self._will.payload,
                qos=self._will.qos,
                retain=self._will.retain,
                properties=will_props,
            )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self._client = client
        connect_kwargs: dict[str, Any] = {}
        if v5:
            connect_props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            if not self._clean_session:
                connect_props.SessionExpiryInterval = self._session_expiry_s
            connect_kwargs = {"clean_start": self._clean_session, "properties": connect_props}
        try:
            client.connect_async(self.url.host, self.url.port, keepalive=30, **connect_kwargs)
            client.loop_start()
            async with asyncio.timeout(timeout):
                await self._connected.wait()
        except (TimeoutError, OSError) as exc:
            client.loop_stop()
            self._client = None
            raise MqttError(
                f"could not connect to MQTT broker {self.url.host}:{self.url.port}: {exc!r}"
            ) from exc

    async def disconnect(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        client.disconnect()
        await asyncio.to_thread(client.loop_stop)
        with self._lock:
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(MqttError("client disconnected before PUBACK"))
            self._pending.clear()

    @property
    def is_connected(self) -> bool:
        return self._connected.is_set()

    # operations ----------------------------------------------------------------
    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        user_properties: dict[str, str] | None = None,
    ) -> None:
        """Publish and, for QoS ≥ 1, wait for the broker's acknowledgement."""
        client = self._require()
        assert self._loop is not None
        fut: asyncio.Future[None] = self._loop.create_future()
        props: Properties | None = None
        if user_properties and self._protocol == 5:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.UserProperty = list(user_properties.items())
        info = client.publish(topic, payload, qos=qos, retain=retain, properties=props)
        if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
            raise MqttError(f"publish to {topic!r} failed: {paho.error_string(info.rc)}")
        if qos == 0:
            return
        with self._lock:
            if info.mid in self._early:
                self._early.discard(info.mid)
                return
            self._pending[info.mid] = fut
        try:
            async with asyncio.timeout(self._publish_timeout):
                await fut
        except TimeoutError as exc:
            with self._lock:
                self._pending.pop(info.mid, None)
            raise MqttError(f"no PUBACK for {topic!r} within {self._publish_timeout}s") from exc

    async def subscribe(self, topic_filter: str, qos: int = 1, timeout: float = 10.0) -> None:
        """Subscribe and return once the broker's SUBACK grants it (raises if refused).

        After this returns, every message the broker routes to ``topic_filter`` reaches
        :attr:`messages`: callers need no sleep before publishing to it.
        """
        client = self._require()
        assert self._loop is not None
        self._subscriptions[topic_filter] = qos
        fut: asyncio.Future[list[ReasonCode]] = self._loop.create_future()
        result, mid = client.subscribe(topic_filter, qos=qos)
        if result != paho.MQTT_ERR_SUCCESS or mid is None:
            raise MqttError(f"subscribe {topic_filter!r} failed: {paho.error_string(result)}")
        with self._lock:
            early = self._early_sub.pop(mid, None)
            if early is None:
                self._pending_sub[mid] = fut
        try:
            if early is not None:
                codes = early
            else:
                async with asyncio.timeout(timeout):
                    codes = await fut
        except TimeoutError as exc:
            with self._lock:
                self._pending_sub.pop(mid, None)
            raise MqttError(f"no SUBACK for {topic_filter!r} within {timeout}s") from exc
        refused = [code for code in codes if code.is_failure]
        if refused:
            self._subscriptions.pop(topic_filter, None)
            raise MqttError(f"subscribe {topic_filter!r} refused by the broker: {refused[0]}")

    def ack(self, message: Message) -> None:
        """Acknowledge a QoS 1 message received with ``manual_ack=True``."""
        client = self._require()
        if self._manual_ack and message.qos > 0:
            client.ack(message.mid, message.qos)

    def _require(self) -> paho.Client:
        if self._client is None:
            raise MqttError("client is not connected: use 'async with MqttClient(...)'")
        return self._client

    # paho callbacks (network thread) -------------------------------------------
    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(fn, *args)

    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            log.warning("MQTT connect to %s refused: %s", self.url.host, reason_code)
            return
        # Re-subscribe after every reconnect: a clean session forgets subscriptions. Nobody
        # waits for these SUBACKs; their mids are noted so _on_subscribe does not keep them.
        for flt, qos in list(self._subscriptions.items()):
            _result, mid = client.subscribe(flt, qos=qos)
            if mid is not None:
                with self._lock:
                    self._resubscribe_mids.add(mid)
        self._call(self._set_connected)

    def _set_connected(self) -> None:
        self._connected.set()
        for hook in self.on_connect_hooks:
            hook()

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.reconnects += 1
        if self._client is not None:
            log.warning(
                "MQTT connection to %s lost (%s); paho reconnects", self.url.host, reason_code
            )
        self._call(self._connected.clear)

    def _on_publish(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._lock:
            fut = self._pending.pop(mid, None)
            if fut is None:
                self._early.add(mid)
                return
        self._call(_resolve, fut)

    def _on_subscribe(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        with self._lock:
            if mid in self._resubscribe_mids:
                self._resubscribe_mids.discard(mid)
                if any(code.is_failure for code in reason_codes):
                    log.warning("MQTT re-subscribe refused after reconnect: %s", reason_codes)
                return
            fut = self._pending_sub.pop(mid, None)
            if fut is None:
                self._early_sub[mid] = list(reason_codes)
                return
        self._call(_resolve_with, fut, list(reason_codes))

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        props = getattr(msg, "properties", None)
        user = getattr(props, "UserProperty", None) or ()
        message = Message(
            topic=msg.topic,
            payload=bytes(msg.payload),
            qos=msg.qos,
            retain=bool(msg.retain),
            mid=msg.mid,
            user_properties=tuple((str(k), str(v)) for k, v in user),
        )
        self._call(self._enqueue, message)

    def _enqueue(self, message: Message) -> None:
        try:
            self.messages.put_nowait(message)
        except asyncio.QueueFull:
            # Not acked, so the broker redelivers it after a reconnect; count and say so.
            log.error(
                "MQTT receive queue full (%d); dropping %s unacked", self._queue_size, message.topic
            )


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _resolve_with(fut: asyncio.Future[list[ReasonCode]], codes: list[ReasonCode]) -> None:
    if not fut.done():
        fut.set_result(codes)
