"""The stream worker's parts, each testable on its own; :func:`stream.app.create_app` only
wires them to Faust.

- :class:`WorkerParts`: the decision chain and what it needs (the processor on a Redis
  client of its own, the gateway key cache, the batch opener, the batch runner), built on
  first use inside the worker's event loop.
- :class:`Decisions`: both agents' loop: open a batch of records (v1 events or v2 signed
  gateway batches), decide it through the runner (stream.runner: retry, park, one at a
  time), record its alerts in the dedupe table, then mark its records finished for the
  offset committer.
- :class:`Timers`: the periodic jobs: departures, the consent outbox, the counters for
  ``proxima stats``, the dedupe table's sweep.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Iterator, Sequence
from functools import partial
from typing import Any

from aiokafka.errors import KafkaError
from faust.types import TP, EventT
from prometheus_client import CollectorRegistry, Histogram
from redis.exceptions import RedisClusterException, RedisError

from contracts.exceptions import ContractError
from contracts.models import DlqRecord, Event, parse_model
from contracts.services import ServiceSettings
from contracts.topics import CONSENT
from stream.batches import BatchOpener
from stream.consent_log import pump_outbox
from stream.keyring import KeyCache, Keyring
from stream.processor import EventProcessor
from stream.rules import RuleBook
from stream.runner import BatchRunner, OffsetCommitter, RawSend, publish_visits
from stream.settings import StreamSettings
from stream.tables import AlertDedupe
from transport.cancel import reraise_if_cancelled
from transport.redis import connect_redis
from transport.retry import counted_once
from transport.stats import publish as publish_stats

log = logging.getLogger(__name__)

Record = EventT[bytes]
Parsed = tuple[list[tuple[Event, Record]], list[DlqRecord]]
"""Events to decide, each with the record it came in, and DLQ records of refused input."""
Parse = Callable[[EventProcessor, Sequence[Record]], Awaitable[Parsed]]


def original(event: Event, source: Record) -> bytes:
    """What an event that fails on its own is parked with: its v1 record, or the event
    itself out of a v2 batch."""
    raw: bytes = source.value
    return raw if raw.startswith(b"{") else event.to_json()


def steps(
    batch: Sequence[Record],
    events: list[tuple[Event, Record]],
    rejected: list[DlqRecord],
    limit: int,
) -> Iterator[tuple[list[tuple[Event, Record]], list[DlqRecord], Sequence[Record]]]:
    """``batch`` (records taken together, opened into ``events`` in their order) in steps
    of about ``limit`` events: whole records only (a gateway batch is decided in one step,
    however large), each step with the records it finishes. The refused input is parked in
    the first step, before any of its records can be finished."""
    at = {id(source): i for i, source in enumerate(batch)}
    done = 0
    step: list[tuple[Event, Record]] = []
    for item in events:
        if len(step) >= limit and item[1] is not step[-1][1]:
            end = at[id(step[-1][1])] + 1
            yield step, rejected, batch[done:end]
            step, rejected, done = [], [], end
        step.append(item)
    yield step, rejected, batch[done:]


class TakeOffsets:
    """The offsets of one take's records as its steps finish them, handed on (to
    :meth:`stream.runner.OffsetCommitter.finished`) only below the lowest record of their
    partition that a later step of the take still has to decide.

    A partition's records come in order, so this hands on every step's records at once;
    but should a take ever hold older records of a partition after newer ones (a seek after
    a rebalance, Faust re-delivering what it had queued), a mark moved past the newer ones
    would let a commit skip the older ones, still undecided. Held back, they are handed on,
    in offset order, once nothing below them is left."""

    def __init__(self, records: Iterable[tuple[Any, int]]) -> None:
        self._pending: dict[Any, list[int]] = {}
        for tp, offset in records:
            self._pending.setdefault(tp, []).append(offset)
        self._held: dict[Any, list[int]] = {}

    def finish(self, records: Iterable[tuple[Any, int]]) -> list[tuple[Any, int]]:
        """These records are done; returns those whose offsets may now be marked."""
        touched = set()
        for tp, offset in records:
            self._pending[tp].remove(offset)
            self._held.setdefault(tp, []).append(offset)
            touched.add(tp)
        out: list[tuple[Any, int]] = []
        for tp in touched:
            floor = min(self._pending[tp], default=None)
            held = sorted(self._held[tp])
            ready = [o for o in held if floor is None or o < floor]
            self._held[tp] = held[len(ready) :]
            out += [(tp, o) for o in ready]
        return out


class WorkerParts:
    """The decision chain, built on first use (in the worker's loop, where its Redis client
    must live). ``processor`` replaces the default one (the agent's tests inject faults);
    either way the dedupe table is attached to it as :attr:`EventProcessor.sent_log`."""

    def __init__(
        self,
        services: ServiceSettings,
        settings: StreamSettings,
        *,
        rules: RuleBook,
        dedupe: AlertDedupe,
        send: RawSend,
        alerts: str,
        visits: str,
        dlq: str,
        processor: EventProcessor | None = None,
    ) -> None:
        self.services = services
        self.settings = settings
        self.rules = rules
        self.dedupe = dedupe
        self.send = send
        self.topics = {"alerts": alerts, "visits": visits, "dlq": dlq}
        self._processor = processor
        self._keys: KeyCache | None = None
        self._opener: BatchOpener | None = None
        self._runner: BatchRunner[Record] | None = None

    async def processor(self) -> EventProcessor:
        if self._processor is None:
            s = self.settings
            self._processor = EventProcessor(
                connect_redis(self.services.redis),
                self.services.redis_prefix,
                drift_windows=s.drift_windows,
                revisit_gap_s=s.revisit_gap_s,
                exit_timeout_s=s.exit_timeout_s,
                dedupe_ttl_s=s.dedupe_ttl_s,
                rules=self.rules,
            )
        self._processor.sent_log = self.dedupe
        return self._processor

    async def keys(self) -> KeyCache:
        """Gateway keys for verifying v2 batches (the bridge's cache, over the worker's Redis)."""
        if self._keys is None:
            proc = await self.processor()
            self._keys = KeyCache(
                Keyring(proc.r, self.services.redis_prefix), ttl_s=self.settings.key_cache_ttl_s
            )
        return self._keys

    async def opener(self) -> BatchOpener:
        if self._opener is None:
            proc = await self.processor()
            self._opener = BatchOpener(
                await self.keys(), self.services.topics, self.settings, proc.stats.counts
            )
        return self._opener

    async def runner(self) -> BatchRunner[Record]:
        """The batch runner over the processor (stream.runner)."""
        if self._runner is None:
            self._runner = BatchRunner[Record](
                await self.processor(),
                self.send,
                alerts=self.topics["alerts"],
                visits=self.topics["visits"],
                dlq=self.topics["dlq"],
                original=original,
                backoff_s=self.settings.retry_backoff_s,
                backoff_max_s=self.settings.retry_backoff_max_s,
            )
        return self._runner


class Decisions:
    """Both agents' loop (see the module docstring) and its two metrics."""

    def __init__(
        self,
        parts: WorkerParts,
        offsets: OffsetCommitter[TP],
        registry: CollectorRegistry,
    ) -> None:
        self.parts = parts
        self.offsets = offsets
        self.batch_events = Histogram(
            "proxima_stream_worker_batch_events",
            "events (and refused input) per batch the worker decided",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000),
            registry=registry,
        )
        self.alert_latency = Histogram(
            "proxima_stream_worker_event_to_alert_seconds",
            "an alert's event observed (gateway clock) to the alert on Kafka; replays of old "
            "traces land in +Inf",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 3, 6, 10, 30, 60),
            registry=registry,
        )

    async def parse_events(self, proc: EventProcessor, batch: Sequence[Record]) -> Parsed:
        """v1 records: one event each, checked by the bridge that wrote it."""
        events: list[tuple[Event, Record]] = []
        rejected: list[DlqRecord] = []
        for source in batch:
            raw = source.value
            try:
                events.append((parse_model(Event, raw), source))
            except ContractError as exc:
                proc.stats.counts["rejected"] += 1
                log.warning("event rejected to DLQ: %s", exc)
                rejected.append(DlqRecord.of(str(exc), raw, source="stream.worker"))
        return events, rejected

    async def parse_batches(self, proc: EventProcessor, batch: Sequence[Record]) -> Parsed:
        """v2 records: one signed gateway batch each, opened by :class:`BatchOpener`. A key
        lookup that fails (Redis away) opens them all again, with backoff."""
        opener = await self.parts.opener()

        async def open_all() -> Parsed:
            events: list[tuple[Event, Record]] = []
            rejected: list[DlqRecord] = []
            with counted_once(proc.stats.counts):
                for source in batch:
                    headers = source.message.headers
                    good, refused = await opener.open(source.value, headers)  # type: ignore[arg-type]
                    events += [(event, source) for event in good]
                    rejected += refused
            return events, rejected

        return await (await self.parts.runner()).retrying("batch verification", open_all)

    async def handle(
        self,
        proc: EventProcessor,
        events: list[tuple[Event, Record]],
        rejected: list[DlqRecord],
        purge: bool,
    ) -> None:
        """Decide one batch, hand its results to Kafka, mark it done; then the table (and,
        if ``purge``, its expired entries). The table is a cache: its errors are logged and
        counted (``dedupe_table_errors``), never fatal."""
        sent = await (await self.parts.runner()).run(events, rejected)
        self.batch_events.observe(len(events) + len(rejected))
        now_s = time.time()
        for alert, _ in sent:
            # The alert's time is its event's: wall clock from there to the alert on Kafka.
            self.alert_latency.observe(max(0.0, now_s - alert.created_at.timestamp()))
            log.info("alert %s: %s", alert.alert_id, alert.title)
        dedupe = self.parts.dedupe
        now = proc.now().timestamp()
        try:
            for alert, source in sent:
                # The source's partition is the store's: the entry's changelog partition.
                dedupe.record(
                    proc.dedupe_id(alert), str(alert.alert_id), alert.customer_id, source, now
                )
            # `proxima customers forget` reaches the table here: the identity index sees
            # the customer leave the registry (checked at most every 0.5 s).
            await proc.identity.refresh()
            if erased := dedupe.forget(proc.identity.take_forgotten()):
                log.info("erased %d alert dedupe entries of forgotten customers", erased)
            if purge and (purged := dedupe.purge(now)):
                log.info("purged %d expired alert dedupe entries", purged)
        except Exception:
            # The batch is done (on Kafka, marked in Redis); Redis stays the authority.
            reraise_if_cancelled()
            proc.stats.counts["dedupe_table_errors"] += 1
            log.exception("alert dedupe table not updated")

    async def decide_all(self, batches: AsyncIterable[Sequence[Record]], parse: Parse) -> None:
        """Open each batch of records with ``parse``, decide it in :func:`steps` of at most
        ``batch_max`` events, and after each step mark the records it finished (now every
        event of theirs is on Kafka and marked: their offsets may be committed; a step cut
        off mid-way never gets here)."""
        proc = await self.parts.processor()
        purge_every = self.parts.settings.table_purge_s
        limit = self.parts.settings.batch_max
        purge_at = 0.0
        async for batch in batches:
            if purge := (now := proc.now().timestamp()) >= purge_at:
                purge_at = now + purge_every
            events, rejected = await parse(proc, batch)
            take = TakeOffsets((r.message.tp, r.message.offset) for r in batch)
            for step, refused, finished in steps(batch, events, rejected, limit):
                await self.handle(proc, step, refused, purge)
                purge = False
                self.offsets.finished(
                    take.finish((source.message.tp, source.message.offset) for source in finished)
                )


