"""PROXIMA_LOG_FORMAT=json: every service's log lines parse as JSON objects."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from transport.logs import env_log_format
from transport.net import free_port


def test_a_bad_format_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROXIMA_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="PROXIMA_LOG_FORMAT='xml'"):
        env_log_format()


def test_json_log_lines_of_a_service_that_cannot_start_parse() -> None:
    """The bridge pointed at a Kafka nobody listens on logs its attempts: each line JSON."""
    _assert_json_lines(["bridge"], f"kafka://127.0.0.1:{free_port()}", "logtest", 3)


@pytest.mark.integration
def test_json_log_lines_of_a_running_worker_parse(kafka_url: str, namespace: str) -> None:
    """The worker's lines through Faust's (mode's) own handlers, re-formatted: JSON too."""
    _assert_json_lines(["stream", "worker", "--loglevel", "info"], kafka_url, namespace, 15)


def _assert_json_lines(command: list[str], kafka: str, namespace: str, count: int) -> None:
    env = dict(
        os.environ, PROXIMA_LOG_FORMAT="json", PROXIMA_KAFKA=kafka, PROXIMA_NAMESPACE=namespace
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "deploy.cli", *command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip():
                lines.append(line)
            if len(lines) >= count:
                break
    finally:
        proc.kill()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
    # A command that cannot start ends with its one-line error ("proxima: ..."): not a log.
    logged = [line for line in lines if not line.startswith("proxima: ")]
    assert logged, lines
    for line in logged:
        record = json.loads(line)
        assert {"ts", "level", "logger", "message"} <= record.keys(), record
