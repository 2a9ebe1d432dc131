"""Rules hot reload: a running worker's RuleBook follows edits, keeps the last good rules
on a bad edit, and falls back when a file is deleted. The clock is injected: no sleeps."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from stream.exceptions import RulesError
from stream.rules import DEFAULT_RULES, RuleBook, load_rules
from tests.kit.clock import FakeClock

RULE = """version: 1
rules:
  - id: {rule_id}
    when: arrival
    alert: arrival
    priority: {priority}
    title: "{title}"
"""

_version = 0


def write(path: Path, rule_id: str, priority: str = "normal", title: str = "{who} is here") -> None:
    """Write a one-rule file with a distinct mtime, as an editor saving it would."""
    global _version
    _version += 1
    path.write_text(RULE.format(rule_id=rule_id, priority=priority, title=title), "utf-8")
    # a later mtime than any earlier write, even within the file system's time granularity
    os.utime(path, ns=(1_700_000_000_000_000_000 + _version, 1_700_000_000_000_000_000 + _version))


def rule_ids(book: RuleBook, store: str) -> list[str]:
    return [r.id for r in book.for_store(store).rules]


def test_an_edit_is_picked_up_at_the_next_check_not_before(tmp_path: Path) -> None:
    clock = FakeClock(1000.0)
    write(tmp_path / "chain.yaml", "first")
    book = RuleBook(tmp_path, clock=clock)
    assert book.check_all() == 1
    assert rule_ids(book, "s1") == ["first"]

    write(tmp_path / "chain.yaml", "second")
    clock.t += 0.5  # within the check interval: no stat, the rules in memory answer
    assert rule_ids(book, "s1") == ["first"]
    clock.t += 0.5
    assert rule_ids(book, "s1") == ["second"]
    assert rule_ids(book, "s2") == ["second"]
    assert book.counts["rules_reloads"] == 1
    assert book.counts["rules_reload_errors"] == 0


def test_a_new_store_file_overrides_chain_for_that_store_only(tmp_path: Path) -> None:
    clock = FakeClock(1000.0)
    write(tmp_path / "chain.yaml", "chain-rule")
    book = RuleBook(tmp_path, clock=clock)
    assert rule_ids(book, "s1") == ["chain-rule"]  # the first lookup reads the directory
    write(tmp_path / "s1.yaml", "s1-rule")
    clock.t += 1.0
    assert rule_ids(book, "s1") == ["s1-rule"]
    assert rule_ids(book, "s2") == ["chain-rule"]


def test_a_bad_edit_keeps_the_last_good_rules_and_is_reported_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(1000.0)
    path = tmp_path / "s1.yaml"
    write(path, "good")
    book = RuleBook(tmp_path, clock=clock)
    book.check_all()

    write(path, "good-but-not-saved", priority="whenever")
    clock.t += 1.0
    with caplog.at_level(logging.ERROR, logger="stream.rules"):
        assert rule_ids(book, "s1") == ["good"]
    assert book.counts["rules_reload_errors"] == 1
    (message,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert str(path) in message
    assert "rules.0.priority" in message  # the field, by its place in the file
    assert "keeping its last good rules" in message

    clock.t += 5.0  # the same bad version is not reported again at every check
    assert rule_ids(book, "s1") == ["good"]
    assert book.counts["rules_reload_errors"] == 1

    path.write_text("version: 1\nrules: [\n", "utf-8")  # not even YAML
    os.utime(path, ns=(1_800_000_000_000_000_000, 1_800_000_000_000_000_000))
    clock.t += 1.0
    assert rule_ids(book, "s1") == ["good"]
    assert book.counts["rules_reload_errors"] == 2

    write(path, "fixed")
    clock.t += 1.0
    assert rule_ids(book, "s1") == ["fixed"]


def test_a_store_file_bad_from_the_start_leaves_the_store_on_chain_rules(tmp_path: Path) -> None:
    clock = FakeClock(1000.0)
    write(tmp_path / "chain.yaml", "chain-rule")
    book = RuleBook(tmp_path, clock=clock)
    book.check_all()
    write(tmp_path / "s1.yaml", "s1-rule", title="{unknown_placeholder}")
    clock.t += 1.0
    assert rule_ids(book, "s1") == ["chain-rule"]
    assert book.counts["rules_reload_errors"] == 1


def test_a_deleted_store_file_falls_back_to_chain_and_a_deleted_chain_to_the_default(
    tmp_path: Path,
) -> None:
    clock = FakeClock(1000.0)
    write(tmp_path / "chain.yaml", "chain-rule")
    write(tmp_path / "s1.yaml", "s1-rule")
    book = RuleBook(tmp_path, clock=clock)
    book.check_all()
    assert rule_ids(book, "s1") == ["s1-rule"]

    (tmp_path / "s1.yaml").unlink()
    clock.t += 1.0
    assert rule_ids(book, "s1") == ["chain-rule"]

    (tmp_path / "chain.yaml").unlink()
    clock.t += 1.0
    default = [r.id for r in load_rules(DEFAULT_RULES).rules]
    assert rule_ids(book, "s1") == default
    assert book.counts["rules_reload_errors"] == 0


def test_a_deleted_bad_store_file_falls_back_to_chain(tmp_path: Path) -> None:
    clock = FakeClock(1000.0)
    write(tmp_path / "chain.yaml", "chain-rule")
    write(tmp_path / "s1.yaml", "s1-rule")
    book = RuleBook(tmp_path, clock=clock)
    book.check_all()
    write(tmp_path / "s1.yaml", "s1-rule", priority="never")
    clock.t += 1.0
    assert rule_ids(book, "s1") == ["s1-rule"]  # last good
    (tmp_path / "s1.yaml").unlink()
    clock.t += 1.0
    assert rule_ids(book, "s1") == ["chain-rule"]


def test_an_unreadable_directory_keeps_the_rules_and_counts_one_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(1000.0)
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    write(rules_dir / "chain.yaml", "chain-rule")
    book = RuleBook(rules_dir, clock=clock)
    book.check_all()
    rules_dir.rename(tmp_path / "moved")  # e.g. a volume unmounted
    with caplog.at_level(logging.ERROR, logger="stream.rules"):
        for _ in range(3):
            clock.t += 1.0
            assert rule_ids(book, "s1") == ["chain-rule"]
    assert book.counts["rules_reload_errors"] == 1
    assert str(rules_dir) in caplog.text


def test_editor_and_configmap_files_starting_with_a_dot_are_ignored(tmp_path: Path) -> None:
    write(tmp_path / "chain.yaml", "chain-rule")
    (tmp_path / ".s1.yaml").write_text("half-written: [", "utf-8")
    book = RuleBook(tmp_path, clock=FakeClock())
    assert book.check_all() == 1
    assert rule_ids(book, "s1") == ["chain-rule"]


def test_a_bad_file_at_start_still_stops_the_worker_naming_the_field(tmp_path: Path) -> None:
    write(tmp_path / "s1.yaml", "s1-rule", priority="whenever")
    with pytest.raises(RulesError) as err:
        RuleBook(tmp_path, clock=FakeClock()).check_all()
    assert err.value.path == str(tmp_path / "s1.yaml")
    assert "rules.0.priority" in err.value.reason


def test_counts_can_be_shared_with_the_processors_stats(tmp_path: Path) -> None:
    from collections import Counter

    stats: Counter[str] = Counter(events=3)
    clock = FakeClock(1000.0)
    write(tmp_path / "chain.yaml", "chain-rule")
    book = RuleBook(tmp_path, clock=clock, counts=stats)
    book.check_all()
    write(tmp_path / "chain.yaml", "chain-rule", priority="sometimes")
    clock.t += 1.0
    book.for_store("s1")
    assert stats == Counter(events=3, rules_reload_errors=1)
