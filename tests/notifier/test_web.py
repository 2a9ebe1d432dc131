"""The console's JSON API over real HTTP and real Redis (aiohttp test server)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestServer

from notifier.destinations import Destinations
from notifier.directory import Directory
from notifier.lifecycle import Lifecycle
from notifier.settings import NotifierSettings
from notifier.web.auth import CSRF_HEADER
from notifier.web.sessions import SESSION_COOKIE
from tests.kit.clock import FakeUtcClock
from tests.notifier.conftest import CountingHasher, console_app, make_alert

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

PASSWORD = "correct-horse"


@dataclass
class Client:
    """One browser-like session: its own cookie jar and CSRF token."""

    http: aiohttp.ClientSession
    csrf: str = ""

    async def login(self, store: str, associate: str, password: str = PASSWORD) -> dict[str, Any]:
        async with self.http.post(
            "/api/session", json={"store": store, "associate": associate, "password": password}
        ) as res:
            body: dict[str, Any] = await res.json()
            assert res.status == 200, body
        self.csrf = body["csrf"]
        return body

    async def call(
        self, method: str, path: str, *, json_body: Any = None, csrf: bool = True
    ) -> tuple[int, dict[str, Any]]:
        headers = {CSRF_HEADER: self.csrf} if csrf and method != "GET" else {}
        async with self.http.request(method, path, json=json_body, headers=headers) as res:
            return res.status, await res.json()


@pytest.fixture
def settings(request: pytest.FixtureRequest) -> NotifierSettings:
    """The console's settings; a test passes its own with ``indirect=True``."""
    given: NotifierSettings = getattr(request, "param", NotifierSettings(login_attempts=3))
    return given


@pytest.fixture
async def console(
    redis: aioredis.Redis,
    directory: Directory,
    lifecycle: Lifecycle,
    clock: FakeUtcClock,
    settings: NotifierSettings,
) -> AsyncIterator[TestServer]:
    app = console_app(directory, lifecycle, clock, settings, mqtt_connected=lambda: True)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def client_factory(console: TestServer) -> AsyncIterator[Any]:
    sessions: list[aiohttp.ClientSession] = []

    def make(address: str = "127.0.0.1") -> Client:
        """A browser at ``address``: any 127.x.y.z is this machine, seen as another client."""
        http = aiohttp.ClientSession(
            base_url=str(console.make_url("")),
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            connector=aiohttp.TCPConnector(local_addr=(address, 0)),
        )
        sessions.append(http)
        return Client(http)

    yield make
    for http in sessions:
        await http.close()


@pytest.fixture
async def team(directory: Directory, store: str) -> str:
    await directory.add(store, "Maria", PASSWORD, associate_id="maria", zones=["entrance"])
    await directory.add(store, "Joao", PASSWORD, associate_id="joao")
    await directory.add(store, "Boss", PASSWORD, associate_id="boss", role="manager")
    await directory.add("other-store", "Eve", PASSWORD, associate_id="eve")
    return store


async def test_sign_in_sets_a_strict_http_only_cookie(client_factory: Any, team: str) -> None:
    c = client_factory()
    async with c.http.post(
        "/api/session", json={"store": team, "associate": "maria", "password": PASSWORD}
    ) as res:
        assert res.status == 200
        cookie = res.headers["Set-Cookie"]
        body = await res.json()
    assert f"{SESSION_COOKIE}=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert body["associate"]["associate_id"] == "maria"
    assert "password_hash" not in json.dumps(body)
    c.csrf = body["csrf"]
    status, me = await c.call("GET", "/api/me")
    assert (status, me["associate"]["store_id"]) == (200, team)


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"store": "s", "associate": "maria"}, 400, "password: Field required"),
        ({"store": "s/x", "associate": "maria", "password": "x"}, 400, "store:"),
        ({"store": "s", "associate": "maria", "password": "x", "admin": True}, 400, "admin:"),
    ],
)
async def test_bad_sign_in_bodies_name_the_field(
    client_factory: Any, team: str, body: dict[str, Any], status: int, needle: str
) -> None:
    got_status, got = await client_factory().call("POST", "/api/session", json_body=body)
    assert got_status == status
    assert needle in got["error"]


async def test_wrong_credentials_say_the_same_thing_then_throttle(
    client_factory: Any, team: str
) -> None:
    c = client_factory()
    messages = set()
    for store, who, password in [
        (team, "maria", "wrong-password"),
        ("other-store", "maria", PASSWORD),
        (team, "nobody", PASSWORD),
    ]:
        status, body = await c.call(
            "POST",
            "/api/session",
            json_body={"store": store, "associate": who, "password": password},
        )
        assert status == 401
        messages.add(body["error"])
    assert messages == {"wrong store, associate or password"}
    for _ in range(2):
        await c.call(
            "POST", "/api/session", json_body={"store": team, "associate": "maria", "password": "x"}
        )
    status, body = await c.call(
        "POST",
        "/api/session",
        json_body={"store": team, "associate": "maria", "password": PASSWORD},
    )
    assert status == 429
    assert "too many failed sign-ins" in body["error"]


async def _guess(c: Client, store: str, who: str, password: str = "wrong") -> tuple[int, Any]:  # noqa: S107
    async with c.http.post(
        "/api/session", json={"store": store, "associate": who, "password": password}
    ) as res:
        return res.status, res.headers.get("Retry-After")


async def test_concurrent_guesses_are_counted_before_any_password_is_checked(
    client_factory: Any, team: str, directory: Directory
) -> None:
    hasher = CountingHasher(pause_s=0.05)
    directory.hasher = hasher
    attacker = client_factory("127.0.0.9")
    results = await asyncio.gather(*(_guess(attacker, team, "maria") for _ in range(40)))
    # login_attempts=3: three guesses checked, the other 37 refused before hashing.
    assert hasher.verified <= 3
    assert sorted(status for status, _ in results) == [401] * hasher.verified + [429] * (
        40 - hasher.verified
    )
    assert all(int(after) >= 1 for status, after in results if status == 429)
    # The real user, on their own handheld, is not locked out by someone else's guesses.
    assert (await _guess(client_factory("127.0.0.2"), team, "maria", PASSWORD))[0] == 200


