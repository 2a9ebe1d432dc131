"""Telling the customer (issue 14): "your room is ready" through the store's messaging
webhook, only with ``room_messages`` consent; over real Redis and a real HTTPS receiver
on loopback (a test CA signed its certificate; the tests allow 127.0.0.0/8, as an operator
allows an internal relay's network), the CLI, and the consent decisions it relies on."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from typer.testing import CliRunner

from contracts.models import ConsentDecision, ConsentRecord
from contracts.services import ServiceSettings
from notifier.channels import DELIVERY_HEADER, KEY_ID_HEADER, TIMESTAMP_HEADER, verify_webhook
from notifier.cli import notifier_app
from notifier.directory import Associate
from notifier.exceptions import InvalidInput, NoMessagingHook
from notifier.lifecycle import Lifecycle
from notifier.messaging import METRIC, check_message
from notifier.purposes import Purposes
from notifier.room_desk import HoldFor, RoomDesk
from notifier.rooms import RoomOp
from notifier.service import Notifier
from notifier.settings import NotifierSettings
from notifier.web.app import serve
from tests.kit.clock import FakeUtcClock
from tests.notifier.conftest import FAST_HASHER, Tls, make_alert

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

SECRET = "the-messaging-systems-secret"
CUSTOMER = "cust-ana"


@dataclass
class Inbox:
    """The retailer's messaging system: records every request and checks its signature."""

    seen: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        now = float(headers.get(TIMESTAMP_HEADER, "0"))  # signed with the test's clock
        self.seen.append(
            {
                "valid": verify_webhook(SECRET, headers, body, now=now),
                "forged": verify_webhook("another-secret-entirely", headers, body, now=now),
                "key_id": headers.get(KEY_ID_HEADER),
                "delivery": headers.get(DELIVERY_HEADER),
                "body": json.loads(body),
            }
        )
        return web.Response(status=202)


@pytest.fixture
async def inbox(tls: Tls) -> AsyncIterator[Inbox]:
    box = Inbox()
    app = web.Application()
    app.router.add_post("/{path:.*}", box.handle)
    runner, port = await serve(app, "127.0.0.1", 0, tls.server_context())
    box.url = f"https://127.0.0.1:{port}/messages?token=t0ken"
    try:
        yield box
    finally:
        await runner.cleanup()


@pytest.fixture
async def notifier(
    services: ServiceSettings, clock: FakeUtcClock, tls: Tls, redis: aioredis.Redis
) -> AsyncIterator[Notifier]:
    """A notifier whose webhooks may reach loopback (``redis``: the namespace is dropped)."""
    settings = NotifierSettings(
        http_port=0,
        webhook_allow_networks="127.0.0.0/8",
        webhook_ca_file=tls.ca_file,
        webhook_attempts=2,
        webhook_backoff_s=0.01,
        webhook_backoff_cap_s=0.02,
    )
    n = Notifier(services, settings=settings, clock=clock)
    n.directory.hasher = FAST_HASHER
    try:
        yield n
    finally:
        await n.close()


@dataclass
class Store:
    id: str
    desk: RoomDesk
    maria: Associate


@pytest.fixture
async def shop(notifier: Notifier, store: str) -> Store:
    maria = await notifier.directory.add(store, "Maria Silva", "password-1", associate_id="maria")
    desk = RoomDesk(notifier.lifecycle, notifier.metrics)
    await desk.set_layout(store, {"2": "Room 2", "3": "Room 3"})
    return Store(store, desk, maria)


async def _consent(lifecycle: Lifecycle, customer: str, **decisions: bool) -> None:
    """The customer's whole consent as the stream publishes it (``room_messages@s1=``...)."""
    now = lifecycle.clock()
    record = ConsentRecord(
        customer_id=customer,
        consent={
            "arrival_alerts": ConsentDecision(granted=True, at=now),
            **{k: ConsentDecision(granted=v, at=now) for k, v in decisions.items()},
        },
        version=1,
    )
    await lifecycle.follow_consent(record)


async def _ready(n: Notifier, shop: Store, room: str = "2", customer: str = CUSTOMER) -> None:
    """An arrival of the customer; Maria holds the room for it, prepares it, readies it."""
    alert = make_alert(store_id=shop.id, customer_id=customer)
    await n.lifecycle.create(alert)
    await shop.desk.act(shop.id, room, RoomOp.HOLD, shop.maria, HoldFor(str(alert.alert_id)))
    await shop.desk.act(shop.id, room, RoomOp.PREPARE, shop.maria, None)
    await shop.desk.act(shop.id, room, RoomOp.READY, shop.maria, None)


