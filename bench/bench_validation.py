"""Benchmark (SPEC §12): validating one proposal against a 100k-triple sector ontology, p95 < 50 ms.

Σ_finance is grown to ~100,000 triples with :func:`bench.synthetic.synthetic_sigma` (≈1,200 event types with
fields, closed shapes and guards, plus entity classes and instances) and installed as the sector's root. The
sector holds 1,000 recent observations (what Q2 replays). Then ≥ 50 distinct proposals — each the rule
proposer's answer to a drift finding (a new event type with four fields, or a new field on an existing type) —
are validated with ``ProposalService.validate``: the whole seven-stage pipeline with shadow replay, the
validation receipt and the stored report, exactly what the loop does, with change classes on (each proposal
classed from its ΔΣ at creation, its class's requirements applied by the pipeline). Each proposal is a new candidate
snapshot, so no per-snapshot cache helps. Baseline in the same run: pySHACL validating the whole graph
(Σ plus the mapped observations), the naive alternative the SPEC rules out.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from pathlib import Path

import rdflib
from pyshacl import validate as pyshacl_validate

from knhk.app.runtime import Runtime
from knhk.ontology.core import core_triples
from knhk.ontology.mapping import observation_triples
from knhk.ontology.rdf import to_ntriples
from knhk.ontology.shacl import shapes_subgraph
from knhk.ops.clock import ManualClock, format_rfc3339, parse_rfc3339
from knhk.proposals.proposer import DriftFinding, ObservedField, propose_drift
from knhk.sectors.pack import load_pack
from synthetic import field_value, pct, scratch_settings, synthetic_sigma

RUNS = 60
START = parse_rfc3339("2026-11-23T10:00:00Z")


def main() -> None:
    rng = random.Random(11)
    folder = Path(tempfile.mkdtemp(prefix="knhk-bench-val-"))
    clock = ManualClock(START)
    settings = scratch_settings(folder)
    t0 = time.perf_counter()
    sigma, _types = synthetic_sigma("finance", 100_000)
    sigma |= set(load_pack("finance").sigma)
    with Runtime.open(settings, clock=clock, loop_clock=clock, install_packs=False) as rt:
        root = rt.registry.install_root("finance", sigma, "bench@example.org")
        schema = rt.registry.schema(root.id)
        print(f"Σ_finance: {root.triple_count} triples, {len(schema.event_types)} event types, "
              f"{len(schema.guards)} guards (built in {time.perf_counter() - t0:.1f} s)")
        # 1,000 recent observations of the sector, a realistic mix over declared types
        raws = []
        declared = sorted(schema.event_types)
        for i in range(1000):
            spec = schema.event_types[rng.choice(declared)]
            value = {name: field_value(rng, f.datatype.rsplit("#", 1)[1]) for name, f in spec.fields.items()
                     if f.required or rng.random() < 0.5}
            raws.append({"event_type": spec.event_type, "sector": "finance", "value": value,
                         "timestamp": format_rfc3339(START + i * 1000)})
        clock.set(START + 1_000_000)
        rt.ingestor.ingest_batch(raws)
        # distinct proposals: new event types and new fields on existing ones
        pids = []
        creating: list[float] = []
        for n in range(RUNS):
            fields = tuple(ObservedField(f"x{n}_{k}", frozenset({kind}), samples, k < 2)
                           for k, (kind, samples) in enumerate([("string", ("a",)), ("integer", (1,)),
                                                                ("number", (2.5,)), ("boolean", (True,))]))
            if n % 3 == 2:
                finding = DriftFinding(declared[n * 7 % len(declared)], False, fields[2:], 20)
            else:
                finding = DriftFinding(f"bench{n}.arrived", True, fields, 20)
            plan = propose_drift("finance", root.triples, schema, finding)
            assert plan is not None
            t = time.perf_counter()
            proposal, _ = rt.proposals.create("finance", plan, pattern=f"schema_drift:{finding.event_type}")
            creating.append((time.perf_counter() - t) * 1000)
            pids.append(proposal.id)
        print(f"{len(pids)} proposals created (setup {time.perf_counter() - t0:.1f} s); validating each once …")
        timings: list[float] = []
        pipeline: list[float] = []
        outcomes: dict[str, int] = {}
        for pid in pids:
            clock.advance(1)
            t = time.perf_counter()
            report, _ = rt.proposals.validate(pid)
            timings.append((time.perf_counter() - t) * 1000)
            pipeline.append(report.duration_us / 1000)
            outcomes[report.outcome] = outcomes.get(report.outcome, 0) + 1
        classes: dict[str, int] = {}
        for pid in pids:
            name = rt.proposals.get(pid)[1].change_class or "none"
            classes[name] = classes.get(name, 0) + 1
        recent = rt.reader.recent("finance", 1000)
        full = frozenset(root.triples) | core_triples()
    print(f"outcomes: {outcomes}; change classes (on): {classes}")
    print(f"ProposalService.create (candidate snapshot + change class from ΔΣ + receipt): "
          f"p50 {pct(creating, 0.5):.1f} ms, p95 {pct(creating, 0.95):.1f} ms")
    print(f"ProposalService.validate (pipeline + shadow replay + receipt + stored report), {len(timings)} runs: "
          f"p50 {pct(timings, 0.5):.1f} ms, p95 {pct(timings, 0.95):.1f} ms, p99 {pct(timings, 0.99):.1f} ms, "
          f"max {max(timings):.1f} ms  (target p95 < 50 ms)")
    print(f"  of which the seven stages (validate()): p50 {pct(pipeline, 0.5):.1f} ms, "
          f"p95 {pct(pipeline, 0.95):.1f} ms")
    # baseline: pySHACL over the whole graph (Σ + the 1,000 mapped observations)
    data_triples = set(full)
    for obs in recent:
        data_triples.update(observation_triples(obs.id, obs.event_type, dict(obs.value), schema))
    t = time.perf_counter()
    data = rdflib.Graph()
    data.parse(data=to_ntriples(data_triples), format="nt")
    shapes = rdflib.Graph()
    shapes.parse(data=to_ntriples(shapes_subgraph(full)), format="nt")
    conforms, _, _ = pyshacl_validate(data, shacl_graph=shapes, inference="none")
    baseline = (time.perf_counter() - t) * 1000
    print(f"baseline: pySHACL validating the whole graph ({len(data_triples)} triples) once: {baseline:.0f} ms "
          f"(conforms={conforms}); ratio baseline / our p95 = {baseline / pct(timings, 0.95):.0f}x")
    print("PASS" if pct(timings, 0.95) < 50 else "FAIL")
    _ = statistics


if __name__ == "__main__":
    main()