@pytest.mark.parametrize(
    "settings",
    [NotifierSettings(login_attempts=3, login_backoff_s=1.0, login_backoff_cap_s=4.0)],
    indirect=True,
)
async def test_guesses_from_many_addresses_back_off_per_account(
    client_factory: Any, team: str, directory: Directory, settings: NotifierSettings
) -> None:
    hasher = CountingHasher(pause_s=0.05)
    directory.hasher = hasher
    guessers = [client_factory(f"127.0.1.{i}") for i in range(1, 9)]
    results = await asyncio.gather(*(_guess(g, team, "maria") for g in guessers for _ in range(5)))
    # Three free tries on the account, then one per pause: four checks of 40 guesses.
    assert hasher.verified <= settings.login_attempts + 1
    assert sum(status == 429 for status, _ in results) >= 40 - settings.login_attempts - 1
    # The account backs off to at most the cap instead of a whole window's lock-out.
    status, after = await _guess(client_factory("127.0.0.2"), team, "maria", PASSWORD)
    assert status in (200, 429)
    if status == 429:
        assert 1 <= int(after) <= settings.login_backoff_cap_s


@pytest.mark.parametrize(
    "settings", [NotifierSettings(login_attempts=3, login_client_attempts=4)], indirect=True
)
async def test_one_address_is_limited_over_all_accounts(
    client_factory: Any, team: str, directory: Directory
) -> None:
    hasher = CountingHasher()
    directory.hasher = hasher
    sprayer = client_factory("127.0.0.3")
    for who in ("maria", "joao", "boss", "nobody"):
        assert (await _guess(sprayer, team, who))[0] == 401
    async with sprayer.http.post(
        "/api/session", json={"store": team, "associate": "someone", "password": "x"}
    ) as res:
        body = await res.json()
        assert res.status == 429
    assert body["error"].startswith("too many failed sign-ins from this address: try again in")
    assert hasher.verified == 4
    assert (await _guess(client_factory("127.0.0.4"), team, "maria", PASSWORD))[0] == 200


async def test_a_success_gives_the_address_its_try_back(client_factory: Any, team: str) -> None:
    c = client_factory("127.0.0.5")
    for _ in range(10):
        # Ten sign-ins from one address (a store's shared handheld) are not ten failures.
        assert (await _guess(c, team, "maria", PASSWORD))[0] == 200
    assert (await _guess(c, team, "maria"))[0] == 401


async def test_no_more_argon2_hashes_run_at_once_than_the_bound(
    client_factory: Any, team: str, directory: Directory
) -> None:
    hasher = CountingHasher(pause_s=0.05)
    directory.hasher = hasher
    c = client_factory("127.0.0.6")
    # Unknown names cost a full (dummy) check too, so that names cannot be probed.
    results = await asyncio.gather(*(_guess(c, team, f"ghost-{i}") for i in range(24)))
    assert [status for status, _ in results] == [401] * 24
    assert hasher.verified == 24
    assert hasher.peak <= 2
    assert directory.passwords.concurrency == 2
    assert directory.passwords.peak <= 2


async def test_form_posts_are_refused(client_factory: Any, team: str) -> None:
    c = client_factory()
    async with c.http.post("/api/session", data={"store": team}) as res:
        assert res.status == 415
        assert "Content-Type must be application/json" in (await res.json())["error"]


async def test_claim_needs_the_csrf_token_and_same_origin(
    client_factory: Any, team: str, lifecycle: Lifecycle
) -> None:
    alert = make_alert(store_id=team)
    await lifecycle.create(alert)
    c = client_factory()
    await c.login(team, "maria")
    path = f"/api/alerts/{alert.alert_id}/claim"
    status, body = await c.call("POST", path, csrf=False)
    assert (status, body["error"]) == (403, f"missing {CSRF_HEADER} header")
    async with c.http.post(path, headers={CSRF_HEADER: "forged"}) as res:
        assert (res.status, (await res.json())["error"]) == (403, f"wrong {CSRF_HEADER} header")
    async with c.http.post(
        path, headers={CSRF_HEADER: c.csrf, "Origin": "https://evil.example"}
    ) as res:
        assert res.status == 403
        assert "cross-origin" in (await res.json())["error"]
    status, body = await c.call("POST", path)
    assert status == 200
    assert body["alert"]["state"] == "claimed"


async def test_claim_done_flow_and_conflict(
    client_factory: Any, team: str, lifecycle: Lifecycle
) -> None:
    alert = make_alert(store_id=team, fields={"name": "Ana", "sizes": {"dress": "38"}})
    await lifecycle.create(alert)
    maria, joao = client_factory(), client_factory()
    await maria.login(team, "maria")
    await joao.login(team, "joao")

    status, listed = await joao.call("GET", "/api/alerts")
    assert status == 200
    (view,) = listed["alerts"]
    assert view["fields"] == {"name": "Ana", "sizes": {"dress": "38"}}
    assert "customer_id" not in view

    assert (await maria.call("POST", f"/api/alerts/{alert.alert_id}/claim"))[0] == 200
    status, conflict = await joao.call("POST", f"/api/alerts/{alert.alert_id}/claim")
    assert status == 409
    assert conflict["claimed_by"] == "maria"
    assert conflict["error"] == f"alert {alert.alert_id} is already claimed by maria"
    status, seen = await joao.call("GET", f"/api/alerts/{alert.alert_id}")
    assert seen["alert"]["claimed_by_name"] == "Maria"

    status, done = await maria.call("POST", f"/api/alerts/{alert.alert_id}/done")
    assert (status, done["alert"]["state"]) == (200, "done")
    status, filtered = await joao.call("GET", "/api/alerts?state=done")
    assert [a["alert_id"] for a in filtered["alerts"]] == [str(alert.alert_id)]
    # The one claim that went through is in the alert → claim histogram (the conflict not).
    async with maria.http.get("/metrics") as res:
        text = await res.text()
    assert "proxima_notifier_alert_to_claim_seconds_count 1.0" in text