async def _drain(n: Notifier) -> int:
    return await n.message_outbox.drain_once(n.messenger.send_entries, block_ms=10)


def _count(n: Notifier, result: str) -> float:
    return n.metrics.value(METRIC, result=result)


async def test_a_consenting_customer_gets_one_signed_message_naming_room_and_associate(
    notifier: Notifier, shop: Store, inbox: Inbox, clock: FakeUtcClock
) -> None:
    n = notifier
    await n.lifecycle.messaging.set(shop.id, inbox.url, secret=SECRET, key_id="msg1")
    await _consent(n.lifecycle, CUSTOMER, **{f"room_messages@{shop.id}": True})
    await _ready(n, shop)
    assert await _drain(n) == 1

    (got,) = inbox.seen
    assert (got["valid"], got["forged"], got["key_id"]) == (True, False, "msg1")
    body = got["body"]
    assert body == {
        "type": "room_ready",
        "delivery_id": got["delivery"],
        "store_id": shop.id,
        "customer_id": CUSTOMER,
        "room_id": "2",
        "room": "Room 2",
        "associate": "Maria Silva",
        "message": "Your fitting room (Room 2) is ready. Maria Silva will meet you.",
        "at": clock().isoformat(),
    }
    assert (_count(n, "queued"), _count(n, "sent"), _count(n, "skipped_no_consent")) == (1, 1, 0)
    receipts = await n.lifecycle.messaging.receipts(shop.id)
    assert [(r["result"], r["room"], r["status"]) for r in receipts] == [
        ("sent", "Room 2", 202),
        ("queued", "Room 2", None),
    ]
    assert CUSTOMER not in json.dumps(receipts)  # an operator sees rooms, not customers

    # Once per hold: the same ready hold is not told again, and nothing else is queued.
    room = await n.lifecycle.rooms.get(shop.id, "2")
    assert await n.lifecycle.messaging.room_ready(room, CUSTOMER, "Maria Silva") == "already_told"
    assert await _drain(n) == 0
    assert len(inbox.seen) == 1


async def test_a_new_hold_tells_her_again_with_the_stores_own_words(
    notifier: Notifier, shop: Store, inbox: Inbox
) -> None:
    """Released and held again is a new hold (perhaps another room): she is told again."""
    n = notifier
    await n.lifecycle.messaging.set(shop.id, inbox.url, secret=SECRET)
    await _consent(n.lifecycle, CUSTOMER, room_messages=True)
    await _ready(n, shop, "2")
    await shop.desk.act(shop.id, "2", RoomOp.RELEASE, shop.maria, None)
    await n.lifecycle.messaging.set(
        shop.id, inbox.url, secret=SECRET, message="Olá! {room} está pronto; {associate} vem já."
    )
    await _ready(n, shop, "3")
    while await _drain(n):
        pass
    assert [s["body"]["message"] for s in inbox.seen] == [
        "Your fitting room (Room 2) is ready. Maria Silva will meet you.",
        "Olá! Room 3 está pronto; Maria Silva vem já.",
    ]
    assert all(s["valid"] for s in inbox.seen)
    assert len({s["delivery"] for s in inbox.seen}) == 2


@pytest.mark.parametrize(
    ("decisions", "told"),
    [
        ({}, False),  # no decision: no
        ({"analytics": True}, False),  # another purpose does not count
        ({"room_messages": False}, False),  # revoked
        ({"room_messages": True, "room_messages@{store}": False}, False),  # the store's wins
        ({"room_messages": False, "room_messages@{store}": True}, True),
        ({"room_messages@elsewhere": True}, False),  # another store's
    ],
)
async def test_only_the_customers_room_messages_decision_for_the_store_lets_it_go(
    notifier: Notifier, shop: Store, inbox: Inbox, decisions: dict[str, bool], told: bool
) -> None:
    n = notifier
    await n.lifecycle.messaging.set(shop.id, inbox.url, secret=SECRET)
    await _consent(
        n.lifecycle, CUSTOMER, **{k.format(store=shop.id): v for k, v in decisions.items()}
    )
    await _ready(n, shop)
    await _drain(n)
    assert len(inbox.seen) == (1 if told else 0)
    assert _count(n, "sent") == (1 if told else 0)
    assert _count(n, "skipped_no_consent") == (0 if told else 1)
    if not told:
        (receipt,) = await n.lifecycle.messaging.receipts(shop.id)
        assert (receipt["result"], receipt["room"]) == ("skipped_no_consent", "Room 2")


