"""Fixtures of this directory: a runtime on both backends driven by a manual clock (see tests/loop)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "loop"))

from loop_fixtures import *  # noqa: F403