async def test_another_stores_associate_sees_and_touches_nothing(
    client_factory: Any, team: str, lifecycle: Lifecycle
) -> None:
    alert = make_alert(store_id=team)
    await lifecycle.create(alert)
    # The store's own associate sees it, and can open it.
    maria = client_factory()
    await maria.login(team, "maria")
    _, listed = await maria.call("GET", "/api/alerts")
    assert [a["alert_id"] for a in listed["alerts"]] == [str(alert.alert_id)]
    assert (await maria.call("GET", f"/api/alerts/{alert.alert_id}"))[0] == 200
    eve = client_factory()
    await eve.login("other-store", "eve")
    assert (await eve.call("GET", "/api/alerts"))[1] == {"alerts": []}
    for method, path in [
        ("GET", f"/api/alerts/{alert.alert_id}"),
        ("POST", f"/api/alerts/{alert.alert_id}/claim"),
        ("POST", f"/api/alerts/{alert.alert_id}/done"),
        ("POST", f"/api/alerts/{alert.alert_id}/decline"),
    ]:
        status, body = await eve.call(method, path)
        # Exactly what a non-existent alert answers: nothing to probe.
        assert (status, body) == (404, {"error": f"no alert '{alert.alert_id}'"})
    status, _ = await eve.call("POST", "/api/shifts/maria", json_body={"on_shift": True})
    assert status == 403
    record = await lifecycle.get(str(alert.alert_id))
    assert record is not None
    assert record.state.value == "delivered"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "needle"),
    [
        ("GET", "/api/alerts/not-a-uuid", None, 400, "alert_id: 'not-a-uuid' is not a UUID"),
        ("POST", "/api/alerts/not-a-uuid/claim", None, 400, "is not a UUID"),
        ("POST", "/api/alerts/00000000-0000-0000-0000-000000000000/steal", None, 404, "no action"),
        ("GET", "/api/alerts?state=lost", None, 400, "state: 'lost' is not one of"),
        ("GET", "/api/alerts?since=yesterday", None, 400, "since: 'yesterday'"),
        ("GET", "/api/alerts?since=2026-01-01T00:00:00", None, 400, "since: give a timezone"),
        ("POST", "/api/shifts/me", {"on_shift": "yes"}, 400, "on_shift: Input should be"),
        ("POST", "/api/shifts/me", {}, 400, "on_shift: Field required"),
        ("GET", "/api/nothing-here", None, 404, "Not Found: GET /api/nothing-here"),
        ("PUT", "/api/alerts", None, 405, "Method Not Allowed: PUT /api/alerts"),
        ("GET", "/api/summary", None, 403, "the summary is for managers"),
        (
            "POST",
            "/api/alerts/00000000-0000-0000-0000-000000000000/claim",
            None,
            404,
            "no alert",
        ),
    ],
)
async def test_every_bad_input_is_a_4xx_naming_what_is_wrong(
    client_factory: Any,
    team: str,
    method: str,
    path: str,
    body: Any,
    status: int,
    needle: str,
) -> None:
    c = client_factory()
    await c.login(team, "maria")
    got_status, got = await c.call(method, path, json_body=body)
    assert got_status == status, got
    assert needle in got["error"]


async def test_requests_without_a_session_are_401(client_factory: Any) -> None:
    c = client_factory()
    for path in ("/api/me", "/api/alerts", "/api/events", "/api/shifts", "/api/summary"):
        status, body = await c.call("GET", path)
        assert (status, body["error"]) == (401, "not signed in")
    async with c.http.get("/api/me", cookies={SESSION_COOKIE: "made-up"}) as res:
        assert res.status == 401


async def test_sign_out_and_removed_accounts_end_the_session(
    client_factory: Any, team: str, directory: Directory
) -> None:
    c = client_factory()
    await c.login(team, "joao")
    assert (await c.call("DELETE", "/api/session"))[0] == 200
    assert (await c.call("GET", "/api/me"))[0] == 401
    await c.login(team, "joao")
    await directory.remove(team, "joao")
    status, body = await c.call("GET", "/api/me")
    # The removal deleted the session itself.
    assert (status, body["error"]) == (401, "session expired or signed out: sign in again")


async def test_shift_toggle_and_manager_view(
    client_factory: Any, team: str, lifecycle: Lifecycle, clock: FakeUtcClock
) -> None:
    maria, boss = client_factory(), client_factory()
    await maria.login(team, "maria")
    await boss.login(team, "boss")
    status, body = await maria.call("POST", "/api/shifts/me", json_body={"on_shift": True})
    assert (status, body["associate"]["on_shift"]) == (200, True)
    status, _ = await maria.call("POST", "/api/shifts/joao", json_body={"on_shift": True})
    assert status == 403
    status, body = await boss.call("POST", "/api/shifts/joao", json_body={"on_shift": True})
    assert (status, body["associate"]["on_shift"]) == (200, True)
    status, shifts = await maria.call("GET", "/api/shifts")
    assert {a["associate_id"]: a["on_shift"] for a in shifts["associates"]} == {
        "boss": False,
        "joao": True,
        "maria": True,
    }

    alert = make_alert(store_id=team, zone_id="entrance")
    delivery = await lifecycle.create(alert)
    assert getattr(delivery, "step", None) is not None
    clock.advance(30)
    await maria.call("POST", f"/api/alerts/{alert.alert_id}/claim")
    await lifecycle.create(make_alert(store_id=team))
    status, summary = await boss.call("GET", "/api/summary")
    assert status == 200
    assert summary["summary"] == {
        "arrivals_today": 2,
        "alerts_today": 2,
        "unclaimed": 1,
        "claimed_today": 1,
        "median_time_to_claim_s": 30.0,
        "timezone": "UTC",
        "since": clock().replace(hour=0, minute=0, second=0, microsecond=0).isoformat(),
    }


