"""docs/: the site builds with no broken link, and the generated pages match the code."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from deploy.docs import settings_reference

ROOT = Path(__file__).parents[2]
MKDOCS = [sys.executable, "-m", "mkdocs", "build", "--strict"]


def _build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MKDOCS, "--config-file", str(config), "--site-dir", str(site)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_the_settings_reference_is_what_the_settings_classes_declare() -> None:
    page = (ROOT / "docs" / "operators" / "settings.md").read_text(encoding="utf-8")
    assert page == settings_reference() + "\n", "run `make docs` to regenerate it"


def test_the_site_builds_strictly_and_a_broken_link_would_fail_it(tmp_path: Path) -> None:
    built = _build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert built.returncode == 0, built.stderr
    assert (tmp_path / "site" / "operators" / "settings" / "index.html").exists()
    # The same docs with one link to a page that does not exist must not build.
    copy = tmp_path / "copy"
    shutil.copytree(ROOT / "docs", copy / "docs")
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    (copy / "mkdocs.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    index = copy / "docs" / "index.md"
    index.write_text(index.read_text() + "\n[gone](operators/no-such-page.md)\n")
    broken = _build(copy / "mkdocs.yml", tmp_path / "broken-site")
    assert broken.returncode != 0
    assert "no-such-page.md" in broken.stdout + broken.stderr


def test_the_readme_links_to_files_that_exist() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [t for t in targets if not re.match(r"[a-z]+://", t)]
    assert local, "the README should point at docs/"
    missing = [t for t in local if not (ROOT / t).exists()]
    assert missing == []
