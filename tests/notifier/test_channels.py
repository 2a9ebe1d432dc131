"""Channels: the scheme registry, signed webhooks with backoff, and Web Push over loopback.

The webhook receiver and the push service are real HTTPS servers on 127.0.0.1 (a test CA
signed their certificate): the receiver checks the HMAC signature the way a clienteling
app would; the push service checks the VAPID JWT and decrypts the aes128gcm body with the
subscription's private key, as a browser's push service and the browser would. Loopback
is refused by default; the tests that deliver allow 127.0.0.0/8, as an operator would
allow an internal relay's network.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import os
import random
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import http_ece
import pytest
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import given
from hypothesis import strategies as st

from contracts.services import ServiceSettings
from notifier import egress
from notifier.channels import (
    DELIVERY_HEADER,
    KEY_ID_HEADER,
    MAX_RESPONSE_READ,
    Backoff,
    Channels,
    Destination,
    MqttChannel,
    Notice,
    VapidKeys,
    WebhookChannel,
    WebPushChannel,
    b64url,
    unb64url,
    verify_webhook,
)
from notifier.destinations import Destinations
from notifier.directory import Directory
from notifier.exceptions import InvalidInput, NotifierError, TooManyDestinations, UnknownScheme
from notifier.room_desk import HoldFor, RoomDesk
from notifier.rooms import RoomOp
from notifier.service import Notifier
from notifier.settings import NotifierSettings
from notifier.web.app import serve
from tests.kit.clock import FakeUtcClock
from tests.notifier.conftest import FAST_HASHER, Tls, make_alert

SECRET = "a-webhook-secret-of-some-length"
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


# --- unit: the registry and the backoff ----------------------------------------------------
def test_scheme_picks_the_channel_and_unknown_schemes_are_named() -> None:
    session = aiohttp.ClientSession  # never called: only the registry is exercised
    webhook = WebhookChannel(session)  # type: ignore[arg-type]
    mqtt = MqttChannel(None, None)  # type: ignore[arg-type]
    channels = Channels(webhook, mqtt)
    assert channels.for_url("https://hooks.example/x") is webhook
    assert channels.for_url("HTTP://hooks.example/x") is webhook
    assert channels.for_url("mqtt:") is mqtt
    with pytest.raises(UnknownScheme) as info:
        channels.for_url("ftp://files.example/x")
    assert "no delivery channel for ftp:" in str(info.value)
    assert "https" in str(info.value)


@given(st.integers(1, 30), st.integers(0, 2**32))
def test_backoff_is_jittered_below_its_cap(attempt: int, seed: int) -> None:
    backoff = Backoff(attempts=8, base_s=0.5, cap_s=4.0)
    delay = backoff.delay(attempt, random.Random(seed))
    assert 0 <= delay <= min(4.0, 0.5 * 2 ** (attempt - 1))


def test_destination_redacts_queries_and_keeps_secrets_out_of_listings() -> None:
    dest = Destination("https://hooks.example/in?token=hidden", id="wh-1", secret=SECRET)
    assert dest.redacted() == "https://hooks.example/in"
    assert "hidden" not in json.dumps(dest.public())
    assert SECRET not in json.dumps(dest.public())
    assert Destination.from_json(dest.as_json()) == dest


# --- a webhook receiver on loopback ------------------------------------------------------------
@dataclass
class Receiver:
    """Answers with the queued statuses (then 200), and checks every signature."""

    statuses: list[int] = field(default_factory=list)
    seen: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        ok = verify_webhook(SECRET, headers, body, now=_now_s(headers))
        self.seen.append(
            {
                "valid": ok,
                "key_id": headers.get(KEY_ID_HEADER),
                "delivery": headers.get(DELIVERY_HEADER),
                "body": json.loads(body),
            }
        )
        if not ok:
            return web.Response(status=401)
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(status=status, text="ok" if status == 200 else "busy")


def _now_s(headers: dict[str, str]) -> float:
    # The injected clock signs with its own time; the receiver checks against that time.
    return float(headers.get("X-Proxima-Timestamp", "0"))


async def _serve(route: str, handler: Any, tls: Tls | None) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post(route, handler)
    runner, port = await serve(app, "127.0.0.1", 0, tls.server_context() if tls else None)
    return runner, f"{'https' if tls else 'http'}://127.0.0.1:{port}"


@pytest.fixture
async def receiver(tls: Tls) -> AsyncIterator[Receiver]:
    rec = Receiver()
    runner, origin = await _serve("/{path:.*}", rec.handle, tls)
    rec.url = f"{origin}/hook"
    try:
        yield rec
    finally:
        await runner.cleanup()


@pytest.fixture
async def plain_receiver() -> AsyncIterator[Receiver]:
    """A receiver on plain http, which nothing may be sent to."""
    rec = Receiver()
    runner, origin = await _serve("/{path:.*}", rec.handle, None)
    rec.url = f"{origin}/hook"
    try:
        yield rec
    finally:
        await runner.cleanup()


@pytest.fixture
async def http(tls: Tls) -> AsyncIterator[aiohttp.ClientSession]:
    """The notifier's own client, allowed to reach the loopback test servers."""
    async with egress.client_session(egress.EgressPolicy((LOOPBACK,)), ca_file=tls.ca_file) as s:
        yield s


