"""What every ``proxima`` command shares: the two consoles, a failure as one red line and an
exit status, ``--verbose`` logging, a spinner while a long command works, and running a
service until SIGINT/SIGTERM.

Each package exports its own Typer app (``edge.cli``, ``stream.cli``, ``notifier.cli``,
``simulators.cli``, ...); ``deploy.cli`` only mounts them. They print through these.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import typer
from rich.console import Console

from transport.logs import configure_logging

out = Console()
err = Console(stderr=True)

RECANCEL_S = 2.0
"""How often a service that is stopping is cancelled again until it has stopped."""


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` on stderr; the exit to raise (2: bad input, 1: refused).

    One line, however long (``soft_wrap``): the terminal folds it for the eye, but a path
    or a setting in it stays whole to copy (rich had cut them at the console's width)."""
    err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def verbose_logging(verbose: bool) -> None:
    """``--verbose``/``-v``: DEBUG, else INFO (transport.logs: JSON lines or text)."""
    configure_logging(logging.DEBUG if verbose else logging.INFO)


@contextlib.contextmanager
def working(what: str) -> Iterator[None]:
    """A spinner with the time elapsed on a terminal (stderr) while ``what`` runs; nothing
    in a pipe or a log."""
    if not sys.stderr.isatty():
        yield
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(), TextColumn(what), TimeElapsedColumn(), console=err, transient=True
    ) as bar:
        bar.add_task(what, total=None)
        yield


@contextlib.contextmanager
def seconds_bar(
    label: str, total: float | None, unit: str = "s"
) -> Iterator[Callable[[float], None]]:
    """A transient bar on stderr of seconds done out of ``total`` (``label``, then
    ``done/total unit`` and the time left); yields the function that sets the seconds done."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn(label.replace("{", "{{").replace("}", "}}")),
        BarColumn(),
        TextColumn("{task.completed:,.0f}/{task.total:,.0f} " + unit),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=total)
        yield lambda done: bar.update(task, completed=done)


def run_forever(coro: Coroutine[Any, Any, None]) -> None:
    """Run a service's ``run()`` until it returns or SIGINT/SIGTERM stops it."""

    async def main() -> None:
        task = asyncio.ensure_future(coro)
        loop = asyncio.get_running_loop()

        def stop() -> None:
            # A cancellation can be swallowed on its way through a client library (seen
            # once: a bridge in the test suite that never stopped after SIGTERM, its paho
            # thread still running, so it never reached its MQTT disconnect; the library
            # was not found). So until the task is done it is cancelled again every
            # RECANCEL_S; each service's shutdown is safe to interrupt (at least once: what
            # was not acked is delivered again).
            if not task.done():
                task.cancel()
                loop.call_later(RECANCEL_S, stop)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(main())
