"""The OpenAPI 3.1 description of the console's HTTP API, served at ``/api/openapi.json``.

Request and response schemas are generated from the pydantic models the handlers read
and reply with (``notifier.web.models``), so they cannot disagree; the paths are listed
here by hand, and a test checks them against the router in both directions.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from notifier.lifecycle import AlertState
from notifier.rooms import RoomOp
from notifier.web.models import (
    AlertReply,
    AlertsReply,
    AssociateReply,
    BookingBody,
    BookingReply,
    BookingsReply,
    CancelBookingBody,
    CancelledReply,
    ChannelsReply,
    DestinationReply,
    ErrorReply,
    GatewaysReply,
    HealthReply,
    HoldBody,
    LoginBody,
    MeReply,
    MessagingBody,
    MessagingReply,
    MessagingSetReply,
    OutcomesReply,
    PushKeyReply,
    PushSubscriptionBody,
    ReceiptsReply,
    RemovedReply,
    RoomReply,
    RoomsBody,
    RoomsReply,
    RoutingBody,
    RoutingReply,
    ShiftBody,
    SignedOutReply,
    StaffReply,
    SummaryReply,
    WebhookBody,
    WebhookReply,
)

REF = "#/components/schemas/{model}"
SESSION: list[dict[str, list[str]]] = [{"session": []}]
CSRF = {
    "name": "X-CSRF-Token",
    "in": "header",
    "required": True,
    "description": "the csrf value returned by POST /api/session or GET /api/me",
    "schema": {"type": "string"},
}


@dataclass(frozen=True, slots=True)
class _Model:
    """Where a model's schema goes; :func:`document` puts a reference to it there."""

    model: type[BaseModel]
    mode: JsonSchemaMode  # "validation" for what is read, "serialization" for what is sent


Schema = dict[str, Any] | type[BaseModel]


def _json(schema: Schema, description: str = "OK") -> dict[str, Any]:
    if isinstance(schema, type):
        return {
            "description": description,
            "content": {"application/json": {"schema": _Model(schema, "serialization")}},
        }
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _text(content_type: str, description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {content_type: {"schema": {"type": "string"}}}}


def _error(description: str) -> dict[str, Any]:
    return _json(ErrorReply, description)


ERROR = _error("what is wrong, in words")
_ERRORS = {
    "400": ERROR,
    "401": _error("not signed in, or the session ended"),
    "403": _error("not allowed (CSRF header, origin or role)"),
    "404": _error("no such thing in this store"),
}


def _op(
    summary: str,
    response: dict[str, Any],
    *,
    auth: bool = True,
    change: bool = False,
    body: type[BaseModel] | None = None,
    params: list[dict[str, Any]] | None = None,
    status: str = "200",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {status: response}}
    if auth:
        op["security"] = SESSION
        op["responses"].update(_ERRORS)
    parameters = list(params or [])
    if change and auth:
        parameters.append(CSRF)
    if parameters:
        op["parameters"] = parameters
    if body:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _Model(body, "validation")}},
        }
        op["responses"].setdefault("400", ERROR)
    if extra:
        op["responses"].update(extra)
    return op


def _param(
    where: str, name: str, description: str, schema: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "description": description,
        "schema": schema or {"type": "string"},
    }


DAYS = _param(
    "query", "days", "the period, in store-local days", {"enum": [1, 7, 30], "default": 1}
)
ALERT_ID = _param("path", "alert_id", "the alert's UUID", {"type": "string", "format": "uuid"})


def _pages() -> dict[str, dict[str, Any]]:
    script = _text("text/javascript")
    return {
        "/": {"get": _op("the console page", _text("text/html"), auth=False)},
        "/static/console.js": {"get": _op("the console's script", script, auth=False)},
        "/static/console.css": {"get": _op("the console's style", _text("text/css"), auth=False)},
        "/static/icon.svg": {"get": _op("the app icon", _text("image/svg+xml"), auth=False)},
        "/manifest.webmanifest": {
            "get": _op(
                "the PWA manifest",
                {
                    "description": "OK",
                    "content": {"application/manifest+json": {"schema": {"type": "object"}}},
                },
                auth=False,
            )
        },
        "/sw.js": {"get": _op("the service worker that shows pushes", script, auth=False)},
        "/api/openapi.json": {"get": _op("this document", _json({"type": "object"}), auth=False)},
    }


