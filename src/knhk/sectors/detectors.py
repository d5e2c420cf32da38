"""Per-sector detector settings (SPEC §3: every threshold configurable per sector).

Three layers, each overriding the one before, setting by setting:

1. the SPEC §3 defaults (:class:`~knhk.detection.pattern.DetectorConfig`);
2. the sector pack's ``detectors.json`` (an object of setting → value; optional);
3. configuration: ``KNHK_DETECTOR_SETTINGS``, a JSON object of sector → {setting → value}.

Settings: ``high_frequency_count``, ``error_min_events``, ``max_evidence`` (whole numbers);
``high_frequency_window_s``, ``error_window_s``, ``silence_s``, ``drift_window_s`` (seconds);
``error_share``, ``confidence_threshold`` (fractions). An unknown setting, a value of the wrong kind or out of
range is a :class:`~knhk.errors.ConfigurationError` naming where it was written.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import cache
from importlib import resources
from typing import Any

from knhk.config import Settings
from knhk.detection.pattern import DetectorConfig
from knhk.errors import ConfigurationError, InvalidInputError

WHOLE = frozenset({"high_frequency_count", "error_min_events", "max_evidence"})
SETTINGS = tuple(f.name for f in fields(DetectorConfig))
DEFAULTS = DetectorConfig()


@dataclass(frozen=True)
class SectorDetectors:
    """A sector's effective detector settings and where each came from (default, pack, configuration)."""

    sector: str
    config: DetectorConfig
    source: Mapping[str, str]

    def rows(self) -> list[dict[str, Any]]:
        return [{"setting": name, "value": getattr(self.config, name), "source": self.source[name]}
                for name in SETTINGS]


def parse_detector_settings(raw: Any, where: str) -> dict[str, float | int]:
    """Check an object of detector settings; return it (whole numbers as int)."""
    if not isinstance(raw, Mapping):
        raise ConfigurationError(f"{where}: detector settings must be a JSON object of setting → value")
    out: dict[str, float | int] = {}
    for name, value in raw.items():
        if name not in SETTINGS:
            raise ConfigurationError(f"{where}: unknown detector setting {name!r}; known: {', '.join(SETTINGS)}")
        if isinstance(value, bool) or not isinstance(value, int | float):
            kind = "a whole number" if name in WHOLE else "a number"
            raise ConfigurationError(f"{where}: {name} must be {kind}, not {value!r}")
        if name in WHOLE:
            if isinstance(value, float) and not value.is_integer():
                raise ConfigurationError(f"{where}: {name} must be a whole number, not {value!r}")
            out[name] = int(value)
        else:
            out[name] = float(value)
    try:
        DetectorConfig(**out)  # type: ignore[arg-type]
    except InvalidInputError as exc:
        raise ConfigurationError(f"{where}: {exc.message}") from None
    return out


@cache
def pack_detector_settings(sector: str) -> dict[str, float | int]:
    """The settings a bundled pack declares in ``detectors.json`` (empty when it has none)."""
    path = resources.files("knhk.sectors").joinpath("packs", sector, "detectors.json")
    if not path.is_file():
        return {}
    where = f"sector pack {sector} detectors.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{where} is not valid JSON: {exc}") from None
    return parse_detector_settings(raw, where)


def configured(settings: Settings, sector: str) -> dict[str, float | int]:
    raw = settings.detector_settings.get(sector)
    return {} if raw is None else parse_detector_settings(raw, f"KNHK_DETECTOR_SETTINGS {sector}")


def check_configured_sectors(settings: Settings, installed: list[str]) -> None:
    """Refuse configuration for a sector the installation does not have (a typo would silently do nothing)."""
    for sector in settings.detector_settings:
        if sector not in installed:
            raise ConfigurationError(f"KNHK_DETECTOR_SETTINGS names sector {sector!r}, which has no sector pack;"
                                     f" installed: {', '.join(installed)}")
        configured(settings, sector)


def detector_settings(sector: str, settings: Settings) -> SectorDetectors:
    """The effective settings of one sector."""
    values: dict[str, Any] = {name: getattr(DEFAULTS, name) for name in SETTINGS}
    source = dict.fromkeys(SETTINGS, "default")
    for layer, name in ((pack_detector_settings(sector), "pack"), (configured(settings, sector), "configuration")):
        for key, value in layer.items():
            values[key] = value
            source[key] = name
    return SectorDetectors(sector, DetectorConfig(**values), source)
