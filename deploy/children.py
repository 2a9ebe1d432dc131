"""``proxima`` commands run as child processes, one log file each, stopped together.

The launcher (``proxima up``) and the integration tests supervise their children with it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

CHILD_STOP_TIMEOUT_S = 15.0


@dataclass
class Children:
    """Child processes by name, logging to ``log_dir/<name>.log``; :meth:`stop` ends
    them in reverse start order. ``append=False`` starts each log afresh (a test that
    reads a log must not read a previous run's)."""

    env: dict[str, str]
    log_dir: Path
    append: bool = True
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _logs: list[IO[bytes]] = field(default_factory=list)

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """Start ``proxima <args>`` as ``name`` with this environment."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path(name).open("ab" if self.append else "wb")
        self._logs.append(log)
        proc = subprocess.Popen(
            [sys.executable, "-m", "deploy.cli", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs[name] = proc
        return proc

    def dead(self) -> list[str]:
        """The children that exited with an error, as ``name (exit N)``."""
        return [
            f"{n} (exit {p.returncode})" for n, p in self.procs.items() if p.poll() not in (None, 0)
        ]

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to ``name``, wait for it to end and forget it."""
        proc = self.procs.pop(name)
        proc.send_signal(sig)
        proc.wait(timeout=20)

    def stop(self) -> None:
        """SIGTERM every child (the last started first), then SIGKILL whoever is still
        there after :data:`CHILD_STOP_TIMEOUT_S`; close the logs. Children can be started
        again afterwards."""
        running = list(reversed(self.procs.values()))
        for proc in running:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in running:
            try:
                proc.wait(timeout=CHILD_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self.procs.clear()
        for log in self._logs:
            log.close()
        self._logs.clear()
