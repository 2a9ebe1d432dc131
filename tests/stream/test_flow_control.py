"""The worker's flow control (stream.app.KeepQueuedFlowControl): resuming the flow keeps
the events already queued for the streams. mode's own FlowControlEvent empties them, and
Faust 0.15's recovery resumes the flow after a seek, which lost events (test_worker_faults
catches that end to end; these pin the mechanism)."""

from __future__ import annotations

from pathlib import Path

from mode.utils.queues import FlowControlEvent, FlowControlQueue

from contracts.services import ServiceSettings
from stream.app import KeepQueuedFlowControl, create_app
from stream.settings import StreamSettings


def _queue(flow: FlowControlEvent) -> FlowControlQueue[int]:
    """A queue as Faust makes a stream's: managed by the app's flow control."""
    queue: FlowControlQueue[int] = FlowControlQueue(flow_control=flow, clear_on_resume=True)
    for n in (1, 2, 3):
        queue.put_nowait(n)
    return queue


async def test_resuming_the_flow_keeps_the_queued_events() -> None:
    flow = KeepQueuedFlowControl()
    queue = _queue(flow)
    flow.suspend()
    assert not flow.is_active()
    flow.resume()
    assert flow.is_active()
    assert [queue.get_nowait() for _ in range(queue.qsize())] == [1, 2, 3]


async def test_modes_own_flow_control_empties_them_which_is_what_this_works_around() -> None:
    # If mode stops doing this, KeepQueuedFlowControl can go.
    flow = FlowControlEvent()
    queue = _queue(flow)
    flow.suspend()
    flow.resume()
    assert queue.qsize() == 0


async def test_an_explicit_clear_still_empties_them() -> None:
    """Faust clears the queues itself when partitions are revoked (their events belong to
    the next owner); that stays."""
    flow = KeepQueuedFlowControl()
    queue = _queue(flow)
    flow.clear()
    assert queue.qsize() == 0


def test_the_worker_app_uses_it(tmp_path: Path) -> None:
    services = ServiceSettings(namespace="t-flow", kafka="kafka://127.0.0.1:9")  # no connection
    app = create_app(services, StreamSettings(data_dir=tmp_path))
    assert isinstance(app.flow_control, KeepQueuedFlowControl)
