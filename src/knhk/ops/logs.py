"""The one logging setup: stdlib logging, one line per record, JSON (for services) or text (for people).

JSON lines come from python-json-logger: ``ts`` (RFC 3339, always UTC, whatever the process's ``TZ``),
``level``, ``logger``, ``message``, any ``extra`` fields, and — when the record is written inside a span —
``trace_id`` and ``span_id`` (W3C hex), so a log line can be joined with its trace.

Secrets never pass through here: key material is never formatted into a log message anywhere in KNHK.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _PythonJsonFormatter


class TraceContext(logging.Filter):
    """Adds ``trace_id`` and ``span_id`` of the current span (if any) to each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        # imported with the first record, not with the logging setup: a short command that logs nothing starts
        # without OpenTelemetry and the metrics registry
        from knhk.ops.telemetry.spans import ids_of_current

        ids = ids_of_current()
        if ids is not None:
            record.trace_id, record.span_id = ids
        return True


class JsonFormatter(_PythonJsonFormatter):
    """One JSON object per record, with a UTC timestamp."""

    def __init__(self) -> None:
        super().__init__("{levelname}{name}{message}", style="{",
                         rename_fields={"levelname": "level", "name": "logger", "exc_info": "exception"},
                         json_default=str)

    def add_fields(self, log_record: dict[str, Any], record: logging.LogRecord,
                   message_dict: dict[str, Any]) -> None:
        log_record["ts"] = datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds")
        super().add_fields(log_record, record, message_dict)
        log_record["level"] = record.levelname.lower()


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Install the KNHK handler on the ``knhk`` logger (idempotent)."""
    logger = logging.getLogger("knhk")
    logger.setLevel(level.upper())
    for handler in list(logger.handlers):
        if getattr(handler, "_knhk", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._knhk = True  # type: ignore[attr-defined]
    handler.addFilter(TraceContext())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
    # The PostgreSQL pool retries in the background and logs every failed attempt; KNHK reports the outcome
    # itself (one clear error), so the driver's own chatter is kept to errors unless debugging.
    logging.getLogger("psycopg").setLevel(logging.DEBUG if level.upper() == "DEBUG" else logging.ERROR)
