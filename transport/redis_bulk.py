"""Many small Redis writes in one command: ``SET .. EX``, ``ZADD`` and ``ZREM`` gathered
by :class:`BulkWrites` and sent as one Lua script call on a single server.

The stream worker writes a few hundred keys per batch (processed marks, visit state). In a
pipeline each is a command redis-py builds, packs and reads the reply of in Python, with
an ``asyncio`` timeout per reply: most of the worker's Redis time. One script call carries
them all (packed by hiredis) and answers once; the server runs the script at once, the
writes in order (a write that fails, e.g. WRONGTYPE, leaves the ones before it made and
the ones after it not: Redis does not roll a script back; more than 5,000 writes are
several calls).
A script may not cross hash slots on a Redis Cluster, so there the same writes go out as a
``transaction=False`` pipeline, as before (redis-py splits it by node).
"""

from __future__ import annotations

import hashlib

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError

from transport.redis import RedisClient

_SCRIPT = """
local a = 1
for _, key in ipairs(KEYS) do
  local op = ARGV[a]
  if op == 's' then
    redis.call('SET', key, ARGV[a + 1], 'EX', ARGV[a + 2])
    a = a + 3
  elseif op == 'a' then
    redis.call('ZADD', key, ARGV[a + 2], ARGV[a + 1])
    a = a + 3
  else
    redis.call('ZREM', key, ARGV[a + 1])
    a = a + 2
  end
end
return #KEYS
"""
_SHA = hashlib.sha1(_SCRIPT.encode(), usedforsecurity=False).hexdigest()

Value = str | bytes | int | float

CHUNK_KEYS = 5_000
"""Most writes per script call: a step of thousands of events stays a few calls, each far
below Redis's limit on a command's arguments and short enough not to hold the server up."""


class BulkWrites:
    """Writes to apply in order in one round trip (:meth:`execute`)."""

    __slots__ = ("args", "keys")

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.args: list[Value] = []

    def __len__(self) -> int:
        return len(self.keys)

    def set(self, key: str, value: Value, ex: int) -> None:
        """``SET key value EX ex``."""
        self.keys.append(key)
        self.args += ("s", value, ex)

    def zadd(self, key: str, member: str, score: float) -> None:
        """``ZADD key score member``."""
        self.keys.append(key)
        self.args += ("a", member, score)

    def zrem(self, key: str, member: str) -> None:
        """``ZREM key member``."""
        self.keys.append(key)
        self.args += ("r", member)

    async def execute(self, r: RedisClient) -> None:
        """Apply the writes: one script call on a single server, a pipeline on a cluster."""
        if not self.keys:
            return
        if isinstance(r, RedisCluster):
            await self._pipelined(r)
            return
        a = 0
        for k in range(0, len(self.keys), CHUNK_KEYS):
            keys = self.keys[k : k + CHUNK_KEYS]
            end = a
            for _ in keys:  # each op's arguments: its code and one or two values
                end += 3 if self.args[end] != "r" else 2
            await _call(r, keys, self.args[a:end])
            a = end

    async def _pipelined(self, r: RedisCluster) -> None:
        args = iter(self.args)
        async with r.pipeline(transaction=False) as pipe:
            for key in self.keys:
                op = next(args)
                if op == "s":
                    pipe.set(key, next(args), ex=int(next(args)))
                elif op == "a":
                    member = next(args)
                    pipe.zadd(key, {str(member): float(next(args))})
                else:
                    pipe.zrem(key, next(args))
            await pipe.execute()


async def _call(r: RedisClient, keys: list[str], args: list[Value]) -> None:
    try:
        await r.evalsha(_SHA, len(keys), *keys, *args)
    except NoScriptError:  # a restarted (or flushed) server forgot the script
        await r.eval(_SCRIPT, len(keys), *keys, *args)
