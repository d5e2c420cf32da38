"""Fixtures of the loop tests: a runtime on both backends driven by a manual clock."""

from __future__ import annotations

from loop_fixtures import *  # noqa: F403
