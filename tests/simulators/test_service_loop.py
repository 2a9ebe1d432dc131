"""Issue 14's whole service loop through the real pipeline and a real browser.

A manager books Ana an appointment (``proxima appointments add``); her iPhone app reports
the store's geofence (a hand-written trace replayed through the ingest, the bridge, Kafka
and the stream worker): Maria's console gets "Ana is on the way"; she holds room 2 for it
and marks it ready while Joao's console cannot hold it; Ana's app then reports the floor
beacon (a second trace, 90 s later on the trace clock, the same visit): the arrival alert
says "Room 2 ready"; Maria claims it and closes it; the manager's outcomes count the visit
as greeted with its room ready first. bridge, worker and notifier are child processes on
real Mosquitto, Redis and Tansu (tests/simulators/test_end_to_end.py's ``_pipeline``).
"""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Browser, expect

from tests.conftest import Procs
from tests.notifier.test_browser import ARTIFACTS, PASSWORD, browser, sign_in
from tests.notifier.test_browser import pytestmark as browser_marks
from tests.simulators.test_app_replay import HAND_KEYS, PUBLIC
from tests.simulators.test_end_to_end import _pipeline, _published, _wait_processed

pytestmark = [*browser_marks[:2], pytest.mark.timeout(300), browser_marks[3]]
__all__ = ["browser"]  # the fixture, shared with the console's browser tests

DATA = Path(__file__).parent / "data"
APPROACH, ARRIVAL = DATA / "loop-approach.jsonl", DATA / "loop-arrival.jsonl"
STORE, ANA, DEVICE = "loop-store", "cust-loop-ana", "a1" * 16


async def _wait_serving(base_url: str, procs: Procs, timeout: float = 60) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(int(timeout / 0.25)):
            try:
                async with http.get(f"{base_url}/livez") as res:
                    if res.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.25)
    pytest.fail(f"the notifier did not serve {base_url}:\n{procs.log('notifier')[-2000:]}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_booked_customer_approaches_her_room_is_readied_and_her_visit_counted(
    procs: Procs, proxima_env: dict[str, str], browser: Browser
) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    services, _alerts, _events = await _pipeline(procs, proxima_env, "--port", str(port))
    base_url = f"http://127.0.0.1:{port}"
    await _wait_serving(base_url, procs)
    for who, name, role in (
        ("maria", "Maria Silva", "associate"),
        ("joao", "Joao Costa", "associate"),
        ("bea", "Bea Boss", "manager"),
    ):
        procs.run(f"staff-{who}", "associates", "add", "--store", STORE, "--name", name,
                  "--password", PASSWORD, "--role", role, "--id", who)  # fmt: skip
    procs.run("rooms", "notifier", "rooms", "set", "--store", STORE,
              "--room", "1=Room 1", "--room", "2=Room 2")  # fmt: skip
    procs.run("enroll", "customers", "enroll", ANA, "--identity-key", "55" * 16, "--name",
              "Ana Lima", "--visible", "name", "--visible", "appointment",
              "--consent", "arrival_alerts")  # fmt: skip
    procs.run("device", "customers", "device", ANA, DEVICE, "--public-key", PUBLIC[DEVICE])
    # The manager books her: an appointment at 11:10 (the traces' clock) with Maria.
    procs.run("book", "appointments", "add", ANA, "--store", STORE, "--at",
              "2026-02-01T11:10:00Z", "--purpose", "fitting", "--associate", "maria",
              "--room", "2")  # fmt: skip

    maria = await sign_in(browser, base_url, STORE, "maria")
    joao = await sign_in(browser, base_url, STORE, "joao")

    # She approaches: her app reports the geofence.
    out = procs.run("replay-1", "replay", str(APPROACH), "--speed", "max",
                    "--device-keys", str(HAND_KEYS))  # fmt: skip
    await _wait_processed(services, _published(out), procs, timeout=120)
    on_her_way = maria.locator("#feed [data-alert-id]", has_text="is on the way")
    await expect(on_her_way).to_have_count(1, timeout=30_000)
    # The OS reported the 100 m fence: ~1 min on foot.
    await expect(on_her_way.locator("h3")).to_have_text("Ana Lima is on the way (~1 min)")
    await expect(on_her_way).to_contain_text("Ana Lima")
    # Her appointment as an associate reads it (the time is the browser's local time).
    await expect(on_her_way.locator("[data-field=appointment]")).to_have_text(
        re.compile(r"^\d\d:\d\d( [AP]M)? · fitting, room 2 \(60 min\)$")
    )
    approach_id = await on_her_way.get_attribute("data-alert-id")
    assert approach_id is not None

    room2 = '#rooms [data-room-id="2"]'
    await maria.select_option(f"{room2} select[data-role=hold-for]", approach_id)
    await maria.click(f"{room2} [data-action=hold]")
    await expect(maria.locator(f"{room2} [data-role=room-status]")).to_contain_text("Held")
    await maria.click(f"{room2} [data-action=ready]")
    await expect(maria.locator(f"{room2} [data-role=room-status]")).to_contain_text("Ready")
    # Joao's console shows the room taken: nothing to press.
    await expect(joao.locator(f"{room2} [data-role=room-status]")).to_contain_text("by Maria Silva")
    await expect(joao.locator(f"{room2} button")).to_have_count(0)

    # She arrives: her app reports the floor beacon; the arrival says the room is ready.
    out = procs.run("replay-2", "replay", str(ARRIVAL), "--speed", "max",
                    "--device-keys", str(HAND_KEYS))  # fmt: skip
    await _wait_processed(services, _published(out), procs, timeout=120)
    # (The default rules also send "has arrived for an appointment": marked the same.)
    arrival = maria.locator("#feed [data-alert-id]", has_text="Ana Lima is at the floor")
    await expect(arrival).to_have_count(1, timeout=30_000)
    await expect(arrival.locator("[data-role=room]")).to_have_text("Room 2 ready")
    booked = maria.locator("#feed [data-alert-id]", has_text="has arrived for an appointment")
    await expect(booked.locator("[data-role=room]")).to_have_text("Room 2 ready")
    await maria.screenshot(path=ARTIFACTS / "loop-1-maria-arrival-room-ready.png", full_page=True)
    await arrival.locator("button[data-action=claim]").click()
    await arrival.locator("button[data-action=done]").click()
    await expect(arrival).to_contain_text("Done by you")

    # The manager's outcomes count her visit: greeted, with her room ready first.
    bea = await sign_in(browser, base_url, STORE, "bea")
    # The traces' clock is in the past; the notifier counts by its own clock: today.
    await expect(bea.locator("#out-arrivals")).to_have_text("1")
    await expect(bea.locator("#out-claimed")).to_have_text("1")
    await expect(bea.locator("#out-unserved")).to_have_text("0")
    await expect(bea.locator("#out-rooms")).to_have_text("1 of 1")
    await bea.screenshot(path=ARTIFACTS / "loop-2-manager-outcomes.png", full_page=True)
