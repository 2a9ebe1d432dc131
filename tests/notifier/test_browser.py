"""The associate console in headless Chromium (Debian's package, driven by Playwright).

Sign in, get a live alert, claim it and see the claim in a second associate's session;
an associate of another store sees nothing. Screenshots go to
``$PROXIMA_TEST_ARTIFACTS/notifier/`` (default ``artifacts/notifier/``), with the measured
delivery latencies in ``browser-figures.json`` (measured, never asserted).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from playwright.async_api import Browser, Page, async_playwright, expect

from notifier.directory import Directory
from notifier.lifecycle import Lifecycle
from notifier.settings import NotifierSettings
from notifier.web.app import serve
from stream.bookings import AppointmentBooking
from tests.kit.clock import FakeUtcClock
from tests.notifier.conftest import BOOKINGS_SECRET, BookingsApiServer, console_app, make_alert

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"width": 390, "height": 844}
PASSWORD = "correct-horse"
ARTIFACTS = Path(os.environ.get("PROXIMA_TEST_ARTIFACTS", "artifacts")) / "notifier"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.timeout(60),
    # `make test` installs Chromium and sets PROXIMA_REQUIRE_BROWSER=1, so there a missing
    # browser fails the run instead of skipping it quietly.
    pytest.mark.skipif(
        not CHROMIUM.exists() and os.environ.get("PROXIMA_REQUIRE_BROWSER") != "1",
        reason="browser tests need Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)",
    ),
]


@pytest.fixture
async def base_url(
    redis: aioredis.Redis, directory: Directory, lifecycle: Lifecycle, clock: FakeUtcClock
) -> AsyncIterator[str]:
    app = console_app(directory, lifecycle, clock)
    runner: web.AppRunner
    runner, port = await serve(app, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def booking_console_url(
    redis: aioredis.Redis,
    directory: Directory,
    lifecycle: Lifecycle,
    clock: FakeUtcClock,
    bookings_api: BookingsApiServer,
) -> AsyncIterator[str]:
    """The console connected to a real bookings API (in-process, real Redis)."""
    settings = NotifierSettings(
        bookings_api_url=bookings_api.url, bookings_api_secret=BOOKINGS_SECRET
    )
    app = console_app(directory, lifecycle, clock, settings)
    runner, port = await serve(app, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            await chromium.close()


async def sign_in(
    browser: Browser,
    base_url: str,
    store: str,
    who: str,
    init_script: str | None = None,
    timezone: str | None = None,
    locale: str | None = None,
) -> Page:
    context = await browser.new_context(
        viewport=PHONE, is_mobile=True, has_touch=True, timezone_id=timezone, locale=locale
    )
    if init_script is not None:
        await context.add_init_script(init_script)
    page = await context.new_page()
    await page.goto(base_url)
    await page.fill("#login-store", store)
    await page.fill("#login-associate", who)
    await page.fill("#login-password", PASSWORD)
    await page.click("#login-submit")
    # "live" once the snapshot has arrived: from here on every change is pushed.
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    return page


async def test_live_alert_claim_and_store_isolation(
    browser: Browser, base_url: str, directory: Directory, lifecycle: Lifecycle, store: str
) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await directory.add(store, "Maria Silva", PASSWORD, associate_id="maria")
    await directory.add(store, "Joao Costa", PASSWORD, associate_id="joao")
    await directory.add(store, "Bea Boss", PASSWORD, associate_id="boss", role="manager")
    await directory.add(f"{store}-b", "Eve Other", PASSWORD, associate_id="eve")

    maria = await sign_in(browser, base_url, store, "maria")
    joao = await sign_in(browser, base_url, store, "joao")
    boss = await sign_in(browser, base_url, store, "boss")
    eve = await sign_in(browser, base_url, f"{store}-b", "eve")
    await maria.click("#shift-toggle")
    await expect(maria.locator("#shift-toggle")).to_have_text("End shift")

    alert = make_alert(
        store_id=store,
        target={"associate_id": "maria"},
        title="Ana is at the entrance",
        fields={
            "name": "Ana Moreira",
            "tier": "gold",
            "sizes": {"dress": "38"},
            "wishlist": ["green linen dress"],
            "notes": "<img src=x onerror=alert(1)>",
        },
    )
    card = f'[data-alert-id="{alert.alert_id}"]'
    loop = asyncio.get_running_loop()
    started = loop.time()
    await lifecycle.create(alert)
    await expect(maria.locator(card)).to_be_visible()
    maria_latency = loop.time() - started
    await expect(joao.locator(card)).to_be_visible()
    joao_latency = loop.time() - started

    # The customer card: only the alert's fields, and markup in them stays text.
    await expect(maria.locator(f"{card} [data-field=initials]")).to_have_text("AM")
    await expect(maria.locator(f"{card} [data-field=sizes]")).to_have_text("dress 38")
    await expect(maria.locator(f"{card} [data-field=wishlist]")).to_have_text("green linen dress")
    await expect(maria.locator(f"{card} [data-field=notes]")).to_have_text(
        "<img src=x onerror=alert(1)>"
    )
    await expect(maria.locator(f"{card} .forme")).to_have_text("For you")
    await maria.screenshot(path=ARTIFACTS / "1-maria-alert.png", full_page=True)

    await maria.click(f'{card} button[data-action="claim"]')
    await expect(maria.locator(f"{card} [data-role=status]")).to_have_text("Claimed by you")
    await expect(joao.locator(f"{card} [data-role=status]")).to_have_text("Claimed by Maria Silva")
    await expect(joao.locator(f'{card} button[data-action="claim"]')).to_have_count(0)
    await maria.screenshot(path=ARTIFACTS / "2-maria-claimed.png", full_page=True)
    await joao.screenshot(path=ARTIFACTS / "3-joao-sees-claim.png", full_page=True)

    await expect(boss.locator("#stat-arrivals")).to_have_text("1")
    await expect(boss.locator("#stat-median")).not_to_have_text("-")
    await boss.screenshot(path=ARTIFACTS / "4-manager-view.png", full_page=True)

    await maria.click(f'{card} button[data-action="done"]')
    await expect(joao.locator(f"{card} [data-role=status]")).to_have_text("Done by Maria Silva")

    # Eve's store gets its own alert after ours: had ours reached her, it would be there.
    theirs = make_alert(
        store_id=f"{store}-b", title="Zoe is at the entrance", fields={"name": "Zoe"}
    )
    await lifecycle.create(theirs)
    await expect(eve.locator(f'[data-alert-id="{theirs.alert_id}"]')).to_be_visible()
    await expect(eve.locator(card)).to_have_count(0)
    await expect(eve.locator("text=Ana Moreira")).to_have_count(0)
    # And the API refuses her the alert outright.
    status = await eve.evaluate(
        "async (id) => (await fetch(`/api/alerts/${id}`)).status", str(alert.alert_id)
    )
    assert status == 404
    await eve.screenshot(path=ARTIFACTS / "5-other-store.png", full_page=True)

    figures = {
        "alert_to_card_visible_s": {"first_session": maria_latency, "second_session": joao_latency}
    }
    (ARTIFACTS / "browser-figures.json").write_text(json.dumps(figures, indent=2))


async def test_a_manager_sees_the_stores_gateways_flagged(
    browser: Browser,
    base_url: str,
    directory: Directory,
    lifecycle: Lifecycle,
    redis: aioredis.Redis,
    store: str,
) -> None:
    """One gateway online, one offline, one with a beacon's battery low (as the bridge
    records their signed statuses), and another store's gateway nobody here sees."""
    from datetime import UTC, datetime, timedelta

    from contracts.models import BeaconHealth, GatewayState, GatewayStatus

    now = datetime.now(UTC)
    statuses = [
        GatewayStatus(store_id=store, gateway_id="gw-door", state=GatewayState.ONLINE, at=now),
        GatewayStatus(
            store_id=store,
            gateway_id="gw-floor",
            state=GatewayState.OFFLINE,
            at=now - timedelta(minutes=5),
        ),
        GatewayStatus(
            store_id=store,
            gateway_id="gw-fitting",
            state=GatewayState.ONLINE,
            at=now,
            beacons=[
                BeaconHealth(address="CC:DD", beacon_id="fr-2", battery_mv=2100, last_seen=now)
            ],
        ),
        GatewayStatus(store_id=f"{store}-b", gateway_id="gw-x", state=GatewayState.ONLINE, at=now),
    ]
    for status in statuses:
        await redis.hset(
            f"{lifecycle.prefix}gateways",
            f"{status.store_id}/{status.gateway_id}",
            status.model_dump_json(by_alias=True),
        )
    await directory.add(store, "Bea Boss", PASSWORD, associate_id="boss", role="manager")
    await directory.add(store, "Maria Silva", PASSWORD, associate_id="maria")
    boss = await sign_in(browser, base_url, store, "boss")
    fleet = boss.locator("#fleet li")
    await expect(fleet).to_have_count(3)
    door = boss.locator('#fleet li[data-gateway="gw-door"]')
    await expect(door).to_have_attribute("data-state", "online")
    await expect(door).to_contain_text("ok")
    floor = boss.locator('#fleet li[data-gateway="gw-floor"]')
    await expect(floor).to_have_attribute("data-state", "offline")
    await expect(floor).to_have_class("flagged")
    fitting = boss.locator('#fleet li[data-gateway="gw-fitting"]')
    await expect(fitting).to_contain_text("beacon fr-2 battery 2100 mV")
    await expect(fitting).to_have_class("flagged")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await boss.screenshot(path=str(ARTIFACTS / "fleet.png"), full_page=True)
    maria = await sign_in(browser, base_url, store, "maria")  # not a manager: no fleet
    await expect(maria.locator("#manager")).to_be_hidden()


