"""Structured logs: one JSON object per line (``log_format = "json"``).

Each line holds ``time`` (RFC 3339, UTC), ``level``, ``logger`` and ``event``
(the message), the request fields a log call passes with ``extra=``
(:data:`REQUEST_FIELDS`), and ``exception`` (the traceback) when there is one.
Only those request fields are taken from ``extra``: the keys a line can carry
are known in advance, whatever a library attaches to its records.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, Literal

#: The ``extra=`` keys copied into a JSON line, in this order.
REQUEST_FIELDS = ("client", "transport", "method", "status", "duration_ms")

#: Characters that JSON leaves as they are but that some readers take as line breaks
#: (Python's ``str.splitlines``, JavaScript): escaped, so a record stays one line.
_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def rfc3339(timestamp: float) -> str:
    """``timestamp`` (seconds since the epoch) as ``2026-12-03T06:22:39.123Z``."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON (non-ASCII text kept as UTF-8)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": rfc3339(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for name in REQUEST_FIELDS:
            if name in record.__dict__:
                entry[name] = record.__dict__[name]
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        text = json.dumps(entry, ensure_ascii=False, default=str, separators=(",", ":"))
        return text.translate(_LINE_BREAKS)


def apply_format(log_format: Literal["text", "json"]) -> None:
    """With ``"json"``, make the root logger's handlers (``basicConfig``'s stderr
    handler) write JSON lines; with ``"text"``, leave them as they are."""
    if log_format != "json":
        return
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig()  # stderr, as ``trustchain`` sets it up
    for handler in root.handlers:
        handler.setFormatter(JsonFormatter())
