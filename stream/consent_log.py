"""Consent on Kafka: the outbox pump and the registry rebuild (``proxima.consent.v1``).

Why an outbox: a consent change is written to Redis (the registry the worker reads) and
must also reach the compacted topic, and no process may die between the two and lose it.
So :class:`stream.registry.Registry` adds the customer id to its shard's ``consent-outbox``
Redis stream *in the same transaction* as the change and its audit entry (one shard is one
Redis Cluster slot, see :mod:`stream.registry`), and :func:`pump_outbox` drains the
shards' outboxes: for each customer it reads the current consent state (hash, enrolment
and the shard's version in one transaction), produces one :class:`ConsentRecord` keyed by
the customer id (a tombstone, null value, once the customer is forgotten) with
``acks=all``, and deletes the outbox entries only after Kafka has acknowledged them. A pump killed
anywhere republishes on its next run (at least once; records are whole states, so a
repeat is harmless). ``proxima customers grant|revoke|forget`` pump right after their
change when Kafka is configured, and the stream worker pumps on a timer for every other
writer (CSV import, the simulators' enrolment, a CLI run without Kafka).

A lock (``consent-outbox:lock``, ``SET NX PX``, renewed before each batch) keeps pumps from
racing, so records of one customer reach the topic in the order their states were read, and
:func:`rebuild_consent` takes each customer's last record on the topic, as compaction keeps
it. It does not compare ``version``: after Redis lost data the shards' counters start again
lower, and an older record would outrank every change made since. A rebuild raises each
shard's counter past the versions it restored, so versions keep growing after one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from contracts.exceptions import ContractError
from contracts.models import ConsentRecord, parse_model
from stream.exceptions import ConsentLogError
from stream.registry import RegistryKeys, shard_of
from transport.redis import RedisClient, as_text

log = logging.getLogger(__name__)

LOCK_MS = 60_000
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end"
_RENEW = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then"
    " return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
)
_RAISE_VERSION = """
local version = tonumber(redis.call('get', KEYS[1]) or '0')
if version < tonumber(ARGV[1]) then redis.call('set', KEYS[1], ARGV[1]) end
return redis.call('incr', KEYS[1])
"""
"""Bump a shard's version to above ARGV[1] (the highest version restored into the shard)."""


async def snapshot(redis: RedisClient, prefix: str, customer_id: str) -> ConsentRecord | None:
    """The customer's whole consent now, or None if the customer is not enrolled (forgotten).

    ``version`` is the customer's shard's registry version: it grows with every change of
    this customer, and a rebuild moves it past the versions it restored; but Redis may
    lose data, so :func:`read_latest` orders records by offset, not by version.
    """
    keys = RegistryKeys(prefix)
    shard = shard_of(customer_id)
    async with redis.pipeline(transaction=True) as pipe:  # one shard: one slot
        pipe.hgetall(keys.consent(customer_id))
        pipe.sismember(keys.customers(shard), customer_id)
        pipe.get(keys.version(shard))
        decisions, enrolled, version = await pipe.execute()
    if not enrolled:
        return None
    return ConsentRecord(
        customer_id=customer_id,
        consent={as_text(k): json.loads(v) for k, v in decisions.items()},
        version=int(version or 0),
    )


SendFn = Callable[[str, bytes, bytes | None], Awaitable[Awaitable[object]]]
"""Hand one record (topic, key, value; None = tombstone) to a producer; returns its ack."""


def aiokafka_send(producer: AIOKafkaProducer) -> SendFn:
    """:data:`SendFn` of an aiokafka producer (the Faust worker passes its own)."""

    async def send(topic: str, key: bytes, value: bytes | None) -> Awaitable[object]:
        ack: Awaitable[object] = await producer.send(topic, key=key, value=value)
        return ack

    return send


async def pump_outbox(
    redis: RedisClient,
    prefix: str,
    send: SendFn,
    topic: str,
    *,
    batch: int = 500,
) -> int:
    """Publish the consent of every customer in the outbox; returns how many records.

    Returns 0 without reading when another pump holds the lock (it drains until the
    outbox is empty, so it also takes entries added while it runs). The lock is renewed
    before each batch; a pump that finds it lost (it stalled for ``LOCK_MS``, and another
    pump may have started) stops and leaves the rest to the holder.
    """
    keys = RegistryKeys(prefix)
    token = uuid.uuid4().hex
    if not await redis.set(keys.outbox_lock, token, nx=True, px=LOCK_MS):
        return 0
    published = 0
    try:
        while True:
            async with redis.pipeline(transaction=False) as pipe:
                for shard in keys.shards():
                    pipe.xlen(keys.outbox(shard))
                lengths = await pipe.execute()
            busy = [shard for shard, n in zip(keys.shards(), lengths, strict=True) if n]
            if not busy:
                return published
            for shard in busy:
                if not await redis.eval(_RENEW, 1, keys.outbox_lock, token, LOCK_MS):
                    log.warning("consent outbox lock lost (pump too slow?): stopping this pump")
                    return published
                published += await _drain(redis, prefix, keys.outbox(shard), send, topic, batch)
    finally:
        await redis.eval(_RELEASE, 1, keys.outbox_lock, token)


