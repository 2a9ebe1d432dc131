"""The OpenAPI 3.1 description of the console's HTTP API, served at ``/api/openapi.json``.

Request bodies come from the pydantic models the handlers validate with, so they cannot
disagree; the paths are listed here by hand, and a test checks them against the router
in both directions.
"""

from __future__ import annotations

import functools
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

REF = "#/components/schemas/{model}"
SESSION: list[dict[str, list[str]]] = [{"session": []}]
CSRF = {
    "name": "X-CSRF-Token",
    "in": "header",
    "required": True,
    "description": "the csrf value returned by POST /api/session or GET /api/me",
    "schema": {"type": "string"},
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _obj(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(props)}


ERROR = _json(_ref("Error"), "what is wrong, in words")
_ERRORS = {
    "400": ERROR,
    "401": _json(_ref("Error"), "not signed in, or the session ended"),
    "403": _json(_ref("Error"), "not allowed (CSRF header, origin or role)"),
    "404": _json(_ref("Error"), "no such thing in this store"),
}


def _op(
    summary: str,
    response: dict[str, Any],
    *,
    auth: bool = True,
    change: bool = False,
    body: str | None = None,
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
            "content": {"application/json": {"schema": _ref(body)}},
        }
        op["responses"].setdefault("400", ERROR)
    if extra:
        op["responses"].update(extra)
    return op


def _path_param(
    name: str, description: str, schema: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


ALERT_ID = _path_param("alert_id", "the alert's UUID", {"type": "string", "format": "uuid"})

_VIEWS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "properties": {"error": {"type": "string"}, "field": {"type": "string"}},
        "required": ["error"],
    },
    "Associate": {
        "type": "object",
        "properties": {
            "store_id": {"type": "string"},
            "associate_id": {"type": "string"},
            "name": {"type": "string"},
            "role": {"enum": ["associate", "manager"]},
            "zones": {"type": "array", "items": {"type": "string"}},
            "on_shift": {"type": "boolean"},
            "shift_started_at": {"type": ["string", "null"], "format": "date-time"},
        },
    },
    "AlertView": {
        "type": "object",
        "description": "an alert as a console sees it: never the customer id",
        "properties": {
            "alert_id": {"type": "string", "format": "uuid"},
            "store_id": {"type": "string"},
            "kind": {"type": "string"},
            "title": {"type": "string"},
            "body": {"type": "string"},
            "fields": {
                "type": "object",
                "description": "only the fields the customer made visible",
            },
            "zone_id": {"type": ["string", "null"]},
            "priority": {"enum": ["low", "normal", "high", "urgent"]},
            "state": {"enum": ["delivered", "claimed", "done", "expired"]},
            "tier": {"type": ["string", "null"]},
            "notified": {"type": "array", "items": {"type": "string"}},
            "declined": {"type": "array", "items": {"type": "string"}},
            "claimed_by": {"type": ["string", "null"]},
            "claimed_by_name": {"type": ["string", "null"]},
            "rev": {"type": "integer"},
        },
    },
    "Receipt": {
        "type": "object",
        "properties": {
            "channel": {"enum": ["mqtt", "sse", "webhook", "webpush", "unknown"]},
            "destination": {"type": "string", "description": "the host only"},
            "associate_id": {"type": ["string", "null"]},
            "ok": {"type": "boolean"},
            "attempts": {"type": "integer"},
            "at": {"type": "string", "format": "date-time"},
            "status": {"type": ["integer", "null"]},
            "detail": {"type": "string"},
        },
    },
    "Routing": {
        "type": "object",
        "properties": {
            "escalate_after_s": {"type": "number"},
            "manager_after_s": {"type": "number"},
            "expire_after_s": {"type": "number"},
            "tiers": {
                "type": "array",
                "items": {"enum": ["primary", "zone", "on_shift", "manager"]},
            },
        },
    },
    "Destination": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "channel": {"enum": ["webhook", "webpush"]},
            "url": {"type": "string", "description": "scheme, host and path only"},
            "key_id": {"type": ["string", "null"]},
        },
    },
}


def _bodies() -> list[type[BaseModel]]:
    from notifier import web  # the handlers' own models; imported late (web imports us)

    return [
        web.LoginBody,
        web.ShiftBody,
        web.WebhookBody,
        web.PushSubscriptionBody,
        web.RoutingBody,
    ]


