"""The bookings endpoint over a real socket and Redis, signed by the Standard Webhooks
reference library as a sender would sign: it keeps a signed booking and refuses an
unsigned, a wrongly signed, a stale, a replayed, an oversized and an invalid request, each
with its reason, counted and parked for an operator."""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from standardwebhooks import Webhook

from stream.bookings import Bookings
from stream.bookings_api import BookingsApi, BookingsApiSettings, openapi
from stream.registry import Registry
from tests.kit.customers import make_customer
from tests.kit.services import RedisNs

pytestmark = pytest.mark.integration  # Redis

SECRET = "whsec_" + base64.b64encode(b"proxima-bookings-test-secret-32b").decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"the-secret-before-the-rotation!!").decode()
RESERVATION = {
    "type": "reservation",
    "booking_id": "res-web-1",
    "customer_id": "ana",
    "store_id": "store-1",
    "items": [{"sku": "DR-221", "name": "linen dress", "size": "38", "colour": "green"}],
    "start": "2026-03-14T15:00:00Z",
    "end": "2026-03-14T18:00:00Z",
    "associate_id": "assoc-maria",
}


@dataclass
class Server:
    url: str
    api: BookingsApi
    session: aiohttp.ClientSession

    async def post(
        self,
        path: str,
        body: bytes,
        *,
        secret: str | None = SECRET,
        msg_id: str | None = None,
        at: datetime | None = None,
        method: str = "POST",
    ) -> tuple[int, Any]:
        headers = {"content-type": "application/json"} if body else {}
        if secret is not None:
            msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
            when = at or datetime.now(UTC)
            headers |= {
                "webhook-id": msg_id,
                "webhook-timestamp": str(int(when.timestamp())),
                "webhook-signature": Webhook(secret).sign(msg_id, when, body.decode()),
            }
        async with self.session.request(
            method, self.url + path, data=body, headers=headers
        ) as resp:
            return resp.status, await resp.json()