async def _next_event(res: aiohttp.ClientResponse) -> tuple[str, dict[str, Any]]:
    """The next server-sent event; ``("", {})`` once the server has closed the stream."""
    event = ""
    while True:
        raw = await res.content.readline()
        if not raw:
            return "", {}
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[len("event: ") :]
        elif line.startswith("data: "):
            return event, json.loads(line[len("data: ") :])


async def test_live_feed_is_store_scoped(
    client_factory: Any, team: str, lifecycle: Lifecycle
) -> None:
    maria, eve = client_factory(), client_factory()
    await maria.login(team, "maria")
    await eve.login("other-store", "eve")
    async with (
        maria.http.get("/api/events") as mine,
        eve.http.get("/api/events") as theirs,
    ):
        assert mine.headers["Content-Type"] == "text/event-stream"
        assert await _next_event(mine) == ("snapshot", {"alerts": [], "rooms": []})
        assert await _next_event(theirs) == ("snapshot", {"alerts": [], "rooms": []})

        ours = make_alert(store_id=team, fields={"name": "Ana"})
        await lifecycle.create(ours)
        kind, data = await _next_event(mine)
        assert (kind, data["alert_id"], data["fields"]) == (
            "alert",
            str(ours.alert_id),
            {"name": "Ana"},
        )

        # The other store's stream is on the same Redis subscription: had it been sent
        # our alert, that would arrive before its own one.
        own = make_alert(store_id="other-store")
        await lifecycle.create(own)
        kind, data = await _next_event(theirs)
        assert (kind, data["alert_id"]) == ("alert", str(own.alert_id))

        await lifecycle.claim(str(ours.alert_id), team, "joao")
        kind, data = await _next_event(mine)
        assert (data["state"], data["claimed_by_name"], data["rev"]) == ("claimed", "Joao", 2)


@pytest.mark.parametrize("settings", [NotifierSettings(session_recheck_s=3600)], indirect=True)
async def test_sign_out_closes_that_sessions_live_feed_at_once(
    client_factory: Any, team: str, lifecycle: Lifecycle
) -> None:
    leaving, staying = client_factory(), client_factory("127.0.0.2")
    await leaving.login(team, "maria")
    await staying.login(team, "maria")
    async with leaving.http.get("/api/events") as gone, staying.http.get("/api/events") as kept:
        assert (await _next_event(gone))[0] == "snapshot"
        assert (await _next_event(kept))[0] == "snapshot"
        assert (await leaving.call("DELETE", "/api/session"))[0] == 200
        alert = make_alert(store_id=team, fields={"name": "Ana", "sizes": {"dress": "38"}})
        await lifecycle.create(alert)
        # The re-check is an hour away: the sign-out itself closed the stream, before
        # the alert (published after it) could reach it.
        assert await _next_event(gone) == ("signed-out", {})
        assert await _next_event(gone) == ("", {})
        kind, data = await _next_event(kept)
        assert (kind, data["alert_id"]) == ("alert", str(alert.alert_id))


@pytest.mark.parametrize("settings", [NotifierSettings(session_recheck_s=3600)], indirect=True)
async def test_removing_an_associate_closes_their_feed_and_the_id_starts_clean(
    client_factory: Any,
    team: str,
    lifecycle: Lifecycle,
    directory: Directory,
    redis: aioredis.Redis,
) -> None:
    prefix = lifecycle.prefix
    destinations = Destinations(redis, prefix, directory)
    await destinations.add_webhook(team, "https://crm.example/joao", associate_id="joao")
    joao = client_factory()
    await joao.login(team, "joao")
    (session_key,) = [k async for k in redis.scan_iter(f"{prefix}notifier:session:*", count=10000)]
    stolen = await redis.hgetall(session_key)
    async with joao.http.get("/api/events") as feed:
        assert (await _next_event(feed))[0] == "snapshot"
        await directory.remove(team, "joao")
        await lifecycle.create(make_alert(store_id=team, fields={"name": "Ana"}))
        assert await _next_event(feed) == ("signed-out", {})
        assert await _next_event(feed) == ("", {})

    # A new person given the same id inherits no session and no webhook.
    await directory.add(team, "Joao Novo", PASSWORD, associate_id="joao")
    assert await destinations.list(team, "joao") == []
    assert [k async for k in redis.scan_iter(f"{prefix}notifier:session:*", count=10000)] == []
    assert await redis.exists(f"{prefix}notifier:store:{team}:associate:joao:sessions") == 0
    assert (await joao.call("GET", "/api/me"))[0] == 401
    # Even a session that escaped the removal (made while it ran) does not fit the new one.
    await redis.hset(session_key, mapping=stolen)
    status, body = await joao.call("GET", "/api/me")
    assert (status, body["error"]) == (401, "this account no longer exists")


@pytest.mark.parametrize("settings", [NotifierSettings(session_recheck_s=0.05)], indirect=True)
async def test_the_live_feed_rechecks_its_session_however_busy_the_store(
    client_factory: Any, team: str, lifecycle: Lifecycle, redis: aioredis.Redis
) -> None:
    maria = client_factory()
    await maria.login(team, "maria")
    stop = asyncio.Event()

    async def busy_store() -> None:
        while not stop.is_set():
            await lifecycle.create(make_alert(store_id=team))
            await asyncio.sleep(0.01)

    async with maria.http.get("/api/events") as feed:
        assert (await _next_event(feed))[0] == "snapshot"
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(busy_store(), name="busy-store")
            assert (await _next_event(feed))[0] == "alert"
            # The session expires in Redis (no sign-out message): only the re-check sees it.
            async for key in redis.scan_iter(f"{lifecycle.prefix}notifier:session:*", count=10000):
                await redis.delete(key)
            kinds = []
            async with asyncio.timeout(10):
                while (kind := (await _next_event(feed))[0]) not in ("signed-out", ""):
                    kinds.append(kind)
            stop.set()
        assert kind == "signed-out"
        assert await _next_event(feed) == ("", {})


