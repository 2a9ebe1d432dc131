"""The worker's batch runner and offset committer on their own: a fake of our processor's
interface and a recording producer, no Faust, no broker."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from aiokafka.errors import KafkaConnectionError
from redis.exceptions import ConnectionError as RedisConnectionError

from contracts.models import Alert, DlqRecord, Event
from stream.processor import Decision, EventProcessor, ProcessorStats, Step
from stream.runner import BatchRunner, OffsetCommitter
from tests.factories import alert_dict, event_dict

ALERTS, VISITS, DLQ = "alerts", "visits", "dlq"


@dataclass
class FakeProcessor:
    """EventProcessor's interface to the runner; every event alerts once. ``fail`` pops one
    error per decide_batch call; ``poisoned`` event ids fail every batch they are in."""

    stats: ProcessorStats = field(default_factory=ProcessorStats)
    fail: list[Exception] = field(default_factory=list)
    poisoned: set[str] = field(default_factory=set)
    done: list[tuple[list[Alert], list[Event]]] = field(default_factory=list)
    released: int = 0
    step_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def decide_batch(self, events: list[Event], step: Step | None = None) -> list[Decision]:
        self.stats.counts["events"] += len(events)
        if self.fail:
            raise self.fail.pop(0)
        if any(str(e.event_id) in self.poisoned for e in events):
            raise ValueError("a rule cannot handle this event")
        return [
            Decision(alerts=[Alert.model_validate(alert_dict(title=str(e.event_id)))])
            for e in events
        ]

    async def mark_done(
        self, alerts: list[Alert], events: list[Event], step: Step | None = None
    ) -> None:
        self.done.append((alerts, events))

    async def step_departures(self, step: Step) -> list[Any]:
        return []

    async def settle_departures(self, visits: list[Any]) -> None:
        return None

    def release_claims(self, step: Step) -> None:
        self.released += 1


@dataclass
class Producer:
    records: list[tuple[str, bytes | None, bytes | None]] = field(default_factory=list)
    refuse: int = 0  # the next acks that fail, as with a broker away

    async def send(self, topic: str, key: bytes | None, value: bytes | None) -> Awaitable[Any]:
        ack: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.refuse:
            self.refuse -= 1
            ack.set_exception(KafkaConnectionError("broker away"))
        else:
            self.records.append((topic, key, value))
            ack.set_result(None)
        return ack

    def on(self, topic: str) -> list[bytes]:
        return [v for t, _, v in self.records if t == topic and v is not None]


def _runner(proc: FakeProcessor, producer: Producer) -> tuple[BatchRunner[str], list[float]]:
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    runner = BatchRunner[str](
        cast(EventProcessor, proc),
        producer.send,
        alerts=ALERTS,
        visits=VISITS,
        dlq=DLQ,
        original=lambda event, source: f"original of {source}".encode(),
        backoff_s=0.1,
        backoff_max_s=1.0,
        sleep=sleep,
        rng=lambda: 0.5,
    )
    return runner, slept


def _events(n: int) -> list[tuple[Event, str]]:
    return [(Event.model_validate(event_dict(seq=i + 1)), f"record-{i}") for i in range(n)]


async def test_a_batch_is_on_kafka_before_it_is_marked_done() -> None:
    proc, producer = FakeProcessor(), Producer()
    runner, _ = _runner(proc, producer)
    events = _events(3)
    refused = DlqRecord.of("bad input", b"raw", source="stream.worker")
    sent = await runner.run(events, [refused])
    assert [source for _, source in sent] == ["record-0", "record-1", "record-2"]
    assert len(producer.on(ALERTS)) == 3
    assert len(producer.on(DLQ)) == 1
    ((alerts, marked),) = proc.done
    assert [a.alert_id for a in alerts] == [a.alert_id for a, _ in sent]
    assert marked == [e for e, _ in events]


async def test_a_transient_error_retries_the_batch_whole_with_backoff() -> None:
    proc, producer = FakeProcessor(fail=[RedisConnectionError("restarting")]), Producer()
    runner, slept = _runner(proc, producer)
    sent = await runner.run(_events(2), [])
    assert len(sent) == 2
    assert proc.released == 1  # the failed try's dedupe claims were given back
    assert proc.stats.counts["batch_retries"] == 1
    assert proc.stats.counts["events"] == 2  # the failed try's counts were taken back
    assert len(slept) == 1
    assert 0 < slept[0] <= 1.0


async def test_nothing_is_marked_done_while_kafka_refuses_the_acks() -> None:
    proc, producer = FakeProcessor(), Producer(refuse=2)
    runner, slept = _runner(proc, producer)
    sent = await runner.run(_events(2), [])
    assert len(proc.done) == 1  # only the try whose acks all came back
    assert len(sent) == 2
    assert proc.stats.counts["batch_retries"] == 1
    assert len(slept) == 1


async def test_a_poisoned_event_is_parked_and_its_neighbours_are_decided() -> None:
    events = _events(3)
    proc, producer = FakeProcessor(poisoned={str(events[1][0].event_id)}), Producer()
    runner, _ = _runner(proc, producer)
    sent = await runner.run(events, [])
    assert [source for _, source in sent] == ["record-0", "record-2"]
    (parked,) = [DlqRecord.model_validate_json(v) for v in producer.on(DLQ)]
    assert "a rule cannot handle this event" in parked.reason
    assert base64.b64decode(parked.original_b64) == b"original of record-1"
    assert proc.stats.counts["batch_errors"] == 1
    assert proc.stats.counts["failed_events"] == 1


async def test_a_big_batch_finds_its_poisoned_events_in_halves_and_keeps_their_order(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events = _events(64)
    bad = {str(events[i][0].event_id) for i in (5, 41)}
    proc, producer = FakeProcessor(poisoned=bad), Producer()
    runner, _ = _runner(proc, producer)
    sent = await runner.run(events, [])
    # Everyone else decided, in the batch's order; the two parked.
    assert [source for _, source in sent] == [f"record-{i}" for i in range(64) if i not in (5, 41)]
    parked = [DlqRecord.model_validate_json(v) for v in producer.on(DLQ)]
    assert [base64.b64decode(p.original_b64) for p in parked] == [
        b"original of record-5",
        b"original of record-41",
    ]
    assert proc.stats.counts["failed_events"] == 2
    # Halving: each poisoned event costs a try per level of the split (2 x log2 64 = 12,
    # one of them shared), not one try per event as one at a time did (64).
    tries = len(proc.done) + proc.released
    assert tries <= 1 + 2 * 2 * 6
    assert len(proc.done) < 20
    # Each parked event's log shows its own failure, not a chain of one per split level.
    parked_logs = [r for r in caplog.records if "failed on its own" in r.getMessage()]
    assert len(parked_logs) == 2
    for record in parked_logs:
        assert record.exc_info is not None
        assert record.exc_info[1] is not None
        assert record.exc_info[1].__context__ is None


async def test_offsets_move_only_with_finished_batches_and_a_refused_commit_is_tried_again() -> (
    None
):
    commits: list[dict[str, int]] = []
    answers = [False, True]

    async def commit(offsets: Mapping[Any, int]) -> bool:
        commits.append(dict(offsets))
        return answers.pop(0) if answers else True

    committer = OffsetCommitter[str](commit)
    assert await committer.commit()  # nothing finished: nothing to commit
    assert commits == []
    committer.finished([("p0", 10), ("p0", 11), ("p1", 4)])
    assert not await committer.commit()  # the group rebalanced meanwhile
    assert await committer.commit()
    assert commits == [{"p0": 12, "p1": 5}, {"p0": 12, "p1": 5}]
    committer.finished([("p1", 5)])
    assert await committer.commit()
    assert commits[-1] == {"p1": 6}  # only what moved
    assert await committer.commit()
    assert len(commits) == 3


@pytest.mark.parametrize("error", [ValueError("bug"), KeyError("x")])
async def test_an_error_retrying_cannot_cure_goes_one_at_a_time(error: Exception) -> None:
    proc, producer = FakeProcessor(fail=[error]), Producer()
    runner, slept = _runner(proc, producer)
    sent = await runner.run(_events(2), [])
    assert len(sent) == 2  # each on its own went through
    assert slept == []  # not retried: decided one at a time at once
    assert proc.stats.counts["batch_errors"] == 1
