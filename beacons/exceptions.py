"""Errors raised by the beacons library, under one root."""

from __future__ import annotations


class BeaconError(Exception):
    """Root of every error the beacons library raises."""


class FrameDecodeError(BeaconError):
    """Bytes that claim to be a frame but are truncated or inconsistent."""

    def __init__(self, frame_type: str, raw: bytes, offset: int, reason: str) -> None:
        self.frame_type = frame_type
        self.raw = raw
        self.offset = offset
        self.reason = reason
        super().__init__(f"{frame_type}: {reason} at byte offset {offset} (raw {raw.hex()})")
