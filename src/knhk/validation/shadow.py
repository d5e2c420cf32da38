"""Shadow replay (SPEC §6): run the sector's recent observations through Σ_new before it is promoted.

The replay re-runs the warm path of every recent observation under the candidate's schema — conformance,
hot-path guards and the observation → RDF mapping — in batches of 100 (one ingest request's worth), and
validates with SHACL exactly the observations whose event type the change touches, under both Σ_old and
Σ_new, so Q2 can tell violations from *new* violations. Measurements:

* ``warm_p95_ms`` — p95 of the per-observation warm path (Q4: < 100 ms), timed on an evenly spaced sample of
  at most 250 of the replayed observations (timing all 1,000 would cost more than the estimate gains);
* ``max_guard_ticks`` — the largest summed ``knhk:ticks`` of the hot-path guards of any replayed
  observation's event type (Q4: ≤ 8);
* ``replay_p99_ms`` — p99 of the per-batch replay time: the sampled warm path plus SHACL of every touched
  observation of the batch under Σ_old and Σ_new (Q5: ≤ 500 ms);
* ``cpu_share`` — CPU seconds the replay used ÷ (cycle interval × cores): the share of the machine one
  cycle's validation consumes (Q5: ≤ 50 %);
* ``memory_estimate_mb`` — Σ_new's estimated in-memory size: the bytes of its terms held in three indexes
  plus 96 bytes per triple (Q5: ≤ 1,024 MB).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from knhk.observations.conformance import conformance_issues
from knhk.observations.guards import GuardEvaluator
from knhk.observations.model import Observation
from knhk.ontology.core import core_triples
from knhk.ontology.mapping import observation_triples
from knhk.ontology.namespaces import KNHK, RDFS, SH, iri
from knhk.ontology.schema import SectorSchema
from knhk.ontology.shacl import validate_observations
from knhk.proposals.delta import DeltaSigma, Triple

BATCH = 100
WARM_SAMPLE = 250  # observations whose warm path is timed: an even sample of the replayed ones


@dataclass(frozen=True)
class ShadowLimits:
    max_violation_rate: float = 0.01
    warm_p95_ms: float = 100.0
    replay_p99_ms: float = 500.0
    memory_mb: float = 1024.0
    cpu_share: float = 0.5
    cycle_interval_s: float = 60.0


@dataclass
class ShadowResult:
    observations: int = 0
    touched: int = 0
    violations: int = 0
    newly_failing: int = 0
    warm_p50_ms: float = 0.0
    warm_p95_ms: float = 0.0
    replay_p99_ms: float = 0.0
    max_guard_ticks: int = 0
    cpu_share: float = 0.0
    memory_estimate_mb: float = 0.0
    replay_ms: float = 0.0
    touched_types: list[str] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def violation_rate(self) -> float:
        return self.violations / self.observations if self.observations else 0.0

    @property
    def newly_failing_rate(self) -> float:
        return self.newly_failing / self.observations if self.observations else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "observations": self.observations, "touched": self.touched, "touched_types": self.touched_types,
            "violations": self.violations, "violation_rate": round(self.violation_rate, 6),
            "newly_failing": self.newly_failing, "newly_failing_rate": round(self.newly_failing_rate, 6),
            "warm_p50_ms": round(self.warm_p50_ms, 4), "warm_p95_ms": round(self.warm_p95_ms, 4),
            "replay_p99_ms": round(self.replay_p99_ms, 3), "max_guard_ticks": self.max_guard_ticks,
            "cpu_share": round(self.cpu_share, 6), "memory_estimate_mb": round(self.memory_estimate_mb, 3),
            "replay_ms": round(self.replay_ms, 3), "samples": self.samples,
        }


def _percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def touched_event_types(delta: DeltaSigma, graphs: Iterable[frozenset[Triple]],
                        schemas: Iterable[SectorSchema]) -> set[str]:
    """Event types whose class, fields, shapes or guards the change adds, removes or alters."""
    graph: set[Triple] = set()
    for g in graphs:
        graph |= g
    affected = {s for s, _, _ in (*delta.additions, *delta.removals)}
    target = {s: o for s, p, o in graph if p == iri(SH + "targetClass")}
    owner = {o: s for s, p, o in graph if p == iri(SH + "property")}
    classes: set[str] = set()
    for s in affected:
        classes.add(s)
        if s in target:
            classes.add(target[s])
        if s in owner and owner[s] in target:
            classes.add(target[owner[s]])
    for s, p, o in graph:
        if s in affected and p in (iri(RDFS + "domain"), iri(KNHK + "appliesTo")):
            classes.add(o)
    out: set[str] = set()
    for schema in schemas:
        for event_type, spec in schema.event_types.items():
            if iri(spec.class_iri) in classes or spec.class_iri in classes:
                out.add(event_type)
    return out


def memory_estimate_mb(triples: Iterable[Triple]) -> float:
    total = 0
    for s, p, o in triples:
        total += 3 * (len(s) + len(p) + len(o)) + 96
    return total / (1024 * 1024)


def replay(*, base_triples: frozenset[Triple], candidate_triples: frozenset[Triple], base_schema: SectorSchema,
           candidate_schema: SectorSchema, delta: DeltaSigma, observations: Sequence[Observation],
           limits: ShadowLimits, memory_mb: float | None = None) -> ShadowResult:
    """Replay ``observations`` (most recent first or last, any order) under Σ_new and measure.

    ``base_triples`` / ``candidate_triples`` may be the neighbourhood of the change
    (:mod:`knhk.ontology.incremental`) rather than the whole graphs: touched types and the shapes SHACL uses
    come from it; ``memory_mb`` then gives the whole candidate's estimate."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    touched_types = touched_event_types(delta, (base_triples, candidate_triples), (base_schema, candidate_schema))
    touched_types |= set(candidate_schema.event_types) - set(base_schema.event_types)
    result = ShadowResult(observations=len(observations), touched_types=sorted(touched_types))
    guards = GuardEvaluator()
    warm: list[float] = []
    batches: list[float] = []
    cand_full = candidate_triples | core_triples()
    base_full = base_triples | core_triples()
    result.max_guard_ticks = max((candidate_schema.hot_path_ticks(t) for t in {o.event_type for o in observations}),
                                 default=0)
    stride = max(1, len(observations) // WARM_SAMPLE)
    for start in range(0, len(observations), BATCH):
        batch = observations[start:start + BATCH]
        t_batch = time.perf_counter()
        for n, obs in enumerate(batch, start):
            if n % stride:
                continue
            t0 = time.perf_counter()
            conformance_issues(obs.event_type, obs.value, candidate_schema)
            guards.evaluate([obs], candidate_schema)
            observation_triples(obs.id, obs.event_type, dict(obs.value), candidate_schema)
            warm.append((time.perf_counter() - t0) * 1000)
        touched = [(o.id, o.event_type, dict(o.value)) for o in batch if o.event_type in touched_types]
        if touched:
            result.touched += len(touched)
            new = validate_observations(cand_full, touched, candidate_schema)
            old = validate_observations(base_full, touched, base_schema)
            failing_new = new.violating_nodes
            failing_old = old.violating_nodes
            result.violations += len(failing_new)
            result.newly_failing += len(failing_new - failing_old)
            for v in new.violations:
                if len(result.samples) >= 5:
                    break
                if v.focus_node not in {s["focus_node"] for s in result.samples}:
                    result.samples.append({"focus_node": v.focus_node, "path": v.path, "message": v.message})
        batches.append((time.perf_counter() - t_batch) * 1000)
    result.warm_p50_ms = _percentile(warm, 0.50)
    result.warm_p95_ms = _percentile(warm, 0.95)
    result.replay_p99_ms = _percentile(batches, 0.99)
    result.memory_estimate_mb = memory_estimate_mb(cand_full) if memory_mb is None else memory_mb
    cpu = time.process_time() - cpu0
    result.replay_ms = (time.perf_counter() - wall0) * 1000
    result.cpu_share = cpu / (limits.cycle_interval_s * (os.cpu_count() or 1))
    return result


