"""Redis clients chosen by URL scheme, and helpers shared by the launcher and the benchmarks.

:func:`connect_redis` is the one place a Proxima process builds its Redis client:

- ``redis://[user:pass@]host:port/db``, ``rediss://...`` (TLS), ``unix:///path.sock`` — one
  server: redis-py's :class:`redis.asyncio.Redis`;
- ``redis+cluster://[user:pass@]host:port[,host:port...]``, ``rediss+cluster://...`` (TLS)
  — a Redis Cluster: redis-py's :class:`redis.asyncio.cluster.RedisCluster`. The listed
  nodes are the startup nodes; the client discovers the rest (``CLUSTER SLOTS``) and follows
  MOVED/ASK redirections. A cluster has database 0 only and no Unix sockets.

Both kinds take the same query options (``?socket_timeout=5``, ...) and keyword arguments
(``decode_responses``, ``socket_timeout``, ``max_connections`` — per node on a cluster).
The code on top works on both because no command, transaction or script of ours crosses a
hash slot (``tests/redis_slots.py`` checks it); what a cluster client does differently:

- ``pipeline(transaction=True)`` is MULTI/EXEC on the node of its keys' one slot (redis-py
  raises ``CrossSlotTransactionError`` for keys of two slots); a ``transaction=False``
  pipeline is split by node and the nodes' parts run concurrently: order holds per node;
- ``scan_iter`` walks every primary in turn; a multi-key ``DEL`` is split by slot;
- Lua scripts run on the node of their keys, which must share one slot;
- ``PUBLISH`` reaches every node's subscribers (classic pub/sub is cluster-wide), and a
  ``pubsub()`` holds one connection to one node;
- a cluster client has no blocking pool: past ``max_connections`` to one node a command
  fails with ``MaxConnectionsError`` instead of waiting;
- a cluster no node of which answers raises ``RedisClusterException``, not a ``RedisError``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeAlias

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.connection import AbstractConnection, SSLConnection, parse_url
from redis.connection import HiredisRespSerializer
from redis.exceptions import RedisClusterException, RedisError, ResponseError
from redis.utils import HIREDIS_AVAILABLE

from contracts.services import ServiceSettings

log = logging.getLogger(__name__)

RedisClient: TypeAlias = aioredis.Redis | RedisCluster
"""A single Redis server's client or a Redis Cluster's: every Proxima store takes either."""

RedisPipeline: TypeAlias = Pipeline | ClusterPipeline
"""What ``RedisClient.pipeline()`` returns."""

# cluster scheme -> the single-server scheme redis-py parses the rest of the URL with
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
REDIS_SCHEMES = ("redis", "rediss", "unix", *CLUSTER_SCHEMES)
"""Every scheme :func:`connect_redis` takes."""


def scheme_of(url: str) -> str:
    return url.partition("://")[0].lower() if "://" in url else ""


def is_cluster_url(url: str) -> bool:
    """True for ``redis+cluster://`` and ``rediss+cluster://``."""
    return scheme_of(url) in CLUSTER_SCHEMES


def connect_redis(url: str, **kwargs: Any) -> RedisClient:
    """The Redis client for ``url``: one server or a cluster, by the URL's scheme.

    ``kwargs`` go to the client as for redis-py's ``from_url`` (query options win).
    Raises ValueError for an unknown scheme or a cluster URL that cannot be a cluster's.
    """
    scheme = scheme_of(url)
    if scheme in CLUSTER_SCHEMES:
        return RedisCluster(**cluster_kwargs(url), **kwargs)
    if scheme in ("redis", "rediss", "unix"):
        client = aioredis.Redis.from_url(url, **kwargs)
        pool = client.connection_pool
        if HIREDIS_AVAILABLE and pool.connection_kwargs.get("encoding", "utf-8") == "utf-8":
            pool.connection_class = _hiredis_packing(pool.connection_class)
        return client
    raise ValueError(
        f"unsupported Redis URL {_redacted(url)!r}: use redis://, rediss://, unix://, "
        "redis+cluster://host:port[,host:port...] or rediss+cluster://"
    )


_PACKING: dict[type[AbstractConnection], type[AbstractConnection]] = {}


