"""Time for the whole product: one injectable clock, microseconds since the Unix epoch, RFC 3339 text."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from functools import lru_cache
from typing import Protocol


class Clock(Protocol):
    """Anything that tells the current time in microseconds since the epoch."""

    def now_us(self) -> int: ...


class SystemClock:
    """The wall clock."""

    def now_us(self) -> int:
        return time.time_ns() // 1000


class ManualClock:
    """A clock tests and replays move by hand."""

    def __init__(self, start_us: int = 1_700_000_000_000_000) -> None:
        self._now = start_us

    def now_us(self) -> int:
        return self._now

    def set(self, now_us: int) -> None:
        self._now = now_us

    def advance(self, seconds: float) -> None:
        self._now += int(seconds * 1_000_000)


SYSTEM_CLOCK = SystemClock()


@lru_cache(maxsize=4096)
def _second(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")


def format_rfc3339(ts_us: int) -> str:
    """Format microseconds since the epoch as RFC 3339 UTC with microsecond precision (the whole-second part
    is cached: a batch's items share a few seconds, and the response names each of them twice)."""
    seconds, micros = divmod(ts_us, 1_000_000)
    return f"{_second(seconds)}.{micros:06d}Z"


def parse_rfc3339(text: str) -> int:
    """Parse an RFC 3339 timestamp (with offset or Z) into microseconds since the epoch."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no UTC offset (RFC 3339 requires one)")
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
