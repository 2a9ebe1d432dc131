"""Process counters where an operator can read them: one Redis hash per running instance.

The bridge and the stream worker count what they do (batches, events, rejections, DLQ
reasons, dedupe hits, rules reload errors, ...) in a ``Counter``. :func:`publish` writes a
snapshot to ``{prefix}stats:{component}:{instance}`` with an expiry of a few intervals,
so an instance that died disappears on its own; :func:`read_all` is what
``proxima stats`` prints. Counters are totals since the process started.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

from transport.redis import RedisClient, as_text

UPDATED_AT = "_updated_at"


def instance_id() -> str:
    """``host:pid``: unique among the processes of one deployment."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _key(prefix: str, component: str, instance: str) -> str:
    return f"{prefix}stats:{component}:{instance}"


async def publish(
    redis: RedisClient,
    prefix: str,
    component: str,
    counts: Mapping[str, int],
    *,
    ttl_s: int,
    instance: str | None = None,
) -> None:
    """Replace this instance's snapshot (one hash, one round trip, one transaction: a
    crash never leaves it without its expiry, and a reader never sees it half written)."""
    key = _key(prefix, component, instance or instance_id())
    mapping: dict[Any, Any] = {k: int(v) for k, v in counts.items()}
    mapping[UPDATED_AT] = round(time.time(), 3)
    async with redis.pipeline(transaction=True) as pipe:  # one key: one slot on a cluster
        pipe.delete(key)
        pipe.hset(key, mapping=mapping)
        pipe.expire(key, max(1, ttl_s))
        await pipe.execute()


async def read_all(
    redis: RedisClient, prefix: str
) -> dict[tuple[str, str], tuple[float, Counter[str]]]:
    """(component, instance) → (updated at, counts) for every live instance."""
    out: dict[tuple[str, str], tuple[float, Counter[str]]] = {}
    base = f"{prefix}stats:"
    async for raw in redis.scan_iter(f"{base}*", count=10000):
        key = as_text(raw)
        component, _, instance = key[len(base) :].partition(":")
        data = await redis.hgetall(key)
        if not data:
            continue
        fields = {
            (k.decode() if isinstance(k, bytes) else str(k)): (
                v.decode() if isinstance(v, bytes) else str(v)
            )
            for k, v in data.items()
        }
        updated = float(fields.pop(UPDATED_AT, "0") or 0)
        counts: Counter[str] = Counter({k: int(v) for k, v in fields.items() if v.isdigit()})
        out[(component, instance)] = (updated, counts)
    return out


def as_json(stats: Mapping[tuple[str, str], tuple[float, Counter[str]]]) -> str:
    """The snapshot as one JSON array, an object per instance (``proxima stats --json``)."""
    return json.dumps(
        [
            {"component": c, "instance": i, "updated_at": t, "counts": dict(sorted(n.items()))}
            for (c, i), (t, n) in sorted(stats.items())
        ]
    )
