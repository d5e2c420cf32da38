"""What detection produces (SPEC §3): patterns, per-sector detector settings, and one detection's result.

Confidences and thresholds are compared in thousandths (``milli``) so ``0.70`` passes a ``0.70`` threshold
exactly. Pattern ``details`` hold only canonical-JSON values (strings, integers, booleans, lists, objects; no
floats) so they can go into a ``pattern.detected`` receipt as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from knhk.errors import InvalidInputError

HIGH_FREQUENCY = "high_frequency"
ERROR_SPIKE = "error_spike"
NO_OBSERVATIONS = "no_observations"
SCHEMA_DRIFT = "schema_drift"
BUILTIN_KINDS = (HIGH_FREQUENCY, ERROR_SPIKE, NO_OBSERVATIONS, SCHEMA_DRIFT)


def milli(fraction: float) -> int:
    """A confidence or threshold in thousandths."""
    return round(fraction * 1000)


@dataclass(frozen=True)
class DetectorConfig:
    """One sector's detector thresholds (SPEC §3 defaults). Windows are in seconds."""

    high_frequency_count: int = 100
    high_frequency_window_s: float = 60
    error_min_events: int = 10
    error_share: float = 0.05
    error_window_s: float = 60
    silence_s: float = 10
    drift_window_s: float = 300
    confidence_threshold: float = 0.70
    max_evidence: int = 1000

    def __post_init__(self) -> None:
        for name in ("high_frequency_window_s", "error_window_s", "silence_s", "drift_window_s"):
            if not getattr(self, name) > 0:
                raise InvalidInputError(f"detector setting {name} must be a positive number of seconds")
        if self.high_frequency_count < 0 or self.error_min_events < 0:
            raise InvalidInputError("detector event counts must not be negative")
        if not 0 <= self.error_share < 1:
            raise InvalidInputError("error_share must be a fraction in [0, 1)")
        if not 0 <= self.confidence_threshold <= 1:
            raise InvalidInputError("confidence_threshold must be a fraction in [0, 1]")
        if self.max_evidence < 1:
            raise InvalidInputError("max_evidence must be at least 1")

    def window_us(self, name: str) -> int:
        return round(float(getattr(self, name)) * 1_000_000)

    @property
    def threshold_milli(self) -> int:
        return milli(self.confidence_threshold)


@dataclass(frozen=True)
class Pattern:
    """A pattern found in a sector's recent observations."""

    name: str  # e.g. "high_frequency:payment.created"
    kind: str  # the pattern type: high_frequency, error_spike, no_observations, schema_drift, …
    sector: str
    confidence: float
    recommended_action: str
    evidence: tuple[str, ...]  # observation ids, oldest first (at most max_evidence, the most recent)
    detected_at_us: int
    details: Mapping[str, Any] = field(default_factory=dict)
    alert_level: str | None = None  # "warning" / "critical" when the action is an alert
    #: every observation the pattern rests on, as window entries (timestamp, arrival, id, seq, evidence leaf
    #: hash): what its receipts commit to (``evidence`` is only the most recent ``max_evidence``)
    population: tuple[tuple[Any, ...], ...] = field(default=(), compare=False, repr=False)

    @property
    def confidence_milli(self) -> int:
        return milli(self.confidence)

    def to_json(self) -> dict[str, Any]:
        """The pattern as the API shows it."""
        return {"name": self.name, "kind": self.kind, "sector": self.sector, "confidence": self.confidence,
                "recommended_action": self.recommended_action, "alert_level": self.alert_level,
                "evidence": list(self.evidence), "detected_at_us": self.detected_at_us,
                "details": dict(self.details)}

    def receipt_data(self) -> dict[str, Any]:
        """Canonical-JSON data for a ``pattern.detected`` receipt (confidence as a decimal string)."""
        return {"name": self.name, "kind": self.kind, "confidence": f"{self.confidence_milli / 1000:.2f}",
                "recommended_action": self.recommended_action, "alert_level": self.alert_level,
                # the receipt's own evidence_* members say what it lists and commits to (knhk.proof.evidence)
                "details": {k: v for k, v in self.details.items() if k != "evidence_truncated"}}


@dataclass(frozen=True)
class DetectorFailure:
    """A detector that raised; the others still ran."""

    detector: str
    error: str


@dataclass(frozen=True)
class DetectionResult:
    """One detection run for one sector."""

    sector: str
    now_us: int
    patterns: tuple[Pattern, ...]  # above threshold, confidence desc then name
    dropped: tuple[Pattern, ...] = ()  # below the sector's threshold for their kind
    errors: tuple[DetectorFailure, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors


def rank(patterns: Iterable[Pattern], thresholds: Mapping[str, int], default_milli: int
         ) -> tuple[tuple[Pattern, ...], tuple[Pattern, ...]]:
    """Split into (kept, dropped) by each kind's threshold (inclusive), each ordered by confidence desc, name."""
    ordered = sorted(patterns, key=lambda p: (-p.confidence_milli, p.name))
    kept = tuple(p for p in ordered if p.confidence_milli >= thresholds.get(p.kind, default_milli))
    dropped = tuple(p for p in ordered if p.confidence_milli < thresholds.get(p.kind, default_milli))
    return kept, dropped
