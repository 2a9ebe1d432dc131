"""The Faust app: ``proxima.events.v2`` (one record per signed gateway batch; and
``proxima.events.v1``, one per event, while bridges still write it) → decisions →
``proxima.alerts.v1``.

A v2 batch is verified here, end to end: its gateway signature against the keyring (the
bridge that moved it is not trusted to have checked it), then each event by the same
rules the bridge applies to v1 (:mod:`stream.batches`); what fails goes to the DLQ with
its reason, the rest of the batch is decided (docs/developers/events-v2.md).

Processing guarantee is at-least-once: an event's offset is committed only after its
batch's alerts and visits are on Kafka and the batch is marked in Redis (by this module,
not by Faust's acks: see ``commit_offsets`` in :func:`create_app`). Exactly-once is not
used because Tansu's transactions are incomplete and because every step downstream is
idempotent anyway (see stream.processor).

State: the alert dedupe table (:mod:`stream.tables`) is a Faust table with a changelog,
in the store ``PROXIMA_STREAM_STORE_URL`` names; customers, consent, the EID index and
visit state live in Redis.
"""

from __future__ import annotations

import asyncio
import faulthandler
import functools
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, cast

import faust
import uvloop
from faust.types import TP
from mode.utils.objects import cached_property
from mode.utils.queues import FlowControlEvent
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from contracts.services import ServiceSettings
from contracts.topics import VISITS
from stream import handoff
from stream.processor import EventProcessor
from stream.rules import RuleBook
from stream.runner import Commit, OffsetCommitter, RawSend
from stream.settings import StreamSettings
from stream.tables import DEDUPE_TABLE, AlertDedupe, app_id, ensure_changelogs
from stream.worker import Decisions, Timers, WorkerParts
from transport.gc import tune_gc
from transport.kafka import faust_credentials
from transport.logs import JsonFormatter, configure_logging, env_log_format
from transport.probes import CountsCollector, serving
from transport.redis import warn_if_not_persistent
from transport.retry import run_guarded

log = logging.getLogger(__name__)