def _hiredis_packing(base: type[AbstractConnection]) -> type[AbstractConnection]:
    """``base`` (plain, TLS or Unix socket) packing commands with hiredis, in C.

    redis-py's asyncio connections pack every command in Python (``pack_command``: ~30% of
    the stream worker's Redis time, `proxima bench stream`) even with hiredis installed,
    which its synchronous connections use for packing by default; this is that same
    serializer (``redis.connection.HiredisRespSerializer``: UTF-8 text, the same refusals
    as redis-py's encoder). Single-server clients only; a cluster client packs as it is."""
    if base not in _PACKING:
        packer = HiredisRespSerializer()

        def pack_command(self: AbstractConnection, *args: Any) -> list[bytes]:
            packed: list[bytes] = packer.pack(*args)
            return packed

        _PACKING[base] = type(f"Hiredis{base.__name__}", (base,), {"pack_command": pack_command})
    return _PACKING[base]


def cluster_kwargs(url: str) -> dict[str, Any]:
    """``RedisCluster`` keyword arguments (``startup_nodes`` and the connection options)
    from a ``redis+cluster://`` or ``rediss+cluster://`` URL."""
    scheme, _, rest = url.partition("://")
    base = CLUSTER_SCHEMES.get(scheme.lower())
    if base is None:
        raise ValueError(f"not a Redis Cluster URL: {_redacted(url)!r}")
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    netloc, tail = rest[:cut], rest[cut:]
    userinfo, at, hosts = netloc.rpartition("@")
    nodes = [_host_port(part, url) for part in hosts.split(",")]
    # redis-py parses one node's URL; credentials, TLS, db and query options apply to all.
    options: dict[str, Any] = dict(parse_url(f"{base}://{userinfo}{at}{_netloc(*nodes[0])}{tail}"))
    options.pop("host", None)
    options.pop("port", None)
    if options.pop("db", 0) not in (0, None):
        raise ValueError(
            f"a Redis Cluster has database 0 only: drop the database from {_redacted(url)!r}"
        )
    if options.pop("connection_class", None) is SSLConnection:
        options["ssl"] = True
    options["startup_nodes"] = [ClusterNode(host, port) for host, port in nodes]
    return options