@pytest.fixture
async def server(redis_ns: RedisNs) -> AsyncIterator[Server]:
    r, prefix = redis_ns
    await Registry(r, prefix).enroll(make_customer(customer_id="ana"), [])
    settings = BookingsApiSettings(
        secret=SECRET, previous_secret=OLD_SECRET, max_body_bytes=4096, port=0
    )
    api = BookingsApi(r, prefix, settings)
    runner = web.AppRunner(api.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as session:
            yield Server(f"http://127.0.0.1:{port}", api, session)
    finally:
        await runner.cleanup()


async def test_a_signed_booking_is_kept_and_a_retired_secret_still_works(
    server: Server, redis_ns: RedisNs
) -> None:
    r, prefix = redis_ns
    status, body = await server.post("/v1/bookings", json.dumps(RESERVATION).encode())
    assert status == 201, body
    assert body["booking_id"] == "res-web-1"
    kept = await Bookings(r, prefix).get("ana", "res-web-1")
    assert kept is not None
    assert kept.items[0].label() == "green linen dress 38"
    appt = {"type": "appointment", "customer_id": "ana", "store_id": "store-1",
            "at": "2026-03-14T16:00:00Z", "purpose": "styling session", "room": "3"}  # fmt: skip
    status, body = await server.post("/v1/bookings", json.dumps(appt).encode(), secret=OLD_SECRET)
    assert status == 201, body
    cancel = json.dumps({"customer_id": "ana", "booking_id": "res-web-1"}).encode()
    assert (await server.post("/v1/bookings/cancel", cancel))[0] == 200
    status, body = await server.post("/v1/bookings/cancel", cancel)
    assert status == 404
    assert body["reason"] == "ana has no booking 'res-web-1'"
    assert server.api.counts["accepted"] == 4


async def test_every_refusal_says_why_is_counted_and_parked(
    server: Server, redis_ns: RedisNs
) -> None:
    r, prefix = redis_ns
    good = json.dumps(RESERVATION).encode()
    wrong = "whsec_" + base64.b64encode(b"a-secret-nobody-gave-to-us-here!").decode()
    cases: list[tuple[int, str, str, Any]] = []

    async def expect(status: int, error: str, reason: str, **kw: Any) -> None:
        got = await server.post(kw.pop("path", "/v1/bookings"), kw.pop("body", good), **kw)
        cases.append((status, error, reason, got))
        assert got[0] == status, got
        assert got[1]["error"] == error, got
        assert reason in got[1]["reason"], got

    await expect(401, "unsigned", "missing header(s) webhook-id, webhook-timestamp", secret=None)
    await expect(401, "bad_signature", "no v1 signature matches", secret=wrong)
    await expect(401, "stale", "behind our clock; at most 300 s",
                 at=datetime.now(UTC) - timedelta(minutes=10))  # fmt: skip
    assert (await server.post("/v1/bookings", good, msg_id="msg_once"))[0] == 201
    await expect(409, "replayed", "webhook-id 'msg_once' was already received", msg_id="msg_once")
    big = json.dumps({**RESERVATION, "note": "x" * 5000}).encode()
    await expect(413, "too_large", "at most 4096", body=big)
    await expect(422, "invalid", "end: ", body=json.dumps({**RESERVATION, "end": "soon"}).encode())
    stranger = json.dumps({**RESERVATION, "customer_id": "nobody"}).encode()
    await expect(422, "unknown_customer", "customer 'nobody' is not enrolled", body=stranger)
    assert dict(server.api.counts) == {
        "accepted": 1, "refused_unsigned": 1, "refused_bad_signature": 1, "refused_stale": 1,
        "refused_replayed": 1, "refused_too_large": 1, "refused_invalid": 1,
        "refused_unknown_customer": 1,
    }  # fmt: skip
    parked = [json.loads(x) for x in await r.lrange(f"{prefix}bookings-api:refused", 0, -1)]
    assert [p["error"] for p in reversed(parked)] == [
        "unsigned", "bad_signature", "stale", "replayed", "too_large", "invalid",
        "unknown_customer",
    ]  # fmt: skip
    assert all("linen dress" not in json.dumps(p) for p in parked)  # reasons, never bodies


def test_the_openapi_document_describes_both_bodies_and_the_signature() -> None:
    doc = openapi()
    body = doc["paths"]["/v1/bookings"]["post"]["requestBody"]["content"]["application/json"]
    refs = {x["$ref"].rsplit("/", 1)[1] for x in body["schema"]["oneOf"]}
    assert refs == {"Reservation", "AppointmentBooking"}
    assert refs <= set(doc["components"]["schemas"])
    assert "items" in doc["components"]["schemas"]["Reservation"]["properties"]
    headers = {p["name"] for p in doc["paths"]["/v1/bookings"]["post"]["parameters"]}
    signed = {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers == signed | {"store"}
    assert set(doc["paths"]["/v1/bookings"]["post"]["responses"]) == {
        "201", "401", "404", "409", "413", "422",
    }  # fmt: skip
    listing = doc["paths"]["/v1/bookings"]["get"]
    assert {p["name"] for p in listing["parameters"]} == signed | {"store", "day", "tz"}
    assert listing["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/BookingList"
    }
    assert "store_id" in doc["components"]["schemas"]["Cancel"]["properties"]


async def test_a_signed_listing_gives_a_stores_day_in_its_zone(server: Server) -> None:
    """GET /v1/bookings?store&day[&tz], signed over the empty body as every request is."""
    late = {**RESERVATION, "booking_id": "res-late", "start": "2026-03-14T23:30:00Z",
            "end": "2026-03-15T01:00:00Z"}  # fmt: skip
    elsewhere = {**RESERVATION, "booking_id": "res-b", "store_id": "store-2"}
    for booking in (RESERVATION, late, elsewhere):
        assert (await server.post("/v1/bookings", json.dumps(booking).encode()))[0] == 201
    status, got = await server.post("/v1/bookings?store=store-1&day=2026-03-14", b"", method="GET")
    assert status == 200, got
    assert (got["store_id"], got["day"], got["timezone"]) == ("store-1", "2026-03-14", "UTC")
    assert [b["booking_id"] for b in got["bookings"]] == ["res-web-1", "res-late"]
    # 23:30 UTC is already the 15th in Tokyo (UTC+9): the store's day is its own.
    status, got = await server.post(
        "/v1/bookings?store=store-1&day=2026-03-15&tz=Asia/Tokyo", b"", method="GET"
    )
    assert [b["booking_id"] for b in got["bookings"]] == ["res-web-1", "res-late"]
    status, got = await server.post("/v1/bookings?store=store-1&day=2026-03-14", b"",
                                    method="GET", secret=None)  # fmt: skip
    assert (status, got["error"]) == (401, "unsigned")
    for query, reason in (
        ("day=2026-03-14", "store: missing query parameter"),
        ("store=store-1&day=14.3.2026", "day: '14.3.2026' is not YYYY-MM-DD"),
        ("store=store-1&day=2026-03-14&tz=Mars/Olympus", "'Mars/Olympus' is not an IANA"),
        ("store=a%20b&day=2026-03-14", "store: 'a b' is not an id"),
    ):
        status, got = await server.post(f"/v1/bookings?{query}", b"", method="GET")
        assert (status, got["error"]) == (422, "invalid"), got
        assert reason in got["reason"], got


async def test_a_store_scoped_request_cannot_touch_another_stores_booking(
    server: Server, redis_ns: RedisNs
) -> None:
    r, prefix = redis_ns
    theirs = {**RESERVATION, "booking_id": "res-b", "store_id": "store-2"}
    assert (await server.post("/v1/bookings", json.dumps(theirs).encode()))[0] == 201
    # Replacing it "at store-1" would move it to store-1: refused as if it did not exist.
    moved = json.dumps({**theirs, "store_id": "store-1"}).encode()
    status, got = await server.post("/v1/bookings?store=store-1", moved)
    assert (status, got["error"]) == (404, "not_found"), got
    assert got["reason"] == "ana has no booking 'res-b' at store 'store-1'"
    status, got = await server.post("/v1/bookings?store=store-1", json.dumps(theirs).encode())
    assert (status, got["error"]) == (422, "invalid"), got
    assert got["reason"] == "store_id: 'store-2' is not the store 'store-1'"
    cancel = {"customer_id": "ana", "booking_id": "res-b", "store_id": "store-1"}
    status, got = await server.post("/v1/bookings/cancel", json.dumps(cancel).encode())
    assert (status, got["error"]) == (404, "not_found"), got
    kept = await Bookings(r, prefix).get("ana", "res-b")
    assert kept is not None
    assert kept.store_id == "store-2"
    # At its own store, the scoped request goes through.
    ours = json.dumps({**theirs, "note": "changed"}).encode()
    assert (await server.post("/v1/bookings?store=store-2", ours))[0] == 201
    cancel["store_id"] = "store-2"
    assert (await server.post("/v1/bookings/cancel", json.dumps(cancel).encode()))[0] == 200
    assert await Bookings(r, prefix).get("ana", "res-b") is None


def test_the_command_refuses_to_start_without_a_usable_secret() -> None:
    from tests.kit.cli import proxima

    env = {k: v for k, v in os.environ.items() if not k.startswith("PROXIMA_BOOKINGS_API_")}
    done = proxima("stream", "bookings-api", env=env)
    assert done.returncode == 2
    assert "PROXIMA_BOOKINGS_API_SECRET is not set" in done.stderr
    done = proxima(
        "stream", "bookings-api", env={**env, "PROXIMA_BOOKINGS_API_SECRET": "whsec_c2hvcnQ="}
    )
    assert done.returncode == 2
    assert "at least 16 bytes" in done.stderr
    retired = {**env, "PROXIMA_BOOKINGS_API_SECRET": SECRET,
               "PROXIMA_BOOKINGS_API_PREVIOUS_SECRET": "not-a-secret"}  # fmt: skip
    done = proxima("stream", "bookings-api", env=retired)
    assert done.returncode == 2
    assert "PROXIMA_BOOKINGS_API_PREVIOUS_SECRET" in done.stderr
    assert "whsec_ followed by base64" in done.stderr


async def test_it_answers_its_probes(server: Server) -> None:
    async with server.session.get(server.url + "/livez") as live:
        assert live.status == 200
    async with server.session.get(server.url + "/readyz") as ready:
        assert (ready.status, await ready.json()) == (200, {"redis": True})
    async with server.session.get(server.url + "/v1/openapi.json") as doc:
        assert (await doc.json())["info"]["title"] == "Proxima bookings"
