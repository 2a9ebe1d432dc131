"""Redis Cluster's hash-slot rule, checked in tests.

:class:`SlotCheckedRedis` is a real redis-py client (for the single test server) that
refuses what Redis Cluster refuses: one command, one MULTI/EXEC or one script whose keys
fall in more than one hash slot. It asks the server which arguments are keys (``COMMAND
GETKEYS``), so it knows every command and script the way the server does. Our Redis code
runs through it in tests, so a cross-slot pattern (an MGET of several customers, a
transaction over two shards) fails here, not first on a production cluster.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.crc import key_slot
from redis.exceptions import ResponseError

# Outside a transaction, redis-py's RedisCluster splits these over the slots by itself.
SPLIT_BY_CLUSTER_CLIENT = frozenset({"DEL", "UNLINK", "EXISTS", "TOUCH"})


class CrossSlotError(AssertionError):
    """What Redis Cluster would answer with CROSSSLOT (or redis-py refuse beforehand)."""


class SlotChecker:
    """Finds each command's keys with the server's own ``COMMAND GETKEYS``; records counts."""

    def __init__(self, oracle: aioredis.Redis) -> None:
        self.oracle = oracle
        self.seen: Counter[str] = Counter()

    async def keys_of(self, args: Sequence[Any]) -> list[bytes]:
        try:
            keys: list[bytes | str] = await self.oracle.command_getkeys(*args)
        except ResponseError:  # a command without key arguments (SCAN, PING, ...)
            return []
        return [k.encode() if isinstance(k, str) else k for k in keys]

    async def check(self, commands: Sequence[Sequence[Any]], *, transaction: bool) -> None:
        every: dict[int, bytes] = {}
        for args in commands:
            name = str(args[0]).upper()
            keys = await self.keys_of(args)
            slots = {key_slot(k): k for k in keys}
            if len(keys) > 1:
                self.seen[f"multi-key {name}"] += 1
            if transaction:
                every.update(slots)
            elif len(slots) > 1 and name not in SPLIT_BY_CLUSTER_CLIENT:
                raise CrossSlotError(f"{name} over {len(slots)} slots: {sorted(slots.values())}")
        if transaction:
            self.seen["transaction"] += 1
            if len(every) > 1:
                names = [str(args[0]).upper() for args in commands]
                raise CrossSlotError(
                    f"MULTI/EXEC ({', '.join(names)}) over {len(every)} slots: "
                    f"{sorted(every.values())}"
                )


class SlotCheckedRedis(aioredis.Redis):
    """A redis-py client that raises :class:`CrossSlotError` before a cross-slot call."""

    checker: SlotChecker

    @classmethod
    def connect(cls, url: str, **kwargs: Any) -> SlotCheckedRedis:
        """A client of ``url`` (``kwargs`` as for ``from_url``) and a checker of its own."""
        client = cast(SlotCheckedRedis, cls.from_url(url, **kwargs))
        client.checker = SlotChecker(aioredis.from_url(url))
        return client

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        await self.checker.check([args], transaction=False)
        return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        pipe = _CheckedPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )
        pipe.checker = self.checker
        return pipe

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await self.checker.oracle.aclose()
        await super().aclose(close_connection_pool)


class _CheckedPipeline(Pipeline):
    checker: SlotChecker

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        await self.checker.check(
            [args for args, _ in self.command_stack],
            transaction=self.is_transaction or self.explicit_transaction,
        )
        return await super().execute(raise_on_error)
