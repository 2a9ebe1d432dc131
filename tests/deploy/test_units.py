"""The gateway's and the coordinator's systemd units are ones systemd itself accepts."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).parents[2] / "deploy" / "edge"
UNIT = UNITS / "proxima-edge.service"
FUSION_UNIT = UNITS / "proxima-fusion.service"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
@pytest.mark.parametrize("unit_file", [UNIT, FUSION_UNIT], ids=lambda p: p.name)
def test_unit_verifies(tmp_path: Path, unit_file: Path) -> None:
    # Point ExecStart at this venv's proxima-edge, so only the unit itself is under test.
    proxima = Path(sys.executable).with_name("proxima-edge")
    unit = tmp_path / unit_file.name
    unit.write_text(
        unit_file.read_text().replace("/opt/proxima/.venv/bin/proxima-edge", str(proxima))
    )
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


def test_fusion_unit_runs_the_coordinator_from_what_provision_writes() -> None:
    text = FUSION_UNIT.read_text()
    folder = "/etc/proxima/fusion"
    assert (
        f"ExecStart=/opt/proxima/.venv/bin/proxima-edge fuse --layout {folder}/store-plan.json"
        f" --config {folder}/edge.toml" in text
    )
    assert f"EnvironmentFile=-{folder}/edge.env" in text
    # Its own outbox, apart from a gateway agent's on the same host.
    assert "StateDirectory=proxima-fusion" in text
    assert "Restart=always" in text
