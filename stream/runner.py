"""The stream worker's moving parts, each testable without Faust (``stream/app.py`` wires
them to Faust's agents and timers):

- :class:`BatchRunner`: one batch of decoded events end to end — decide, hand alerts,
  visits and refusals to Kafka, wait for the acks, mark done — retried whole with
  backoff while Redis or Kafka is away; a batch that fails for any other reason is
  decided one event at a time and the event that fails on its own is parked on the DLQ.
- :class:`OffsetCommitter`: which offsets may be committed (only after their whole batch
  is done) and committing them.

Both are generic in the *source* of an event (the Faust event it came in: its record
decides the dedupe table's changelog partition), which they only carry along.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping
from functools import partial
from typing import Any, Generic, TypeVar

from aiokafka.errors import KafkaError
from faust.exceptions import ProducerSendError
from redis.exceptions import RedisClusterException, RedisError

from contracts.models import Alert, DlqRecord, Event, VisitUpdate
from stream.processor import EventProcessor, Step
from transport.cancel import reraise_if_cancelled
from transport.retry import counted_once, retrying

log = logging.getLogger(__name__)

TRANSIENT: tuple[type[Exception], ...] = (
    RedisError,
    RedisClusterException,
    KafkaError,
    ProducerSendError,
    OSError,
)
"""Errors of a service that comes back (a Redis restart, a broker away): the worker retries.
redis-py's ConnectionError and TimeoutError are RedisErrors; a cluster client with no node
answering raises RedisClusterException, which is not; Faust's producer wraps KafkaError in
ProducerSendError; OSError covers sockets."""

T = TypeVar("T")
S = TypeVar("S")

RawSend = Callable[[str, bytes | None, bytes | None], Awaitable[Awaitable[Any]]]
"""Hand one record (topic name, key, value) to a producer; returns the future of its ack."""


async def all_acked(acks: list[Awaitable[Any]]) -> None:
    """Wait for every ack, then raise the first error if any (so none fails unobserved)."""
    for result in await asyncio.gather(*acks, return_exceptions=True):
        if isinstance(result, BaseException):
            raise result


async def publish_visits(send: RawSend, topic: str, visits: list[VisitUpdate]) -> None:
    """Hand ``visits`` to Kafka (keyed by customer) and return once every one is acked."""
    await all_acked([await send(topic, v.customer_id.encode(), v.to_json()) for v in visits])


class BatchRunner(Generic[S]):
    """Decides batches for one processor and writes what they cause to Kafka topics
    ``alerts``, ``visits`` and ``dlq``. ``original`` gives the bytes an event is parked
    with when it fails on its own (what it came in as)."""

    def __init__(
        self,
        proc: EventProcessor,
        send: RawSend,
        *,
        alerts: str,
        visits: str,
        dlq: str,
        original: Callable[[Event, S], bytes],
        backoff_s: float,
        backoff_max_s: float,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.proc = proc
        self.send = send
        self.topics = (alerts, visits, dlq)
        self.original = original
        self.backoff = (backoff_s, backoff_max_s)
        self.sleep = sleep
        self.rng = rng

    async def run(
        self, events: list[tuple[Event, S]], rejected: list[DlqRecord]
    ) -> list[tuple[Alert, S]]:
        """Decide ``events`` and park ``rejected``; returns the alerts sent, each with its
        event's source. Returns only once everything is on Kafka and marked in Redis."""
        try:
            return await self.retrying(
                f"batch of {len(events)}", partial(self.attempt, events, rejected)
            )
        except Exception as exc:
            reraise_if_cancelled()
            failure = exc
        # Out of the except block, so the halves' errors are not chained onto this one.
        return await self.one_at_a_time(events, rejected, failure)

    async def retrying(
        self,
        what: str,
        step: Callable[[], Awaitable[T]],
        retry: tuple[type[Exception], ...] = TRANSIENT,
    ) -> T:
        """Run ``step`` until it succeeds, after each error in ``retry`` waiting a capped,
        jittered backoff (counted as ``batch_retries``); other errors are raised."""

        def count(_exc: Exception) -> None:
            self.proc.stats.counts["batch_retries"] += 1

        first_s, cap_s = self.backoff
        return await retrying(
            what,
            step,
            first_s=first_s,
            cap_s=cap_s,
            retry=retry,
            on_retry=count,
            sleep=self.sleep,
            rng=self.rng,
        )

    async def park(self, records: list[DlqRecord]) -> None:
        """Put records on the DLQ and wait for Kafka's acks."""
        dlq = self.topics[2]
        await all_acked([await self.send(dlq, None, record.to_json()) for record in records])

    async def attempt(
        self, events: list[tuple[Event, S]], rejected: list[DlqRecord]
    ) -> list[tuple[Alert, S]]:
        """One try at a batch: decide, hand everything to Kafka, wait for the acks, then
        write the visits' states and mark the alerts sent and the events processed (one
        call), then the departures that makes due.

        Every step may run again (stream.processor.Step: nothing of a try reaches Redis
        before its output is on Kafka but its dedupe claims), so a try that fails is run
        again whole; the claims it made are released first, or this worker would refuse its
        own alerts on the retry. A try holds the processor's ``step_lock`` from its decision
        to its departures: another agent's step, or the departures timer, deciding from the
        states it has not written yet would start a second visit or depart a visit it
        continues.
        """
        proc = self.proc
        alerts_topic, visits_topic, dlq = self.topics
        async with proc.step_lock:
            step = Step()
            try:
                with counted_once(proc.stats.counts):  # the try is run again whole on failure
                    pending = [await self.send(dlq, None, r.to_json()) for r in rejected]
                    decisions = await proc.decide_batch([event for event, _ in events], step)
                    sent: list[tuple[Alert, S]] = []
                    for decision, (_, source) in zip(decisions, events, strict=True):
                        for visit in decision.visits:
                            pending.append(
                                await self.send(
                                    visits_topic, visit.customer_id.encode(), visit.to_json()
                                )
                            )
                        for alert in decision.alerts:
                            pending.append(
                                await self.send(
                                    alerts_topic, alert.store_id.encode(), alert.to_json()
                                )
                            )
                            sent.append((alert, source))
                    # Wait for Kafka's acks before recording anything as sent or processed.
                    await all_acked(pending)
                    await proc.mark_done(
                        [alert for alert, _ in sent], [event for event, _ in events], step
                    )
            except BaseException:
                proc.release_claims(step)  # or this worker would refuse its own alerts
                raise
            # The step is done (on Kafka, marked): a failure from here on must not run it
            # again, or its alerts would come back as duplicates and not be reported.
            await self._departures(step)
        return sent

    async def _departures(self, step: Step) -> None:
        """The departures ``step`` made due: on Kafka, then settled. Redis or Kafka away:
        they stay due, and the departures timer sends them once it is back."""
        proc, topic = self.proc, self.topics[1]
        try:
            departures = await proc.step_departures(step)
            await publish_visits(self.send, topic, departures)
            await proc.settle_departures(departures)
        except TRANSIENT as exc:
            log.warning("departures left for the timer (%r)", exc)

    async def one_at_a_time(
        self, events: list[tuple[Event, S]], rejected: list[DlqRecord], error: Exception
    ) -> list[tuple[Alert, S]]:
        """A batch failed with an error that retrying does not cure (a bug, or an input our
        code cannot handle): its events are tried again in halves, in order, a half that
        fails split again, down to one event, and one that fails on its own goes to the
        DLQ with the error as its reason. One poisoned event then costs one DLQ record
        instead of stalling its partition (bad input never stops the loop), and ~2 log2(n)
        tries instead of one per event (a step of 5,000 events, one at a time, held its
        partition for tens of seconds); the events before it are decided before the events
        after it, as in the batch. The DLQ keeps the event for a replay once the bug is
        fixed. Parking is retried on any error: it is the last place an event can go."""
        counts = self.proc.stats.counts
        counts["batch_errors"] += 1
        log.error(
            "batch of %d events failed (%r): deciding it again in halves",
            len(events),
            error,
            exc_info=error,
        )
        if rejected:
            await self.retrying("DLQ", partial(self.park, rejected), retry=(Exception,))
        return await self._halves(events)

    async def _halves(self, events: list[tuple[Event, S]]) -> list[tuple[Alert, S]]:
        """Each half of ``events`` decided in order; one that fails is split again."""
        sent: list[tuple[Alert, S]] = []
        middle = (len(events) + 1) // 2
        for part in (events[:middle], events[middle:]):
            if not part:
                continue
            try:
                sent += await self.retrying(f"part of {len(part)}", partial(self.attempt, part, []))
                continue
            except Exception as exc:
                reraise_if_cancelled()
                failure = exc
            # Out of the except block: a deeper split's errors are not chained onto this
            # one's, so the parked event's log shows its own failure, not one per level.
            if len(part) > 1:
                sent += await self._halves(part)
                continue
            self.proc.stats.counts["failed_events"] += 1
            event_id = part[0][0].event_id
            log.error("event %s failed on its own: parked on the DLQ", event_id, exc_info=failure)
            raw = self.original(*part[0])
            record = DlqRecord.of(f"processing failed: {failure!r}", raw, source="stream.worker")
            await self.retrying("DLQ", partial(self.park, [record]), retry=(Exception,))
        return sent


