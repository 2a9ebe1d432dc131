"""Progress on a terminal, nothing extra in a pipe: the bench's spinner (the same check
covers replay's bar, which needs a running system), and the trace span replay's bar is
measured against."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

from simulators.replay import trace_span as _trace_span

BENCH = [sys.executable, "-m", "deploy.cli", "bench", "edge", "--seconds", "0.05", "--json"]


def _stderr_on_a_terminal(cmd: list[str]) -> tuple[str, str]:
    """(stdout, stderr) of ``cmd`` with its stderr a pseudo-terminal."""
    master, slave = pty.openpty()
    try:
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=slave, timeout=120, check=True)
    finally:
        os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the terminal's other end is closed and drained
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    return done.stdout.decode(), b"".join(chunks).decode("utf-8", "replace")


def test_a_bench_shows_a_spinner_on_a_terminal_and_leaves_its_output_alone() -> None:
    stdout, terminal = _stderr_on_a_terminal(BENCH)
    assert "proxima bench edge" in terminal  # the spinner's line, on stderr only
    assert json.loads(stdout)  # the figures, untouched (a pipe gets no spinner at all:
    # every other test reads the commands' output through pipes)


def test_the_trace_span_is_read_from_the_last_line(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    lines = [{"format": "proxima-trace"}] + [{"t": i * 1.5, "kind": "adv"} for i in range(50_000)]
    trace.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert _trace_span(trace) == 49_999 * 1.5
    assert _trace_span(tmp_path / "missing.jsonl") is None
