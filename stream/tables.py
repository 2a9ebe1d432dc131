"""The worker's Faust tables: state kept in a local store and in a compacted changelog topic.

One table today, :data:`DEDUPE_TABLE`: alert dedupe key (customer, store, visit, kind) →
the id of the alert sent for it. The worker consults it before Redis (a hit spares the
round trip) and writes it once Kafka has the alert; Redis ``SET NX EX`` stays the authority
across workers (:mod:`stream.processor`). A worker that restarts, or takes over a
partition, rebuilds the table from the changelog, so it knows what was sent even if Redis
lost the key. Visit state stays in Redis (see README, stream: state).

The store comes from ``PROXIMA_STREAM_STORE_URL``: ``memory://`` (tests, the default: the
table is read back from the changelog at every start) or ``rocksdb://`` (production: one
RocksDB per partition under ``{data_dir}/{app id}/v1/tables/``, through rocksdict, so a
restart reads only the changelog's tail).

What Faust 0.15 requires of a table write, read from its source (faust/tables/base.py,
table.py, stores/rocksdb.py, streams.py) — the reason for :func:`writing_as`:

- ``table[key] = value`` sends the change to the changelog partition of
  ``current_event().message.partition`` (``Table.on_key_set`` → ``partition_for_key``), and
  the RocksDB store writes it into that partition's database (``Store._set`` asserts a
  current event). Recovery after a restart or a rebalance reads exactly the changelog
  partitions of the source partitions a worker is assigned, so an entry must go to the
  partition its key's events arrive on. Events are keyed by store and every dedupe key
  contains its store, so the partition of the event that caused the alert is the right one.
- ``current_event()`` is a context variable set by the task that iterates the stream. With
  ``stream.take()``/``take_events()`` that task is the stream's passive drainer, not the
  agent: in the agent's batch loop ``current_event()`` is None (a plain write raises "Cannot
  modify table key from outside of stream iteration"), and ``stream.current_event`` is the
  drainer's next event, possibly of another partition (setting it would also corrupt the
  drainer's acks). A batch mixes partitions, so each write is made with the context
  variable, in the agent's task only, set to the batch event that caused it.
- Reads need no event: the memory store is one dict, and RocksDB without a current event
  looks the key up in every partition database it has open.
- Changelog records are buffered (``send_soon``); with at-least-once the consumer flushes
  the producer before it commits offsets (``Consumer._commit_offsets``), so no offset is
  committed before the table changes its events caused are on Kafka.
- The changelog topic is ``{app id}-{table}-changelog``; it must have the source topic's
  partition count (``PartitionsMismatch``) and, since the app may not declare topics, exist
  before the worker starts (:func:`ensure_changelogs`, ``proxima topics ensure``).
- A plain table never expires keys (only windowed ones do), so :meth:`AlertDedupe.purge`
  deletes expired entries itself, with a tombstone on the partition each entry records;
  :meth:`AlertDedupe.forget` does the same for customers erased from the registry.

``proxima customers forget`` reaches the table two ways. At once: the worker's identity
index sees the customer leave the registry and the next batch calls ``forget``; that
misses removals the index never saw (a worker restarted, or taking over a partition, reads
the entries back from the changelog or its RocksDB; a worker with no traffic; a customer
forgotten and enrolled again before the index looked). So, as a backstop, every
``table_purge_s`` and after each recovery the worker sweeps the table
(:meth:`AlertDedupe.erase_unenrolled`): entries of customers not enrolled now, or
enrolled again since the entry was written, are deleted with tombstones.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NotRequired, TypedDict

from faust.streams import _current_event
from faust.types import EventT, TableT

from contracts.services import ServiceSettings
from stream.settings import StreamSettings

log = logging.getLogger(__name__)

DEDUPE_TABLE = "alert-dedupe"
TABLES = (DEDUPE_TABLE,)


def app_id(services: ServiceSettings, settings: StreamSettings) -> str:
    """The Faust app id (consumer group, changelog prefix), namespaced like the topics."""
    return f"{services.namespace}-{settings.app_id}" if services.namespace else settings.app_id


def changelog_topics(services: ServiceSettings, settings: StreamSettings) -> tuple[str, ...]:
    """The changelog topic of every table, named as Faust names them."""
    return tuple(f"{app_id(services, settings)}-{table}-changelog" for table in TABLES)


async def ensure_changelogs(services: ServiceSettings, settings: StreamSettings) -> tuple[str, ...]:
    """Create missing changelog topics shaped like the events topic.

    Faust refuses a changelog whose partition count differs from its source topic's
    (``PartitionsMismatch``), and a changelog is as much the worker's state as the events
    are its input, so it takes the events topic's replication factor too (a changelog with
    one replica on a production cluster loses the table with one broker). The worker runs
    this before Faust starts, so a deployment whose topics were created before the tables
    existed (or a test that creates only the contract topics) works; ``proxima topics
    ensure`` creates them the same way after the contract topics. Existing changelogs are
    left as they are.
    """
    from transport.kafka import TopicShape, describe_topic, ensure_topics, kafka_security

    names = changelog_topics(services, settings)
    events = services.topics.events
    security = kafka_security(services)
    shape = await describe_topic(services.kafka_bootstrap, events, security=security)
    if shape is None:
        shape = TopicShape(settings.partitions, 1)
        log.warning(
            "topic %s does not exist: creating %s with %d partitions, 1 replica",
            events,
            ", ".join(names),
            shape.partitions,
        )
    await ensure_topics(
        services.kafka_bootstrap,
        names,
        shape.partitions,
        shape.replication,
        security=security,
    )
    return names


@contextmanager
def writing_as(event: EventT[Any]) -> Iterator[None]:
    """Make ``event`` Faust's current event in this task, for table writes (module doc)."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