async def test_pages_health_and_metrics(client_factory: Any, team: str) -> None:
    c = client_factory()
    async with c.http.get("/") as res:
        assert res.status == 200
        page = await res.text()
        assert 'name="viewport"' in page
        assert "script-src 'self'" in res.headers["Content-Security-Policy"]
        assert res.headers["X-Frame-Options"] == "DENY"
    async with c.http.get("/static/console.js") as res:
        assert res.status == 200
        script = await res.text()
        assert "innerHTML" not in script  # customer data only ever goes in as text
    status, health = await c.call("GET", "/healthz")
    assert (status, health) == (200, {"status": "ok", "redis": True, "mqtt": True})
    await c.call(
        "POST", "/api/session", json_body={"store": team, "associate": "maria", "password": "no"}
    )
    async with c.http.get("/metrics") as res:
        text = await res.text()
        assert res.headers["Content-Type"].startswith("text/plain")
    # As Prometheus reads it (prometheus_client's own parser).
    from prometheus_client.parser import text_string_to_metric_families

    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["proxima_notifier_logins"].type == "counter"
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in families.values()
        for s in f.samples
    }
    assert samples[("proxima_notifier_logins_total", (("result", "failed"),))] == 1.0
    assert samples[("proxima_notifier_http_requests_total", (("code", "4xx"),))] >= 1.0
    assert samples[("proxima_notifier_sse_clients", ())] == 0.0
    assert families["proxima_notifier_alert_to_claim_seconds"].type == "histogram"


async def test_malformed_and_oversized_bodies(client_factory: Any, team: str) -> None:
    c = client_factory()
    await c.login(team, "maria")
    headers = {CSRF_HEADER: c.csrf, "Content-Type": "application/json"}
    for raw, needle in [
        (b"{not json", "Invalid JSON"),
        (b"[]", "Input should be an object"),
        (b"\xff\xfe", "Invalid JSON"),
    ]:
        async with c.http.post("/api/shifts/me", data=raw, headers=headers) as res:
            body = await res.json()
            assert res.status == 400, body
            assert needle in body["error"]
    async with c.http.post("/api/shifts/me", data=b" " * 70_000, headers=headers) as res:
        assert res.status == 413
        assert "body larger than 65536 bytes" in (await res.json())["error"]
    async with c.http.post(
        "/api/alerts/00000000-0000-0000-0000-000000000000/claim", data=b"{}", headers=headers
    ) as res:
        assert res.status == 400
        assert (await res.json())["error"] == "claim takes no body"


# --- channels, receipts and the OpenAPI description ---------------------------------------
async def test_channels_are_configured_per_associate_and_per_store(
    client_factory: Any, team: str
) -> None:
    maria, boss = client_factory(), client_factory()
    await maria.login(team, "maria")
    await boss.login(team, "boss")
    # A webhook makes the server send requests where it is told: managers only.
    for scope in ("me", "store"):
        status, refused = await maria.call(
            "POST",
            "/api/channels/webhooks",
            json_body={"url": "https://x.example/", "scope": scope},
        )
        assert (status, refused["error"]) == (403, "only a manager can add a webhook")
    status, made = await boss.call(
        "POST", "/api/channels/webhooks", json_body={"url": "https://crm.example/in?t=1"}
    )
    assert status == 201
    assert len(made["secret"]) >= 16
    assert made["destination"]["url"] == "https://crm.example/in"
    status, store_hook = await boss.call(
        "POST",
        "/api/channels/webhooks",
        json_body={"url": "https://chat.example/hook", "scope": "store", "key_id": "k2"},
    )
    assert status == 201
    status, listed = await boss.call("GET", "/api/channels")
    assert status == 200
    assert [d["url"] for d in listed["store"]] == ["https://chat.example/hook"]
    assert [d["id"] for d in listed["mine"]] == [made["destination"]["id"]]
    assert made["secret"] not in json.dumps(listed)
    status, mine = await maria.call("GET", "/api/channels")
    assert mine["mine"] == []
    assert "store" not in mine
    store_id = store_hook["destination"]["id"]
    assert (await maria.call("DELETE", f"/api/channels/{store_id}"))[0] == 404
    assert (await boss.call("DELETE", f"/api/channels/{store_id}?scope=store"))[0] == 200
    status, key = await maria.call("GET", "/api/push/key")
    assert status == 200
    assert len(key["public_key"]) == 87  # base64url of a 65-byte uncompressed P-256 point


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/api/channels/webhooks", {"url": "ftp://x.example/"}, 400, "url: 'ftp://x.example/'"),
        ("/api/channels/webhooks", {"url": "https://x.example/", "secret": "short"}, 400, "secret"),
        ("/api/channels/webhooks", {"url": "https://x.example/", "scope": "all"}, 400, "scope"),
        ("/api/channels/webhooks", {}, 400, "url: Field required"),
        ("/api/channels/webhooks", {"url": "http://10.0.0.1/"}, 400, "must use https://"),
        (
            "/api/channels/push",
            {"endpoint": "https://push.example/1", "keys": {"p256dh": "AAAA", "auth": "AAAA"}},
            400,
            "keys.p256dh",
        ),
        (
            "/api/channels/push",
            {"endpoint": "http://push.example/1", "keys": {"p256dh": "A", "auth": "A"}},
            400,
            "must use https://",
        ),
        ("/api/channels/push", {"endpoint": "https://push.example/1"}, 400, "keys: Field required"),
    ],
)
async def test_bad_channel_input_gets_a_4xx_that_says_why(
    client_factory: Any, team: str, path: str, body: dict[str, Any], status: int, message: str
) -> None:
    boss = client_factory()
    await boss.login(team, "boss")
    got_status, got = await boss.call("POST", path, json_body=body)
    assert got_status == status
    assert message in got["error"]


