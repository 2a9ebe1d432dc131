"""The bookings endpoint: an e-commerce or booking system posts reservations and
appointments here (``proxima stream bookings-api``), signed as the Standard Webhooks
specification signs webhooks, so a sender uses a ready library (standardwebhooks on PyPI
and npm, svix, ...) with the secret the store's IT gave it.

Every request carries ``webhook-id``, ``webhook-timestamp`` (Unix seconds) and
``webhook-signature`` (space-separated ``v1,<base64>``: HMAC-SHA256 of
``{id}.{timestamp}.{body}`` with the secret, ``whsec_<base64>``). A request is refused, with
a JSON ``{"error": CODE, "reason": TEXT}``, when it is larger than ``max_body_bytes``
(413), unsigned, signed with no secret we hold or more than ``tolerance_s`` from our clock
(401), a ``webhook-id`` already seen (409: a replay, or a retry of a request that went
through), or not a booking we can keep (422: the field and what is wrong, or a customer
who is not enrolled). Refusals are counted (``/metrics``-style counters on ``GET
/v1/stats``) and the last 1,000 are kept, without their bodies, in the Redis list
``{prefix}bookings-api:refused`` for an operator (``LRANGE``).

``POST /v1/bookings``: a reservation or an appointment (stream.bookings; ``type`` says
which; a ``booking_id`` already there is replaced). ``POST /v1/bookings/cancel``:
``{"customer_id", "booking_id"}``. ``GET /v1/bookings?store=S&day=YYYY-MM-DD[&tz=ZONE]``
(signed over the empty body): the store's bookings starting that day, by start. A
``store`` query parameter on ``POST /v1/bookings`` and a ``store_id`` in a cancel scope the
request to one store: a booking of another store answers 404, as one that does not exist
(the manager's console, a client of this API, sends them so that a manager can never
touch another store's bookings). ``GET /v1/openapi.json``: this API, generated from the
models. ``GET /livez``, ``/readyz`` (Redis answers): for the orchestrator.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from datetime import time as dtime
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
)
from pydantic.json_schema import models_json_schema
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.services import ServiceSettings
from contracts.validation import describe_validation
from stream.bookings import (
    AppointmentBooking,
    Bookings,
    Reservation,
    StoreId,
    bookings_json,
    parse_booking,
)
from stream.exceptions import RegistryError
from transport.redis import RedisClient, redis_for
from transport.standard_webhooks import secret_key, signature

log = logging.getLogger(__name__)

REFUSED_KEPT = 1000


class BookingsApiSettings(BaseSettings):
    """``proxima stream bookings-api``: where it listens and the senders' secrets."""

    model_config = SettingsConfigDict(env_prefix="PROXIMA_BOOKINGS_API_", extra="forbid")

    host: str = Field(default="127.0.0.1", description="address to listen on")
    port: Annotated[int, Field(ge=0, le=65535)] = Field(default=8473, description="port")
    secret: SecretStr | None = Field(
        default=None, description="the senders' signing secret, whsec_<base64> (required)"
    )
    previous_secret: SecretStr | None = Field(
        default=None, description="the secret before the last rotation, still accepted"
    )
    max_body_bytes: Annotated[int, Field(ge=1024, le=1 << 20)] = Field(
        default=65536, description="larger requests are refused (413)"
    )
    tolerance_s: Annotated[int, Field(ge=10, le=3600)] = Field(
        default=300, description="a request signed further from our clock is refused"
    )

    @field_validator("secret", "previous_secret")
    @classmethod
    def _usable(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            secret_key(value.get_secret_value())  # ValueError naming what is wrong
        return value


class Refused(Exception):
    def __init__(self, status: int, code: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.code = code
        self.reason = reason


class WebhookVerifier:
    """Standard Webhooks v1 verification with one or more secrets (rotation)."""

    def __init__(
        self, secrets: list[str], tolerance_s: float, clock: Callable[[], float] = time.time
    ) -> None:
        if not secrets:
            raise ValueError("no secret: set PROXIMA_BOOKINGS_API_SECRET")
        self.keys = [secret_key(s) for s in secrets]
        self.tolerance_s = tolerance_s
        self.clock = clock

    def verify(self, headers: Any, body: bytes) -> str:
        """The request's ``webhook-id`` if it is signed by one of our secrets, in time."""
        msg_id = headers.get("webhook-id")
        stamp = headers.get("webhook-timestamp")
        signatures = headers.get("webhook-signature")
        missing = [
            name
            for name, value in (
                ("webhook-id", msg_id),
                ("webhook-timestamp", stamp),
                ("webhook-signature", signatures),
            )
            if not value
        ]
        if missing:
            raise Refused(401, "unsigned", f"missing header(s) {', '.join(missing)}")
        try:
            at = int(stamp)
        except ValueError:
            raise Refused(401, "bad_timestamp", "webhook-timestamp is not Unix seconds") from None
        skew = at - self.clock()
        if abs(skew) > self.tolerance_s:
            raise Refused(
                401,
                "stale",
                f"webhook-timestamp is {abs(skew):.0f} s {'behind' if skew < 0 else 'ahead of'}"
                f" our clock; at most {self.tolerance_s:.0f} s",
            )
        expected = [signature(k, str(msg_id), str(stamp), body) for k in self.keys]
        for entry in signatures.split(" "):
            version, _, value = entry.partition(",")
            if version != "v1":
                continue
            try:
                given = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                continue
            if any(hmac.compare_digest(given, e) for e in expected):
                return str(msg_id)
        raise Refused(401, "bad_signature", "no v1 signature matches a secret of ours")


class Cancel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    customer_id: str
    booking_id: str
    store_id: StoreId | None = Field(
        default=None, description="only a booking at this store (else 404, as if there were none)"
    )


class BookingList(BaseModel):
    """``GET /v1/bookings``: a store's bookings starting on one day, by start."""

    store_id: StoreId
    day: date
    timezone: str
    bookings: list[Annotated[Reservation | AppointmentBooking, Field(discriminator="type")]]


class Refusal(BaseModel):
    error: str
    reason: str


def openapi() -> dict[str, Any]:
    """This API's OpenAPI 3.1 document, its schemas generated from the models."""
    ref = "#/components/schemas/{model}"
    _, defs = models_json_schema(
        [
            (m, "validation")
            for m in (Reservation, AppointmentBooking, Cancel, Refusal, BookingList)
        ],
        ref_template=ref,
    )
    booking = {
        "oneOf": [
            {"$ref": ref.format(model="Reservation")},
            {"$ref": ref.format(model="AppointmentBooking")},
        ],
        "discriminator": {"propertyName": "type"},
    }
    signed = [
        {"name": h, "in": "header", "required": True, "schema": {"type": "string"}}
        for h in ("webhook-id", "webhook-timestamp", "webhook-signature")
    ]
    refusal = {"content": {"application/json": {"schema": {"$ref": ref.format(model="Refusal")}}}}
    refusals = {
        str(code): {"description": why, **refusal}
        for code, why in (
            (401, "unsigned, a signature of no secret of ours, or too far from our clock"),
            (409, "a webhook-id already seen"),
            (413, "larger than max_body_bytes"),
            (422, "not a booking we can keep (the field and why)"),
        )
    }

    def query(name: str, why: str, schema: dict[str, Any], required: bool) -> dict[str, Any]:
        return {"name": name, "in": "query", "required": required, "description": why,
                "schema": schema}  # fmt: skip

    store = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"}

    def op(
        summary: str,
        schema: dict[str, Any],
        ok: dict[str, Any],
        params: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        return {
            "post": {
                "summary": summary,
                "parameters": signed + (params or []),
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": schema}},
                },
                "responses": {**ok, **refusals},
            }
        }

    return {
        "openapi": "3.1.0",
        "info": {"title": "Proxima bookings", "version": "1"},
        "paths": {
            "/v1/bookings": {
                **op(
                    "create or replace a reservation or an appointment",
                    booking,
                    {
                        "201": {
                            "description": "kept",
                            "content": {"application/json": {"schema": booking}},
                        },
                        "404": {
                            "description": "store given and the booking id is another store's",
                            **refusal,
                        },
                    },
                    [
                        query(
                            "store",
                            "only at this store: the body's store_id must be it, and a booking "
                            "of another store by that id is not replaced (404)",
                            store,
                            False,
                        )
                    ],
                ),
                "get": {
                    "summary": "a store's bookings starting on one day, by start (signed over "
                    "the empty body)",
                    "parameters": [
                        *signed,
                        query("store", "the store", store, True),
                        query("day", "YYYY-MM-DD", {"type": "string", "format": "date"}, True),
                        query(
                            "tz", "IANA zone of the day (default UTC)", {"type": "string"}, False
                        ),
                    ],
                    "responses": {
                        "200": {
                            "description": "the day's bookings",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": ref.format(model="BookingList")}
                                }
                            },
                        },
                        **{k: v for k, v in refusals.items() if k != "413"},
                    },
                },
            },
            "/v1/bookings/cancel": op(
                "cancel a booking",
                {"$ref": ref.format(model="Cancel")},
                {
                    "200": {"description": "cancelled"},
                    "404": {"description": "no such booking (at store_id, if given)", **refusal},
                },
            ),
        },
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {
                "standardWebhooks": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "webhook-signature",
                    "description": "Standard Webhooks v1: HMAC-SHA256 of {id}.{timestamp}.{body}",
                }
            },
        },
        "security": [{"standardWebhooks": []}],
    }


