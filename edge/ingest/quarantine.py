"""Rejected requests kept where an operator sees them: a memory ring, optionally a JSONL file."""

from __future__ import annotations

import json
import logging
from collections import deque
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

QUARANTINE_BODY_MAX = 4096


class Quarantine:
    """The last ``max_items`` rejected requests in memory, optionally also a rotated JSONL file.

    Bodies are kept up to 4 KiB (base64). They may hold a location fix: the ring is bounded
    and memory-only unless a file is configured, which rotates to one ``.1`` backup.
    """

    def __init__(
        self, max_items: int = 1000, path: str | Path | None = None, max_file_bytes: int = 10 << 20
    ) -> None:
        self.records: deque[dict[str, Any]] = deque(maxlen=max_items)
        self.path = Path(path) if path else None
        self.max_file_bytes = max_file_bytes
        self.write_errors = 0

    def park(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        if self.path is None:
            return
        line = json.dumps(record, separators=(",", ":")) + "\n"
        try:
            if self.path.exists() and self.path.stat().st_size + len(line) > self.max_file_bytes:
                self.path.replace(self.path.with_name(self.path.name + ".1"))
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(line)
        except OSError as exc:
            self.write_errors += 1
            log.error("quarantine file %s not written: %s", self.path, exc)

    def recent(self, limit: int = 100) -> list[dict[str, Any]]:
        return list(self.records)[-limit:]