async def test_receipts_are_scoped_to_the_store(
    client_factory: Any, team: str, lifecycle: Lifecycle, clock: FakeUtcClock
) -> None:
    from notifier.channels import Receipt

    alert = make_alert(store_id=team)
    await lifecycle.create(alert)
    await lifecycle.add_receipt(
        str(alert.alert_id), Receipt("webhook", "https://crm.example/in", "maria", True, 2, clock())
    )
    maria, eve = client_factory(), client_factory()
    await maria.login(team, "maria")
    await eve.login("other-store", "eve")
    status, body = await maria.call("GET", f"/api/alerts/{alert.alert_id}/receipts")
    assert status == 200
    assert [(r["channel"], r["attempts"]) for r in body["receipts"]] == [("webhook", 2)]
    assert (await eve.call("GET", f"/api/alerts/{alert.alert_id}/receipts"))[0] == 404


async def test_a_manager_sets_the_messaging_webhook_and_sees_its_results_not_its_secret(
    client_factory: Any, team: str, lifecycle: Lifecycle, clock: FakeUtcClock
) -> None:
    from contracts.models import ConsentDecision, ConsentRecord

    boss, maria = client_factory(), client_factory()
    await boss.login(team, "boss")
    await maria.login(team, "maria")
    hook = {"url": "https://crm.example/m?token=abc", "secret": "s" * 20, "key_id": "k2"}
    assert (await maria.call("PUT", "/api/messaging", json_body=hook))[0] == 403
    status, made = await boss.call("PUT", "/api/messaging", json_body=hook)
    assert status == 200, made
    assert made["secret"] == "s" * 20
    assert made["messaging"]["url"] == "https://crm.example/m"
    status, bad = await boss.call("PUT", "/api/messaging", json_body={**hook, "message": "{x}"})
    assert (status, bad["field"]) == (400, "message")

    now = clock()
    await lifecycle.follow_consent(
        ConsentRecord(
            customer_id="cust-bia",
            consent={f"room_messages@{team}": ConsentDecision(granted=False, at=now)},
            version=1,
        )
    )
    await boss.call("PUT", "/api/rooms", json_body={"rooms": [{"room_id": "1", "name": "R1"}]})
    await boss.call("POST", "/api/rooms/1/hold", json_body={"customer_id": "cust-bia"})
    assert (await boss.call("POST", "/api/rooms/1/ready"))[0] == 200
    status, got = await boss.call("GET", "/api/messaging")
    assert status == 200
    assert [(r["room"], r["result"]) for r in got["receipts"]] == [("R1", "skipped_no_consent")]
    assert "s" * 20 not in json.dumps(got)
    assert "cust-bia" not in json.dumps(got)
    assert (await boss.call("DELETE", "/api/messaging"))[0] == 200
    assert (await boss.call("GET", "/api/messaging"))[1]["messaging"] is None


async def test_openapi_lists_exactly_the_routes_the_server_has(
    console: TestServer, client_factory: Any
) -> None:
    """Every route is described and every description is a route: they cannot drift."""
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in console.app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    status, doc = await client_factory().call("GET", "/api/openapi.json")
    assert status == 200
    assert doc["openapi"].startswith("3.1")
    described = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    assert served - described == set(), "routes missing from the OpenAPI document"
    assert described - served == set(), "documented paths the server does not have"
    # Every reference resolves, and the request bodies are the handlers' own models.
    schemas = doc["components"]["schemas"]
    for ref in _refs(doc):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
    login = doc["paths"]["/api/session"]["post"]["requestBody"]["content"]["application/json"]
    assert set(schemas[login["schema"]["$ref"].rsplit("/", 1)[1]]["properties"]) == {
        "store",
        "associate",
        "password",
    }


