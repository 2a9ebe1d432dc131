"""``proxima bench ingest`` runs end to end and reports every figure (numbers are not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.integration
def test_bench_ingest_prints_one_json_object_with_every_figure() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "deploy.cli", "bench", "ingest", "--json", "--seconds", "0.2"],
        capture_output=True,
        text=True,
        check=True,
        timeout=100,
    )
    figures = json.loads(proc.stdout)
    for key in (
        "verify_parse_per_s",
        "geofence_fixes_per_s",
        "http_rejected_per_s",
        "http_accepted_per_s",
    ):
        assert figures[key] > 0, key
