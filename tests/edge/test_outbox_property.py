"""Outbox invariants under random puts, publishes, acks and crashes (Hypothesis).

Whatever the interleaving: every event ever stored is either acked (published) or still
in the outbox, never both and never neither; seqs are 1..N without gaps; batches leave in
seq order; a crash (reopen without close) loses nothing committed and never reuses a seq.
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.models import EventKind, Subject, SubjectType, parse_batch
from edge.outbox import EventDraft, Outbox

T0 = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
KINDS = [EventKind.ZONE_ENTER, EventKind.ZONE_DWELL, EventKind.ZONE_EXIT]

step = st.one_of(
    st.tuples(st.just("put"), st.integers(1, 7), st.sampled_from(KINDS)),
    st.tuples(st.just("publish"), st.integers(1, 5), st.booleans()),  # (max, acked?)
    st.tuples(st.just("crash"), st.just(0), st.just(False)),
)


def _draft(i: int, kind: EventKind) -> EventDraft:
    return EventDraft(kind, Subject(type=SubjectType.EDDYSTONE_EID, id=f"{i:016x}"), T0)


async def _play(path: Path, steps: list[tuple[str, int, object]]) -> None:
    ob = Outbox(path, store_id="s", gateway_id="g")
    await ob.open()
    stored: dict[int, str] = {}
    acked: set[int] = set()
    last_sent = 0
    n = 0
    try:
        for op, arg, flag in steps:
            if op == "put":
                assert isinstance(flag, EventKind)
                events = await ob.put([_draft(n + i, flag) for i in range(arg)])
                n += arg
                for e in events:
                    assert e.seq not in stored, "seq reused"
                    stored[e.seq] = str(e.event_id)
            elif op == "publish" and ob.stats.depth:
                batch = await ob.next_batch(max_events=arg, max_latency_s=0.0)
                events = parse_batch(batch.payload)
                seqs = [e.seq for e in events]
                assert seqs == sorted(seqs)
                assert seqs[0] > max(acked, default=0), "a batch went back in time"
                assert all(stored[e.seq] == str(e.event_id) for e in events)
                last_sent = max(last_sent, seqs[-1])
                if flag:
                    await ob.ack(batch)
                    acked.update(seqs)
                else:
                    ob.release(batch)  # publish failed: same rows again next time
            elif op == "crash":
                assert ob._executor is not None
                await asyncio.get_running_loop().run_in_executor(ob._executor, ob._close_sync)
                ob._executor.shutdown(wait=True)
                ob = Outbox(path, store_id="s", gateway_id="g")
                await ob.open()
        pending = {e.seq for e in await ob.pending()}
        assert pending.isdisjoint(acked)
        assert pending | acked == set(stored)
        assert sorted(stored) == list(range(1, len(stored) + 1))
        assert ob.stats.depth == len(pending)
        assert ob.stats.next_seq == len(stored) + 1
    finally:
        await ob.close()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.lists(step, min_size=1, max_size=25))
def test_outbox_invariants_hold_under_any_interleaving(
    steps: list[tuple[str, int, object]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_play(Path(tmp) / "o.sqlite", steps))
