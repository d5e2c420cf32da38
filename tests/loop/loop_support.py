"""Helpers shared by the loop, validation, governance and proposal tests (imported by their conftests).

Everything here builds real objects: sector packs as shipped, snapshots through the registry, observations
through the ingestor, proposals through :class:`~knhk.loop.proposals.ProposalService`. Times come from a
:class:`~knhk.ops.clock.ManualClock` that only ever moves forward.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from knhk.app.runtime import Runtime, doctrines_for
from knhk.ontology.extract import extract_schema
from knhk.ontology.namespaces import (
    KNHK,
    OWL_CLASS,
    OWL_DATATYPE_PROPERTY,
    RDF_PROPERTY,
    RDF_TYPE,
    RDFS,
    RDFS_CLASS,
    SH,
    XSD,
    iri,
    literal,
    sector_namespace,
)
from knhk.ontology.rdf import Triple
from knhk.ontology.snapshot import Snapshot, make_snapshot
from knhk.ops.clock import ManualClock, format_rfc3339, parse_rfc3339
from knhk.proposals.delta import DeltaSigma
from knhk.proposals.proposer import Plan
from knhk.sectors.pack import load_pack
from knhk.validation.doctrines import Approver, Doctrine
from knhk.validation.pipeline import ValidationInput
from knhk.validation.shadow import ShadowLimits, ShadowResult, replay

#: Monday 23 November 2026, 10:00 UTC — inside every business-hours window.
MONDAY_10 = parse_rfc3339("2026-11-23T10:00:00Z")
TYPE = iri(RDF_TYPE)
SUBCLASS = iri(RDFS + "subClassOf")
DOMAIN = iri(RDFS + "domain")
RANGE = iri(RDFS + "range")
LABEL = iri(RDFS + "label")
PROTECTED = iri(KNHK + "protected")
TRUE = literal("true", XSD + "boolean")
ONE = literal("1", XSD + "integer")


def term(sector: str, local: str) -> str:
    """``term("finance", "Account")`` → ``<https://knhk.dev/ns/finance#Account>``."""
    return iri(sector_namespace(sector) + local)


def new_event_type(sector: str, local: str, event_type: str,
                   fields: Sequence[tuple[str, str, bool]] = ()) -> list[Triple]:
    """A well-formed event-type class with datatype fields (name, xsd local name, required) and a closed
    node shape, as a person would write it."""
    cls = term(sector, local)
    shape = term(sector, local + "Shape")
    out: list[Triple] = [(cls, TYPE, iri(RDFS_CLASS)), (cls, TYPE, iri(OWL_CLASS)),
                         (cls, SUBCLASS, iri(KNHK + "Event")),
                         (cls, iri(KNHK + "eventType"), literal(event_type)),
                         (shape, TYPE, iri(SH + "NodeShape")), (shape, iri(SH + "targetClass"), cls)]
    for name, datatype, required in fields:
        prop = term(sector, f"{local}_{name}")
        ps = term(sector, f"{local}Shape-{name}")
        out += [(prop, TYPE, iri(RDF_PROPERTY)), (prop, TYPE, iri(OWL_DATATYPE_PROPERTY)), (prop, DOMAIN, cls),
                (prop, RANGE, iri(XSD + datatype)), (prop, iri(KNHK + "fieldName"), literal(name)),
                (shape, iri(SH + "property"), ps), (ps, iri(SH + "path"), prop),
                (ps, iri(SH + "datatype"), iri(XSD + datatype))]
        if required:
            out.append((ps, iri(SH + "minCount"), ONE))
    return out


