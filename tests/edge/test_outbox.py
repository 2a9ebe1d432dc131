"""The SQLite outbox: seq assignment, durability across reopen/crash, batches, the cap policy."""

from __future__ import annotations

import json
import sqlite3
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contracts.models import EventKind, Subject, SubjectType, parse_batch
from edge.exceptions import EventRejected, OutboxError, OutboxFull, OutboxMismatch
from edge.outbox import EventDraft, Outbox
from tests.kit.clock import FakeClock

T0 = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)


def draft(
    kind: EventKind = EventKind.ZONE_ENTER, subject: str = "a9b76a71c5f89290", **kw: object
) -> EventDraft:
    return EventDraft(
        kind=kind,
        subject=Subject(type=SubjectType.EDDYSTONE_EID, id=subject),
        observed_at=T0,
        zone_id="entrance",
        **kw,  # type: ignore[arg-type]
    )


def outbox(path: Path, **kw: object) -> Outbox:
    return Outbox(path, store_id="store-1", gateway_id="gw-door", **kw)  # type: ignore[arg-type]


async def test_put_assigns_contiguous_seq_and_ids_and_the_counter_survives_reopen(
    tmp_path: Path,
) -> None:
    db = tmp_path / "o.sqlite"
    async with outbox(db) as ob:
        first = await ob.put([draft(), draft(EventKind.ZONE_EXIT)])
        assert [e.seq for e in first] == [1, 2]
        assert len({e.event_id for e in first}) == 2
        assert {(e.store_id, e.gateway_id) for e in first} == {("store-1", "gw-door")}
        await ob.ack(await ob.next_batch(max_latency_s=0.001))
        assert ob.stats.depth == 0
    async with outbox(db) as ob:
        again = await ob.put([draft()])
    assert [e.seq for e in again] == [3]  # monotonic although the outbox was emptied


async def test_database_is_wal_with_full_sync(tmp_path: Path) -> None:
    db = tmp_path / "o.sqlite"
    async with outbox(db):
        pass
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()
    assert Outbox.__doc__ is not None
    # synchronous is per connection: check the one the outbox opens.
    ob = outbox(db)
    await ob.open()
    try:
        assert ob._conn().execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        await ob.close()


async def test_crash_between_write_and_publish_keeps_every_event(tmp_path: Path) -> None:
    db = tmp_path / "o.sqlite"
    ob = outbox(db)
    await ob.open()
    written = await ob.put([draft(subject=f"{i:016x}") for i in range(5)])
    # "Crash": the process dies without closing; only what SQLite committed exists.
    ob._executor.shutdown(wait=True)  # type: ignore[union-attr]
    async with outbox(db) as reopened:
        assert reopened.stats.depth == 5
        batch = await reopened.next_batch(max_latency_s=0.001)
    sent = parse_batch(batch.payload)
    assert [e.event_id for e in sent] == [e.event_id for e in written]
    assert [e.seq for e in sent] == [1, 2, 3, 4, 5]


async def test_crash_between_publish_and_ack_resends_the_same_batch(tmp_path: Path) -> None:
    db = tmp_path / "o.sqlite"
    async with outbox(db) as ob:
        await ob.put([draft(subject=f"{i:016x}") for i in range(3)])
        published = await ob.next_batch(max_latency_s=0.001)
        # no ack: the broker may have it, we do not know
    async with outbox(db) as ob:
        resent = await ob.next_batch(max_latency_s=0.001)
    assert resent.payload == published.payload  # same event_ids: the stream deduplicates


async def test_a_batch_must_be_acked_or_released_before_the_next(tmp_path: Path) -> None:
    async with outbox(tmp_path / "o.sqlite") as ob:
        await ob.put([draft(), draft()])
        batch = await ob.next_batch(max_events=1, max_latency_s=0.001)
        with pytest.raises(OutboxError, match="in flight"):
            await ob.next_batch(max_latency_s=0.001)
        ob.release(batch)
        assert (await ob.next_batch(max_events=1, max_latency_s=0.001)).first_seq == 1


async def test_batches_are_bounded_by_count_and_bytes_and_keep_seq_order(tmp_path: Path) -> None:
    async with outbox(tmp_path / "o.sqlite") as ob:
        await ob.put([draft(subject=f"{i:016x}") for i in range(10)])
        by_count = await ob.next_batch(max_events=4, max_latency_s=0.001)
        assert (by_count.first_seq, by_count.last_seq, by_count.count) == (1, 4, 4)
        await ob.ack(by_count)
        one_size = len(json.dumps(json.loads(by_count.payload)[0], separators=(",", ":")))
        by_bytes = await ob.next_batch(
            max_events=100, max_bytes=2 * one_size + 3, max_latency_s=0.001
        )
        assert by_bytes.count == 2
        assert len(by_bytes.payload) <= 2 * one_size + 3
        await ob.ack(by_bytes)
        rest = await ob.next_batch(max_events=100, max_latency_s=0.001)
        assert [e.seq for e in parse_batch(rest.payload)] == [7, 8, 9, 10]