def _fetch_wait(ms: int) -> None:
    """Make Faust's Kafka consumer ask for at most ``ms`` of fetch wait.

    Faust 0.15 hard-codes ``fetch_max_wait_ms=1500`` for the worker's consumer; against a
    broker that holds a fetch until its wait runs out (Tansu does, see README: the
    notifier's measurements) that is up to 1.5 s of added latency per fetch. The setting is
    applied to the consumer before it starts (aiokafka reads it in ``start()``).
    """
    from faust.transport.drivers import aiokafka as driver

    cls = driver.AIOKafkaConsumerThread
    original = cls.__dict__["_create_worker_consumer"]
    original = getattr(original, "__wrapped__", original)

    def create(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        consumer._fetch_max_wait_ms = ms
        return consumer

    create.__wrapped__ = original  # type: ignore[attr-defined]
    cls._create_worker_consumer = create  # type: ignore[method-assign]


class KeepQueuedFlowControl(FlowControlEvent):
    """Faust's flow control, except that resuming the flow keeps the events already queued
    for the streams.

    mode's ``FlowControlEvent.resume()`` also empties every stream queue. Faust 0.15's
    recovery resumes the flow after it has sought the stream partitions to their committed
    offsets, and the consumer's fetch loop goes on handing out the records it had fetched
    before that seek, moving its read offset past them; the records the seek made it fetch
    again fall below that read offset and are dropped. So the events queued in between
    were in no queue and would never come again, while the events after them were decided
    and their offsets committed. test_worker_faults lost 184-342 events of 6,000 this way
    (a worker starting on a backlog, in about one run of four; traced with prints in Faust's
    fetch loop and stream iterator). Kept, they are decided once; events a rebalance made
    stale are still skipped, by the stream's own check of the consumer generation."""

    def resume(self) -> None:
        self._suspend.clear()
        self._resume.set()


class WorkerApp(faust.App):
    """``faust.App`` with :class:`KeepQueuedFlowControl`."""

    @cached_property
    def flow_control(self) -> FlowControlEvent:
        return KeepQueuedFlowControl(loop=self.loop)


COMMIT_INTERVAL_S = 0.5
"""How often finished events' offsets are committed (a restart replays at most this much
finished work; replays are idempotent)."""


def create_app(
    services: ServiceSettings,
    settings: StreamSettings,
    *,
    raw_send: RawSend | None = None,
    processor: EventProcessor | None = None,
    commit: Commit | None = None,
) -> faust.App:
    """Build the Faust app for one namespace; topics must already exist (see ensure_topics).

    ``raw_send`` replaces the app's Kafka producer for every record the worker writes
    (alerts, visits, DLQ, consent): the agent's unit tests record them instead.
    ``processor`` is the decision chain the agent uses (default: one built from the
    settings on a Redis client of its own, which lives as long as the worker); the app
    attaches its dedupe table to it as :attr:`EventProcessor.sent_log`.
    ``commit`` replaces the consumer's offset commit (the agent's unit tests record it).
    """
    _fetch_wait(settings.fetch_max_wait_ms)
    handoff.install()
    topics = services.topics
    name = app_id(services, settings)
    datadir = settings.data_dir / name
    datadir.parent.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    app = WorkerApp(
        name,
        broker=f"kafka://{services.kafka_bootstrap}",
        store=settings.store_url,
        datadir=str(datadir),
        processing_guarantee="at_least_once",
        topic_partitions=settings.partitions,
        topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        autodiscover=False,
        broker_commit_every=10_000,  # commit on the interval, not every 100 events
        broker_commit_interval=COMMIT_INTERVAL_S,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.session_timeout_s / 5,
        broker_credentials=faust_credentials(services),
    )

    # Bytes in, bytes out: the contracts package validates, so a bad payload reaches our
    # code (and the DLQ) instead of failing inside Faust's deserialiser.
    def raw_topic(name: str, *, acks: bool = True) -> faust.TopicT:
        return app.topic(
            name,
            key_type=bytes,
            value_type=bytes,
            value_serializer="raw",
            key_serializer="raw",
            acks=acks,
        )

    # The events' offsets are committed by this module, not by Faust's acks (acks=False):
    # see commit_offsets for why.
    events_topic = raw_topic(topics.events, acks=False)
    batches_topic = raw_topic(topics.events_v2, acks=False)
    alerts_topic = raw_topic(topics.alerts)
    dlq_topic = raw_topic(topics.events_dlq)

    visits_topic = raw_topic(topics.kafka(VISITS))
    rules = RuleBook(settings.rules_dir, check_every_s=settings.rules_check_s)
    rules.check_all()  # a broken rules file stops the worker at start, naming the field
    dedupe = AlertDedupe(
        app.Table(
            DEDUPE_TABLE,
            key_type=str,  # values: JSON objects (value_type=dict would not decode)
            help="alert dedupe key (customer:store:visit:kind) -> the alert sent for it",
        ),
        ttl_s=settings.dedupe_ttl_s,
    )

    async def producer_send(topic: str, key: bytes | None, value: bytes | None) -> Any:
        # Straight to the app's producer rather than ``topic.send()``: Faust's channel
        # layer (FutureMessage, callbacks, a debug log line per message) cost as much CPU
        # as aiokafka's own send, and the worker is CPU-bound (README: bench stream).
        return await app.producer.send(
            topic, key, value, partition=None, timestamp=None, headers=None
        )

    parts = WorkerParts(
        services,
        settings,
        rules=rules,
        dedupe=dedupe,
        send=raw_send or producer_send,
        alerts=alerts_topic.get_topic_name(),
        visits=visits_topic.get_topic_name(),
        dlq=dlq_topic.get_topic_name(),
        processor=processor,
    )
    # /metrics (PROXIMA_STREAM_WORKER_HTTP_PORT): a registry of the worker's own.
    registry = CollectorRegistry(auto_describe=False)

    Job = Callable[[], Awaitable[None]]

    def timer(interval: float) -> Callable[[Job], Job]:
        """``app.timer`` for a job that must not end the worker: Faust stops the worker when
        a timer raises (a Redis restart under the departures timer did). Each run goes
        through :func:`transport.retry.run_guarded`: transient errors are retried with
        backoff until the run succeeds, others are logged and counted."""

        def register(body: Job) -> Job:
            @functools.wraps(body)
            async def run() -> None:
                proc = await parts.processor()
                await run_guarded(
                    body,
                    what=f"timer {body.__name__}",
                    base_s=settings.retry_backoff_s,
                    cap_s=settings.retry_backoff_max_s,
                    counts=proc.stats.counts,
                )

            registered: Job = app.timer(interval=interval)(run)
            return registered

        return register

    @app.task  # type: ignore[untyped-decorator]
    async def probes() -> None:
        """``/livez``, ``/readyz`` (Redis answers) and ``/metrics`` (the counters ``proxima
        stats`` shows) on ``PROXIMA_STREAM_WORKER_HTTP_PORT`` (transport.probes)."""
        if settings.worker_http_port is None:
            return
        proc = await parts.processor()
        registry.register(CountsCollector("stream-worker", proc.stats.counts))
        registry.register(LagCollector(app, offsets, (topics.events, topics.events_v2)))

        async def redis_up() -> bool:
            return bool(await proc.r.ping())

        checks = {"redis": redis_up}
        async with serving(settings.http_host, settings.worker_http_port, registry, checks):
            await asyncio.Event().wait()  # until the worker stops (cancelled)

    @app.task  # type: ignore[untyped-decorator]
    async def check_redis() -> None:
        """Gateway keys, customers, consent and identity keys live in Redis: say loudly at
        start when it keeps nothing across a restart (transport.redis)."""
        proc = await parts.processor()
        await warn_if_not_persistent(proc.r, "stream-worker", proc.stats.counts)

    async def consumer_commit(offsets: Mapping[TP, int]) -> bool:
        """What Faust's own commit does, for these offsets: flush the producer (the table's
        changelog records are buffered), commit, tell the tables. ``Consumer._commit`` is
        the hook Faust's commits end in (ConsumerT does not declare it): it goes through
        the consumer's thread, drops offsets of unassigned partitions and returns False
        when the group has rebalanced meanwhile."""
        consumer: Any = app.consumer
        await app.producer.flush()
        if not await consumer._commit(offsets):
            return False
        app.tables.on_commit(dict(offsets))
        return True

    offsets = OffsetCommitter[TP](commit or consumer_commit)
    """Per partition: the offset after the last record of the last batch the agent finished."""
    decisions = Decisions(parts, offsets, registry)
    timers = Timers(parts)

    # How Faust 0.15 feeds this agent (read from its source; measured by `proxima bench
    # stream`, README): aiokafka runs in a thread of its own and its fetches are not the
    # limit (that thread is ~95% idle; `broker_max_poll_records`, `consumer_max_fetch_size`
    # do not bind). Records then go through the main loop one at a time: `_drain_messages`
    # hands each to the conductor (stream.handoff: in place, not Faust's four tasks per
    # record), the conductor decodes it onto the stream's queue (at most
    # `stream_buffer_maxsize`), the stream's passive drainer runs `take()`'s processor.
    # `take()` yields when `batch_max` events are in or `within` has passed since it began
    # waiting (not since the first event); while we process a batch its drainer holds one
    # event and the queue fills. So batches are what the drainer moves in `within` (~115
    # events at 5 ms, ~350 at 20 ms, same throughput): the worker is CPU-bound, and a
    # do-nothing agent on this path tops out at 10-12k events/s on the 2-core machine.
    @app.agent(events_topic)
    async def decide(stream: faust.StreamT[bytes]) -> None:
        """Decide batches of events; no error ends this loop (Faust would not restart it).

        A Redis or Kafka error (a Redis restart, a broker away) retries the batch until it
        goes through: its offsets are not committed meanwhile, so nothing is lost. Any
        other error sends the batch through :meth:`BatchRunner.one_at_a_time` (halves). The dedupe table is a
        cache: its errors are logged and counted (``dedupe_table_errors``), never fatal.
        Cancellation (the worker stopping) ends the loop.
        """
        # Batches: the Kafka acks of a batch's alerts and visits are awaited together and
        # its events are marked processed in one Redis round trip, after they are on Kafka.
        # Events rather than values: a table write needs the Faust event that caused it.
        # (StreamT does not declare take_events; the Stream every agent gets has it)
        batches = cast(faust.Stream[bytes], stream).take_events(
            settings.batch_max, within=settings.batch_within_s
        )
        await decisions.decide_all(batches, decisions.parse_events)

    @app.agent(batches_topic)
    async def decide_batches(stream: faust.StreamT[bytes]) -> None:
        """:func:`decide` for v2 records (one gateway batch each): the same guarantees; a
        record's offset is committed once every event in it is decided. Up to
        ``batch_max_records`` records are taken at a time (live traffic is about one event
        per record: 16 had left the Redis round trips of a step to ~17 events) and decided
        in steps of about ``batch_max`` events (stream.worker.steps)."""
        records = cast(faust.Stream[bytes], stream).take_events(
            settings.batch_max_records, within=settings.batch_within_s
        )
        await decisions.decide_all(records, decisions.parse_batches)

    @timer(COMMIT_INTERVAL_S)
    async def commit_offsets() -> None:
        """Commit the offsets of the records the agent has finished (``offsets``).

        Why not Faust's acks (read from faust-streaming 0.15's streams.py and app/base.py;
        test_worker_faults' SIGTERM case lost 30 of 6,000 events with them): on a graceful
        stop Faust suspends flow control, and ``Stream.__aiter__`` then acks every event
        it still drains as *skipped* without handing it to the agent ("otherwise the lag
        would increase"); ``Stream.on_stop`` also closes ``take_events``, whose
        ``finally`` acks the batch the agent is still deciding. The last commit of the
        stopping worker then moves past events nobody decided, and no worker sees them
        again. So the events topic has ``acks=False`` (Faust tracks and commits nothing
        for it) and an offset is committed here only once its whole batch is done.
        Within a partition the agent gets events in order, and after a rebalance or a
        recovery Faust seeks to the committed offset before delivering more, so "the
        last finished offset + 1" never passes an undecided event. Faust's consumer
        drops the offsets of partitions no longer assigned: their next owner decides
        those events again (a repeat, never a loss).
        """
        await offsets.commit()

    sweeps: set[asyncio.Task[None]] = set()

    @dedupe.table.on_recover
    async def sweep_after_recovery() -> None:
        """The entries a recovery read back may be of customers forgotten meanwhile.

        In a task of its own: Faust awaits this before resuming the partitions, and the
        sweep waits on Redis."""
        task = asyncio.create_task(timers.sweep_table(), name="alert-dedupe-sweep")
        sweeps.add(task)
        task.add_done_callback(sweeps.discard)

    @timer(settings.table_purge_s)
    async def table_sweep() -> None:
        await timers.sweep_table()

    timer(settings.departure_check_s)(timers.departures)
    timer(settings.consent_publish_s)(timers.consent_outbox)
    timer(settings.stats_interval_s)(timers.publish_counters)

    return app


class LagCollector(Collector):
    """``proxima_stream_worker_consumer_lag{topic,partition}``: per assigned partition of the
    events topics, the broker's end offset (the highwater the consumer last fetched) minus
    the offset after the last record the worker finished (or, before it finished one, the
    group's committed offset). Partitions with either unknown are left out."""

    def __init__(self, app: faust.App, offsets: OffsetCommitter[TP], names: tuple[str, ...]):
        self.app = app
        self.offsets = offsets
        self.names = frozenset(names)

    def collect(self) -> Iterable[Metric]:
        lag = GaugeMetricFamily(
            "proxima_stream_worker_consumer_lag",
            "records on the broker the worker has not finished, per partition",
            labels=["topic", "partition"],
        )
        try:
            consumer: Any = self.app.consumer
            assigned = [tp for tp in consumer.assignment() if tp.topic in self.names]
        except Exception:  # not started, or stopping: no partitions to report
            assigned = []
        for tp in sorted(assigned):
            try:
                high = consumer.highwater(tp)
            except Exception:  # the consumer thread has not fetched from it yet
                log.debug("no highwater for %s yet", tp, exc_info=True)
                high = None
            if high is None:
                continue
            # Finished by this worker, else what the group had committed when the partition
            # was assigned (Faust's consumer keeps it); neither known: left out.
            done = self.offsets.done.get(tp)
            if done is None:
                done = consumer._committed_offset.get(tp)
            if done is None:
                continue
            lag.add_metric([tp.topic, str(tp.partition)], float(high - done))
        yield lag


class _Worker(faust.Worker):
    """Faust's worker without its terminal spinner.

    To spin on every log record, Faust's ``on_setup_root_logger`` sets the *root* logger
    to DEBUG whatever ``--loglevel`` says, so every debug line of aiokafka and Faust (a few
    per message) is formatted into a record and then dropped by the handler: ~4% of the
    worker's CPU in ``proxima bench stream``. Without the spinner the root keeps the level.
    """

    stop_timeout_s = 15.0

    def _schedule_shutdown(self, sig: signal.Signals) -> None:
        """A graceful stop, bounded: past ``stop_timeout_s`` the process exits at once.

        Faust 0.15's stop sometimes never ends: the agent's task is cancelled, and the stop
        waits for it without a timeout (mode's ``Service._stop_futures``); seen in 4 of about
        60 SIGTERMs in test_worker_faults, cause not found yet. Exiting hard is safe:
        only offsets of finished batches are committed, so the next worker decides the rest
        (test_worker_faults kills workers with SIGKILL too). faulthandler prints every
        thread's stack first, to the real stderr (mode replaces ``sys.stderr``)."""
        if not self._signal_stop_time:
            log.info("stopping; exiting at once if not stopped in %.0f s", self.stop_timeout_s)
            real_stderr = sys.__stderr__ or sys.stderr
            faulthandler.dump_traceback_later(self.stop_timeout_s, exit=True, file=real_stderr)
        super()._schedule_shutdown(sig)

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        self.spinner = None
        # mode has installed its handlers by now (mode/worker.py, _setup_logging).
        if env_log_format() == "json":
            for handler in logger.handlers:
                handler.setFormatter(JsonFormatter())


def run_worker(loglevel: str = "warn") -> None:
    """Run one worker until SIGINT/SIGTERM (``proxima stream worker``)."""
    # The worker is CPU-bound in asyncio machinery (Faust's per-message tasks, futures and
    # queues, aiokafka, redis-py): uvloop's loop makes it ~13% faster (README: bench stream).
    # Set before the app exists, so the main loop and Faust's consumer thread both get it.
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    services = ServiceSettings()
    settings = StreamSettings()
    # What is logged before Faust sets up logging (creating the changelogs) in the same
    # format; mode then adds its handlers, which _Worker re-formats.
    level = logging.getLevelName(
        loglevel.upper().replace("WARN", "WARNING").replace("CRIT", "CRITICAL")
    )
    configure_logging(level if isinstance(level, int) else logging.WARNING, services.log_format)
    # Faust may not declare topics (a broker's auto-created topic has the wrong partition
    # count): create the tables' changelogs before it starts, like the contract topics.
    # A loop of its own, not asyncio.run(): that would leave the main thread with "no current
    # loop" set, which the worker's own get_event_loop() would then refuse.
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(ensure_changelogs(services, settings))
    finally:
        loop.close()
    app = create_app(services, settings)
    worker = _Worker(app, loglevel=loglevel, quiet=True)
    worker.stop_timeout_s = settings.stop_timeout_s
    # Built: what exists now lives as long as the process (transport/gc.py: ~18% of the
    # worker's CPU was the collector walking it, in full collections of ~94 ms).
    tune_gc(settings.gc_threshold0)
    worker.execute_from_commandline()
