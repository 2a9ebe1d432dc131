"""Cancellation that survives redis-py.

redis-py can turn a cancellation that lands mid-command into a ``ConnectionError`` (a
``RedisError``); a loop that logs that and goes on never stops, which showed up as a
notifier whose shutdown hung under load. Every ``except`` that can catch such an error
in a long-running loop (notifier, bridge, ingest) calls :func:`reraise_if_cancelled` first.
"""

from __future__ import annotations

import asyncio


def reraise_if_cancelled() -> None:
    """Inside an ``except``: raise CancelledError if the current task is being cancelled."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
