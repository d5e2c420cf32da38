"""The one logging setup: stdlib logging, one line per record, JSON (for services) or text (for people).

Secrets never pass through here: key material is never formatted into a log message anywhere in KNHK.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: ts, level, logger, message and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Install the KNHK handler on the ``knhk`` logger (idempotent)."""
    logger = logging.getLogger("knhk")
    logger.setLevel(level.upper())
    for handler in list(logger.handlers):
        if getattr(handler, "_knhk", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._knhk = True  # type: ignore[attr-defined]
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
    # The PostgreSQL pool retries in the background and logs every failed attempt; KNHK reports the outcome
    # itself (one clear error), so the driver's own chatter is kept to errors unless debugging.
    logging.getLogger("psycopg").setLevel(logging.DEBUG if level.upper() == "DEBUG" else logging.ERROR)
