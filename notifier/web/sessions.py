"""Console sessions in Redis: a random token in the cookie, only its SHA-256 stored."""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import timedelta

from notifier.directory import Associate, revocations_channel, sessions_key
from transport.redis import RedisClient, text_map

SESSION_COOKIE = "proxima_session"


@dataclass(frozen=True, slots=True)
class Session:
    store_id: str
    associate_id: str
    csrf: str
    sid: str = ""  # names the session in revocation messages (never the token or its hash)
    incarnation: str = ""  # the associate's when signed in: a re-created id does not fit


class Sessions:
    """Console sessions in Redis, keyed by the token's hash so a dump of Redis holds none.

    Each associate's session keys are also listed in a set, so that removing the
    associate ends them all; a sign-out or removal is published so that live feeds on
    every instance close at once.
    """

    def __init__(self, redis: RedisClient, prefix: str, ttl: timedelta) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl = ttl

    def _key(self, token: str) -> str:
        digest = hashlib.sha256(token.encode()).hexdigest()
        return f"{self.prefix}notifier:session:{digest}"

    async def create(self, associate: Associate) -> tuple[str, Session]:
        token = secrets.token_urlsafe(32)
        session = Session(
            associate.store_id,
            associate.associate_id,
            secrets.token_urlsafe(32),
            sid=secrets.token_urlsafe(12),
            incarnation=associate.incarnation,
        )
        key = self._key(token)
        # One transaction, so a session can never be left behind without its expiry.
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(
            key,
            mapping={
                "store": session.store_id,
                "associate": session.associate_id,
                "csrf": session.csrf,
                "sid": session.sid,
                "incarnation": session.incarnation,
            },
        )
        pipe.expire(key, self.ttl)
        await pipe.execute()
        index = sessions_key(self.prefix, session.store_id, session.associate_id)
        # Listed after it exists: a removal that misses it still leaves a session whose
        # incarnation no longer fits, refused by every request.
        pipe = self.redis.pipeline(transaction=False)
        pipe.sadd(index, key)
        pipe.expire(index, self.ttl)
        await pipe.execute()
        return token, session

    async def get(self, token: str) -> Session | None:
        if not token or len(token) > 200:
            return None
        data = text_map(await self.redis.hgetall(self._key(token)))
        if not {"store", "associate", "csrf"} <= data.keys():
            return None
        return Session(
            data["store"],
            data["associate"],
            data["csrf"],
            sid=data.get("sid", ""),
            incarnation=data.get("incarnation", ""),
        )

    async def delete(self, token: str) -> None:
        """End a session and close its live feeds on every instance."""
        session = await self.get(token)
        key = self._key(token)
        await self.redis.delete(key)
        if session is None:
            return
        await self.redis.srem(
            sessions_key(self.prefix, session.store_id, session.associate_id), key
        )
        if session.sid:
            await self.redis.publish(
                revocations_channel(self.prefix, session.store_id),
                json.dumps({"type": "revoke", "sid": session.sid}),
            )
