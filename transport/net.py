"""Sockets helpers shared by the launcher, the embedded broker, benchmarks and tests."""

from __future__ import annotations

import ipaddress
import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free on ``host`` now (bind to port 0, read it back, release)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def is_loopback(host: str) -> bool:
    """True if binding ``host`` listens on this machine only (``localhost``, 127/8, ``::1``).

    An empty host, ``0.0.0.0``, ``::`` and any other name listen beyond it.
    """
    if host.strip().lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