def guard(sector: str, guard_id: str, cls_local: str, *, ticks: int, kind: str = "rate_limit",
          on_field: str | None = None, limit: str = "100", hot: bool = True) -> list[Triple]:
    g = term(sector, guard_id)
    out = [(g, TYPE, iri(KNHK + "Guard")), (g, iri(KNHK + "guardId"), literal(guard_id)),
           (g, iri(KNHK + "guardKind"), literal(kind)), (g, iri(KNHK + "appliesTo"), term(sector, cls_local)),
           (g, iri(KNHK + "limit"), literal(limit, XSD + "decimal")),
           (g, iri(KNHK + "ticks"), literal(str(ticks), XSD + "integer")),
           (g, iri(KNHK + "hotPath"), literal("true" if hot else "false", XSD + "boolean"))]
    if kind == "rate_limit":
        out.append((g, iri(KNHK + "windowSeconds"), literal("60", XSD + "integer")))
    if on_field is not None:
        out.append((g, iri(KNHK + "onField"), literal(on_field)))
    return out


def subject_triples(triples: Iterable[Triple], subject: str) -> list[Triple]:
    return sorted(t for t in triples if t[0] == subject)


def pack_root(sector: str) -> Snapshot:
    return make_snapshot(sector, None, load_pack(sector).sigma, origin="root", created_us=MONDAY_10)


def pipeline_input(sector: str, delta: DeltaSigma, *, doctrines: Sequence[Doctrine] | None = None,
                   approvers: Sequence[Approver] = (), author: str = "sub_author", now_us: int = MONDAY_10,
                   budget: int = 100, current_id: str | None = None, base: Snapshot | None = None,
                   shadow: Callable[[], ShadowResult] | None = None, limits: ShadowLimits | None = None,
                   observations: Sequence[Any] = ()) -> ValidationInput:
    """The pipeline's input for ``delta`` on the sector pack's root (or ``base``), as ProposalService builds it."""
    base = base or pack_root(sector)
    candidate = frozenset(delta.apply(base.triples))
    candidate_id = "c" * 64
    base_schema = extract_schema(sector, base.id, base.triples)
    cand_schema = extract_schema(sector, candidate_id, candidate)
    lim = limits or ShadowLimits()

    def run_shadow() -> ShadowResult:
        return replay(base_triples=base.triples, candidate_triples=candidate, base_schema=base_schema,
                      candidate_schema=cand_schema, delta=delta, observations=observations, limits=lim)

    return ValidationInput(
        proposal_id="prop_test", sector=sector, author=author, delta=delta, base_id=base.id,
        candidate_id=candidate_id, current_id=base.id if current_id is None else current_id,
        base_triples=base.triples, candidate_triples=candidate, base_schema=base_schema,
        candidate_schema=cand_schema, ancestry=frozenset({base.id}), stored_candidate_digest=None,
        candidate_digest="d" * 64, doctrines=doctrines_for(sector) if doctrines is None else doctrines,
        approvers=approvers, now_us=now_us, remaining_budget=budget, shadow=shadow or run_shadow,
        limits=lim)


def open_runtime(settings: Any, clock: ManualClock, *, install_packs: bool = True) -> Runtime:
    """A runtime whose system and loop clocks are the same manual clock."""
    return Runtime.open(settings, clock=clock, loop_clock=clock, install_packs=install_packs)


def observation(sector: str, event_type: str, value: dict[str, Any], ts_us: int,
                obs_id: str | None = None) -> dict[str, Any]:
    raw: dict[str, Any] = {"event_type": event_type, "sector": sector, "timestamp": format_rfc3339(ts_us),
                           "value": value}
    if obs_id is not None:
        raw["id"] = obs_id
    return raw


def ingest(rt: Runtime, clock: ManualClock, raws: Sequence[dict[str, Any]]) -> None:
    """Ingest in batches of 1,000 with the clock at the newest timestamp of each batch (nothing skewed)."""
    for start in range(0, len(raws), 1000):
        batch = raws[start:start + 1000]
        newest = max(parse_rfc3339(r["timestamp"]) for r in batch)
        clock.set(max(clock.now_us(), newest))
        rt.ingestor.ingest_batch(batch)


def plan(additions: Iterable[Triple] = (), removals: Iterable[Triple] = (), why: str = "test change") -> Plan:
    return Plan(DeltaSigma.of(additions, removals), why)


def kinds(rt: Runtime, ids: Iterable[str]) -> list[str]:
    by_id = {e.id: e.kind for e in rt.ledger.entries("receipts", limit=10_000)}
    return [by_id[i] for i in ids]
