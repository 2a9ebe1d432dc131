"""The worker's parts on their own (stream.worker), with fakes of our own interfaces: the
agents' loop marks a batch's records finished only once the batch is decided, the
departures timer records a visit done only after Kafka acknowledged it, a v1 record that
is not an event goes to the DLQ beside the good ones, a dedupe table that fails is counted
and never stops the loop. The whole worker, on Faust: tests/stream/test_agent.py and
test_worker_faults.py."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry

from contracts.models import DlqRecord, Event
from contracts.services import ServiceSettings
from stream.processor import EventProcessor
from stream.rules import RuleBook
from stream.runner import BatchRunner, OffsetCommitter
from stream.settings import StreamSettings
from stream.tables import AlertDedupe
from stream.worker import Decisions, Record, TakeOffsets, Timers, WorkerParts, steps
from tests.factories import event_dict

NOW = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


@dataclass
class FakeMessage:
    tp: str
    offset: int
    headers: Any = None


@dataclass
class FakeRecord:
    """What the agent gets from Faust: a record's value and where it came from."""

    value: bytes
    message: FakeMessage


@dataclass
class FakeIdentity:
    async def refresh(self) -> None:
        return None

    def take_forgotten(self) -> set[str]:
        return set()


@dataclass
class FakeStats:
    counts: Counter[str] = field(default_factory=Counter)


@dataclass
class FakeProcessor:
    """The processor's face to the worker's loop and timers."""

    due: list[Any] = field(default_factory=list)
    settled: list[list[Any]] = field(default_factory=list)
    stats: FakeStats = field(default_factory=FakeStats)
    identity: FakeIdentity = field(default_factory=FakeIdentity)

    def now(self) -> datetime:
        return NOW

    async def depart(self, publish: Callable[[list[Any]], Awaitable[None]]) -> None:
        due = list(self.due)
        await publish(due)
        self.settled.append(due)


@dataclass
class FakeRunner:
    """Records each batch it is asked to decide; ``gate`` holds the decision back."""

    batches: list[tuple[list[Any], list[DlqRecord]]] = field(default_factory=list)
    gate: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, events: list[Any], rejected: list[DlqRecord]) -> list[Any]:
        await self.gate.wait()
        self.batches.append((events, rejected))
        return []


class BrokenTable:
    """A dedupe table whose every call fails (its changelog away)."""

    def forget(self, customers: set[str]) -> int:
        raise RuntimeError("table unavailable")

    def purge(self, now: float) -> int:
        raise RuntimeError("table unavailable")


class Parts(WorkerParts):
    def __init__(self, proc: FakeProcessor, runner: FakeRunner, dedupe: Any, send: Any) -> None:
        super().__init__(
            ServiceSettings(kafka="kafka://127.0.0.1:9"),
            StreamSettings(data_dir=Path("unused")),
            rules=cast(RuleBook, None),
            dedupe=cast(AlertDedupe, dedupe),
            send=send,
            alerts="alerts",
            visits="visits",
            dlq="dlq",
            processor=cast(EventProcessor, proc),
        )
        self.fake_runner = runner

    async def processor(self) -> EventProcessor:
        return cast(EventProcessor, self._processor)

    async def runner(self) -> BatchRunner[Record]:
        return cast(BatchRunner[Record], self.fake_runner)


async def _no_send(topic: str, key: bytes | None, value: bytes | None) -> Any:
    raise AssertionError("nothing is sent here")


def _decisions(parts: Parts) -> tuple[Decisions, OffsetCommitter[str]]:
    async def commit(offsets: Any) -> bool:
        return True

    offsets = OffsetCommitter[str](commit)
    return Decisions(parts, offsets, CollectorRegistry(auto_describe=False)), offsets


def _record(offset: int, value: bytes, tp: str = "events-0") -> FakeRecord:
    return FakeRecord(value, FakeMessage(tp, offset))


async def test_a_batch_is_finished_for_the_committer_only_once_it_is_decided() -> None:
    proc, runner = FakeProcessor(), FakeRunner()
    decisions, offsets = _decisions(Parts(proc, runner, BrokenTable(), _no_send))
    good = json.dumps(event_dict()).encode()
    queue: asyncio.Queue[Sequence[Record] | None] = asyncio.Queue()

    async def batches() -> AsyncIterator[Sequence[Record]]:
        while (batch := await queue.get()) is not None:
            yield batch

    loop = asyncio.create_task(decisions.decide_all(batches(), decisions.parse_events))
    await queue.put([cast(Record, _record(7, good)), cast(Record, _record(8, good))])
    await asyncio.sleep(0.01)
    assert offsets.done == {}  # being decided: nothing may be committed yet
    runner.gate.set()
    await queue.put(None)
    await asyncio.wait_for(loop, 5)
    assert offsets.done == {"events-0": 9}
    assert [len(events) for events, _ in runner.batches] == [2]
    # The table failed on every call: counted, and the loop went on to the end.
    assert proc.stats.counts["dedupe_table_errors"] == 1


async def test_a_v1_record_that_is_not_an_event_goes_to_the_dlq_beside_the_good_ones() -> None:
    proc = FakeProcessor()
    decisions, _ = _decisions(Parts(proc, FakeRunner(), BrokenTable(), _no_send))
    good = json.dumps(event_dict()).encode()
    events, rejected = await decisions.parse_events(
        cast(EventProcessor, proc),
        [cast(Record, _record(1, good)), cast(Record, _record(2, b"{not json"))],
    )
    assert [type(e) for e, _ in events] == [Event]
    assert len(rejected) == 1
    assert "JSON" in rejected[0].reason
    assert rejected[0].source == "stream.worker"
    assert proc.stats.counts["rejected"] == 1


