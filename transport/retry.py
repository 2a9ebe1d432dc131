"""Retrying a step that fails because a service is away (a Redis restart, a broker gone).

One place for what every long-running loop needs: which errors mean "the service comes
back" (:data:`TRANSIENT`) and how long to wait before the next try (:func:`backoff`:
doubling, capped, jittered so instances that failed together do not retry together).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka.errors import KafkaError
from redis.exceptions import RedisClusterException, RedisError

from transport.cancel import reraise_if_cancelled
from transport.mqtt import MqttError

log = logging.getLogger(__name__)
T = TypeVar("T")

TRANSIENT: tuple[type[Exception], ...] = (
    RedisError,
    RedisClusterException,
    KafkaError,
    MqttError,
    OSError,
)
"""Errors of a service that comes back: redis-py's ConnectionError and TimeoutError are
RedisErrors; a cluster with no node answering raises RedisClusterException, which is not;
MqttError is a publish without PUBACK (broker gone); OSError covers sockets."""

Sleep = Callable[[float], Awaitable[None]]


def backoff(attempt: int, first: float, cap: float, rng: random.Random | None = None) -> float:
    """The wait before retry ``attempt`` (1, 2, ...): ``first`` doubling up to ``cap``, times
    a random 0.5-1."""
    step: float = first * 2.0 ** min(attempt - 1, 32)
    return min(cap, step) * (rng or random).uniform(0.5, 1.0)


async def retrying(
    what: str,
    step: Callable[[], Awaitable[T]],
    *,
    first_s: float = 0.2,
    cap_s: float = 10.0,
    retry: tuple[type[Exception], ...] = TRANSIENT,
    on_retry: Callable[[Exception], None] | None = None,
    sleep: Sleep = asyncio.sleep,
) -> T:
    """Run ``step`` until it succeeds, waiting :func:`backoff` after each error in ``retry``
    (``on_retry`` sees each one, to count it); other errors are raised."""
    attempt = 0
    while True:
        try:
            return await step()
        except retry as exc:
            reraise_if_cancelled()  # redis-py turns a cancellation into ConnectionError
            attempt += 1
            if on_retry is not None:
                on_retry(exc)
            delay = backoff(attempt, first_s, cap_s)
            log.error(
                "%s failed (%s: %s): retry %d in %.2f s",
                what,
                type(exc).__name__,
                exc,
                attempt,
                delay,
            )
            await sleep(delay)
