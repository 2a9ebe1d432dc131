"""The manager's bookings in the console (``/api/bookings``) through a real bookings API
(``stream.bookings_api`` on a free port) over real Redis: what the console books, changes
and cancels is read back through the stream's ``Bookings``; a manager reaches only her own
store's bookings, an associate none; the API's refusals and absence come back with reasons;
every reply is what the console's OpenAPI document describes."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestServer

from notifier.directory import Directory
from notifier.lifecycle import Lifecycle
from notifier.settings import NotifierSettings
from stream.bookings import AppointmentBooking, Reservation
from tests.kit.clock import FakeUtcClock
from tests.notifier.conftest import BOOKINGS_SECRET, BookingsApiServer, console_app
from tests.notifier.test_web import PASSWORD, Client, _closed_validator
from transport.net import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

APPOINTMENT = {
    "type": "appointment",
    "customer_id": "ana",
    "at": "2026-01-01T15:00:00+00:00",
    "duration_min": 45,
    "purpose": "styling session",
    "associate_id": "maria",
    "room": "2",
}
RESERVATION = {
    "type": "reservation",
    "customer_id": "ana",
    "items": [{"sku": "DR-221", "name": "linen dress", "size": "38", "colour": "green"}],
    "start": "2026-01-01T12:00:00+00:00",
    "end": "2026-01-01T18:00:00+00:00",
}


@pytest.fixture
async def make_console(
    redis: aioredis.Redis, directory: Directory, lifecycle: Lifecycle, clock: FakeUtcClock
) -> AsyncIterator[Callable[..., Any]]:
    """A console with the given settings, and a signed-in client of it per call."""
    servers: dict[int, TestServer] = {}  # one console per settings object
    sessions: list[aiohttp.ClientSession] = []

    async def make(settings: NotifierSettings, store: str, who: str) -> Client:
        if id(settings) not in servers:
            app = console_app(directory, lifecycle, clock, settings)
            server = TestServer(app, host="127.0.0.1")
            await server.start_server()
            servers[id(settings)] = server
        http = aiohttp.ClientSession(
            base_url=str(servers[id(settings)].make_url("")),
            cookie_jar=aiohttp.CookieJar(unsafe=True),
        )
        sessions.append(http)
        client = Client(http)
        await client.login(store, who)
        return client

    yield make
    for http in sessions:
        await http.close()
    for server in servers.values():
        await server.close()


@pytest.fixture
async def team(directory: Directory, store: str) -> str:
    await directory.add(store, "Maria", PASSWORD, associate_id="maria")
    await directory.add(store, "Boss", PASSWORD, associate_id="boss", role="manager")
    await directory.add(f"{store}-b", "Other Boss", PASSWORD, associate_id="boss", role="manager")
    return store


def connected(api: BookingsApiServer, secret: str = BOOKINGS_SECRET) -> NotifierSettings:
    return NotifierSettings(bookings_api_url=api.url, bookings_api_secret=secret)


async def test_a_manager_books_lists_changes_and_cancels_through_the_bookings_api(
    make_console: Any, team: str, bookings_api: BookingsApiServer
) -> None:
    await bookings_api.enroll("ana")
    boss = await make_console(connected(bookings_api), team, "boss")
    status, got = await boss.call("POST", "/api/bookings", json_body=APPOINTMENT)
    assert status == 201, got
    appt = got["booking"]
    assert (appt["store_id"], appt["purpose"], appt["room"]) == (team, "styling session", "2")
    stored = await bookings_api.bookings.get("ana", appt["booking_id"])
    assert isinstance(stored, AppointmentBooking)
    assert (stored.store_id, stored.associate_id, stored.duration_min) == (team, "maria", 45)
    status, got = await boss.call("POST", "/api/bookings", json_body=RESERVATION)
    assert status == 201, got
    res_id = got["booking"]["booking_id"]
    assert isinstance(await bookings_api.bookings.get("ana", res_id), Reservation)

    status, day = await boss.call("GET", "/api/bookings")  # the store's today (fake clock)
    assert status == 200, day
    assert (day["connected"], day["day"], day["timezone"]) == (True, "2026-01-01", "UTC")
    assert [b["booking_id"] for b in day["bookings"]] == [res_id, appt["booking_id"]]
    assert day["bookings"][0]["items"][0]["name"] == "linen dress"
    assert (await boss.call("GET", "/api/bookings?day=2026-01-02"))[1]["bookings"] == []

    changed = {**APPOINTMENT, "booking_id": appt["booking_id"], "at": "2026-01-01T16:30:00Z"}
    status, got = await boss.call("POST", "/api/bookings", json_body=changed)
    assert status == 200, got
    stored = await bookings_api.bookings.get("ana", appt["booking_id"])
    assert stored is not None
    assert stored.start.isoformat() == "2026-01-01T16:30:00+00:00"

    which = {"customer_id": "ana", "booking_id": appt["booking_id"]}
    status, got = await boss.call("POST", "/api/bookings/cancel", json_body=which)
    assert (status, got) == (200, {"cancelled": appt["booking_id"]})
    assert await bookings_api.bookings.get("ana", appt["booking_id"]) is None
    status, got = await boss.call("POST", "/api/bookings/cancel", json_body=which)
    assert status == 404, got
    assert (
        got["error"]
        == f"the bookings API: ana has no booking {appt['booking_id']!r} at store {team!r}"
    )


async def test_only_a_manager_and_only_her_own_stores_bookings(
    make_console: Any, team: str, bookings_api: BookingsApiServer
) -> None:
    await bookings_api.enroll("ana")
    settings = connected(bookings_api)
    maria = await make_console(settings, team, "maria")
    for method, path, body in (
        ("GET", "/api/bookings", None),
        ("POST", "/api/bookings", APPOINTMENT),
        ("POST", "/api/bookings/cancel", {"customer_id": "ana", "booking_id": "x"}),
    ):
        status, got = await maria.call(method, path, json_body=body)
        assert status == 403, (path, got)
        assert "only a manager" in got["error"]
    # Another store's manager: her bookings are hers, and this store's are out of reach.
    other = await make_console(settings, f"{team}-b", "boss")
    status, got = await other.call("POST", "/api/bookings", json_body=APPOINTMENT)
    assert status == 400, got  # maria is not of her store
    assert got == {"error": f"associate_id: no associate 'maria' in store '{team}-b'",
                   "field": "associate_id"}  # fmt: skip
    boss = await make_console(settings, team, "boss")
    status, ours = await boss.call("POST", "/api/bookings", json_body=APPOINTMENT)
    assert status == 201, ours
    bid = ours["booking"]["booking_id"]
    # A store named in the body is refused (the session's store is the only one)...
    status, got = await other.call(
        "POST", "/api/bookings", json_body={**APPOINTMENT, "store_id": team, "associate_id": None}
    )
    assert (status, got["field"]) == (400, "appointment.store_id"), got
    assert got["error"] == "appointment.store_id: Extra inputs are not permitted"
    # ...and this store's booking cannot be listed, changed (moved) or cancelled from there.
    assert (await other.call("GET", "/api/bookings"))[1]["bookings"] == []
    moved = {**APPOINTMENT, "booking_id": bid, "associate_id": None}
    status, got = await other.call("POST", "/api/bookings", json_body=moved)
    assert status == 404, got
    status, got = await other.call(
        "POST", "/api/bookings/cancel", json_body={"customer_id": "ana", "booking_id": bid}
    )
    assert status == 404, got
    kept = await bookings_api.bookings.get("ana", bid)
    assert kept is not None
    assert kept.store_id == team


async def test_a_refused_booking_comes_back_with_the_bookings_apis_reason(
    make_console: Any, team: str, bookings_api: BookingsApiServer
) -> None:
    boss = await make_console(connected(bookings_api), team, "boss")
    status, got = await boss.call(
        "POST", "/api/bookings", json_body={**APPOINTMENT, "customer_id": "nobody"}
    )
    assert status == 400, got
    assert got == {
        "error": "the bookings API refused it: customer 'nobody' is not enrolled",
        "field": "customer_id",
    }
    await bookings_api.enroll("ana")
    backwards = {**RESERVATION, "end": "2026-01-01T11:00:00Z"}
    status, got = await boss.call("POST", "/api/bookings", json_body=backwards)
    assert status == 400, got
    assert got == {
        "error": "the bookings API refused it: reservation: Value error, end must be after start"
    }
    status, got = await boss.call(
        "POST", "/api/bookings", json_body={**APPOINTMENT, "at": "2026-01-01T15:00"}
    )
    assert got == {"error": "appointment.at: Input should have timezone info",
                   "field": "appointment.at"}  # fmt: skip
    assert await bookings_api.bookings.of_customer("ana") == []


async def test_the_bookings_api_down_or_misconfigured_is_a_clear_5xx(
    make_console: Any, team: str, bookings_api: BookingsApiServer
) -> None:
    down = NotifierSettings(
        bookings_api_url=f"http://127.0.0.1:{free_port()}", bookings_api_secret=BOOKINGS_SECRET
    )
    boss = await make_console(down, team, "boss")
    for method, path, body in (
        ("GET", "/api/bookings", None),
        ("POST", "/api/bookings", APPOINTMENT),
        ("POST", "/api/bookings/cancel", {"customer_id": "ana", "booking_id": "x"}),
    ):
        status, got = await boss.call(method, path, json_body=body)
        assert status == 503, got
        assert "does not answer (ClientConnectorError)" in got["error"], got
        assert "proxima stream bookings-api" in got["error"]
    wrong = "whsec_" + base64.b64encode(b"not-the-bookings-api-secret-at-all").decode()
    boss = await make_console(connected(bookings_api, wrong), team, "boss")
    status, got = await boss.call("GET", "/api/bookings")
    assert status == 502, got
    assert "PROXIMA_NOTIFIER_BOOKINGS_API_SECRET must be the API's secret" in got["error"]


async def test_not_connected_says_so(make_console: Any, team: str) -> None:
    boss = await make_console(NotifierSettings(), team, "boss")
    status, got = await boss.call("GET", "/api/bookings")
    assert status == 200, got
    assert (got["connected"], got["bookings"]) == (False, [])
    assert "PROXIMA_NOTIFIER_BOOKINGS_API_URL" in got["reason"]
    status, got = await boss.call("POST", "/api/bookings", json_body=APPOINTMENT)
    assert status == 503, got
    assert got["error"].startswith("bookings are not connected")


def test_the_settings_refuse_half_a_connection_and_a_bad_secret() -> None:
    with pytest.raises(ValueError, match="set both PROXIMA_NOTIFIER_BOOKINGS_API_URL"):
        NotifierSettings(bookings_api_url="http://127.0.0.1:8473")
    with pytest.raises(ValueError, match="whsec_ followed by base64"):
        NotifierSettings(bookings_api_url="http://x", bookings_api_secret="not a secret!")
    with pytest.raises(ValueError, match="not an http"):
        NotifierSettings(bookings_api_url="ftp://x", bookings_api_secret=BOOKINGS_SECRET)
    assert NotifierSettings(bookings_api_secret="").bookings_api_secret is None


async def test_every_bookings_reply_is_what_the_openapi_document_describes(
    make_console: Any, team: str, bookings_api: BookingsApiServer
) -> None:
    await bookings_api.enroll("ana")
    settings = connected(bookings_api)
    boss = await make_console(settings, team, "boss")
    maria = await make_console(settings, team, "maria")
    status, doc = await boss.call("GET", "/api/openapi.json")
    assert status == 200
    status, made = await boss.call("POST", "/api/bookings", json_body=RESERVATION)
    assert status == 201, made
    bid = made["booking"]["booking_id"]
    calls: list[tuple[Client, str, str, Any, str]] = [
        (boss, "GET", "/api/bookings", None, "/api/bookings"),
        (boss, "GET", "/api/bookings?day=1.1.2026", None, "/api/bookings"),
        (maria, "GET", "/api/bookings", None, "/api/bookings"),
        (boss, "POST", "/api/bookings", APPOINTMENT, "/api/bookings"),
        (boss, "POST", "/api/bookings", {**RESERVATION, "booking_id": bid, "note": "VIP"}, "/api/bookings"),
        (boss, "POST", "/api/bookings", {**APPOINTMENT, "customer_id": "nobody"}, "/api/bookings"),
        (boss, "POST", "/api/bookings/cancel", {"customer_id": "ana", "booking_id": bid}, "/api/bookings/cancel"),
        (boss, "POST", "/api/bookings/cancel", {"customer_id": "ana", "booking_id": bid}, "/api/bookings/cancel"),
    ]  # fmt: skip
    seen = set()
    for client, method, path, body, documented in calls:
        status, got = await client.call(method, path, json_body=body)
        responses = doc["paths"][documented][method.lower()]["responses"]
        assert str(status) in responses, (method, path, status, got)
        schema = responses[str(status)]["content"]["application/json"]["schema"]
        errors = _closed_validator(schema, doc).iter_errors(got)
        assert [e.message for e in errors] == [], (method, path, got)
        seen.add(status)
    assert seen == {200, 201, 400, 403, 404}
