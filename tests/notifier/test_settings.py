"""The console's session cookie is Secure wherever the console is reachable beyond loopback."""

from __future__ import annotations

import pytest

from notifier.settings import NotifierSettings
from transport.net import is_loopback


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
def test_a_console_on_loopback_keeps_a_plain_cookie_for_plain_http(host: str) -> None:
    assert is_loopback(host)
    assert NotifierSettings(http_host=host).cookie_secure is False


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "10.0.0.5", "console.example"])
def test_a_console_beyond_loopback_marks_its_cookie_secure(host: str) -> None:
    assert not is_loopback(host)
    assert NotifierSettings(http_host=host).cookie_secure is True


def test_the_environment_decides_the_same_way_and_an_explicit_value_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PROXIMA_NOTIFIER_HTTP_HOST", "0.0.0.0")
    assert NotifierSettings().cookie_secure is True
    monkeypatch.setenv("PROXIMA_NOTIFIER_COOKIE_SECURE", "false")  # e.g. a lab without TLS
    assert NotifierSettings().cookie_secure is False
    monkeypatch.delenv("PROXIMA_NOTIFIER_HTTP_HOST")
    monkeypatch.setenv("PROXIMA_NOTIFIER_COOKIE_SECURE", "true")  # loopback behind a TLS proxy
    assert NotifierSettings().cookie_secure is True