class BookingsApi:
    """The endpoint over Redis (see the module docstring)."""

    def __init__(
        self,
        redis: RedisClient,
        prefix: str,
        settings: BookingsApiSettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        secrets = [s.get_secret_value() for s in (settings.secret, settings.previous_secret) if s]
        self.verifier = WebhookVerifier(secrets, settings.tolerance_s, clock)
        self.settings = settings
        self.r = redis
        self.p = prefix
        self.bookings = Bookings(redis, prefix)
        self.counts: Counter[str] = Counter()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.settings.max_body_bytes + 1)
        app.router.add_post("/v1/bookings", self._signed(self._put))
        app.router.add_get("/v1/bookings", self._signed(self._list))
        app.router.add_post("/v1/bookings/cancel", self._signed(self._cancel))
        app.router.add_get("/v1/openapi.json", self._openapi)
        app.router.add_get("/v1/stats", self._stats)
        app.router.add_get("/livez", self._livez)
        app.router.add_get("/readyz", self._readyz)
        return app

    async def _livez(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        """Ready while Redis answers (the bookings live there)."""
        try:
            up = bool(await self.r.ping())
        except Exception:
            log.warning("bookings-api: Redis does not answer", exc_info=True)
            up = False
        return web.json_response({"redis": up}, status=200 if up else 503)

    def _signed(
        self, handle: Callable[[web.Request, bytes], Awaitable[web.Response]]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def run(request: web.Request) -> web.Response:
            msg_id = request.headers.get("webhook-id", "")
            try:
                response = await handle(request, await self._admit(request, msg_id))
            except Refused as exc:
                await self._refuse(exc, msg_id)
                return web.json_response(
                    {"error": exc.code, "reason": exc.reason}, status=exc.status
                )
            self.counts["accepted"] += 1
            return response

        return run

    async def _admit(self, request: web.Request, msg_id: str) -> bytes:
        """The body of a request small enough, signed by us, in time and not seen before;
        else :class:`Refused`."""
        limit = self.settings.max_body_bytes
        size = request.content_length
        if size is not None and size > limit:
            raise Refused(413, "too_large", f"body of {size} bytes; at most {limit}")
        body = await request.content.read(limit + 1)
        if len(body) > limit:
            raise Refused(413, "too_large", f"body over {limit} bytes")
        self.verifier.verify(request.headers, body)
        # Only a signed request may use up an id (else anyone could block one).
        seen = f"{self.p}bookings-api:seen:{msg_id}"
        if not await self.r.set(seen, "1", nx=True, ex=int(self.settings.tolerance_s * 2) + 1):
            raise Refused(409, "replayed", f"webhook-id {msg_id!r} was already received")
        return body

    async def _refuse(self, exc: Refused, msg_id: str) -> None:
        self.counts[f"refused_{exc.code}"] += 1
        log.warning("bookings-api: refused %s (%s): %s", msg_id or "-", exc.code, exc.reason)
        entry = json.dumps(
            {"at": time.time(), "webhook_id": msg_id, "error": exc.code, "reason": exc.reason}
        )
        key = f"{self.p}bookings-api:refused"
        try:
            async with self.r.pipeline(transaction=False) as pipe:
                pipe.lpush(key, entry)
                pipe.ltrim(key, 0, REFUSED_KEPT - 1)
                await pipe.execute()
        except Exception:  # the refusal is answered and counted even if Redis is away
            log.exception("bookings-api: refusal not parked")

    async def _put(self, request: web.Request, body: bytes) -> web.Response:
        only = _query_store(request, required=False)
        try:
            booking = parse_booking(body)
        except ValidationError as exc:
            raise Refused(422, "invalid", describe_validation(exc, "(body)")) from exc
        if only is not None:
            if booking.store_id != only:
                raise Refused(
                    422, "invalid", f"store_id: {booking.store_id!r} is not the store {only!r}"
                )
            old = await self.bookings.get(booking.customer_id, booking.booking_id)
            if old is not None and old.store_id != only:
                raise Refused(404, "not_found", _no_booking(booking.customer_id,
                              booking.booking_id, only))  # fmt: skip
        try:
            await self.bookings.put(booking)
        except RegistryError as exc:
            raise Refused(422, "unknown_customer", str(exc)) from exc
        return web.json_response(json.loads(booking.model_dump_json()), status=201)

    async def _list(self, request: web.Request, body: bytes) -> web.Response:
        if body:
            raise Refused(422, "invalid", "GET /v1/bookings takes no body")
        store = _query_store(request, required=True)
        assert store is not None
        raw_day = request.query.get("day", "")
        try:
            day = date.fromisoformat(raw_day)
        except ValueError:
            raise Refused(422, "invalid", f"day: {raw_day[:40]!r} is not YYYY-MM-DD") from None
        tz_name = request.query.get("tz", "UTC")
        try:
            zone = ZoneInfo(tz_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise Refused(
                422, "invalid", f"tz: {tz_name[:64]!r} is not an IANA time zone"
            ) from None
        since = datetime.combine(day, dtime(), zone)
        until = datetime.combine(day + timedelta(days=1), dtime(), zone) - timedelta(microseconds=1)
        found = await self.bookings.of_store(store, since, until)
        return web.json_response(
            {
                "store_id": store,
                "day": day.isoformat(),
                "timezone": tz_name,
                "bookings": bookings_json(found),
            }
        )

    async def _cancel(self, request: web.Request, body: bytes) -> web.Response:
        try:
            which = Cancel.model_validate_json(body)
        except ValidationError as exc:
            raise Refused(422, "invalid", describe_validation(exc, "(body)")) from exc
        if which.store_id is not None:
            old = await self.bookings.get(which.customer_id, which.booking_id)
            if old is None or old.store_id != which.store_id:
                raise Refused(404, "not_found", _no_booking(which.customer_id,
                              which.booking_id, which.store_id))  # fmt: skip
        if not await self.bookings.cancel(which.customer_id, which.booking_id):
            return web.json_response(
                {"error": "not_found", "reason": f"{which.customer_id} has no booking "
                 f"{which.booking_id!r}"}, status=404,
            )  # fmt: skip
        return web.json_response({"cancelled": which.booking_id})

    async def _openapi(self, request: web.Request) -> web.Response:
        return web.json_response(openapi())

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(dict(self.counts))


def _no_booking(customer_id: str, booking_id: str, store: str) -> str:
    return f"{customer_id} has no booking {booking_id!r} at store {store!r}"


_STORE_ID: TypeAdapter[str] = TypeAdapter(StoreId)


def _query_store(request: web.Request, *, required: bool) -> str | None:
    """The ``store`` query parameter; :class:`Refused` (422) naming what is wrong."""
    name = "store"
    raw = request.query.get(name)
    if raw is None:
        if required:
            raise Refused(422, "invalid", f"{name}: missing query parameter")
        return None
    try:
        return _STORE_ID.validate_python(raw)
    except ValidationError:
        raise Refused(422, "invalid", f"{name}: {raw[:64]!r} is not an id") from None


async def serve(
    services: ServiceSettings,
    settings: BookingsApiSettings,
    on_ready: Callable[[int], None] | None = None,
) -> None:
    """Serve until cancelled; ``on_ready`` is told the bound port."""
    async with redis_for(services) as redis:
        api = BookingsApi(redis, services.redis_prefix, settings)
        runner = web.AppRunner(api.app(), access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, settings.host, settings.port)
            await site.start()
            port = runner.addresses[0][1]
            log.info("bookings-api: listening on %s:%d", settings.host, port)
            if on_ready is not None:
                on_ready(port)
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()
