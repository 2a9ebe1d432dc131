"""A Redis-stream outbox: at-least-once hand-off from a transition to a slow or remote sink.

``put`` appends an entry; ``run`` reads it in a consumer group, calls the handler and only
then acknowledges (XACK + XDEL). A handler that raises leaves the entry pending; an
entry pending longer than ``claim_idle`` (its instance died, or the sink was down) is
claimed again with XAUTOCLAIM, by this instance or any other. So every entry reaches
the sink at least once, whichever instance is alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

from redis.exceptions import RedisClusterException, RedisError, ResponseError

from transport.cancel import reraise_if_cancelled
from transport.redis import RedisClient, text_map
from transport.redis import as_text as text

log = logging.getLogger(__name__)

Entry = tuple[str, dict[str, str]]
Handler = Callable[[Sequence[Entry]], Awaitable[None]]


class Outbox:
    """One stream, one consumer group, one consumer name per instance."""

    def __init__(
        self,
        redis: RedisClient,
        key: str,
        *,
        group: str,
        consumer: str,
        claim_idle: timedelta = timedelta(seconds=30),
        maxlen: int = 100_000,
    ) -> None:
        self.redis = redis
        self.key = key
        self.group = group
        self.consumer = consumer
        self.claim_idle_ms = int(claim_idle.total_seconds() * 1000)
        self.maxlen = maxlen
        self._group_ready = False

    async def put(self, fields: dict[str, str]) -> str:
        # Approximate trimming keeps a dead sink from filling Redis; the cap is generous.
        return text(await self.redis.xadd(self.key, fields, maxlen=self.maxlen, approximate=True))  # type: ignore[arg-type]

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            await self.redis.xgroup_create(self.key, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    async def pending(self) -> int:
        await self._ensure_group()
        info = await self.redis.xpending(self.key, self.group)
        return int(info["pending"])

    async def ack(self, ids: Sequence[str]) -> None:
        if ids:
            pipe = self.redis.pipeline(transaction=False)
            pipe.xack(self.key, self.group, *ids)
            pipe.xdel(self.key, *ids)
            await pipe.execute()

    async def claim_stale(self, count: int = 100) -> list[Entry]:
        """Entries pending longer than ``claim_idle`` (any consumer's), now ours."""
        await self._ensure_group()
        reply = await self.redis.xautoclaim(
            self.key, self.group, self.consumer, self.claim_idle_ms, "0-0", count=count
        )
        claimed: list[tuple[Any, Any]] = reply[1]
        return [(text(i), text_map(f)) for i, f in claimed if f]

    async def read(self, count: int = 100, block_ms: int = 1000) -> list[Entry]:
        await self._ensure_group()
        reply: Any = await self.redis.xreadgroup(
            self.group, self.consumer, {self.key: ">"}, count=count, block=block_ms
        )
        out: list[Entry] = []
        for _stream, entries in reply or []:
            out.extend((text(i), text_map(f)) for i, f in entries if f)
        return out

    async def drain_once(self, handler: Handler, count: int = 100, block_ms: int = 1000) -> int:
        """One round: stale entries first, then new ones; acknowledged after the handler."""
        entries = await self.claim_stale(count) or await self.read(count, block_ms)
        if entries:
            await handler(entries)
            await self.ack([i for i, _ in entries])
        return len(entries)

    async def run(self, handler: Handler, count: int = 100) -> None:
        """Forever: a failing handler or Redis is logged and retried, never fatal."""
        while True:
            try:
                await self.drain_once(handler, count)
            except asyncio.CancelledError:
                raise
            except (RedisError, RedisClusterException, OSError) as exc:
                reraise_if_cancelled()
                log.error("outbox %s: Redis error %r; retrying in 1 s", self.key, exc)
                self._group_ready = False
                await asyncio.sleep(1.0)
            except Exception:
                reraise_if_cancelled()
                # The entries stay pending and are claimed again after claim_idle.
                log.exception("outbox %s: handler failed; entries kept for a retry", self.key)
                await asyncio.sleep(1.0)

    async def clear(self) -> None:
        with contextlib.suppress(RedisError, RedisClusterException):
            await self.redis.delete(self.key)
