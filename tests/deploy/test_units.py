"""The gateway's systemd unit is one systemd itself accepts."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).parents[2] / "deploy" / "edge" / "proxima-edge.service"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_edge_unit_verifies(tmp_path: Path) -> None:
    # Point ExecStart at this venv's proxima-edge, so only the unit itself is under test.
    proxima = Path(sys.executable).with_name("proxima-edge")
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/opt/proxima/.venv/bin/proxima-edge", str(proxima)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    # systemd-analyze exits 0 on an unknown directive or value but says so: any output fails.
    assert result.returncode == 0, result.stderr
    assert (result.stdout + result.stderr).strip() == ""


def test_edge_unit_runs_the_agent_from_its_config() -> None:
    text = UNIT.read_text()
    # proxima-edge: the gateway's command, on the base install (no services extra).
    assert (
        "ExecStart=/opt/proxima/.venv/bin/proxima-edge run --config /etc/proxima/edge.toml" in text
    )
    assert "StateDirectory=proxima-edge" in text  # the outbox survives restarts
    assert "Restart=always" in text
