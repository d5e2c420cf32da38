"""A sector pack's detector settings file, ``packs/<sector>/detectors.json`` (docs/sector-packs.md).

Only read here (an object of setting → value; an absent file is an empty one); what the settings mean and how
they are checked and layered with the defaults and configuration is :mod:`knhk.detection.settings`.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from knhk.errors import ConfigurationError


def pack_detector_settings(sector: str) -> dict[str, Any]:
    """The settings a bundled pack declares in ``detectors.json`` (empty when it has none)."""
    return dict(_read(sector))


@cache
def _read(sector: str) -> tuple[tuple[str, Any], ...]:
    path = resources.files("knhk.sectors").joinpath("packs", sector, "detectors.json")
    if not path.is_file():
        return ()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"sector pack {sector} detectors.json is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigurationError(f"sector pack {sector} detectors.json must hold a JSON object")
    return tuple(raw.items())


def where(sector: str) -> str:
    return f"sector pack {sector} detectors.json"