class DedupeEntry(TypedDict):
    alert_id: str
    customer: str
    """Whose alert it was, so ``proxima customers forget`` can erase the entry."""
    until: float
    """Unix time after which the entry is ignored and purged (Redis's key has the same TTL)."""
    partition: int
    """The changelog partition the entry lives in, for its tombstone."""
    at: NotRequired[float]
    """Unix time the entry was written (entries of older workers: ``until - ttl``)."""


class AlertDedupe:
    """Alert dedupe key → the id of the alert already on Kafka, in a changelog-backed table.

    Times are passed in (the processor's clock), so tests move them.
    """

    def __init__(self, table: TableT[str, Any], ttl_s: float) -> None:
        self.table = table
        self.ttl_s = ttl_s

    def sent(self, key: str, now: float) -> str | None:
        """The id of the alert sent for ``key``, or None (unknown here, or expired)."""
        entry: DedupeEntry | None = self.table.get(key)
        if entry is None or entry["until"] <= now:
            return None
        return entry["alert_id"]

    def record(
        self, key: str, alert_id: str, customer: str, event: EventT[Any], now: float
    ) -> None:
        """Record ``alert_id`` as sent; ``event`` is the one that caused it (its partition)."""
        entry = DedupeEntry(
            alert_id=alert_id,
            customer=customer,
            until=now + self.ttl_s,
            partition=event.message.partition,
            at=now,
        )
        with writing_as(event):
            self.table[key] = entry

    def purge(self, now: float) -> int:
        """Delete expired entries: from the local store and, by tombstone, the changelog."""
        return self._delete(lambda entry: entry["until"] <= now)

    def forget(self, customers: set[str]) -> int:
        """Delete the entries of forgotten customers (tombstones on the changelog)."""
        return self._delete(lambda entry: entry["customer"] in customers) if customers else 0

    def customers(self) -> set[str]:
        """The customers this worker's store holds entries of (its active partitions)."""
        return {entry["customer"] for entry in list(self.table.data.values())}

    def erase_unenrolled(self, enrolled_at: Mapping[str, float | None], as_of: float) -> int:
        """Delete the entries of customers no longer enrolled (tombstones on the changelog).

        ``enrolled_at`` maps customers (those of :meth:`customers`) to when their current
        enrollment began, None for not enrolled, as read from the registry at ``as_of``.
        An entry written before its customer's enrollment is another incarnation's: the
        customer was forgotten and enrolled again. Entries written after ``as_of`` are
        left to the next sweep (their customer may have enrolled after the read); so are
        customers missing from ``enrolled_at``.
        """

        def doomed(entry: DedupeEntry) -> bool:
            at = entry.get("at", entry["until"] - self.ttl_s)
            if at > as_of or entry["customer"] not in enrolled_at:
                return False
            since = enrolled_at[entry["customer"]]
            return since is None or at < since

        return self._delete(doomed)

    def _delete(self, doomed: Callable[[DedupeEntry], bool]) -> int:
        """Delete the entries ``doomed`` picks, locally and by tombstone.

        A scan of the local store (entries live ``ttl_s``, one per alert sent). The
        tombstone goes to the partition the entry records: no current event is needed for
        a delete that names its partition (``Collection.send_changelog``), and the stores
        delete a key without one.
        """
        gone = [
            (key, entry["partition"])
            for key, entry in list(self.table.data.items())
            if doomed(entry)
        ]
        for key, partition in gone:
            self.table.data.pop(key, None)
            self.table.send_changelog(partition, key, None, value_serializer="raw")
        return len(gone)
