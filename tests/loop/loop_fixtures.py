"""Fixtures for the loop, validation, governance and proposal tests (star-imported by their conftests)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from loop_support import MONDAY_10, open_runtime

from knhk.app.runtime import Runtime
from knhk.config import Settings
from knhk.ops.clock import ManualClock

__all__ = ["clock", "loop_runtime"]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(MONDAY_10)


@pytest.fixture
def loop_runtime(settings: Settings, clock: ManualClock) -> Iterator[Runtime]:
    """The bundled sector packs installed, system and loop clocks both the manual clock."""
    rt = open_runtime(settings, clock)
    try:
        yield rt
    finally:
        rt.close()