async def test_a_revocation_after_queueing_wins_and_no_webhook_means_nothing(
    notifier: Notifier, shop: Store, inbox: Inbox, store: str
) -> None:
    n = notifier
    # No messaging webhook: nothing is queued, nothing counted, nothing recorded.
    await _consent(n.lifecycle, CUSTOMER, room_messages=True)
    await _ready(n, shop, "2")
    assert await _drain(n) == 0
    assert (_count(n, "queued"), _count(n, "skipped_no_consent")) == (0, 0)
    assert await n.lifecycle.messaging.receipts(store) == []

    # Queued with consent, revoked before it is sent: not sent.
    await shop.desk.act(shop.id, "2", RoomOp.RELEASE, shop.maria, None)
    await n.lifecycle.messaging.set(shop.id, inbox.url, secret=SECRET)
    await _ready(n, shop, "3")
    assert _count(n, "queued") == 1
    await _consent(n.lifecycle, CUSTOMER, room_messages=False)
    assert await _drain(n) == 1
    assert inbox.seen == []
    assert _count(n, "skipped_no_consent") == 1


async def test_egress_rules_apply_and_a_removed_webhook_is_a_failure(
    services: ServiceSettings,
    clock: FakeUtcClock,
    tls: Tls,
    redis: aioredis.Redis,
    store: str,
    inbox: Inbox,
) -> None:
    """As shipped (no allowed networks) a loopback receiver is refused on the socket."""
    n = Notifier(
        services, settings=NotifierSettings(http_port=0, webhook_ca_file=tls.ca_file), clock=clock
    )
    n.directory.hasher = FAST_HASHER
    try:
        maria = await n.directory.add(store, "Maria Silva", "password-1", associate_id="maria")
        shop = Store(store, RoomDesk(n.lifecycle, n.metrics), maria)
        await shop.desk.set_layout(store, {"2": "Room 2", "3": "Room 3"})
        await n.lifecycle.messaging.set(store, inbox.url, secret=SECRET)
        await _consent(n.lifecycle, CUSTOMER, room_messages=True)
        await _ready(n, shop, "2")
        assert await _drain(n) == 1
        assert inbox.seen == []
        (failed, _queued) = await n.lifecycle.messaging.receipts(store)
        assert failed["result"] == "failed"
        assert "127.0.0.1 is loopback" in failed["detail"]

        await shop.desk.act(store, "2", RoomOp.RELEASE, maria, None)
        await _ready(n, shop, "3")
        await n.lifecycle.messaging.remove(store)
        assert await _drain(n) == 1
        latest = (await n.lifecycle.messaging.receipts(store))[0]
        assert (latest["result"], latest["detail"]) == (
            "failed",
            "the store's messaging webhook was removed",
        )
        assert _count(n, "failed") == 2
    finally:
        await n.close()


async def test_forget_erases_her_decisions_and_her_waiting_message(
    notifier: Notifier,
    shop: Store,
    inbox: Inbox,
    redis: aioredis.Redis,
    services: ServiceSettings,
) -> None:
    n = notifier
    await n.lifecycle.messaging.set(shop.id, inbox.url, secret=SECRET)
    await _consent(n.lifecycle, CUSTOMER, room_messages=True, analytics=True)
    assert await n.lifecycle.purposes.decisions(CUSTOMER) == {
        "room_messages": True,
        "analytics": True,
    }
    await _ready(n, shop)  # queued, not sent yet
    await n.lifecycle.erase_customer(CUSTOMER)
    assert await n.lifecycle.purposes.decisions(CUSTOMER) == {}
    assert await _drain(n) == 0
    assert inbox.seen == []
    async for key in redis.scan_iter(match=f"{services.redis_prefix}*"):
        assert CUSTOMER not in key, key
        kind = await redis.type(key)
        if kind == "hash":
            held = json.dumps(await redis.hgetall(key))
        elif kind == "list":
            held = json.dumps(await redis.lrange(key, 0, -1))
        elif kind == "stream":
            held = json.dumps(await redis.xrange(key))
        elif kind == "string":
            held = json.dumps(await redis.get(key))
        else:
            continue
        assert CUSTOMER not in held, key