def _operations() -> dict[str, dict[str, Any]]:
    return {
        "/healthz": {
            "get": _op(
                "health: Redis reachable (503 if not), MQTT connected",
                _json(HealthReply),
                auth=False,
                extra={"503": _json(HealthReply, "Redis unreachable")},
            )
        },
        "/readyz": {
            "get": _op(
                "readiness, as /healthz: Redis reachable (503 if not); MQTT connected",
                _json(HealthReply),
                auth=False,
                extra={"503": _json(HealthReply, "Redis unreachable")},
            )
        },
        "/livez": {
            "get": _op(
                "liveness: 200 while the process answers (a Redis blip does not fail it)",
                _json({"type": "object", "properties": {"status": {"const": "ok"}}}),
                auth=False,
            )
        },
        "/metrics": {
            "get": _op("Prometheus metrics (text format 0.0.4)", _text("text/plain"), auth=False)
        },
    }


def _session() -> dict[str, dict[str, Any]]:
    return {
        "/api/session": {
            "post": _op(
                "sign in; sets the HttpOnly session cookie and returns the CSRF token",
                _json(MeReply),
                auth=False,
                body=LoginBody,
                extra={
                    "401": _error("wrong store, associate or password"),
                    "429": _error(
                        "too many sign-in tries (account, address or both); see Retry-After"
                    ),
                },
            ),
            "delete": _op("sign out", _json(SignedOutReply), change=True),
        },
        "/api/me": {"get": _op("who is signed in, and the CSRF token", _json(MeReply))},
    }


def _alerts() -> dict[str, dict[str, Any]]:
    alert = _json(AlertReply)
    return {
        "/api/alerts": {
            "get": _op(
                "the store's alerts, newest first",
                _json(AlertsReply),
                params=[
                    _param(
                        "query",
                        "state",
                        "only alerts in this state",
                        {"enum": [s.value for s in AlertState]},
                    ),
                    _param(
                        "query",
                        "since",
                        "ISO 8601 time with a zone (default: 12 hours ago)",
                        {"type": "string", "format": "date-time"},
                    ),
                ],
            )
        },
        "/api/alerts/{alert_id}": {"get": _op("one alert of the store", alert, params=[ALERT_ID])},
        "/api/alerts/{alert_id}/{action}": {
            "post": _op(
                "claim (first claim wins), done, or decline (when everyone told declined, the "
                "next tier is told at once); takes no body",
                alert,
                change=True,
                params=[
                    ALERT_ID,
                    _param("path", "action", "what to do", {"enum": ["claim", "done", "decline"]}),
                ],
                extra={"409": _error("already claimed by someone else, or closed")},
            )
        },
        "/api/alerts/{alert_id}/receipts": {
            "get": _op(
                "what each channel reported for this alert",
                _json(ReceiptsReply),
                params=[ALERT_ID],
            )
        },
        "/api/summary": {
            "get": _op(
                "the manager view: today's arrivals, unclaimed alerts, median time to claim",
                _json(SummaryReply),
            )
        },
        "/api/outcomes": {
            "get": _op(
                "managers: what happened after the alerts over today, 7 or 30 store-local days "
                "(counts; per associate; per visit for customers with analytics consent)",
                _json(OutcomesReply),
                params=[DAYS],
            )
        },
        "/api/outcomes.csv": {
            "get": _op(
                "managers: the outcomes as CSV (rows: visits, associates or days)",
                _text("text/csv"),
                params=[
                    DAYS,
                    _param(
                        "query",
                        "rows",
                        "which table",
                        {"enum": ["visits", "associates", "days"], "default": "visits"},
                    ),
                ],
            )
        },
        "/api/events": {
            "get": _op(
                "server-sent events: snapshot, alert, shift, notify, signed-out",
                _text("text/event-stream"),
            )
        },
    }


