"""Retrying what a service that comes back made fail: which errors, how long to wait, the loop.

A Redis restart, a Kafka broker away or a socket reset is *transient*: the same operation
succeeds once the service is back, so it is tried again, never skipped. An error that
names the data (a record over Kafka's size limit) fails the same way every time: retrying
it would stop the loop for ever, so it is the caller's to park (DLQ) instead.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from redis.exceptions import RedisClusterException, RedisError

from transport.cancel import reraise_if_cancelled
from transport.mqtt import MqttError

log = logging.getLogger(__name__)
T = TypeVar("T")


def _errors(module: str, *names: str) -> tuple[type[Exception], ...]:
    """Exception classes of a client library that may not be installed: a gateway's base
    install has no aiokafka (it comes with the ``services`` extra), and its errors cannot
    reach a gateway."""
    try:
        found = importlib.import_module(module)
    except ImportError:
        return ()
    return tuple(getattr(found, name) for name in names)


TRANSIENT: tuple[type[Exception], ...] = (
    RedisError,
    RedisClusterException,
    *_errors("aiokafka.errors", "KafkaError"),
    MqttError,
    OSError,
    TimeoutError,
)
"""Errors of a service, not of the data. redis-py's ConnectionError and TimeoutError are
RedisErrors; a cluster client with no node answering raises RedisClusterException, which
is not; aiokafka raises KafkaTimeoutError (not retriable by its own flag) while a broker is
away; MqttError is a publish without PUBACK (broker gone); OSError covers sockets."""

OF_THE_RECORD: tuple[type[BaseException], ...] = _errors(
    "aiokafka.errors",
    "MessageSizeTooLargeError",
    "RecordTooLargeError",
    "InvalidMessageError",
    "CorruptRecordException",
    "InvalidTopicError",
)
"""Kafka errors about one record (its size, its bytes, its topic name): the same record
fails again however long one waits."""


@contextmanager
def counted_once(counts: Counter[str]) -> Iterator[None]:
    """For one try of a step that is run again whole when it fails: if the try fails, the
    counters go back to what they were before it, or a retry would count it all twice."""
    before = counts.copy()
    try:
        yield
    except BaseException:
        counts.clear()
        counts.update(before)
        raise


def is_transient(exc: BaseException) -> bool:
    """True if trying the same operation again later can succeed."""
    return isinstance(exc, TRANSIENT) and not isinstance(exc, OF_THE_RECORD)


def backoff_delay(attempt: int, base: float, cap: float, rng: Callable[[], float]) -> float:
    """Full jitter: uniform in [0, min(cap, base·2^attempt)] for ``rng`` uniform in [0, 1),
    so processes that failed together do not retry together."""
    return rng() * min(cap, base * (2.0 ** min(attempt, 30)))


async def retry_transient(
    step: Callable[[], Awaitable[T]],
    *,
    what: str,
    base_s: float,
    cap_s: float,
    on_retry: Callable[[BaseException], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: Callable[[], float] = random.random,
) -> T:
    """Run ``step`` until it succeeds; after each transient error, log it, call ``on_retry``
    and wait a capped, jittered backoff. Any other error is raised to the caller."""
    return await _until_done(step, what, base_s, cap_s, is_transient, on_retry, sleep, rng)


async def _until_done(
    step: Callable[[], Awaitable[T]],
    what: str,
    base_s: float,
    cap_s: float,
    retryable: Callable[[Exception], bool],
    on_retry: Callable[[Exception], None] | None,
    sleep: Callable[[float], Awaitable[None]],
    rng: Callable[[], float],
) -> T:
    """The one retry loop: ``step`` again after each ``retryable`` error, with backoff."""
    attempt = 0
    while True:
        try:
            return await step()
        except Exception as exc:
            reraise_if_cancelled()  # redis-py turns a cancellation into ConnectionError
            if not retryable(exc):
                raise
            if on_retry is not None:
                on_retry(exc)
            delay = backoff_delay(attempt, base_s, cap_s, rng)
            attempt += 1
            log.error(
                "%s failed (%s: %s): retry %d in %.2f s",
                what,
                type(exc).__name__,
                exc,
                attempt,
                delay,
            )
            await sleep(delay)


def backoff(
    attempt: int, first: float, cap: float, rng: Callable[[], float] = random.random
) -> float:
    """The wait before retry ``attempt`` (1, 2, ...): :func:`backoff_delay` counted from 1."""
    return backoff_delay(attempt - 1, first, cap, rng)


async def retrying(
    what: str,
    step: Callable[[], Awaitable[T]],
    *,
    first_s: float = 0.2,
    cap_s: float = 10.0,
    retry: tuple[type[Exception], ...] = TRANSIENT,
    on_retry: Callable[[Exception], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: Callable[[], float] = random.random,
) -> T:
    """Run ``step`` until it succeeds, waiting :func:`backoff_delay` after each error in
    ``retry`` (``on_retry`` sees each one, to count it); other errors are raised."""
    return await _until_done(
        step, what, first_s, cap_s, lambda exc: isinstance(exc, retry), on_retry, sleep, rng
    )


async def run_guarded(
    step: Callable[[], Awaitable[None]],
    *,
    what: str,
    base_s: float,
    cap_s: float,
    counts: Counter[str],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: Callable[[], float] = random.random,
) -> None:
    """One run of a periodic job that must never end its process: transient errors are
    retried with backoff until the run succeeds (``timer_retries``); any other error is
    logged and counted (``timer_errors``) and the next run tries again."""
    try:
        await retry_transient(
            step,
            what=what,
            base_s=base_s,
            cap_s=cap_s,
            on_retry=lambda _exc: counts.update(timer_retries=1),
            sleep=sleep,
            rng=rng,
        )
    except Exception:
        reraise_if_cancelled()
        counts["timer_errors"] += 1
        log.exception("%s failed; its next run tries again", what)