def _host_port(part: str, url: str) -> tuple[str, int]:
    part = part.strip()
    if part.startswith("["):  # [IPv6]:port
        host, _, after = part[1:].partition("]")
        port = after.removeprefix(":")
    else:
        host, _, port = part.rpartition(":") if ":" in part else (part, "", "")
    if not host:
        raise ValueError(f"Redis Cluster URL {_redacted(url)!r} has an empty node {part!r}")
    try:
        return host, int(port) if port else 6379
    except ValueError:
        raise ValueError(
            f"Redis Cluster URL {_redacted(url)!r}: node {part!r} has no valid port"
        ) from None


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _redacted(url: str) -> str:
    """The URL without its password, for error messages."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, hosts = rest.partition("@")
    if not at:
        return url
    user = userinfo.partition(":")[0]
    return f"{scheme}{sep}{user}:***@{hosts}" if ":" in userinfo else url


async def drop_prefix(url: str, prefix: str, *, chunk: int = 500) -> int:
    """Delete every key under ``prefix`` (a scratch namespace's data); returns how many.

    Refuses an empty prefix: that would be the whole database. On a cluster the scan walks
    every primary and each ``DEL`` is split by slot.
    """
    if not prefix:
        raise ValueError("refusing to drop every key: the prefix is empty")
    redis = connect_redis(url)
    try:
        keys = [k async for k in redis.scan_iter(f"{prefix}*", count=10000)]
        for i in range(0, len(keys), chunk):
            await redis.delete(*keys[i : i + chunk])
        return len(keys)
    finally:
        await redis.aclose()


@dataclass(frozen=True, slots=True)
class Persistence:
    """Whether a Redis server (every primary of a cluster) keeps its data across a restart:
    AOF (``appendonly yes``) or RDB snapshots (a non-empty ``save``). ``unknown`` says why
    it could not be told (managed services often refuse CONFIG GET)."""

    aof: bool = False
    rdb: bool = False
    unknown: str | None = None

    @property
    def persistent(self) -> bool | None:
        """True or False, or None when unknown."""
        return None if self.unknown is not None else (self.aof or self.rdb)


async def redis_persistence(redis: RedisClient) -> Persistence:
    """Ask the server(s) with CONFIG GET; a refusal or an error is ``unknown``, never raised."""
    try:
        if isinstance(redis, RedisCluster):
            per_node = await redis.config_get(
                "appendonly", "save", target_nodes=RedisCluster.PRIMARIES
            )
            answers: list[dict[Any, Any]] = list(_cluster_answers(per_node))
        else:
            answers = [await redis.config_get("appendonly", "save")]
    except ResponseError as exc:  # NOPERM, unknown command (renamed or disabled), ...
        return Persistence(unknown=f"CONFIG GET refused: {exc}")
    except (RedisError, RedisClusterException, OSError) as exc:
        return Persistence(unknown=f"Redis did not answer CONFIG GET: {exc!r}")
    if not answers:
        return Persistence(unknown="CONFIG GET answered nothing")
    aof = all(as_text(a.get("appendonly")) == "yes" for a in answers)
    rdb = all(as_text(a.get("save")).strip() != "" for a in answers)
    return Persistence(aof=aof, rdb=rdb)


def _cluster_answers(per_node: Any) -> list[dict[Any, Any]]:
    """A cluster client answers ``{node: {name: value}}`` for several nodes; keys and values
    may be bytes (no ``decode_responses``)."""
    if (
        isinstance(per_node, dict)
        and per_node
        and all(isinstance(v, dict) for v in per_node.values())
    ):
        return [{as_text(k): v for k, v in answer.items()} for answer in per_node.values()]
    return [{as_text(k): v for k, v in dict(per_node).items()}]


_REPLACE_IF_SAME = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('set', KEYS[1], ARGV[2], 'KEEPTTL')
  return 1
end
return 0
"""


async def replace_if_same(redis: RedisClient, key: str, old: bytes | str, new: str) -> bool:
    """Set ``key`` to ``new``, keeping its TTL, only if it still holds ``old`` (one script,
    so a write that landed since ``old`` was read is never overwritten); False if it did
    not. ``KEEPTTL`` needs Redis 6 or later."""
    return bool(await redis.eval(_REPLACE_IF_SAME, 1, key, old, new))


def as_text(value: Any) -> str:
    """The one decoding policy for Redis replies: text whether the client decodes responses
    or not (bytes as UTF-8, None as "", anything else by str)."""
    return value.decode() if isinstance(value, bytes) else "" if value is None else str(value)


def text_map(value: Mapping[Any, Any]) -> dict[str, str]:
    """A hash reply (HGETALL) as text keys and values."""
    return {as_text(k): as_text(v) for k, v in value.items()}


@asynccontextmanager
async def redis_for(services: ServiceSettings, **kwargs: Any) -> AsyncIterator[RedisClient]:
    """A client on the services' Redis for the block, closed after it (commands, tools)."""
    client = connect_redis(services.redis, **kwargs)
    try:
        yield client
    finally:
        await client.aclose()


async def warn_if_not_persistent(
    redis: RedisClient, component: str, counts: Counter[str] | None = None
) -> Persistence:
    """At a process's start: say loudly (log and the counter ``redis_not_persistent``) when
    Redis keeps nothing across a restart. Gateway keys, customers, consent, associates and
    identity keys live there: a restart without AOF or RDB loses them all. When it cannot
    be told (``redis_persistence_unknown``), say so; never fail the start."""
    found = await redis_persistence(redis)
    if found.persistent is None:
        log.warning(
            "%s: cannot tell whether Redis is persistent (%s); make sure it keeps its data "
            "across a restart (AOF or RDB, or replicas): README, services",
            component,
            found.unknown,
        )
        if counts is not None:
            counts["redis_persistence_unknown"] = 1
    elif not found.persistent:
        log.error(
            "%s: Redis keeps NO data across a restart (appendonly no, save empty): gateway "
            "keys, customers, consent, associates and identity keys would be lost. Turn on "
            "AOF (appendonly yes) or RDB snapshots (save ...): README, services",
            component,
        )
        if counts is not None:
            counts["redis_not_persistent"] = 1
    return found
