"""Errors as JSON: every failure of the API answers an ``ErrorReply`` that says what is wrong."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import ValidationError
from redis.exceptions import RedisClusterException, RedisError

from contracts.validation import validation_errors
from notifier.exceptions import (
    AlertConflict,
    InvalidInput,
    NotifierError,
    RoomConflict,
    SignInThrottled,
    TooManyDestinations,
    UnknownAlert,
    UnknownAssociate,
    UnknownDestination,
    UnknownRoom,
    UnknownScheme,
)
from notifier.web.models import ErrorReply

log = logging.getLogger(__name__)

MAX_BODY: web.AppKey[int] = web.AppKey("max_body", int)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An HTTP error with a JSON body that says what is wrong (and which field, if one)."""

    def __init__(self, status: int, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reply = ErrorReply(error=message, field=field) if field else ErrorReply(error=message)


def describe(exc: ValidationError) -> tuple[str, str]:
    """Every problem as "loc: msg", and the first problem's field."""
    errors = validation_errors(exc, "(body)")
    return "; ".join(f"{where}: {msg}" for where, msg in errors), errors[0][0] if errors else ""


def _answer(status: int, headers: dict[str, str] | None = None, **body: Any) -> web.Response:
    reply = ErrorReply(**body)
    return web.json_response(
        reply.model_dump(mode="json", exclude_unset=True), status=status, headers=headers
    )


def _answer_ours(exc: NotifierError) -> web.Response:
    """The notifier's own errors, each with its status."""
    if isinstance(exc, InvalidInput):
        return _answer(400, error=str(exc), field=exc.field)
    if isinstance(exc, UnknownAlert | UnknownAssociate | UnknownDestination | UnknownRoom):
        return _answer(404, error=str(exc))
    if isinstance(exc, TooManyDestinations):
        return _answer(409, error=str(exc))
    if isinstance(exc, SignInThrottled):
        return _answer(
            429,
            {"Retry-After": str(exc.retry_after_s)},
            error=str(exc),
            retry_after_s=exc.retry_after_s,
        )
    if isinstance(exc, UnknownScheme):
        return _answer(400, error=str(exc), field="url")
    if isinstance(exc, AlertConflict):
        return _answer(409, error=str(exc), state=exc.state, claimed_by=exc.claimed_by)
    if isinstance(exc, RoomConflict):
        return _answer(409, error=str(exc), state=exc.state, held_by=exc.held_by)
    return _answer(400, error=str(exc))


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return web.json_response(
            exc.reply.model_dump(mode="json", exclude_unset=True), status=exc.status
        )
    except NotifierError as exc:
        return _answer_ours(exc)
    except (RedisError, RedisClusterException) as exc:
        log.error("%s %s: storage unavailable: %r", request.method, request.path, exc)
        return _answer(503, {"Retry-After": "1"}, error="storage unavailable: try again shortly")
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        # aiohttp's own 404/405/413 come as plain text; the API answers JSON throughout.
        message = f"{exc.reason}: {request.method} {request.path}"
        if exc.status == 413:
            message = f"{exc.reason}: body larger than {request.app[MAX_BODY]} bytes"
        return _answer(exc.status, error=message)