async def _drain(
    redis: RedisClient, prefix: str, outbox: str, send: SendFn, topic: str, batch: int
) -> int:
    """Publish one batch of one shard's outbox; delete its entries after Kafka's acks."""
    entries = await redis.xrange(outbox, "-", "+", count=batch) or []
    customers: dict[str, None] = {}
    for entry_id, fields in entries:
        cid = (fields or {}).get(b"customer_id")
        if cid is None:
            log.warning("consent outbox entry %s has no customer_id: dropped", entry_id)
            continue
        customers[as_text(cid)] = None
    futures = []
    for cid in customers:
        record = await snapshot(redis, prefix, cid)
        value = None if record is None else record.to_json()
        futures.append(await send(topic, cid.encode(), value))
    await asyncio.gather(*futures)
    if entries:
        await redis.xdel(outbox, *(entry_id for entry_id, _ in entries if entry_id))
    return len(customers)


@dataclass(frozen=True, slots=True)
class RebuildReport:
    restored: int
    erased: int
    skipped: int


async def read_latest(
    bootstrap: str, topic: str, timeout: float = 30.0
) -> tuple[dict[str, ConsentRecord | None], int]:
    """The last record per customer on the topic (None: tombstone), and the bad ones' count.

    Reads every partition from the beginning up to the end offsets taken at the start.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    latest: dict[str, ConsentRecord | None] = {}
    bad = 0
    try:
        await consumer.topics()  # fetch metadata for every topic
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise ConsentLogError(topic, "topic does not exist (proxima topics ensure)")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        async with asyncio.timeout(timeout):
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                for records in (await consumer.getmany(*tps, timeout_ms=200)).values():
                    for r in records:
                        if r.key is None:
                            bad += 1
                            log.warning("consent record at offset %d has no key", r.offset)
                            continue
                        cid = r.key.decode()
                        if r.value is None:
                            latest[cid] = None  # forgotten (until a later record)
                            continue
                        try:
                            rec = parse_model(ConsentRecord, r.value)
                        except ContractError as exc:
                            bad += 1
                            log.warning("consent record at offset %d skipped: %s", r.offset, exc)
                            continue
                        if rec.customer_id != cid:
                            bad += 1
                            log.warning(
                                "consent record at offset %d: key %r but customer_id %r",
                                r.offset,
                                cid,
                                rec.customer_id,
                            )
                            continue
                        # The last record read is the customer's latest state: one key is
                        # one partition (the CLI's aiokafka producer and the worker's Faust
                        # one both leave the partition to aiokafka's DefaultPartitioner,
                        # murmur2 of the key, and ensure_topics never changes a topic's
                        # partition count), read in offset order; each producer keeps a
                        # partition's order (one request in flight per partition); and
                        # only the holder of the outbox lock publishes (pump_outbox). No
                        # version comparison: see the module doc.
                        latest[cid] = rec
    except TimeoutError as exc:
        raise ConsentLogError(topic, f"not read to its end within {timeout}s") from exc
    finally:
        await consumer.stop()
    return latest, bad


async def rebuild_consent(
    redis: RedisClient, prefix: str, bootstrap: str, topic: str, timeout: float = 30.0
) -> RebuildReport:
    """Restore every customer's consent hash from the topic (idempotent).

    Each customer on the topic gets exactly the latest record's decisions (the hash is
    replaced, not merged); a tombstone erases the hash. Customers not on the topic are
    left alone. Bumps the registry version so workers reload.
    """
    latest, bad = await read_latest(bootstrap, topic, timeout)
    restored, erased = await restore_consent(redis, prefix, latest)
    return RebuildReport(restored=restored, erased=erased, skipped=bad)


async def restore_consent(
    redis: RedisClient, prefix: str, latest: dict[str, ConsentRecord | None]
) -> tuple[int, int]:
    """Write :func:`read_latest`'s records into the registry; (restored, erased).

    One transaction per registry shard (one Redis Cluster slot each), with the shard's
    version bump: a shard is restored whole or not at all, and running it again is safe.
    The bump takes the shard's counter past the highest version restored into it, so the
    customers' next records have higher versions than any on the topic.
    """
    keys = RegistryKeys(prefix)
    by_shard: dict[int, list[str]] = {}
    for cid in latest:
        by_shard.setdefault(shard_of(cid), []).append(cid)
    restored = erased = 0
    for shard, cids in sorted(by_shard.items()):
        highest = 0
        async with redis.pipeline(transaction=True) as pipe:
            for cid in cids:
                rec = latest[cid]
                key = keys.consent(cid)
                pipe.delete(key)
                if rec is None:
                    erased += 1
                    continue
                restored += 1
                highest = max(highest, rec.version)
                if rec.consent:
                    pipe.hset(
                        key,
                        mapping={
                            field: json.dumps({"granted": d.granted, "at": d.at.isoformat()})
                            for field, d in rec.consent.items()
                        },
                    )
            pipe.eval(_RAISE_VERSION, 1, keys.version(shard), highest)
            await pipe.execute()
    return restored, erased