@pytest.fixture
async def guarded(tls: Tls) -> AsyncIterator[aiohttp.ClientSession]:
    """The notifier's client as shipped: public addresses only (it trusts the test CA)."""
    async with egress.client_session(ca_file=tls.ca_file) as session:
        yield session


class Pauses:
    def __init__(self) -> None:
        self.taken: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.taken.append(seconds)


@pytest.mark.integration
async def test_webhook_is_signed_and_retried_with_capped_backoff(
    receiver: Receiver, http: aiohttp.ClientSession, clock: FakeUtcClock
) -> None:
    pauses = Pauses()
    channel = WebhookChannel(lambda: http, backoff=Backoff(5, 0.5, 1.0), clock=clock, sleep=pauses)
    receiver.statuses = [503, 429]
    dest = Destination(receiver.url, id="wh-1", secret=SECRET, key_id="k7")
    notice = Notice(make_alert(store_id="s1"), "maria", "primary")
    receipt = await channel.send(dest, notice)
    assert receipt.ok
    assert receipt.attempts == 3
    assert receipt.status == 200
    assert [s["valid"] for s in receiver.seen] == [True, True, True]
    assert {s["delivery"] for s in receiver.seen} == {notice.delivery_id}
    assert receiver.seen[0]["key_id"] == "k7"
    assert receiver.seen[0]["body"]["alert"]["alert_id"] == str(notice.alert.alert_id)
    assert len(pauses.taken) == 2
    assert all(0 <= p <= 1.0 for p in pauses.taken)


@pytest.mark.integration
async def test_webhook_gives_up_on_a_client_error_and_on_a_wrong_secret(
    receiver: Receiver, http: aiohttp.ClientSession, clock: FakeUtcClock
) -> None:
    pauses = Pauses()
    channel = WebhookChannel(lambda: http, backoff=Backoff(4, 0.1, 0.2), clock=clock, sleep=pauses)
    notice = Notice(make_alert(store_id="s1"), None, "store")
    receiver.statuses = [400]
    refused = await channel.send(Destination(receiver.url, secret=SECRET), notice)
    assert not refused.ok
    assert refused.attempts == 1
    assert refused.status == 400
    forged = await channel.send(Destination(receiver.url, secret="x" * 20), notice)
    assert not forged.ok
    assert forged.status == 401
    assert [s["valid"] for s in receiver.seen] == [True, False]
    assert pauses.taken == []


@pytest.mark.integration
async def test_webhook_to_nowhere_fails_after_every_attempt(
    http: aiohttp.ClientSession, clock: FakeUtcClock
) -> None:
    pauses = Pauses()
    channel = WebhookChannel(lambda: http, backoff=Backoff(3, 0.1, 0.2), clock=clock, sleep=pauses)
    receipt = await channel.send(
        Destination("https://127.0.0.1:9/hook", secret=SECRET),
        Notice(make_alert(store_id="s1"), "maria", "primary"),
    )
    assert not receipt.ok
    assert receipt.attempts == 3
    assert receipt.status is None
    assert "ClientConnectorError" in receipt.detail or "Connect" in receipt.detail
    assert len(pauses.taken) == 2