# Lets a test hold back a console's live updates, as a slow network would: with
# ``window.__feedPaused`` set, the page does not hear of changes made meanwhile.
PAUSABLE_FEED = """
(() => {
  const Real = window.EventSource;
  window.__feedPaused = false;
  window.EventSource = function (url, init) {
    const source = new Real(url, init);
    const add = source.addEventListener.bind(source);
    source.addEventListener = (type, fn, opts) => add(type, (ev) => {
      if (!window.__feedPaused || type === 'open' || type === 'error') fn(ev);
    }, opts);
    return source;
  };
})();
"""


async def test_an_associate_readies_room_2_and_the_arrival_says_so_while_a_second_cannot_hold_it(
    browser: Browser, base_url: str, directory: Directory, lifecycle: Lifecycle, store: str
) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await directory.add(store, "Maria Silva", PASSWORD, associate_id="maria")
    await directory.add(store, "Joao Costa", PASSWORD, associate_id="joao")
    await lifecycle.rooms.set_layout(store, {"1": "Room 1", "2": "Room 2"})
    maria = await sign_in(browser, base_url, store, "maria")
    joao = await sign_in(browser, base_url, store, "joao", init_script=PAUSABLE_FEED)

    on_her_way = make_alert(
        store_id=store,
        customer_id="cust-ana",
        kind="approach",
        target={"associate_id": "maria"},
        title="Ana is on her way",
        body="ready a fitting room: green linen dress 38",
        fields={"name": "Ana Moreira"},
    )
    await lifecycle.create(on_her_way)
    first = f'[data-alert-id="{on_her_way.alert_id}"]'
    room2 = '#rooms [data-room-id="2"]'
    await expect(maria.locator(first)).to_be_visible()
    await expect(joao.locator(first)).to_be_visible()
    await expect(joao.locator(f"{room2} [data-action=hold]")).to_be_visible()
    # From here on Joao's console does not hear of Maria's hold: it still shows room 2 free.
    await joao.evaluate("window.__feedPaused = true")

    await maria.select_option(f"{room2} select[data-role=hold-for]", str(on_her_way.alert_id))
    await maria.click(f"{room2} [data-action=hold]")
    await expect(maria.locator(f"{room2} [data-role=room-status]")).to_have_text(
        "Held · by you · for Ana Moreira"
    )
    await expect(maria.locator(f"{first} [data-role=room]")).to_have_text("Room 2 not ready yet")
    # She has a room now: room 1 no longer offers her (a customer has one room at a time).
    await expect(maria.locator('#rooms [data-room-id="1"] select')).to_have_count(0)

    await joao.click(f"{room2} [data-action=hold]")
    await expect(joao.locator("#toast")).to_have_text(
        "Room 2 is already held by Maria Silva: it cannot be held"
    )
    # The refusal reloads the rooms: room 2 shows Maria's hold and offers Joao nothing.
    await expect(joao.locator(f"{room2} [data-role=room-status]")).to_have_text(
        "Held · by Maria Silva · for Ana Moreira"
    )
    await expect(joao.locator(f"{room2} button")).to_have_count(0)
    await joao.screenshot(path=ARTIFACTS / "rooms-1-joao-refused.png", full_page=True)

    await maria.click(f"{room2} [data-action=ready]")
    await expect(maria.locator(f"{room2} [data-role=room-status]")).to_have_text(
        "Ready · by you · for Ana Moreira"
    )
    await expect(maria.locator(f"{first} [data-role=room]")).to_have_text("Room 2 ready")
    await expect(maria.locator("#rooms-today")).to_have_text("today: held 1 · ready 1 · used 0")

    # She arrives: the arrival alert is marked as it appears.
    arrival = make_alert(
        store_id=store,
        customer_id="cust-ana",
        target={"associate_id": "maria"},
        title="Ana is at the entrance",
        fields={"name": "Ana Moreira"},
    )
    await lifecycle.create(arrival)
    card = f'[data-alert-id="{arrival.alert_id}"]'
    await expect(maria.locator(f"{card} [data-role=room]")).to_have_text("Room 2 ready")
    await expect(maria.locator(f"{card} [data-role=room]")).to_have_attribute("data-ready", "yes")
    await maria.screenshot(path=ARTIFACTS / "rooms-2-maria-room-ready.png", full_page=True)
    assert "cust-ana" not in await maria.content()

    await maria.click(f"{card} button[data-action=claim]")
    await maria.click(f"{room2} [data-action=use]")
    await expect(maria.locator(f"{card} [data-role=room]")).to_have_text("Room 2 in use")
    await maria.click(f"{room2} [data-action=done]")
    await expect(maria.locator(f"{room2} [data-role=room-status]")).to_have_text("Free")
    await expect(maria.locator(f"{card} [data-role=room]")).to_have_count(0)
    await maria.click(f"{card} button[data-action=done]")

    # The manager's outcomes count the visit: greeted, the room ready before she came.
    await directory.add(store, "Bea Boss", PASSWORD, associate_id="boss", role="manager")
    boss = await sign_in(browser, base_url, store, "boss")
    await expect(boss.locator("#out-arrivals")).to_have_text("1")
    await expect(boss.locator("#out-claimed")).to_have_text("1")
    await expect(boss.locator("#out-unserved")).to_have_text("0")
    await expect(boss.locator("#out-rooms")).to_have_text("1 of 1")
    maria_row = boss.locator('#out-associates tr[data-associate="maria"] td')
    await expect(maria_row).to_have_text(["Maria Silva", "1", "1", re.compile(r"^\d+ s$")])
    await boss.click('#outcome-periods button[data-days="30"]')
    await expect(boss.locator("#outcome-csv-associates")).to_have_attribute(
        "href", "/api/outcomes.csv?days=30&rows=associates"
    )
    got = await boss.request.get(f"{base_url}/api/outcomes.csv?days=30&rows=associates")
    assert got.status == 200
    assert (await got.text()).splitlines()[1].startswith("maria,Maria Silva,1,1,")
    await boss.screenshot(path=ARTIFACTS / "rooms-3-manager-outcomes.png", full_page=True)


