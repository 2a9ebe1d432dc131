"""What a user sees of the package itself: its version and its licence."""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

from tests.kit.cli import proxima

ROOT = Path(__file__).resolve().parents[2]


def test_version_flag_prints_the_installed_version() -> None:
    done = proxima("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"proxima {version('proxima')}"


def test_the_licence_the_metadata_names_is_shipped() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["license"] == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text
    assert "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_shell_completion_is_offered() -> None:
    """As the installed command offers it (the program name is in the script)."""
    import subprocess
    import sys

    script = Path(sys.executable).with_name("proxima")
    done = subprocess.run(
        [str(script), "--show-completion", "bash"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "_PROXIMA_COMPLETE=complete_bash" in done.stdout
    assert "complete -o default -F _proxima_completion proxima" in done.stdout