class Timers:
    """The worker's periodic jobs (``create_app`` runs each on a Faust timer through
    :func:`transport.retry.run_guarded`, so an error never ends the worker)."""

    def __init__(self, parts: WorkerParts) -> None:
        self.parts = parts

    async def departures(self) -> None:
        """Visits whose last signal closed long enough ago: each on Kafka before it is
        recorded as done (a crash in between sends it again, never loses it)."""
        proc = await self.parts.processor()
        await proc.depart(partial(publish_visits, self.parts.send, self.parts.topics["visits"]))

    async def consent_outbox(self) -> None:
        """Publish consent changes any writer left in the outbox (stream.consent_log)."""
        proc = await self.parts.processor()
        services = self.parts.services
        try:
            published = await pump_outbox(
                proc.r, services.redis_prefix, self.parts.send, services.topics.kafka(CONSENT)
            )
        except (KafkaError, RedisError, RedisClusterException, OSError) as exc:
            # The entries stay in the outbox; the next tick publishes them.
            log.warning("consent outbox not drained (retrying): %r", exc)
            return
        if published:
            log.info("published %d consent record(s)", published)

    async def publish_counters(self) -> None:
        """The worker's counters for ``proxima stats`` (transport.stats)."""
        proc = await self.parts.processor()
        every = self.parts.settings.stats_interval_s
        try:
            await publish_stats(
                proc.r,
                self.parts.services.redis_prefix,
                "stream-worker",
                proc.stats.counts,
                ttl_s=int(every * 3) + 1,
            )
        except (RedisError, RedisClusterException, OSError) as exc:
            log.warning("counters not published (retrying): %r", exc)

    async def sweep_table(self) -> None:
        """Erase the dedupe entries of customers no longer enrolled, and purge expired ones.

        The backstop for ``proxima customers forget`` (stream.tables): it does not rely on
        this worker having seen the customer leave. Profiles are read in pipelined chunks
        (cluster-safe) for the customers the table holds, not the whole registry. Errors
        are logged and counted; the next sweep tries again.
        """
        proc = await self.parts.processor()
        dedupe = self.parts.dedupe
        as_of = proc.now().timestamp()
        try:
            customers = sorted(dedupe.customers())
            enrolled_at: dict[str, float | None] = {}
            for i in range(0, len(customers), 1000):
                profiles = await proc.registry.get_many(customers[i : i + 1000])
                enrolled_at.update(
                    (cid, None if p is None else p.enrolled_at.timestamp())
                    for cid, p in profiles.items()
                )
            erased = dedupe.erase_unenrolled(enrolled_at, as_of)
            purged = dedupe.purge(as_of)
        except Exception:
            reraise_if_cancelled()
            proc.stats.counts["dedupe_table_errors"] += 1
            log.exception(
                "alert dedupe table sweep failed (next one in %s s)",
                self.parts.settings.table_purge_s,
            )
            return
        if erased:
            log.info("erased %d alert dedupe entries of customers no longer enrolled", erased)
        if purged:
            log.info("purged %d expired alert dedupe entries", purged)