P = TypeVar("P")  # a partition (Faust's TP)

Commit = Callable[[Mapping[Any, int]], Awaitable[bool]]
"""Commit consumer offsets (partition → next offset to read); False if not committed."""


class OffsetCommitter(Generic[P]):
    """Offsets the worker may commit: per partition, the offset after the last record of
    the last batch that is done (:meth:`finished`), committed by :meth:`commit`.

    Only a finished batch moves the mark, so a commit never passes a record nobody
    decided; within a partition records arrive in order, and after a rebalance Faust
    seeks to the committed offset before delivering more (stream/app.py has why the
    worker does not use Faust's acks)."""

    def __init__(self, commit: Commit) -> None:
        self._commit = commit
        self.done: dict[P, int] = {}
        self.committed: dict[P, int] = {}

    def finished(self, records: Iterable[tuple[P, int]]) -> None:
        """Every (partition, offset) of a batch whose events are all on Kafka and marked."""
        for tp, offset in records:
            self.done[tp] = offset + 1

    async def commit(self) -> bool:
        """Commit what moved since the last commit; True if there was nothing to commit or
        the consumer took it (False: the group rebalanced meanwhile; the next try will)."""
        due = {tp: offset for tp, offset in self.done.items() if self.committed.get(tp) != offset}
        if not due:
            return True
        if not await self._commit(due):
            return False
        self.committed.update(due)
        return True