async def test_a_manager_books_changes_and_cancels_an_appointment(
    browser: Browser,
    booking_console_url: str,
    directory: Directory,
    store: str,
    bookings_api: BookingsApiServer,
) -> None:
    """Issue 14: the manager books an appointment for a customer in the console's form; it
    is listed, she moves it, then cancels it, each step read back from Redis through the
    stream's Bookings. A customer who is not enrolled is refused with the API's reason."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await directory.add(store, "Maria Silva", PASSWORD, associate_id="maria")
    await directory.add(store, "Bea Boss", PASSWORD, associate_id="boss", role="manager")
    await bookings_api.enroll("ana")
    boss = await sign_in(
        browser, booking_console_url, store, "boss", timezone="UTC", locale="en-GB"
    )
    await expect(boss.locator("#bookings-day")).to_have_text("2026-01-01 (UTC)")
    await expect(boss.locator("#bookings-status")).to_have_text("No bookings today.")
    # The associate list is the store's staff.
    await expect(boss.locator("#apt-associate option")).to_have_count(3)

    async def book(customer: str) -> None:
        await boss.fill("#apt-customer", customer)
        await boss.fill("#apt-at", "2026-01-01T15:00")
        await boss.fill("#apt-duration", "45")
        await boss.fill("#apt-purpose", "styling session")
        await boss.select_option("#apt-associate", "maria")
        await boss.fill("#apt-room", "2")
        await boss.click("#apt-submit")

    await book("nobody")
    await expect(boss.locator("#apt-error")).to_have_text(
        "the bookings API refused it: customer 'nobody' is not enrolled"
    )
    await book("ana")
    row = boss.locator("#bookings li.booking")
    await expect(row).to_have_count(1)
    await expect(row).to_contain_text("15:00 (45 min) · styling session · ana · with Maria Silva")
    await expect(row).to_contain_text("room 2")
    await expect(boss.locator("#apt-error")).to_have_text("")
    await boss.screenshot(path=ARTIFACTS / "bookings-1-booked.png", full_page=True)
    [stored] = await bookings_api.bookings.of_customer("ana")
    assert isinstance(stored, AppointmentBooking)
    assert (stored.store_id, stored.at.isoformat(), stored.associate_id, stored.room) == (
        store, "2026-01-01T15:00:00+00:00", "maria", "2",
    )  # fmt: skip

    await row.locator('[data-action="change"]').click()
    await expect(boss.locator("#apt-title")).to_have_text(f"Change {stored.booking_id}")
    await expect(boss.locator("#apt-at")).to_have_value("2026-01-01T15:00")
    await boss.fill("#apt-at", "2026-01-01T16:30")
    await boss.click("#apt-submit")
    await expect(row).to_contain_text("16:30 (45 min) · styling session")
    await expect(boss.locator("#apt-title")).to_have_text("Book an appointment")
    [moved] = await bookings_api.bookings.of_customer("ana")
    assert (moved.booking_id, moved.start.isoformat()) == (
        stored.booking_id, "2026-01-01T16:30:00+00:00",
    )  # fmt: skip
    await boss.screenshot(path=ARTIFACTS / "bookings-2-changed.png", full_page=True)

    cancel = row.locator('[data-action="cancel"]')
    await cancel.click()
    await expect(cancel).to_have_text("Tap again to cancel it")
    await cancel.click()
    await expect(row).to_have_count(0)
    await expect(boss.locator("#bookings-status")).to_have_text("No bookings today.")
    assert await bookings_api.bookings.of_customer("ana") == []
    await boss.screenshot(path=ARTIFACTS / "bookings-3-cancelled.png", full_page=True)