# --- a push service and a browser on loopback ------------------------------------------------
class Browser:
    """A subscription's key pair and auth secret, as a browser holds them."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.auth = os.urandom(16)

    @property
    def p256dh(self) -> str:
        return b64url(
            self.key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        )

    def decrypt(self, body: bytes) -> dict[str, Any]:
        plain = http_ece.decrypt(
            body, private_key=self.key, auth_secret=self.auth, version="aes128gcm"
        )
        result: dict[str, Any] = json.loads(plain)
        return result


def check_vapid(authorization: str, origin: str, now_s: float) -> dict[str, Any]:
    """RFC 8292: ``vapid t=JWT,k=KEY``; an ES256 JWT by KEY, for this origin, not expired."""
    scheme, _, params = authorization.partition(" ")
    assert scheme == "vapid", authorization
    parts = dict(p.split("=", 1) for p in params.split(","))
    header_b64, claims_b64, sig_b64 = parts["t"].split(".")
    assert json.loads(unb64url(header_b64)) == {"typ": "JWT", "alg": "ES256"}
    signature = unb64url(sig_b64)
    assert len(signature) == 64
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(parts["k"]))
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    public.verify(der, f"{header_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
    claims: dict[str, Any] = json.loads(unb64url(claims_b64))
    assert claims["aud"] == origin
    assert claims["exp"] > now_s
    assert claims["sub"].startswith("mailto:")
    claims["k"] = parts["k"]
    return claims


@dataclass
class PushService:
    browsers: dict[str, Browser] = field(default_factory=dict)
    received: list[dict[str, Any]] = field(default_factory=list)
    origin: str = ""
    now_s: float = 0.0
    gone: set[str] = field(default_factory=set)

    async def handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name in self.gone:
            return web.Response(status=410)
        try:
            claims = check_vapid(request.headers["Authorization"], self.origin, self.now_s)
        except (AssertionError, InvalidSignature, KeyError, ValueError) as exc:
            return web.Response(status=403, text=f"bad VAPID: {exc!r}")
        if request.headers.get("Content-Encoding") != "aes128gcm":
            return web.Response(status=400, text="not aes128gcm")
        payload = self.browsers[name].decrypt(await request.read())
        self.received.append(
            {"name": name, "payload": payload, "claims": claims, "ttl": request.headers.get("TTL")}
        )
        return web.Response(status=201)

    def endpoint(self, name: str) -> str:
        self.browsers.setdefault(name, Browser())
        return f"{self.origin}/push/{name}"


@pytest.fixture
async def push_service(clock: FakeUtcClock, tls: Tls) -> AsyncIterator[PushService]:
    service = PushService(now_s=clock.now.timestamp())
    runner, service.origin = await _serve("/push/{name}", service.handle, tls)
    try:
        yield service
    finally:
        await runner.cleanup()


@pytest.mark.integration
async def test_web_push_is_vapid_signed_and_decrypts_with_the_subscription_key(
    push_service: PushService,
    http: aiohttp.ClientSession,
    redis: Any,
    services: ServiceSettings,
    clock: FakeUtcClock,
) -> None:
    keys = VapidKeys(redis, services.redis_prefix)
    channel = WebPushChannel(lambda: http, keys, "mailto:ops@example.com", clock=clock)
    endpoint = push_service.endpoint("phone")
    browser = push_service.browsers["phone"]
    dest = Destination(f"webpush:{endpoint}", p256dh=browser.p256dh, auth=b64url(browser.auth))
    alert = make_alert(store_id="s1", title="Ana is here", priority="high")
    receipt = await channel.send(dest, Notice(alert, "maria", "primary"))
    assert receipt.ok, receipt
    assert receipt.status == 201
    (got,) = push_service.received
    assert got["payload"]["alert_id"] == str(alert.alert_id)
    assert got["payload"]["title"] == "Ana is here"
    # The key the push service saw is the one the console subscribes with, from any instance.
    assert got["claims"]["k"] == await VapidKeys(redis, services.redis_prefix).public_key()
    push_service.gone.add("phone")
    gone = await channel.send(dest, Notice(alert, "maria", "primary"))
    assert gone.gone
    assert not gone.ok


# --- configuration: validated, per store and per associate ------------------------------------
async def test_destinations_reject_bad_input_with_the_reason(
    directory: Directory, redis: Any, services: ServiceSettings
) -> None:
    await directory.add("s1", "Maria", "password-1", associate_id="maria")
    dests = Destinations(redis, services.redis_prefix, directory)
    cases = [
        (dests.add_webhook("s1", "ftp://x/y"), "url: 'ftp://x/y' must start with https://"),
        (dests.add_webhook("s1", "http://h.example/"), "must use https:// (plain http is refused)"),
        (dests.add_webhook("s1", "https:///nohost"), "has no host"),
        (dests.add_webhook("s1", "https://u:p@h.example/"), "must not carry a user name"),
        (dests.add_webhook("s1", "https://h.example/", secret="short"), "secret: must be at least"),
        (
            dests.add_webhook("s1", "https://h.example/", associate_id="ghost"),
            "no associate 'ghost'",
        ),
        (dests.add_push("s1", "maria", "http://push.example/x", "AA", "AA"), "must use https://"),
        (dests.add_push("s1", "maria", "https://push.example/x", "AAAA", "AA"), "keys.p256dh"),
    ]
    for coro, message in cases:
        with pytest.raises(NotifierError) as info:
            await coro
        assert message in str(info.value), (message, str(info.value))
    for i in range(10):
        await dests.add_webhook("s1", f"https://h.example/{i}")
    with pytest.raises(TooManyDestinations):
        await dests.add_webhook("s1", "https://h.example/11")
    assert len(await dests.list("s1")) == 10
    assert await dests.list("s1", "maria") == []


@pytest.mark.integration
async def test_a_webhook_says_whether_the_customers_room_is_ready(
    services: ServiceSettings, clock: FakeUtcClock, receiver: Receiver, tls: Tls
) -> None:
    settings = NotifierSettings(
        http_port=0, webhook_allow_networks="127.0.0.0/8", webhook_ca_file=tls.ca_file
    )
    n = Notifier(services, settings=settings, clock=clock)
    n.directory.hasher = FAST_HASHER
    try:
        maria = await n.directory.add("s1", "Maria", "password-1", associate_id="maria")
        await n.destinations.add_webhook("s1", receiver.url, secret=SECRET)
        desk = RoomDesk(n.lifecycle)
        await desk.set_layout("s1", {"2": "Room 2"})
        on_her_way = make_alert(store_id="s1", kind="approach", title="Ana is on her way")
        await n.lifecycle.create(on_her_way)
        hold = HoldFor(alert_id=str(on_her_way.alert_id))
        await desk.act("s1", "2", RoomOp.HOLD, maria, hold)
        await desk.act("s1", "2", RoomOp.READY, maria, None)
        arrival = make_alert(store_id="s1", title="Ana is at the entrance")
        unrelated = make_alert(store_id="s1", customer_id="cust-bia", title="Bia is here")
        async with n.mqtt:
            await n.handle(arrival.to_json())
            await n.handle(unrelated.to_json())
            assert await n.send_outbox.drain_once(n.dispatcher.send_external, block_ms=10) == 2
    finally:
        await n.close()
    bodies = {s["body"]["alert"]["title"]: s["body"] for s in receiver.seen}
    assert bodies["Ana is at the entrance"]["room"] == {
        "room_id": "2",
        "name": "Room 2",
        "state": "ready",
        "ready": True,
        "label": "Room 2 ready",
    }
    assert bodies["Bia is here"]["room"] is None
    assert all(s["valid"] for s in receiver.seen)
    assert "cust-ana" not in json.dumps(bodies)


@pytest.mark.integration
async def test_a_new_alert_reaches_every_channel_with_receipts(
    services: ServiceSettings,
    clock: FakeUtcClock,
    receiver: Receiver,
    push_service: PushService,
    tls: Tls,
) -> None:
    settings = NotifierSettings(
        http_port=0, webhook_allow_networks="127.0.0.0/8", webhook_ca_file=tls.ca_file
    )
    n = Notifier(services, settings=settings, clock=clock)
    n.directory.hasher = FAST_HASHER
    await n.directory.add("s1", "Maria", "password-1", associate_id="maria")
    await n.directory.set_on_shift("s1", "maria", True)
    store_hook = await n.destinations.add_webhook("s1", receiver.url, secret=SECRET)
    await n.destinations.add_webhook("s1", receiver.url, associate_id="maria", secret=SECRET)
    endpoint = push_service.endpoint("maria-phone")
    browser = push_service.browsers["maria-phone"]
    push = await n.destinations.add_push(
        "s1", "maria", endpoint, browser.p256dh, b64url(browser.auth)
    )
    alert = make_alert(store_id="s1", target={"associate_id": "maria"})
    try:
        async with n.mqtt:
            await n.handle(alert.to_json())
            # Webhooks and pushes wait in the outbox; one drain sends them.
            assert await n.send_outbox.drain_once(n.dispatcher.send_external, block_ms=10) == 3
            push_service.gone.add("maria-phone")
            await n.dispatcher.deliver(
                (await n.lifecycle.get(str(alert.alert_id))),  # type: ignore[arg-type]
                ["maria"],
                "zone",
                reason="escalated",
            )
            await n.send_outbox.drain_once(n.dispatcher.send_external, block_ms=10)
        assert [s["body"]["associate_id"] for s in receiver.seen[:2]] in (
            [None, "maria"],
            ["maria", None],
        )
        assert all(s["valid"] for s in receiver.seen)
        assert push_service.received[0]["payload"]["alert_id"] == str(alert.alert_id)
        receipts = await n.lifecycle.receipts(str(alert.alert_id))
        ok = {(r["channel"], r["associate_id"]) for r in receipts if r["ok"]}
        assert {
            ("mqtt", None),
            ("mqtt", "maria"),
            ("sse", "maria"),
            ("webhook", None),
            ("webhook", "maria"),
            ("webpush", "maria"),
        } <= ok
        # The push service said the subscription is gone: it is removed, the webhooks stay.
        assert [d.id for d in await n.destinations.list("s1", "maria")] != []
        assert push.id not in [d.id for d in await n.destinations.list("s1", "maria")]
        assert [d.id for d in await n.destinations.list("s1")] == [store_hook.id]
        assert (
            n.metrics.value(
                "proxima_notifier_channel_sends_total", channel="webpush", result="gone"
            )
            == 1
        )
    finally:
        await n.close()


def test_b64url_round_trip() -> None:
    data = os.urandom(33)
    assert unb64url(b64url(data)) == data
    assert "=" not in b64url(data)
    assert base64.urlsafe_b64decode(b64url(data) + "===") == data


# --- webhooks cannot reach inside: https only, public addresses, bounded replies -----------
def _notice() -> Notice:
    return Notice(make_alert(store_id="s1"), "maria", "primary")


@pytest.mark.integration
async def test_plain_http_is_refused_when_added_and_when_sent(
    plain_receiver: Receiver,
    http: aiohttp.ClientSession,
    clock: FakeUtcClock,
    directory: Directory,
    redis: Any,
    services: ServiceSettings,
) -> None:
    dests = Destinations(redis, services.redis_prefix, directory)
    with pytest.raises(InvalidInput) as info:
        await dests.add_webhook("s1", plain_receiver.url)
    assert "must use https://" in str(info.value)
    # A webhook stored before https was required is refused when sent, not retried.
    channel = WebhookChannel(lambda: http, clock=clock, sleep=Pauses())
    receipt = await channel.send(Destination(plain_receiver.url, secret=SECRET), _notice())
    assert (receipt.ok, receipt.attempts, receipt.detail) == (False, 0, "refused: not https://")
    assert plain_receiver.seen == []


@pytest.mark.integration
@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("127.0.0.1", "127.0.0.1 is loopback"),
        ("localhost", "is loopback"),  # a name: checked after it is resolved
        ("[::ffff:127.0.0.1]", "7f00:1 is loopback"),  # IPv4 inside IPv6
        ("169.254.169.254", "169.254.169.254 is link-local"),  # cloud metadata
        ("10.1.2.3", "10.1.2.3 is private"),
        ("192.168.0.10", "192.168.0.10 is private"),
    ],
)
async def test_webhooks_to_non_public_addresses_are_refused_at_connect_time(
    receiver: Receiver, guarded: aiohttp.ClientSession, clock: FakeUtcClock, host: str, reason: str
) -> None:
    port = receiver.url.split(":")[2].split("/")[0]
    pauses = Pauses()
    channel = WebhookChannel(
        lambda: guarded, backoff=Backoff(2, 0.1, 0.2), timeout_s=5, clock=clock, sleep=pauses
    )
    receipt = await channel.send(
        Destination(f"https://{host}:{port}/hook", secret=SECRET), _notice()
    )
    assert not receipt.ok
    assert reason in receipt.detail
    assert "not a public address" in receipt.detail
    assert receiver.seen == []


@pytest.mark.integration
async def test_the_notifier_refuses_loopback_unless_its_network_is_allowed(
    services: ServiceSettings, clock: FakeUtcClock, receiver: Receiver, tls: Tls
) -> None:
    dest = Destination(receiver.url, secret=SECRET)
    shipped = Notifier(services, settings=NotifierSettings(webhook_ca_file=tls.ca_file))
    allowed = Notifier(
        services,
        settings=NotifierSettings(
            webhook_ca_file=tls.ca_file, webhook_allow_networks="127.0.0.1/32"
        ),
    )
    try:
        refused = await shipped.channels.for_url(dest.url).send(dest, _notice())
        assert (refused.ok, refused.attempts) == (False, 1)
        assert "refused: 127.0.0.1 is loopback" in refused.detail
        assert receiver.seen == []
        sent = await allowed.channels.for_url(dest.url).send(dest, _notice())
        assert sent.ok, sent
        assert len(receiver.seen) == 1
    finally:
        await shipped.close()
        await allowed.close()


def test_allowed_networks_are_checked_when_configured() -> None:
    with pytest.raises(ValueError, match=re.escape("'10.0.0.1/8' is not a network")):
        NotifierSettings(webhook_allow_networks="10.0.0.0/8, 10.0.0.1/8")
    assert NotifierSettings(webhook_allow_networks=" 10.0.0.0/8 ,").webhook_networks == (
        ipaddress.ip_network("10.0.0.0/8"),
    )


@dataclass
class Chatty:
    """Answers 400 with a 64 MiB body, and counts what it managed to send."""

    total: int = 64 * 1024 * 1024
    sent: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(status=400)
        response.content_length = self.total
        chunk = b"internal-secret " * 4096
        try:
            await response.prepare(request)
            while self.sent < self.total:
                await response.write(chunk)
                self.sent += len(chunk)
        except ConnectionError:
            pass  # the client went away: what we want
        finally:
            self.done.set()
        return response


@pytest.mark.integration
async def test_a_reply_is_read_at_most_a_kilobyte_and_only_its_status_is_kept(
    http: aiohttp.ClientSession, clock: FakeUtcClock, tls: Tls
) -> None:
    chatty = Chatty()
    runner, origin = await _serve("/hook", chatty.handle, tls)
    try:
        channel = WebhookChannel(lambda: http, clock=clock, sleep=Pauses())
        receipt = await channel.send(Destination(f"{origin}/hook", secret=SECRET), _notice())
        async with asyncio.timeout(10):
            await chatty.done.wait()
    finally:
        await runner.cleanup()
    # The client stopped after MAX_RESPONSE_READ bytes; what the server got out before
    # noticing is what the socket buffers held, far from the 64 MiB it offered.
    assert MAX_RESPONSE_READ == 1024
    assert chatty.sent < 16 * 1024 * 1024
    assert (receipt.ok, receipt.status, receipt.detail) == (False, 400, "HTTP 400")
    assert "internal-secret" not in json.dumps(receipt.as_dict())


@pytest.mark.integration
async def test_receipts_name_only_the_host_of_a_destination(
    receiver: Receiver, http: aiohttp.ClientSession, clock: FakeUtcClock
) -> None:
    token = "T0AAAAAAA/B0BBBBBBB/ZZZZsecrettokenZZZZZZZZ"
    origin = receiver.url.rsplit("/", 1)[0]
    channel = WebhookChannel(lambda: http, backoff=Backoff(1, 0.1, 0.1), clock=clock)
    delivered = await channel.send(
        Destination(f"{origin}/services/{token}?k=v", secret=SECRET), _notice()
    )
    failed = await channel.send(
        Destination(f"https://127.0.0.1:9/services/{token}", secret=SECRET), _notice()
    )
    assert delivered.ok
    assert not failed.ok
    for receipt in (delivered, failed):
        assert receipt.destination == "127.0.0.1"
        shown = json.dumps(receipt.as_dict())
        assert "secrettoken" not in shown
        assert "services" not in shown


def test_a_webhook_carries_the_associates_view_of_the_alert() -> None:
    alert = make_alert(store_id="s1", visit_id="visit-ana-1")
    body = json.loads(Notice(alert, "maria", "primary").webhook_body())
    assert body["alert"] == json.loads(alert.view().to_json())
    assert not {"customer_id", "visit_id", "caused_by"} & set(body["alert"])
    assert b"cust-ana" not in Notice(alert, None, "store").webhook_body()
