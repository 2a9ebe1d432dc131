from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from notifier.cli import associates_app

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]


@pytest.fixture
def runner(namespace: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("PROXIMA_NAMESPACE", namespace)
    return CliRunner()


def test_add_list_remove(runner: CliRunner, redis: object) -> None:
    added = runner.invoke(
        associates_app,
        [
            *("add", "--store", "s1", "--name", "Maria Silva", "--role", "manager"),
            *("--zone", "entrance", "--zone", "floor", "--password", "long-password"),
        ],
    )
    assert added.exit_code == 0, added.output
    assert added.output.strip() == "maria-silva"

    listed = runner.invoke(associates_app, ["list", "--store", "s1", "--json"])
    assert listed.exit_code == 0, listed.output
    (row,) = [json.loads(line) for line in listed.output.splitlines()]
    assert row["role"] == "manager"
    assert row["zones"] == ["entrance", "floor"]
    assert "password" not in listed.output
    assert "argon2" not in listed.output

    removed = runner.invoke(associates_app, ["remove", "--store", "s1", "maria-silva"])
    assert removed.exit_code == 0, removed.output
    assert runner.invoke(associates_app, ["list", "--store", "s1"]).output == ""


def test_bad_input_exits_2_naming_the_field(runner: CliRunner, redis: object) -> None:
    result = runner.invoke(
        associates_app,
        ["add", "--store", "s1", "--name", "Ana", "--role", "boss", "--password", "long-password"],
    )
    assert result.exit_code == 2
    assert "role" in result.output
    missing = runner.invoke(associates_app, ["remove", "--store", "s1", "nobody"])
    assert missing.exit_code == 2
    assert "no associate 'nobody'" in missing.output
