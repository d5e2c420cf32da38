"""Detection recomputed from scratch over a list of observations: the specification of SPEC §3 written as
plainly as possible. It is the oracle the incremental engine is tested against and the rescan baseline the
benchmark compares with; the service never uses it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

from knhk.detection.builtin import (
    ERROR_SPIKE_CONFIDENCE,
    HIGH_FREQUENCY_CONFIDENCE,
    NO_OBSERVATIONS_CONFIDENCE,
    SCHEMA_DRIFT_CONFIDENCE,
    encode_sample,
    window_seconds,
)
from knhk.detection.pattern import (
    ERROR_SPIKE,
    HIGH_FREQUENCY,
    NO_OBSERVATIONS,
    SCHEMA_DRIFT,
    DetectionResult,
    DetectorConfig,
    Pattern,
    rank,
)
from knhk.detection.windows import SAMPLE_OBSERVATIONS, json_kinds, type_name
from knhk.observations.model import Observation
from knhk.ontology.schema import SectorSchema
from knhk.proof.evidence import evidence_leaf


def _recent(events: list[tuple[int, Observation]], now_us: int, window_us: int) -> list[tuple[int, Observation]]:
    return sorted(((i, o) for i, o in events if o.ts_us >= now_us - window_us), key=lambda x: (x[1].ts_us, x[0]))


def _population(observations: Sequence[Observation]) -> tuple[tuple[Any, ...], ...]:
    """Window entries of the observations (their arrival numbers are not the engine's: compare ids)."""
    return tuple((o.ts_us, n, o.id, o.seq, evidence_leaf(o.id, o.content_hash)) for n, o in enumerate(observations))


def detect_from_scratch(sector: str, observations: Sequence[Observation], schema: SectorSchema | None,
                        config: DetectorConfig, now_us: int, *, monitored: bool = False) -> list[Pattern]:
    """Every pattern of ``sector`` at ``now_us``; ``observations`` are all observations in arrival order."""
    events = [(i, o) for i, o in enumerate(observations) if o.sector == sector]
    limit = config.max_evidence
    out: list[Pattern] = []

    hf_us = config.window_us("high_frequency_window_s")
    by_type: dict[str, list[Observation]] = {}
    for _, obs in _recent(events, now_us, hf_us):
        by_type.setdefault(obs.event_type, []).append(obs)
    for event_type, group in by_type.items():
        if len(group) > config.high_frequency_count:
            evidence = tuple(o.id for o in group[-limit:])
            out.append(Pattern(
                f"{HIGH_FREQUENCY}:{event_type}", HIGH_FREQUENCY, sector, HIGH_FREQUENCY_CONFIDENCE,
                f"propose a rate-limit guard for {event_type}", evidence, now_us,
                {"event_type": event_type, "count": len(group), "threshold": config.high_frequency_count,
                 "window_us": hf_us, "window_s": window_seconds(hf_us),
                 "first_ts_us": group[0].ts_us, "last_ts_us": group[-1].ts_us,
                 "evidence_truncated": len(group) > len(evidence)}, population=_population(group)))

    error_us = config.window_us("error_window_s")
    window = [o for _, o in _recent(events, now_us, error_us)]
    errors = [o for o in window if o.is_error]
    if len(window) > config.error_min_events and Fraction(len(errors), len(window)) > Fraction(
            str(config.error_share)):
        evidence = tuple(o.id for o in errors[-limit:])
        out.append(Pattern(
            ERROR_SPIKE, ERROR_SPIKE, sector, ERROR_SPIKE_CONFIDENCE, "alert warning", evidence, now_us,
            {"total": len(window), "errors": len(errors), "share": f"{len(errors) / len(window):.4f}",
             "threshold_share": str(config.error_share), "window_us": error_us,
             "evidence_truncated": len(errors) > len(evidence)}, alert_level="warning",
            population=_population(errors)))

    silence_us = config.window_us("silence_s")
    last = max((o.ts_us for _, o in events), default=None)
    if (monitored or events) and (last is None or last < now_us - silence_us):
        out.append(Pattern(
            NO_OBSERVATIONS, NO_OBSERVATIONS, sector, NO_OBSERVATIONS_CONFIDENCE, "alert critical", (), now_us,
            {"last_ts_us": last, "silence_us": silence_us, "silent_for_us": None if last is None else now_us - last},
            alert_level="critical"))

    drift_us = config.window_us("drift_window_s")
    offending: dict[str, list[tuple[Observation, tuple[str, ...]]]] = {}
    for _, obs in _recent(events, now_us, drift_us):
        spec = None if schema is None else schema.event_types.get(obs.event_type)
        undeclared = tuple(sorted(k for k in obs.value if spec is None or k not in spec.fields))
        if spec is None or undeclared:
            offending.setdefault(obs.event_type, []).append((obs, undeclared))
    for event_type, offenders in offending.items():
        new_type = schema is None or event_type not in schema.event_types
        fields: dict[str, dict[str, Any]] = {}
        for name in sorted({f for _, undeclared in offenders for f in undeclared}):
            carrying = [o for o, _ in offenders if name in o.value]
            samples: list[str] = []
            for obs in list(reversed(carrying))[:SAMPLE_OBSERVATIONS]:
                text = encode_sample(obs.value[name])
                if text not in samples:
                    samples.append(text)
            fields[name] = {"types": sorted({type_name(o.value[name]) for o in carrying}),
                            "kinds": json_kinds(type_name(o.value[name]) for o in carrying),
                            "count": len(carrying), "present_in_all": len(carrying) == len(offenders),
                            "samples": samples}
        evidence = tuple(o.id for o, _ in offenders[-limit:])
        details: dict[str, Any] = {"event_type": event_type, "new_type": new_type, "count": len(offenders),
                                   "window_us": drift_us, "fields": fields,
                                   "evidence_truncated": len(offenders) > len(evidence)}
        action = (f"propose ΔΣ declaring event type {event_type} and its fields" if new_type
                  else f"propose ΔΣ declaring fields {', '.join(fields)} of {event_type}")
        out.append(Pattern(f"{SCHEMA_DRIFT}:{event_type}", SCHEMA_DRIFT, sector, SCHEMA_DRIFT_CONFIDENCE, action,
                           evidence, now_us, details, population=_population([o for o, _ in offenders])))
    return out


def detect_reference(sector: str, observations: Sequence[Observation], schema: SectorSchema | None,
                     config: DetectorConfig, now_us: int, *, monitored: bool = False,
                     thresholds: Mapping[str, int] | None = None) -> DetectionResult:
    """:func:`detect_from_scratch`, thresholded and ordered like the engine."""
    found = detect_from_scratch(sector, observations, schema, config, now_us, monitored=monitored)
    kept, dropped = rank(found, thresholds or {}, config.threshold_milli)
    return DetectionResult(sector, now_us, kept, dropped)
