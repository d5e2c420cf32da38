"""Test helpers for detection: observations built directly, a small schema, an engine on a manual clock."""

from __future__ import annotations

import hashlib
from typing import Any

from knhk.detection.engine import DetectionEngine
from knhk.detection.pattern import DetectorConfig
from knhk.observations.model import Observation
from knhk.ontology.schema import XSD_DECIMAL, XSD_STRING, EventTypeSpec, FieldSpec, SectorSchema
from knhk.ops.clock import ManualClock

NOW = 1_714_564_800_000_000
US = 1_000_000
NS = "urn:test:finance#"


def event(n: int, event_type: str = "payment.created", *, age_s: float = 0.0, ts_us: int | None = None,
          sector: str = "finance", value: dict[str, Any] | None = None,
          metadata: dict[str, str] | None = None) -> Observation:
    """Observation ``n`` stamped ``age_s`` seconds before NOW (or at ``ts_us``)."""
    ts = NOW - round(age_s * US) if ts_us is None else ts_us
    return Observation(
        id=f"{sector}-{n}", event_type=event_type, sector=sector, ts_us=ts, received_us=ts,
        value=value if value is not None else {"transaction_amount": 1}, metadata=metadata or {},
        content_hash=hashlib.sha256(f"{sector}-{n}".encode()).hexdigest())


def schema(*, extra_types: dict[str, dict[str, str]] | None = None, snapshot_id: str = "snap-1") -> SectorSchema:
    types = {"payment.created": {"transaction_amount": XSD_DECIMAL, "currency": XSD_STRING},
             "user.login": {"user": XSD_STRING}, "payment.error": {"code": XSD_STRING}}
    types.update(extra_types or {})
    return SectorSchema("finance", snapshot_id, {
        name: EventTypeSpec(name, NS + name, {f: FieldSpec(f, NS + f, dt) for f, dt in fields.items()})
        for name, fields in types.items()})


def engine(config: DetectorConfig | None = None, now_us: int = NOW) -> tuple[DetectionEngine, ManualClock]:
    clock = ManualClock(now_us)
    return DetectionEngine(clock, default_config=config), clock