async def test_every_json_reply_is_what_the_openapi_document_describes(
    client_factory: Any, team: str, lifecycle: Lifecycle, clock: FakeUtcClock
) -> None:
    """Each JSON endpoint's actual reply validates against its documented schema, with no
    key the document does not name, so the description cannot drift from the handlers."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from notifier.channels import Receipt, b64url

    boss, maria = client_factory(), client_factory()
    await boss.login(team, "boss")
    await maria.login(team, "maria")
    alert = make_alert(store_id=team)
    await lifecycle.create(alert)
    await lifecycle.add_receipt(
        str(alert.alert_id), Receipt("webhook", "crm.example", "boss", True, 1, clock())
    )
    point = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    push = {
        "endpoint": "https://push.example/1",
        "keys": {"p256dh": b64url(point), "auth": "A" * 22},
    }
    one = f"/api/alerts/{alert.alert_id}"
    aid = str(alert.alert_id)
    rooms = {"rooms": [{"room_id": "1", "name": "Room 1"}, {"room_id": "2", "name": "Room 2"}]}
    joao = client_factory()
    sign_in = {"store": team, "associate": "joao", "password": PASSWORD}
    messaging = {"url": "https://crm.example/m", "message": "{room}: {associate} is coming"}
    hold_path = "/api/rooms/{room_id}/{action}"
    appointment = {"type": "appointment", "customer_id": "cust-ana", "purpose": "fitting",
                   "at": "2026-01-01T15:00:00Z"}  # fmt: skip
    cancel = {"customer_id": "cust-ana", "booking_id": "apt-1"}
    calls: list[tuple[Client, str, str, Any, str]] = [
        (joao, "POST", "/api/session", {**sign_in, "password": "wrong"}, "/api/session"),
        (joao, "POST", "/api/session", sign_in, "/api/session"),
        (boss, "GET", "/healthz", None, "/healthz"),
        (boss, "GET", "/readyz", None, "/readyz"),
        (boss, "GET", "/livez", None, "/livez"),
        (boss, "GET", "/api/me", None, "/api/me"),
        (boss, "GET", "/api/alerts", None, "/api/alerts"),
        (boss, "GET", "/api/alerts?since=yesterday", None, "/api/alerts"),
        (boss, "GET", one, None, "/api/alerts/{alert_id}"),
        (boss, "POST", f"{one}/claim", None, "/api/alerts/{alert_id}/{action}"),
        (maria, "POST", f"{one}/claim", None, "/api/alerts/{alert_id}/{action}"),
        (boss, "GET", f"{one}/receipts", None, "/api/alerts/{alert_id}/receipts"),
        (boss, "GET", "/api/summary", None, "/api/summary"),
        (maria, "GET", "/api/summary", None, "/api/summary"),
        (boss, "GET", "/api/outcomes?days=7", None, "/api/outcomes"),
        (boss, "GET", "/api/outcomes?days=5", None, "/api/outcomes"),
        (maria, "GET", "/api/outcomes", None, "/api/outcomes"),
        (boss, "GET", "/api/shifts", None, "/api/shifts"),
        (boss, "POST", "/api/shifts/me", {"on_shift": True}, "/api/shifts/{associate_id}"),
        (
            boss,
            "POST",
            "/api/channels/webhooks",
            {"url": "https://crm.example/in"},
            "/api/channels/webhooks",
        ),
        (boss, "POST", "/api/channels/push", push, "/api/channels/push"),
        (boss, "GET", "/api/channels", None, "/api/channels"),
        (maria, "GET", "/api/channels", None, "/api/channels"),
        (boss, "DELETE", "/api/channels/nope", None, "/api/channels/{destination_id}"),
        (boss, "GET", "/api/push/key", None, "/api/push/key"),
        (boss, "GET", "/api/routing", None, "/api/routing"),
        (boss, "GET", "/api/gateways", None, "/api/gateways"),
        (maria, "GET", "/api/gateways", None, "/api/gateways"),
        (boss, "PUT", "/api/routing", {"escalate_after_s": 30}, "/api/routing"),
        (boss, "PUT", "/api/routing", {"expire_after_s": 1}, "/api/routing"),
        (maria, "PUT", "/api/rooms", rooms, "/api/rooms"),
        (boss, "PUT", "/api/rooms", rooms, "/api/rooms"),
        (maria, "GET", "/api/rooms", None, "/api/rooms"),
        (maria, "POST", "/api/rooms/2/hold", {"alert_id": aid}, "/api/rooms/{room_id}/{action}"),
        (joao, "POST", "/api/rooms/2/hold", {"alert_id": aid}, "/api/rooms/{room_id}/{action}"),
        (maria, "POST", "/api/rooms/2/ready", None, "/api/rooms/{room_id}/{action}"),
        (maria, "GET", one, None, "/api/alerts/{alert_id}"),
        (maria, "POST", "/api/rooms/9/use", None, "/api/rooms/{room_id}/{action}"),
        (boss, "GET", "/api/messaging", None, "/api/messaging"),
        (maria, "GET", "/api/messaging", None, "/api/messaging"),
        (boss, "PUT", "/api/messaging", {"url": "http://crm.example/m"}, "/api/messaging"),
        (boss, "PUT", "/api/messaging", messaging, "/api/messaging"),
        (boss, "POST", "/api/rooms/1/hold", {"customer_id": "cust-ana"}, hold_path),
        (boss, "POST", "/api/rooms/1/ready", None, hold_path),
        (boss, "GET", "/api/messaging", None, "/api/messaging"),
        (boss, "DELETE", "/api/messaging", None, "/api/messaging"),
        (boss, "DELETE", "/api/messaging", None, "/api/messaging"),
        # Bookings not connected here (tests/notifier/test_console_bookings.py connects them).
        (maria, "GET", "/api/bookings", None, "/api/bookings"),
        (boss, "GET", "/api/bookings", None, "/api/bookings"),
        (boss, "POST", "/api/bookings", appointment, "/api/bookings"),
        (boss, "POST", "/api/bookings/cancel", cancel, "/api/bookings/cancel"),
        (boss, "DELETE", "/api/session", None, "/api/session"),
        (boss, "GET", "/api/me", None, "/api/me"),
    ]
    status, doc = await boss.call("GET", "/api/openapi.json")
    assert status == 200
    seen: set[tuple[str, str, int]] = set()
    for client, method, path, body, documented in calls:
        status, got = await client.call(method, path, json_body=body)
        responses = doc["paths"][documented][method.lower()]["responses"]
        assert str(status) in responses, (method, path, status, got)
        schema = responses[str(status)]["content"]["application/json"]["schema"]
        errors = _closed_validator(schema, doc).iter_errors(got)
        assert [e.message for e in errors] == [], (method, path, got)
        seen.add((method.lower(), documented, status))
    # Both kinds of answer were checked: successes and errors (400, 401, 403, 404, 409).
    assert {s for _, _, s in seen} >= {200, 201, 400, 401, 403, 404, 409}
    json_ops = {
        (method, path)
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
        if "application/json"
        in op["responses"].get("200", op["responses"].get("201", {})).get("content", {})
    } - {("get", "/api/openapi.json")}
    assert json_ops - {(m, p) for m, p, _ in seen} == set(), "JSON endpoints this test skips"


def _closed_validator(schema: dict[str, Any], doc: dict[str, Any]) -> Any:
    """A validator of ``schema`` (references into ``doc``) in which an object may hold
    only the properties its schema names: an undocumented key is an error too."""
    from jsonschema import Draft202012Validator

    def close(node: Any) -> Any:
        if isinstance(node, list):
            return [close(v) for v in node]
        if not isinstance(node, dict):
            return node
        closed = {k: close(v) for k, v in node.items()}
        if closed.get("type") == "object" and "additionalProperties" not in closed:
            closed["additionalProperties"] = False
        return closed

    root = {**close(schema), "components": close(doc["components"])}
    Draft202012Validator.check_schema(root)
    return Draft202012Validator(root)


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


async def test_pwa_manifest_and_service_worker_are_served(client_factory: Any) -> None:
    http = client_factory().http
    async with http.get("/manifest.webmanifest") as res:
        assert res.status == 200
        manifest = json.loads(await res.text())
    assert manifest["display"] == "standalone"
    async with http.get(manifest["icons"][0]["src"]) as res:
        assert res.status == 200
    async with http.get("/sw.js") as res:
        assert res.status == 200
        assert "showNotification" in await res.text()


async def test_routing_is_read_by_all_and_changed_by_managers(
    client_factory: Any, team: str
) -> None:
    maria, boss = client_factory(), client_factory()
    await maria.login(team, "maria")
    await boss.login(team, "boss")
    status, got = await maria.call("GET", "/api/routing")
    assert status == 200
    assert got["routing"]["escalate_after_s"] == 45
    assert (await maria.call("PUT", "/api/routing", json_body={"escalate_after_s": 30}))[0] == 403
    status, changed = await boss.call(
        "PUT", "/api/routing", json_body={"escalate_after_s": 30, "tiers": ["zone", "manager"]}
    )
    assert status == 200
    assert changed["routing"]["tiers"] == ["zone", "manager"]
    status, bad = await boss.call("PUT", "/api/routing", json_body={"expire_after_s": 1})
    assert status == 400
    assert bad["field"] == "expire_after_s"
    status, bad = await boss.call("PUT", "/api/routing", json_body={"tiers": "manager"})
    assert status == 400
    assert "tiers" in bad["error"]


async def test_rooms_first_hold_wins_and_every_refusal_says_why(
    client_factory: Any, team: str, lifecycle: Lifecycle
) -> None:
    boss, maria, joao, eve = (client_factory() for _ in range(4))
    await boss.login(team, "boss")
    await maria.login(team, "maria")
    await joao.login(team, "joao")
    await eve.login("other-store", "eve")
    layout = {"rooms": [{"room_id": "1", "name": "Room 1"}, {"room_id": "2", "name": "Room 2"}]}
    status, denied = await maria.call("PUT", "/api/rooms", json_body=layout)
    assert (status, denied["error"]) == (403, "only a manager can change the store's fitting rooms")
    status, got = await boss.call("PUT", "/api/rooms", json_body=layout)
    assert status == 200
    assert [(r["room_id"], r["state"]) for r in got["rooms"]] == [("1", "free"), ("2", "free")]
    assert got["today"] == {
        "day": "2026-01-01",
        "timezone": "UTC",
        "held": 0,
        "ready": 0,
        "used": 0,
    }

    alert = make_alert(store_id=team, customer_id="cust-http", fields={"name": "Ana"})
    await lifecycle.create(alert)
    hold = {"alert_id": str(alert.alert_id), "booking_id": "res-42"}
    status, held = await maria.call("POST", "/api/rooms/2/hold", json_body=hold)
    assert status == 200, held
    assert held["room"]["state"] == "held"
    assert (held["room"]["held_by_name"], held["room"]["booking_id"]) == ("Maria", "res-42")
    assert held["room"]["alert_id"] == str(alert.alert_id)
    assert "cust-http" not in json.dumps(held)

    status, refused = await joao.call("POST", "/api/rooms/2/hold", json_body=hold)
    assert status == 409
    assert refused == {
        "error": "Room 2 is already held by Maria: it cannot be held",
        "state": "held",
        "held_by": "maria",
    }
    status, refused = await joao.call("POST", "/api/rooms/2/ready")
    assert (status, refused["error"]) == (
        409,
        "Room 2 is held by Maria: only they or a manager can change it",
    )
    status, refused = await maria.call("POST", "/api/rooms/2/done")
    assert (status, refused["error"]) == (
        409,
        "cannot mark Room 2 done: it is held by Maria; that needs a room in use",
    )
    status, _ = await maria.call("GET", f"/api/alerts/{alert.alert_id}")
    assert _["alert"]["room"]["label"] == "Room 2 not ready yet"
    assert (await maria.call("POST", "/api/rooms/2/ready"))[0] == 200
    status, one = await joao.call("GET", f"/api/alerts/{alert.alert_id}")
    assert one["alert"]["room"] == {
        "room_id": "2",
        "name": "Room 2",
        "state": "ready",
        "ready": True,
        "label": "Room 2 ready",
    }
    status, listed = await joao.call("GET", "/api/alerts")
    assert [a["room"]["label"] for a in listed["alerts"]] == ["Room 2 ready"]

    # Bad input: each says what is wrong.
    bad = [
        (maria, "POST", "/api/rooms/2/paint", None, 404, "no action 'paint'"),
        (maria, "POST", "/api/rooms/1/hold", {}, 400, "alert_id: name the open alert"),
        (
            maria,
            "POST",
            "/api/rooms/1/hold",
            {"alert_id": "x"},
            400,
            "alert_id: Input should be a valid UUID",
        ),
        (maria, "POST", "/api/rooms/1/hold", {"customer_id": "c1"}, 403, "only a manager"),
        (maria, "POST", "/api/rooms/1/use", {"x": 1}, 400, "use takes no body"),
        (maria, "POST", "/api/rooms/7/use", None, 404, "no fitting room '7'"),
        (maria, "POST", "/api/rooms/a%20b/use", None, 400, "room_id: 'a b' must be"),
        (boss, "PUT", "/api/rooms", {"rooms": []}, 400, "rooms: List should have at least 1"),
        (boss, "PUT", "/api/rooms", {"rooms": [{"room_id": "a b", "name": "x"}]}, 400, "room_id"),
        (boss, "PUT", "/api/rooms", {"rooms": layout["rooms"] * 2}, 400, "room '1' is given twice"),
        (boss, "PUT", "/api/rooms", {"rooms": layout["rooms"][:1]}, 400, "room '2' is ready"),
    ]
    for client, method, path, body, want, needle in bad:
        status, got = await client.call(method, path, json_body=body)
        assert (status, needle in got["error"]) == (want, True), (path, body, got)

    # Another store sees no rooms of ours and cannot hold for our alert.
    status, theirs = await eve.call("GET", "/api/rooms")
    assert (status, theirs["rooms"]) == (200, [])
    status, _ = await eve.call("POST", "/api/rooms/2/hold", json_body=hold)
    assert status == 404
    # A manager may hold by customer id (a booking before any alert), and free any room.
    status, by_id = await boss.call("POST", "/api/rooms/1/hold", json_body={"customer_id": "c9"})
    assert (status, by_id["room"]["held_by"]) == (200, "boss")
    assert (await boss.call("POST", "/api/rooms/2/release"))[1]["room"]["state"] == "free"