async def test_departures_are_settled_only_after_kafka_acknowledged_each_visit() -> None:
    @dataclass
    class Visit:
        customer_id: str

        def to_json(self) -> bytes:
            return json.dumps({"customer_id": self.customer_id}).encode()

    proc = FakeProcessor(due=[Visit("ana"), Visit("bea")])
    acks: list[asyncio.Future[None]] = []
    sent: list[tuple[str, bytes | None]] = []

    async def send(topic: str, key: bytes | None, value: bytes | None) -> Any:
        sent.append((topic, key))
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        acks.append(ack)
        return ack

    timers = Timers(Parts(proc, FakeRunner(), BrokenTable(), send))
    job = asyncio.create_task(timers.departures())
    await asyncio.sleep(0.01)
    assert sent == [("visits", b"ana"), ("visits", b"bea")]  # both handed over at once
    acks[1].set_result(None)
    await asyncio.sleep(0.01)
    assert not job.done()  # still waiting for ana's ack
    assert proc.settled == []
    acks[0].set_result(None)
    await asyncio.wait_for(job, 5)
    assert [[v.customer_id for v in due] for due in proc.settled] == [["ana", "bea"]]


async def test_a_refused_visit_is_not_settled_so_the_next_tick_sends_it_again() -> None:
    @dataclass
    class Visit:
        customer_id: str

        def to_json(self) -> bytes:
            return b"{}"

    proc = FakeProcessor(due=[Visit("ana")])

    async def send(topic: str, key: bytes | None, value: bytes | None) -> Any:
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ack.set_exception(ConnectionError("broker away"))
        return ack

    with pytest.raises(ConnectionError):
        await Timers(Parts(proc, FakeRunner(), BrokenTable(), send)).departures()
    assert proc.settled == []


def _opened(sizes: list[int]) -> tuple[list[FakeRecord], list[tuple[Any, Any]]]:
    """Records of ``sizes`` events each, and their events in order (as a parse gives them)."""
    records = [_record(i, b"[]") for i in range(len(sizes))]
    events = [
        (f"e{i}.{k}", record)
        for i, (n, record) in enumerate(zip(sizes, records, strict=True))
        for k in range(n)
    ]
    return records, events


def test_a_taken_batch_is_decided_in_steps_of_whole_records() -> None:
    records, events = _opened([3, 0, 2, 4, 1])
    refused = [DlqRecord.of("bad", b"x", source="test")]
    got = list(steps(cast(Any, records), cast(Any, events), refused, 4))
    # A step closes once it holds the limit, at a record's end: 3 + 2, then 4, then 1.
    assert [[e for e, _ in step] for step, _, _ in got] == [
        ["e0.0", "e0.1", "e0.2", "e2.0", "e2.1"],
        ["e3.0", "e3.1", "e3.2", "e3.3"],
        ["e4.0"],
    ]
    # Each step finishes its records (the empty one with the step after it) and the refused
    # input is parked in the first.
    assert [[r.message.offset for r in finished] for _, _, finished in got] == [[0, 1, 2], [3], [4]]
    assert [len(r) for _, r, _ in got] == [1, 0, 0]


def test_a_take_hands_on_offsets_in_order_and_never_past_an_undecided_record() -> None:
    take = TakeOffsets([("p0", 5), ("p0", 6), ("p1", 9), ("p0", 3), ("p0", 4)])
    # In order (as a partition's records come): handed on as each step finishes them.
    assert take.finish([("p1", 9)]) == [("p1", 9)]
    # p0's 5 and 6 came before its 3 and 4 (a seek re-delivering): held back while 3 and 4
    # are undecided, or a commit of 7 would skip them.
    assert take.finish([("p0", 5), ("p0", 6)]) == []
    assert take.finish([("p0", 3)]) == [("p0", 3)]
    assert take.finish([("p0", 4)]) == [("p0", 4), ("p0", 5), ("p0", 6)]


def test_a_gateway_batch_larger_than_the_limit_is_one_step() -> None:
    records, events = _opened([7, 1])
    got = list(steps(cast(Any, records), cast(Any, events), [], 2))
    assert [len(step) for step, _, _ in got] == [7, 1]


def test_a_batch_with_no_events_is_one_step_that_finishes_every_record() -> None:
    records, _ = _opened([0, 0])
    refused = [DlqRecord.of("bad", b"x", source="test")]
    ((step, parked, finished),) = steps(cast(Any, records), [], refused, 500)
    assert (step, parked, [r.message.offset for r in finished]) == ([], refused, [0, 1])


async def test_the_records_of_a_step_are_finished_before_the_next_step_is_decided() -> None:
    proc, runner = FakeProcessor(), FakeRunner()
    parts = Parts(proc, runner, BrokenTable(), _no_send)
    parts.settings = StreamSettings(data_dir=Path("unused"), batch_max=2)
    decisions, offsets = _decisions(parts)
    good = json.dumps(event_dict()).encode()
    seen: list[dict[str, int]] = []
    real_run = runner.run

    async def run(events: list[Any], rejected: list[DlqRecord]) -> list[Any]:
        seen.append(dict(offsets.done))
        return await real_run(events, rejected)

    runner.run = run  # type: ignore[method-assign]
    runner.gate.set()

    async def batches() -> AsyncIterator[Sequence[Record]]:
        yield [cast(Record, _record(i, good)) for i in range(5)]

    await decisions.decide_all(batches(), decisions.parse_events)
    assert [len(events) for events, _ in runner.batches] == [2, 2, 1]
    assert seen == [{}, {"events-0": 2}, {"events-0": 4}]
    assert offsets.done == {"events-0": 5}
