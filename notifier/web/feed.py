"""The live feed's fan-out: one Redis pattern subscription per instance, many SSE streams.

Each instance subscribes once to every store's feed and revocation channels and hands
each message to the queues of the streams of that store connected to it, so a claim made
through any instance shows everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator
from typing import Any

from redis.exceptions import RedisClusterException, RedisError

from notifier.directory import feed_channel, revocations_channel
from transport.cancel import reraise_if_cancelled
from transport.redis import RedisClient
from transport.redis import as_text as text

log = logging.getLogger(__name__)

RESYNC: dict[str, Any] = {"type": "resync"}
CLOSE: dict[str, Any] = {"type": "close"}


class FeedHub:
    """One Redis pattern subscription per instance, fanned out to local SSE streams."""

    def __init__(self, redis: RedisClient, prefix: str, queue_size: int = 1000) -> None:
        self.redis = redis
        self.prefix = prefix
        self.queue_size = queue_size
        self._queues: dict[str, set[asyncio.Queue[dict[str, Any]]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    @property
    def clients(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def _store_of(self, channel: str) -> str | None:
        head = f"{self.prefix}notifier:store:"
        if not channel.startswith(head):
            return None
        for tail in (":feed", ":revoked"):
            if channel.endswith(tail):
                return channel[len(head) : -len(tail)]
        return None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._pump(), name="notifier-feed-hub")
        await self._ready.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _pump(self) -> None:
        feeds = feed_channel(self.prefix, "*")
        revocations = revocations_channel(self.prefix, "*")
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.psubscribe(feeds, revocations)
                self._ready.set()
                async for message in pubsub.listen():
                    if message.get("type") == "pmessage":
                        self._dispatch(text(message["channel"]), text(message["data"]))
            except (RedisError, RedisClusterException, OSError) as exc:
                reraise_if_cancelled()
                log.error("feed subscription to Redis lost (%r); resubscribing in 1 s", exc)
                self.broadcast(RESYNC)
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(RedisError, RedisClusterException, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _dispatch(self, channel: str, data: str) -> None:
        store = self._store_of(channel)
        if store is None:
            return
        try:
            message = json.loads(data)
        except json.JSONDecodeError:
            log.error("bad message on %s: %.200s", channel, data)
            return
        for queue in self._queues.get(store, ()):
            _offer(queue, message)

    def broadcast(self, message: dict[str, Any]) -> None:
        for queues in self._queues.values():
            for queue in queues:
                _offer(queue, message)

    @contextlib.contextmanager
    def listen(self, store: str) -> Iterator[asyncio.Queue[dict[str, Any]]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self.queue_size)
        self._queues.setdefault(store, set()).add(queue)
        try:
            yield queue
        finally:
            queues = self._queues.get(store, set())
            queues.discard(queue)
            if not queues:
                self._queues.pop(store, None)


def _offer(queue: asyncio.Queue[dict[str, Any]], message: dict[str, Any]) -> None:
    """Queue a message; a console too slow to keep up is told to reload its snapshot."""
    try:
        queue.put_nowait(message)
    except asyncio.QueueFull:
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(RESYNC)
