"""The console's way to the store's bookings: a client of the bookings API
(``proxima stream bookings-api``), signed as every sender's request is (Standard Webhooks:
``webhook-id``, ``webhook-timestamp``, ``webhook-signature`` = ``v1,`` + base64
HMAC-SHA256 of ``{id}.{timestamp}.{body}`` under ``PROXIMA_NOTIFIER_BOOKINGS_API_SECRET``).

The notifier does not read the bookings from Redis itself: they belong to the stream's
layer, and the API is their one door (validation, the customer's enrolment, the store
index). Every request names the manager's store (``store`` on a listing and a change,
``store_id`` on a cancel), so the API refuses a booking of another store as if it did not
exist.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp

from transport.standard_webhooks import secret_key, signature

log = logging.getLogger(__name__)

MAX_REPLY_BYTES = 1 << 20


class BookingsUnavailable(Exception):
    """The bookings API could not be asked (not set up, unreachable, or it failed)."""

    def __init__(self, reason: str, status: int = 503) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class BookingsRefused(Exception):
    """The bookings API answered with a refusal (its ``error`` and ``reason``)."""

    def __init__(self, status: int, error: str, reason: str) -> None:
        super().__init__(f"{error}: {reason}")
        self.status = status
        self.error = error
        self.reason = reason


def signed_headers(key: bytes, body: bytes, now: float) -> dict[str, str]:
    """The three Standard Webhooks headers of ``body``, sent at ``now`` (Unix seconds)."""
    msg_id = f"msg_{uuid.uuid4().hex}"
    stamp = str(int(now))
    digest = signature(key, msg_id, stamp, body)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": stamp,
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }


class BookingsClient:
    """Lists, puts and cancels one store's bookings through the bookings API at ``url``."""

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        timeout_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url.rstrip("/")
        self.key = secret_key(secret)
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.clock = clock
        self._http: aiohttp.ClientSession | None = None

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(timeout=self.timeout)
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    async def list(self, store_id: str, day: str, timezone: str) -> dict[str, Any]:
        """The store's bookings starting on ``day`` (YYYY-MM-DD in ``timezone``)."""
        query = {"store": store_id, "day": day, "tz": timezone}
        return await self._call("GET", "/v1/bookings", query, None)

    async def put(self, store_id: str, booking: dict[str, Any]) -> dict[str, Any]:
        """Create or replace a booking of the store (its ``store_id`` set to the store)."""
        body = {**booking, "store_id": store_id}
        return await self._call("POST", "/v1/bookings", {"store": store_id}, body)

    async def cancel(self, store_id: str, customer_id: str, booking_id: str) -> dict[str, Any]:
        body = {"customer_id": customer_id, "booking_id": booking_id, "store_id": store_id}
        return await self._call("POST", "/v1/bookings/cancel", {}, body)

    async def _call(
        self, method: str, path: str, query: dict[str, str], payload: dict[str, Any] | None
    ) -> dict[str, Any]:
        body = b"" if payload is None else json.dumps(payload).encode()
        headers = signed_headers(self.key, body, self.clock())
        if payload is not None:
            headers["content-type"] = "application/json"
        where = f"{method} {self.url}{path}"
        try:
            async with self._session().request(
                method, self.url + path, params=query, data=body, headers=headers
            ) as res:
                raw = await res.content.read(MAX_REPLY_BYTES)
                status = res.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning("bookings API unreachable (%s): %r", where, exc)
            raise BookingsUnavailable(
                f"the bookings API at {self.url} does not answer ({type(exc).__name__}): "
                "try again shortly, or ask the operator to check proxima stream bookings-api"
            ) from exc
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise BookingsUnavailable(
                f"the bookings API at {self.url} answered {status} without JSON", status=502
            )
        if status < 300:
            return data
        error, reason = str(data.get("error", "")), str(data.get("reason", ""))
        if status == 401:
            log.error("bookings API refused the console's signature: %s", reason)
            raise BookingsUnavailable(
                f"the bookings API refused the console's signature ({reason}): "
                "PROXIMA_NOTIFIER_BOOKINGS_API_SECRET must be the API's secret",
                status=502,
            )
        if status >= 500 or not error:
            raise BookingsUnavailable(
                f"the bookings API at {self.url} failed ({status}): {reason or 'no reason given'}",
                status=502,
            )
        raise BookingsRefused(status, error, reason)
