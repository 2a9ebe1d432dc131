"""Signing in and out (``/api/session``) and who is signed in (``/api/me``)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from notifier.directory import Directory
from notifier.exceptions import SignInThrottled
from notifier.metrics import Metrics
from notifier.settings import NotifierSettings
from notifier.signin import SignInLimits
from notifier.web.auth import Auth, check_origin
from notifier.web.errors import ApiError
from notifier.web.models import AssociateView, LoginBody, MeReply, SignedOutReply
from notifier.web.sessions import SESSION_COOKIE, Sessions
from notifier.web.wire import read_body, reply


@dataclass(frozen=True, slots=True, eq=False)
class SessionHandlers:
    auth: Auth
    sessions: Sessions
    limits: SignInLimits
    directory: Directory
    metrics: Metrics
    settings: NotifierSettings

    async def login(self, request: web.Request) -> web.Response:
        check_origin(request)
        body = await read_body(request, LoginBody)
        try:
            attempt = await self.limits.admit(
                body.store, body.associate, request.remote or "unknown"
            )
        except SignInThrottled:
            self.metrics.inc("proxima_notifier_logins_total", result="throttled")
            raise
        associate = await self.directory.authenticate(body.store, body.associate, body.password)
        if associate is None:
            self.metrics.inc("proxima_notifier_logins_total", result="failed")
            # One message for a wrong store, name or password: no account probing.
            raise ApiError(401, "wrong store, associate or password")
        await self.limits.succeeded(attempt)
        token, session = await self.sessions.create(associate)
        self.metrics.inc("proxima_notifier_logins_total", result="ok")
        response = reply(
            MeReply(associate=AssociateView.model_validate(associate.public()), csrf=session.csrf)
        )
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=self.settings.session_ttl_s,
            httponly=True,
            samesite="Strict",
            secure=self.settings.cookie_secure,
            path="/",
        )
        return response

    async def logout(self, request: web.Request) -> web.Response:
        await self.auth(request)
        await self.sessions.delete(request.cookies.get(SESSION_COOKIE, ""))
        response = reply(SignedOutReply(signed_out=True))
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    async def me(self, request: web.Request) -> web.Response:
        session, associate = await self.auth(request)
        return reply(
            MeReply(associate=AssociateView.model_validate(associate.public()), csrf=session.csrf)
        )
