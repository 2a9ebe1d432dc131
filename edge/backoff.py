"""Reconnect backoff: exponential, capped, with full jitter (so a store's gateways spread out).

One implementation for every retry loop lives in :mod:`transport.retry`."""

from __future__ import annotations

from transport.retry import backoff_delay

__all__ = ["backoff_delay"]