async def test_purposes_follow_whole_records_and_the_store_decision_wins(
    redis: aioredis.Redis, services: ServiceSettings, clock: FakeUtcClock
) -> None:
    purposes = Purposes(redis, services.redis_prefix)
    now = clock()
    record = ConsentRecord(
        customer_id="bia",
        consent={
            "room_messages": ConsentDecision(granted=True, at=now),
            "room_messages@s2": ConsentDecision(granted=False, at=now),
            "personalization": ConsentDecision(granted=True, at=now),  # not the notifier's
        },
        version=3,
    )
    await purposes.follow(record)
    assert await purposes.decisions("bia") == {"room_messages": True, "room_messages@s2": False}
    assert await purposes.allows("bia", "room_messages", "s1")
    assert not await purposes.allows("bia", "room_messages", "s2")
    assert not await purposes.allows("bia", "analytics", "s1")
    with pytest.raises(ValueError, match="does not follow 'personalization'"):
        await purposes.allows("bia", "personalization", "s1")
    # A later record is the whole state: what it leaves out is no longer decided.
    await purposes.follow(record.model_copy(update={"consent": {}}))
    assert await purposes.decisions("bia") == {}


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("", "must be 1-320 characters"),
        ("x" * 321, "must be 1-320 characters"),
        ("Hi {name}", "{name} is not a place the message can fill"),
        ("{room.__class__}", "{room.__class__} is not a place"),
        ("{room:>999}", "{room:>999} is not a place"),
        ("{room!r}", "{room!r} is not a place"),
        ("a { b", "write a literal brace as {{ or }}"),
    ],
)
def test_a_bad_message_template_is_refused_saying_why(template: str, reason: str) -> None:
    with pytest.raises(InvalidInput) as info:
        check_message(template)
    assert info.value.field == "message"
    assert reason in str(info.value)
    assert check_message(" {{Room}} {room}, {associate} ") == "{{Room}} {room}, {associate}"


# --- the CLI ---------------------------------------------------------------------------
@pytest.fixture
def runner(namespace: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("PROXIMA_NAMESPACE", namespace)
    return CliRunner()


def test_messaging_set_show_remove_and_bad_input_named(
    runner: CliRunner, redis: aioredis.Redis, store: str
) -> None:
    def run(*args: str) -> Any:
        return runner.invoke(notifier_app, ["messaging", *args, "--store", store])

    plain = run("set", "--url", "http://crm.example/messages")
    assert plain.exit_code == 2
    assert "url: 'http://crm.example/messages' must use https:// (plain http is refused)" in (
        plain.output
    )
    assert run("set", "--url", "ftp://crm.example/x").exit_code == 2
    short = run("set", "--url", "https://crm.example/m", "--secret", "short")
    assert (short.exit_code, "secret: must be at least 16 characters" in short.output) == (2, True)
    odd = run("set", "--url", "https://crm.example/m", "--message", "Hi {name}")
    assert odd.exit_code == 2
    assert "message: {name} is not a place the message can fill" in odd.output

    none = run("show")
    assert (none.exit_code, f"no messaging webhook in {store}" in none.output) == (0, True)

    made = run("set", "--url", "https://crm.example/m?token=abc", "--key-id", "k9")
    assert made.exit_code == 0, made.output
    shown_once = json.loads(made.output)
    assert len(shown_once["secret"]) >= 32
    assert (shown_once["url"], shown_once["key_id"]) == ("https://crm.example/m", "k9")

    shown = run("show")
    assert shown.exit_code == 0, shown.output
    hook = json.loads(shown.output.splitlines()[0])
    assert hook["message"] == "Your fitting room ({room}) is ready. {associate} will meet you."
    assert shown_once["secret"] not in shown.output
    assert "abc" not in shown.output

    assert run("remove").exit_code == 0
    again = run("remove")
    assert again.exit_code == 2
    assert f"store {store!r} has no messaging webhook" in again.output


async def test_removing_a_missing_webhook_is_named(notifier: Notifier, store: str) -> None:
    with pytest.raises(NoMessagingHook, match="has no messaging webhook"):
        await notifier.lifecycle.messaging.remove(store)
