"""How records reach the worker's agent: Faust 0.15's Kafka consumer with two costs cut.

Read from Faust's and mode's source (``faust/transport/consumer.py``,
``mode/services.py``) and measured with py-spy during ``proxima bench stream`` (README):

- **A hand-off without tasks.** For every record, ``Consumer._drain_messages`` awaits
  ``self.wait_first(callback(message), self.suspend_flow.wait())``, and mode's
  ``wait_first`` wraps each argument, and the service's own ``stopped`` and ``crashed``
  events, in a task: four tasks, an ``asyncio.wait`` and three cancellations per record,
  about half of what Faust spends to deliver a record to the agent, although the callback
  (the conductor: decode, put on the stream's queue) almost never has to wait.
  :meth:`ProximaConsumer.wait_first` runs the callback's first step inline. Only when it
  must wait (the stream's queue is full; flow is suspended for a rebalance) does it go
  through mode's ``wait_first``, which then continues that same coroutine
  (:func:`continued`), so a rebalance abandons a blocked hand-off as it does in Faust.
- **A bounded poll.** The drain loop asks for records with ``getmany(timeout=1.0)``. When
  the stream's queue passes its high-water mark Faust pauses the partition
  (``Consumer.on_buffer_full``), and the next fetch, made without it, waits on the other
  (idle) partitions for that whole second, although the queue falls under its low-water
  mark (40% of ``stream_buffer_maxsize``) long before: a stall of up to 1 s each time the
  buffer fills, which is whenever the worker is behind. The worker's consumer waits at most
  ``poll_s`` (the worker's fetch wait) per poll, so a resumed partition is fetched again
  within it, while the queue still holds work.

Everything else (acks, commits, rebalances, flow control) is Faust's own code.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Coroutine, Generator
from typing import Any, TypeVar, cast

from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.types import TP, AppT, Message
from mode.services import WaitArgT, WaitResults
from mode.utils.times import Seconds

T = TypeVar("T")


class _Rest:
    """Awaitable: the rest of a coroutine whose first step has run and yielded ``signal``."""

    __slots__ = ("_coro", "_signal")

    def __init__(self, coro: Coroutine[Any, Any, Any], signal: Any) -> None:
        self._coro = coro
        self._signal = signal

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, signal = self._coro, self._signal
        while True:
            try:
                sent = yield signal  # to the task running us: a future to wait for, or None
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # a cancellation, or an error set on the future
                try:
                    signal = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    signal = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def continued(coro: Coroutine[Any, Any, T], signal: Any) -> T:
    """Run the rest of ``coro``, whose first step (``coro.send(None)``) yielded ``signal``.

    The coroutine goes on as if it had been awaited from the start: what it waits for, a
    cancellation and errors reach it as they would have.
    """
    return cast(T, await _Rest(coro, signal))


class ProximaConsumer(AIOKafkaConsumer):
    """Faust's aiokafka consumer with the two changes the module describes."""

    poll_s: float = 1.0
    """Longest one poll for records waits (Faust asks for 1 s)."""

    async def wait_first(self, *coros: WaitArgT, timeout: Seconds | None = None) -> WaitResults:
        """mode's ``wait_first``, but a coroutine given first runs its first step here.

        If that step finishes it (the usual case: the record went onto the stream's queue),
        no task is made and the result is what mode would return; the other waitables were
        never started (coroutines among them are closed). Otherwise mode's ``wait_first``
        waits for the rest of it against the others, as it would have.
        """
        if timeout is not None:
            return await super().wait_first(*coros, timeout=timeout)
        head = coros[0] if coros else None
        if not isinstance(head, Coroutine):
            return await super().wait_first(*coros)
        others = coros[1:]
        try:
            signal = head.send(None)
        except StopIteration as done:
            _close(others)
            if self._stopped.is_set() or self._crashed.is_set():
                return WaitResults([], [], True)
            return WaitResults([cast(WaitArgT, head)], [done.value], False)
        except BaseException:
            _close(others)
            raise
        rest = cast(WaitArgT, continued(head, signal))
        got = await super().wait_first(rest, *others)
        winners = [cast(WaitArgT, head) if w is rest else w for w in got.done]
        return WaitResults(winners, got.results, got.stopped)

    def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        """Faust's ``getmany``, waiting at most :attr:`poll_s` for records."""
        return super().getmany(timeout=min(timeout, self.poll_s))


def _close(waitables: tuple[WaitArgT, ...]) -> None:
    """Close coroutines that will not be awaited (no "never awaited" warning)."""
    for waitable in waitables:
        if isinstance(waitable, Coroutine):
            waitable.close()


def use_proxima_consumer(app: AppT, poll_s: float) -> None:
    """Make ``app`` build its Kafka consumer as a :class:`ProximaConsumer` polling ``poll_s``.

    Call before the worker starts (the consumer is built on first use). Only the app's own
    transport changes, not Faust's classes.
    """
    if poll_s <= 0:
        raise ValueError(f"poll_s must be > 0, not {poll_s}")
    transport = app.transport
    if not issubclass(transport.Consumer, AIOKafkaConsumer):
        raise TypeError(f"expected Faust's aiokafka transport, not {type(transport).__name__}")
    transport.Consumer = type(  # type: ignore[misc]
        "ProximaConsumer", (ProximaConsumer,), {"poll_s": poll_s, "__module__": __name__}
    )
