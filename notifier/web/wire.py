"""Reading a request's input and writing its reply, the same way in every handler."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from notifier.web.errors import ApiError, describe

B = TypeVar("B", bound=BaseModel)


def reply(model: BaseModel, status: int = 200) -> web.Response:
    """The model as JSON; optional fields the handler did not set are left out."""
    return web.json_response(model.model_dump(mode="json", exclude_unset=True), status=status)


async def read_body(request: web.Request, model: type[B]) -> B:
    if request.content_type != "application/json":
        raise ApiError(415, f"Content-Type must be application/json, not {request.content_type}")
    raw = await request.read()
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        message, field = describe(exc)
        raise ApiError(400, message, field=field) from exc


def alert_id_of(request: web.Request) -> str:
    raw = request.match_info["alert_id"]
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise ApiError(400, f"alert_id: {raw[:80]!r} is not a UUID", field="alert_id") from None


def since_of(request: web.Request, default: datetime) -> datetime:
    """The ``since`` query parameter: an ISO 8601 time with a zone."""
    raw = request.query.get("since")
    if raw is None:
        return default
    try:
        since = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, f"since: {raw[:60]!r} is not an ISO 8601 time", field="since") from None
    if since.tzinfo is None:
        raise ApiError(400, "since: give a timezone, e.g. 2026-01-01T10:00:00Z", field="since")
    return since.astimezone(UTC)