def _shifts() -> dict[str, dict[str, Any]]:
    return {
        "/api/shifts": {
            "get": _op("the store's associates and who is on shift", _json(StaffReply))
        },
        "/api/shifts/{associate_id}": {
            "post": _op(
                "start or end a shift ('me', or anyone's for a manager)",
                _json(AssociateReply),
                change=True,
                body=ShiftBody,
                params=[_param("path", "associate_id", "an associate id, or 'me'")],
            )
        },
    }


def _channels() -> dict[str, dict[str, Any]]:
    return {
        "/api/channels": {
            "get": _op(
                "my webhooks and push subscriptions (and the store's, for a manager)",
                _json(ChannelsReply),
            )
        },
        "/api/channels/webhooks": {
            "post": _op(
                "managers: add a signed https webhook for me or for the store (public "
                "addresses only, checked when connecting); the secret is returned only here",
                _json(WebhookReply, "Created"),
                change=True,
                body=WebhookBody,
                status="201",
                extra={
                    "403": _error("not a manager"),
                    "409": _error("too many webhooks"),
                },
            )
        },
        "/api/channels/push": {
            "post": _op(
                "add this browser's push subscription (PushSubscription.toJSON())",
                _json(DestinationReply, "Created"),
                change=True,
                body=PushSubscriptionBody,
                status="201",
                extra={"409": _error("too many subscriptions")},
            )
        },
        "/api/channels/{destination_id}": {
            "delete": _op(
                "remove one of my destinations (scope=store: the store's, managers)",
                _json(RemovedReply),
                change=True,
                params=[
                    _param("path", "destination_id", "the id from GET /api/channels"),
                    _param("query", "scope", "me (default) or store", {"enum": ["me", "store"]}),
                ],
            )
        },
        "/api/push/key": {
            "get": _op(
                "the VAPID public key to subscribe with (applicationServerKey)",
                _json(PushKeyReply),
            )
        },
    }


def _routing() -> dict[str, dict[str, Any]]:
    return {
        "/api/routing": {
            "get": _op(
                "the store's routing: ladder times, expiry, tiers in use", _json(RoutingReply)
            ),
            "put": _op(
                "change some of the store's routing (managers); checked whole",
                _json(RoutingReply),
                change=True,
                body=RoutingBody,
            ),
        },
    }


def _gateways() -> dict[str, dict[str, Any]]:
    return {
        "/api/gateways": {
            "get": _op(
                "the store's gateways as the bridge last recorded them, flagged where a person "
                "is needed (managers)",
                _json(GatewaysReply),
            )
        },
    }


def _rooms() -> dict[str, dict[str, Any]]:
    rooms = _json(RoomsReply)
    act = _op(
        "hold a room for an open alert's customer (first hold wins; the body names whom), "
        "or prepare, ready, use, done, release it (its holder or a manager; no body)",
        _json(RoomReply),
        change=True,
        body=HoldBody,
        params=[
            _param("path", "room_id", "the room's id in the store's layout"),
            _param("path", "action", "what to do", {"enum": [op.value for op in RoomOp]}),
        ],
        extra={
            "409": _error(
                "refused: the room is held by someone else, or not in a state the action "
                "applies to (the reason says which); or the alert is closed"
            ),
        },
    )
    act["requestBody"]["required"] = False  # hold only
    return {
        "/api/rooms": {
            "get": _op("the store's fitting rooms and today's counts (held, ready, used)", rooms),
            "put": _op(
                "managers: set the store's fitting rooms (replaces the layout; a room in use "
                "or held cannot be left out)",
                rooms,
                change=True,
                body=RoomsBody,
            ),
        },
        "/api/rooms/{room_id}/{action}": {"post": act},
    }


