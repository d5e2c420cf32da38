"""Per-sector detector settings (SPEC §3: every threshold configurable per sector), checked and layered.

Three layers, each overriding the one before, setting by setting: the SPEC §3 defaults
(:class:`~knhk.detection.pattern.DetectorConfig`), the sector pack's ``detectors.json``
(:func:`knhk.sectors.pack.pack_detector_settings`), configuration (``KNHK_DETECTOR_SETTINGS``, a JSON object of
sector → {setting → value}). The application layer joins them (:func:`layered`).

Settings: ``high_frequency_count``, ``error_min_events``, ``max_evidence`` (whole numbers);
``high_frequency_window_s``, ``error_window_s``, ``silence_s``, ``drift_window_s`` (seconds);
``error_share``, ``confidence_threshold`` (fractions). An unknown setting, a value of the wrong kind or out of
range is a :class:`~knhk.errors.ConfigurationError` naming where it was written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

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


def layered(sector: str, pack: Mapping[str, Any], configured: Mapping[str, Any] | None, *,
            pack_where: str, configured_where: str) -> SectorDetectors:
    """The effective settings of one sector from its pack's layer and the configuration's (either may be empty)."""
    values: dict[str, Any] = {name: getattr(DEFAULTS, name) for name in SETTINGS}
    source = dict.fromkeys(SETTINGS, "default")
    layers = ((parse_detector_settings(pack, pack_where), "pack"),
              (parse_detector_settings(configured or {}, configured_where), "configuration"))
    for layer, name in layers:
        for key, value in layer.items():
            values[key] = value
            source[key] = name
    return SectorDetectors(sector, DetectorConfig(**values), source)
