"""Log lines as text for people or as JSON lines for a log pipeline (``PROXIMA_LOG_FORMAT``)."""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from typing import Literal

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (UTC, ms), ``level``, ``logger``, ``message``, and
    ``exc`` with the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def env_log_format() -> LogFormat:
    """``PROXIMA_LOG_FORMAT`` (declared in ServiceSettings), read alone so that a process
    that needs no service settings (a gateway) still gets it."""
    value = os.environ.get("PROXIMA_LOG_FORMAT", "text").strip().lower() or "text"
    if value not in ("text", "json"):
        raise ValueError(f"PROXIMA_LOG_FORMAT={value!r}: use text or json")
    return "json" if value == "json" else "text"


def configure_logging(level: int, fmt: LogFormat | None = None) -> None:
    """The root logger's one handler (stderr) at ``level``, in ``fmt`` (default:
    :func:`env_log_format`)."""
    fmt = fmt or env_log_format()
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