async def test_invalid_draft_rejects_the_whole_put_and_uses_no_seq(tmp_path: Path) -> None:
    async with outbox(tmp_path / "o.sqlite") as ob:
        with pytest.raises(EventRejected) as caught:
            await ob.put([draft(), draft(rssi=400.0)])
        assert caught.value.index == 1
        assert "rssi" in caught.value.reason
        assert ob.stats.depth == 0
        assert [e.seq for e in await ob.put([draft()])] == [1]


async def test_given_event_id_is_kept_and_a_duplicate_is_rejected(tmp_path: Path) -> None:
    eid = uuid.uuid4()
    async with outbox(tmp_path / "o.sqlite") as ob:
        (stored,) = await ob.put([draft(event_id=eid)])
        assert stored.event_id == eid
        with pytest.raises(EventRejected, match="duplicate"):
            await ob.put([draft(event_id=eid)])
        assert ob.stats.depth == 1


async def test_cap_drops_oldest_dwell_first_and_never_enter_or_exit(tmp_path: Path) -> None:
    async with outbox(tmp_path / "o.sqlite", max_rows=4, warn_fraction=0.75) as ob:
        await ob.put(
            [
                draft(EventKind.ZONE_ENTER),
                draft(EventKind.ZONE_DWELL),
                draft(EventKind.ZONE_DWELL, subject="bb" * 8),
            ]
        )
        assert ob.stats.near_cap
        await ob.put([draft(EventKind.ZONE_EXIT), draft(EventKind.ZONE_ENTER, subject="cc" * 8)])
        assert ob.stats.dropped == {"zone_dwell": 1}
        kinds = [(e.seq, e.kind.value) for e in await ob.pending()]
        assert kinds == [(1, "zone_enter"), (3, "zone_dwell"), (4, "zone_exit"), (5, "zone_enter")]
        await ob.put([draft(EventKind.ZONE_EXIT, subject="cc" * 8)])
        assert ob.stats.dropped == {"zone_dwell": 2}
        with pytest.raises(OutboxFull):
            await ob.put([draft(EventKind.ZONE_ENTER, subject="dd" * 8)])
        assert ob.stats.refused == 1
        assert [e.kind.value for e in await ob.pending()] == [
            "zone_enter",
            "zone_exit",
            "zone_enter",
            "zone_exit",
        ]
        # A refusal consumes no seq: the next accepted event follows the last stored one.
        await ob.ack(await ob.next_batch(max_latency_s=0.001))
        assert [e.seq for e in await ob.put([draft()])] == [7]


async def test_cap_by_bytes(tmp_path: Path) -> None:
    async with outbox(tmp_path / "o.sqlite", max_bytes=600) as ob:
        await ob.put([draft(EventKind.ZONE_DWELL)])
        await ob.put([draft(EventKind.ZONE_DWELL)])
        assert ob.stats.bytes <= 600
        await ob.put([draft(EventKind.ZONE_ENTER)])
        assert ob.stats.dropped_total >= 1
        assert ob.stats.bytes <= 600


async def test_in_flight_rows_are_not_dropped(tmp_path: Path) -> None:
    async with outbox(tmp_path / "o.sqlite", max_rows=2) as ob:
        await ob.put([draft(EventKind.ZONE_DWELL), draft(EventKind.ZONE_DWELL)])
        batch = await ob.next_batch(max_latency_s=0.001)
        with pytest.raises(OutboxFull):
            await ob.put([draft(EventKind.ZONE_ENTER)])
        await ob.ack(batch)
        assert ob.stats.acked == 2


async def test_an_outbox_of_another_gateway_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "o.sqlite"
    async with outbox(db):
        pass
    other = Outbox(db, store_id="store-1", gateway_id="gw-other")
    with pytest.raises(OutboxMismatch, match="gw-door"):
        await other.open()


async def test_oldest_age_follows_the_injected_clock(tmp_path: Path) -> None:
    clock = FakeClock(1000.0)
    async with outbox(tmp_path / "o.sqlite", clock=clock) as ob:
        assert ob.oldest_age_s() == 0.0
        await ob.put([draft()])
        clock.t = 1042.5
        await ob.put([draft()])
        assert ob.oldest_age_s() == pytest.approx(42.5)
        await ob.ack(await ob.next_batch(max_events=1, max_latency_s=0.001))
        assert ob.oldest_age_s() == pytest.approx(0.0)
