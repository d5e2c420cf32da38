"""The four built-in detectors of SPEC §3, reading a sector's incremental windows.

| pattern | fires when (defaults) | confidence | action |
|---|---|---|---|
| ``high_frequency:<type>`` | more than 100 events of the type in the last 60 s | 0.95 | rate-limit guard |
| ``error_spike`` | more than 10 events in 60 s and error share strictly above 5 % | 0.90 | alert warning |
| ``no_observations`` | a monitored sector has nothing in the last 10 s | 0.80 | alert critical |
| ``schema_drift:<type>`` | observations of the last 5 min with an undeclared type or value field | 0.70 | ΔΣ |

Each detector is a pure function of (windows, current schema, now). Evidence lists observation ids oldest
first, at most ``max_evidence`` (the most recent); ``details`` give the true counts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from itertools import chain
from typing import Any

import orjson

from knhk.detection.pattern import ERROR_SPIKE, HIGH_FREQUENCY, NO_OBSERVATIONS, SCHEMA_DRIFT, Pattern
from knhk.detection.windows import SAMPLE_OBSERVATIONS, Entry, SectorWindows, Signature, json_kinds
from knhk.ontology.schema import SectorSchema

HIGH_FREQUENCY_CONFIDENCE = 0.95
ERROR_SPIKE_CONFIDENCE = 0.90
NO_OBSERVATIONS_CONFIDENCE = 0.80
SCHEMA_DRIFT_CONFIDENCE = 0.70
SAMPLE_CHARS = 200

DetectFn = Callable[[SectorWindows, SectorSchema | None, int], list[Pattern]]


@dataclass(frozen=True)
class Detector:
    """A named detector; ``detect(windows, schema, now_us)`` returns its patterns."""

    name: str
    detect: DetectFn


def encode_sample(value: Any) -> str:
    """A sample value as compact JSON text, cut at 200 characters (canonical-JSON safe: floats become text)."""
    text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    return text if len(text) <= SAMPLE_CHARS else text[:SAMPLE_CHARS - 1] + "…"


def window_seconds(window_us: int) -> int:
    """A window in whole seconds (at least 1), for proposals that state a rate per window."""
    return max(1, round(window_us / 1_000_000))


def high_frequency(view: SectorWindows, schema: SectorSchema | None, now_us: int) -> list[Pattern]:
    cfg = view.config
    out: list[Pattern] = []
    for event_type, entries in view.by_type.items():
        count = len(entries)
        if count <= cfg.high_frequency_count:
            continue
        evidence = entries.tail_ids(cfg.max_evidence)
        out.append(Pattern(
            name=f"{HIGH_FREQUENCY}:{event_type}", kind=HIGH_FREQUENCY, sector=view.sector,
            confidence=HIGH_FREQUENCY_CONFIDENCE,
            recommended_action=f"propose a rate-limit guard for {event_type}",
            evidence=evidence, detected_at_us=now_us,
            details={"event_type": event_type, "count": count, "threshold": cfg.high_frequency_count,
                     "window_us": view.hf_us, "window_s": window_seconds(view.hf_us),
                     "first_ts_us": entries.first_ts, "last_ts_us": entries.last_ts,
                     "evidence_truncated": count > len(evidence)},
        ))
    return out


def error_spike(view: SectorWindows, schema: SectorSchema | None, now_us: int) -> list[Pattern]:
    cfg = view.config
    total, errors = len(view.error_all), len(view.errors)
    if total <= cfg.error_min_events or Fraction(errors, total) <= Fraction(str(cfg.error_share)):
        return []
    evidence = view.errors.tail_ids(cfg.max_evidence)
    return [Pattern(
        name=ERROR_SPIKE, kind=ERROR_SPIKE, sector=view.sector, confidence=ERROR_SPIKE_CONFIDENCE,
        recommended_action="alert warning", evidence=evidence, detected_at_us=now_us,
        details={"total": total, "errors": errors, "share": f"{errors / total:.4f}",
                 "threshold_share": str(cfg.error_share), "window_us": view.error_us,
                 "evidence_truncated": errors > len(evidence)},
        alert_level="warning",
    )]


def no_observations(view: SectorWindows, schema: SectorSchema | None, now_us: int) -> list[Pattern]:
    if not view.monitored:
        return []
    last = view.last_ts_us
    if last is not None and last >= now_us - view.silence_us:
        return []
    return [Pattern(
        name=NO_OBSERVATIONS, kind=NO_OBSERVATIONS, sector=view.sector, confidence=NO_OBSERVATIONS_CONFIDENCE,
        recommended_action="alert critical", evidence=(), detected_at_us=now_us,
        details={"last_ts_us": last, "silence_us": view.silence_us,
                 "silent_for_us": None if last is None else now_us - last},
        alert_level="critical",
    )]


def undeclared_fields(signature: Signature, schema: SectorSchema | None) -> tuple[bool, tuple[str, ...]]:
    """(is the type undeclared, the signature's undeclared value fields) under ``schema``."""
    spec = None if schema is None else schema.event_types.get(signature.event_type)
    if spec is None:
        return True, signature.fields
    return False, tuple(f for f in signature.fields if f not in spec.fields)


def drift_details(event_type: str, new_type: bool, offending: list[tuple[Signature, tuple[str, ...]]],
                  window_us: int) -> dict[str, Any]:
    """What the proposer needs: per undeclared field its Python types, samples and whether every offending
    observation carried it."""
    fields: dict[str, dict[str, Any]] = {}
    names = sorted({f for _, undeclared in offending for f in undeclared})
    for name in names:
        carrying = [s for s, _ in offending if name in s.types]
        recent = sorted((sample for s in carrying for sample in s.recent_samples()),
                        key=lambda x: (x[0], x[1]), reverse=True)[:SAMPLE_OBSERVATIONS]
        samples: list[str] = []
        for _, _, value in recent:
            text = encode_sample(value[name])
            if text not in samples:
                samples.append(text)
        fields[name] = {
            "types": sorted({s.types[name] for s in carrying}),
            "kinds": json_kinds(s.types[name] for s in carrying),
            "count": sum(len(s.entries) for s in carrying),
            "present_in_all": len(carrying) == len(offending),
            "samples": samples,
        }
    return {"event_type": event_type, "new_type": new_type,
            "count": sum(len(s.entries) for s, _ in offending), "window_us": window_us, "fields": fields}


def schema_drift(view: SectorWindows, schema: SectorSchema | None, now_us: int) -> list[Pattern]:
    by_type: dict[str, list[tuple[Signature, tuple[str, ...]]]] = {}
    new_types: dict[str, bool] = {}
    for signature in view.signatures.values():
        new_type, undeclared = undeclared_fields(signature, schema)
        if new_type or undeclared:
            by_type.setdefault(signature.event_type, []).append((signature, undeclared))
            new_types[signature.event_type] = new_type
    out: list[Pattern] = []
    limit = view.config.max_evidence
    for event_type, offending in by_type.items():
        merged = sorted(key for s, _ in offending for key in s.entries.tail_keys(limit))[-limit:]
        details = drift_details(event_type, new_types[event_type], offending, view.drift_us)
        details["evidence_truncated"] = details["count"] > len(merged)
        if new_types[event_type]:
            action = f"propose ΔΣ declaring event type {event_type} and its fields"
        else:
            action = f"propose ΔΣ declaring fields {', '.join(details['fields'])} of {event_type}"
        out.append(Pattern(
            name=f"{SCHEMA_DRIFT}:{event_type}", kind=SCHEMA_DRIFT, sector=view.sector,
            confidence=SCHEMA_DRIFT_CONFIDENCE, recommended_action=action, evidence=tuple(key[2] for key in merged),
            detected_at_us=now_us, details=details,
        ))
    return out


def population_of(view: SectorWindows, schema: SectorSchema | None, pattern: Pattern) -> tuple[Entry, ...]:
    """Every window entry a built-in pattern rests on — what its receipts commit to (knhk.proof.evidence) —
    taken only when asked (a copy of the window, which a plain detection does not need); () for others."""
    if pattern.kind == HIGH_FREQUENCY:
        return tuple(view.by_type.get(str(pattern.details.get("event_type")), ()))
    if pattern.kind == ERROR_SPIKE:
        return tuple(view.errors)
    if pattern.kind == SCHEMA_DRIFT:
        event_type = pattern.details.get("event_type")
        return tuple(chain.from_iterable(
            s.entries for s in view.signatures.values()
            if s.event_type == event_type and any(undeclared_fields(s, schema))))
    return ()


BUILTIN_DETECTORS: tuple[Detector, ...] = (
    Detector(HIGH_FREQUENCY, high_frequency),
    Detector(ERROR_SPIKE, error_spike),
    Detector(NO_OBSERVATIONS, no_observations),
    Detector(SCHEMA_DRIFT, schema_drift),
)