def _messaging() -> dict[str, dict[str, Any]]:
    manager = {"403": _error("not a manager")}
    return {
        "/api/messaging": {
            "get": _op(
                "managers: the store's customer-messaging webhook (no secret) and its latest "
                "results; 'your room is ready' goes there for customers who granted "
                "room_messages",
                _json(MessagingReply),
                extra=manager,
            ),
            "put": _op(
                "managers: set or replace the messaging webhook (https, public addresses "
                "only, checked when connecting); the secret is returned only here",
                _json(MessagingSetReply),
                change=True,
                body=MessagingBody,
                extra=manager,
            ),
            "delete": _op(
                "managers: remove the messaging webhook (404 when there is none)",
                _json(RemovedReply),
                change=True,
                extra=manager,
            ),
        },
    }


def _bookings() -> dict[str, dict[str, Any]]:
    api = {
        "403": _error("not a manager"),
        "502": _error("the bookings API failed or refused the console's signature (the reason)"),
        "503": _error("bookings not connected, or the bookings API does not answer (the reason)"),
    }
    refused = {
        "400": _error("not a booking: the field and why, from the console or the bookings API "
                      "(a customer who is not enrolled, an associate not of this store, ...)"),
        "404": _error("no such booking at this store (another store's answers the same)"),
        "409": _error("the bookings API refused it as a repeat"),
    }  # fmt: skip
    return {
        "/api/bookings": {
            "get": _op(
                "managers: the store's reservations and appointments starting on a store-local "
                "day (default today), through the bookings API; connected=false when it is "
                "not set up",
                _json(BookingsReply),
                params=[
                    _param(
                        "query",
                        "day",
                        "YYYY-MM-DD in the store's time zone (default: today)",
                        {"type": "string", "format": "date"},
                    )
                ],
                extra=api,
            ),
            "post": _op(
                "managers: book a reservation or an appointment at the store (201), or change "
                "one: a booking_id given replaces that booking (200)",
                _json(BookingReply),
                change=True,
                body=BookingBody,
                extra={"201": _json(BookingReply, "Created"), **refused, **api},
            ),
        },
        "/api/bookings/cancel": {
            "post": _op(
                "managers: cancel a booking of the store",
                _json(CancelledReply),
                change=True,
                body=CancelBookingBody,
                extra={**refused, **api},
            )
        },
    }


def _models(node: Any) -> list[_Model]:
    if isinstance(node, _Model):
        return [node]
    if isinstance(node, dict):
        return [m for value in node.values() for m in _models(value)]
    if isinstance(node, list):
        return [m for value in node for m in _models(value)]
    return []


def _resolve(node: Any, refs: dict[_Model, dict[str, Any]]) -> Any:
    if isinstance(node, _Model):
        return refs[node]
    if isinstance(node, dict):
        return {key: _resolve(value, refs) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolve(value, refs) for value in node]
    return node


@functools.cache
def document() -> dict[str, Any]:
    """The whole description (built once)."""
    paths = {**_pages(), **_operations(), **_session(), **_alerts(), **_shifts()}
    paths |= {**_channels(), **_routing(), **_gateways(), **_rooms(), **_messaging()}
    paths |= _bookings()
    wanted = list(dict.fromkeys(_models(paths)))
    keys, defs = models_json_schema([(m.model, m.mode) for m in wanted], ref_template=REF)
    refs = {m: dict(keys[(m.model, m.mode)]) for m in wanted}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Proxima notifier API",
            "version": "1",
            "description": (
                "The associate console's JSON API. Every /api endpoint except sign-in needs "
                "the session cookie; every state change also the X-CSRF-Token header. All "
                "data is scoped to the signed-in associate's store; errors are JSON "
                "objects with an 'error' message."
            ),
        },
        "paths": _resolve(paths, refs),
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "proxima_session"}
            },
        },
    }
