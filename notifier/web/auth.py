"""Who is asking, and may they: the session cookie, the CSRF token and the origin."""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from aiohttp import web

from notifier.directory import Associate, Directory
from notifier.web.errors import ApiError
from notifier.web.sessions import SESSION_COOKIE, Session, Sessions

CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def check_origin(request: web.Request) -> None:
    """Refuse a state change sent from another site (belt to the CSRF token's braces)."""
    origin = request.headers.get("Origin")
    if origin and urlsplit(origin).netloc != request.host:
        raise ApiError(403, f"cross-origin request from {origin} refused")


class Auth:
    """Checks every API request's session; a state change must also carry its CSRF token."""

    def __init__(self, sessions: Sessions, directory: Directory) -> None:
        self.sessions = sessions
        self.directory = directory

    async def __call__(self, request: web.Request) -> tuple[Session, Associate]:
        token = request.cookies.get(SESSION_COOKIE, "")
        if not token:
            raise ApiError(401, "not signed in")
        session = await self.sessions.get(token)
        if session is None:
            raise ApiError(401, "session expired or signed out: sign in again")
        associate = await self.associate_of(session)
        if associate is None:
            await self.sessions.delete(token)
            raise ApiError(401, "this account no longer exists")
        if request.method not in _SAFE_METHODS:
            check_origin(request)
            sent = request.headers.get(CSRF_HEADER, "")
            if not sent:
                raise ApiError(403, f"missing {CSRF_HEADER} header")
            if not hmac.compare_digest(sent.encode(), session.csrf.encode()):
                raise ApiError(403, f"wrong {CSRF_HEADER} header")
        return session, associate

    async def associate_of(self, session: Session) -> Associate | None:
        """The session's associate, unless removed (or removed and re-created since)."""
        associate = await self.directory.get(session.store_id, session.associate_id)
        if associate is None or associate.incarnation != session.incarnation:
            return None
        return associate

    async def still_signed_in(self, token: str) -> bool:
        session = await self.sessions.get(token)
        return session is not None and await self.associate_of(session) is not None


def require_manager(associate: Associate, message: str) -> None:
    if associate.role != "manager":
        raise ApiError(403, message)