def _paths() -> dict[str, dict[str, Any]]:
    alert = _json(_obj(alert=_ref("AlertView")))
    me = _json(_obj(associate=_ref("Associate"), csrf={"type": "string"}))
    text = {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}
    page = {"description": "OK", "content": {"text/html": {"schema": {"type": "string"}}}}
    script = {"description": "OK", "content": {"text/javascript": {"schema": {"type": "string"}}}}
    return {
        "/": {"get": _op("the console page", page, auth=False)},
        "/static/console.js": {"get": _op("the console's script", script, auth=False)},
        "/static/console.css": {
            "get": _op(
                "the console's style",
                {"description": "OK", "content": {"text/css": {"schema": {"type": "string"}}}},
                auth=False,
            )
        },
        "/static/icon.svg": {
            "get": _op(
                "the app icon",
                {"description": "OK", "content": {"image/svg+xml": {"schema": {"type": "string"}}}},
                auth=False,
            )
        },
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
        "/healthz": {
            "get": _op(
                "health: Redis reachable (503 if not), MQTT connected",
                _json(
                    _obj(
                        status={"type": "string"},
                        redis={"type": "boolean"},
                        mqtt={"type": "boolean"},
                    )
                ),
                auth=False,
                extra={"503": _json({"type": "object"}, "Redis unreachable")},
            )
        },
        "/metrics": {"get": _op("Prometheus metrics (text format 0.0.4)", text, auth=False)},
        "/api/openapi.json": {"get": _op("this document", _json({"type": "object"}), auth=False)},
        "/api/session": {
            "post": _op(
                "sign in; sets the HttpOnly session cookie and returns the CSRF token",
                me,
                auth=False,
                body="LoginBody",
                extra={
                    "401": _json(_ref("Error"), "wrong store, associate or password"),
                    "429": _json(
                        _ref("Error"),
                        "too many sign-in tries (account, address or both); see Retry-After",
                    ),
                },
            ),
            "delete": _op("sign out", _json(_obj(signed_out={"type": "boolean"})), change=True),
        },
        "/api/me": {"get": _op("who is signed in, and the CSRF token", me)},
        "/api/alerts": {
            "get": _op(
                "the store's alerts, newest first",
                _json(_obj(alerts={"type": "array", "items": _ref("AlertView")})),
                params=[
                    _query(
                        "state",
                        "only alerts in this state",
                        {"enum": ["delivered", "claimed", "done", "expired"]},
                    ),
                    _query(
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
                    _path_param("action", "what to do", {"enum": ["claim", "done", "decline"]}),
                ],
                extra={"409": _json(_ref("Error"), "already claimed by someone else, or closed")},
            )
        },
        "/api/alerts/{alert_id}/receipts": {
            "get": _op(
                "what each channel reported for this alert",
                _json(_obj(receipts={"type": "array", "items": _ref("Receipt")})),
                params=[ALERT_ID],
            )
        },
        "/api/events": {
            "get": _op(
                "server-sent events: snapshot, alert, shift, notify, signed-out",
                {
                    "description": "OK",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
            )
        },
        "/api/shifts": {
            "get": _op(
                "the store's associates and who is on shift",
                _json(_obj(associates={"type": "array", "items": _ref("Associate")})),
            )
        },
        "/api/shifts/{associate_id}": {
            "post": _op(
                "start or end a shift ('me', or anyone's for a manager)",
                _json(_obj(associate=_ref("Associate"))),
                change=True,
                body="ShiftBody",
                params=[_path_param("associate_id", "an associate id, or 'me'")],
            )
        },
        "/api/summary": {
            "get": _op(
                "the manager view: today's arrivals, unclaimed alerts, median time to claim",
                _json({"type": "object"}),
            )
        },
        "/api/channels": {
            "get": _op(
                "my webhooks and push subscriptions (and the store's, for a manager)",
                _json(
                    {
                        "type": "object",
                        "properties": {
                            "always": {"type": "array", "items": {"type": "string"}},
                            "mine": {"type": "array", "items": _ref("Destination")},
                            "store": {"type": "array", "items": _ref("Destination")},
                        },
                    }
                ),
            )
        },
        "/api/channels/webhooks": {
            "post": _op(
                "managers: add a signed https webhook for me or for the store (public "
                "addresses only, checked when connecting); the secret is returned only here",
                _json(_obj(destination=_ref("Destination"), secret={"type": "string"}), "Created"),
                change=True,
                body="WebhookBody",
                status="201",
                extra={
                    "403": _json(_ref("Error"), "not a manager"),
                    "409": _json(_ref("Error"), "too many webhooks"),
                },
            )
        },
        "/api/channels/push": {
            "post": _op(
                "add this browser's push subscription (PushSubscription.toJSON())",
                _json(_obj(destination=_ref("Destination")), "Created"),
                change=True,
                body="PushSubscriptionBody",
                status="201",
                extra={"409": _json(_ref("Error"), "too many subscriptions")},
            )
        },
        "/api/channels/{destination_id}": {
            "delete": _op(
                "remove one of my destinations (scope=store: the store's, managers)",
                _json(_obj(removed={"type": "string"})),
                change=True,
                params=[
                    _path_param("destination_id", "the id from GET /api/channels"),
                    _query("scope", "me (default) or store", {"enum": ["me", "store"]}),
                ],
            )
        },
        "/api/routing": {
            "get": _op(
                "the store's routing: ladder times, expiry, tiers in use",
                _json(_obj(routing=_ref("Routing"))),
            ),
            "put": _op(
                "change some of the store's routing (managers); checked whole",
                _json(_obj(routing=_ref("Routing"))),
                change=True,
                body="RoutingBody",
            ),
        },
        "/api/push/key": {
            "get": _op(
                "the VAPID public key to subscribe with (applicationServerKey)",
                _json(_obj(public_key={"type": "string"})),
            )
        },
    }


@functools.cache
def document() -> dict[str, Any]:
    """The whole description (built once)."""
    _keys, defs = models_json_schema([(m, "validation") for m in _bodies()], ref_template=REF)
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
        "paths": _paths(),
        "components": {
            "schemas": {**_VIEWS, **defs.get("$defs", {})},
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "proxima_session"}
            },
        },
    }
