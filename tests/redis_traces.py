"""Find what Redis still holds about someone: every key under a prefix, every value in it."""

from __future__ import annotations

from typing import Any

from transport.redis import RedisClient


def _text(raw: object) -> str:
    if isinstance(raw, bytes):
        return raw.decode(errors="replace")
    return str(raw)


async def redis_traces(
    r: RedisClient, prefix: str, needle: str, *, skip_suffixes: tuple[str, ...] = ()
) -> list[str]:
    """Keys under ``prefix`` that name ``needle`` in their name or anywhere in their value
    (string, hash, set, sorted set, list or stream), but those ending in ``skip_suffixes``."""
    left = []
    async for raw_key in r.scan_iter(f"{prefix}*", count=10000):
        key = _text(raw_key)
        if key.endswith(skip_suffixes):
            continue
        kind = _text(await r.type(key))
        values: list[Any] = []
        if kind == "string":
            values = [await r.get(key)]
        elif kind == "hash":
            fields = await r.hgetall(key)
            values = [*fields, *fields.values()]
        elif kind == "set":
            values = list(await r.smembers(key))
        elif kind == "zset":
            values = list(await r.zrange(key, 0, -1))
        elif kind == "list":
            values = list(await r.lrange(key, 0, -1))
        elif kind == "stream":
            for _id, fields in await r.xrange(key) or []:
                values += [*(fields or {}), *(fields or {}).values()]
        if needle in key or any(needle in _text(v) for v in values):
            left.append(key)
    return sorted(left)
