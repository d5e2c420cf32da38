"""Plan with the LLM proposer when one is configured (SPEC §5), the rule proposer otherwise or on any failure.

:class:`LlmPlanner` builds the prompt context of one pattern from what the installation knows — the sector's
doctrines, its current Σ (event types, guards, protected classes and properties), the rule proposer's plan as a
baseline and the sector's recent promoted and rejected proposals (the learning loop) — and asks
:class:`~knhk.proposals.llm.LlmProposer`. The pattern is described without observation values (field names,
JSON kinds, counts). The coordinator turns a failure into a ``proposer.fallback`` receipt and the rule plan.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from knhk.detection.pattern import Pattern
from knhk.ontology.namespaces import sector_namespace
from knhk.ontology.schema import SectorSchema
from knhk.proposals.model import Proposal, ProposalStatus
from knhk.proposals.prompt import Example, PromptContext
from knhk.proposals.proposer import DriftFinding, Plan, RateFinding
from knhk.validation.doctrines import Doctrine

if TYPE_CHECKING:
    from knhk.proposals.llm import LlmPlan, LlmProposer

LLM_PROPOSER = "system:llm-proposer"


def pattern_context(pattern: Pattern, finding: DriftFinding | RateFinding) -> dict[str, Any]:
    """The pattern as the prompt shows it: what was seen, never an observation's values."""
    out: dict[str, Any] = {"name": pattern.name, "kind": pattern.kind, "confidence_milli": pattern.confidence_milli,
                           "event_type": finding.event_type}
    if isinstance(finding, DriftFinding):
        out |= {"new_type": finding.new_type, "observations": finding.observations,
                "fields": {f.name: {"json_kinds": sorted(f.kinds), "present_in_all": f.present_in_all}
                           for f in finding.fields}}
    else:
        out |= {"count": finding.count, "window_s": finding.window_s}
    return out


def schema_context(schema: SectorSchema) -> tuple[dict[str, dict[str, str]], list[dict[str, Any]]]:
    """Declared event types (type → field → datatype) and guards of the current Σ."""
    types = {name: {f.name: f.datatype for f in spec.fields.values()}
             for name, spec in sorted(schema.event_types.items())}
    guards = [{"guard_id": g.guard_id, "iri": g.iri, "kind": g.kind, "event_type": g.event_type, "field": g.field,
               "limit": str(g.limit), "ticks": g.ticks, "hot_path": g.hot_path, "criticality": g.criticality,
               "immutable": g.immutable} for g in schema.guards]
    return types, guards


def doctrine_context(doctrines: Sequence[Doctrine]) -> list[dict[str, Any]]:
    return [{"id": d.id, "type": d.type, "level": d.level, "params": dict(d.params), "description": d.description}
            for d in doctrines]


def examples_of(decided: Sequence[tuple[Proposal, ProposalStatus]]) -> list[Example]:
    return [Example("accepted" if st.status == "promoted" else "rejected", p.rationale[:500],
                    p.delta.summary().to_json(), None if st.status == "promoted" else (st.reason or "")[:500])
            for p, st in decided]


class LlmPlanner:
    """Builds prompt contexts and asks the LLM proposer."""

    def __init__(self, proposer: LlmProposer, doctrines_for: Callable[[str], Sequence[Doctrine]],
                 decided: Callable[[str], Sequence[tuple[Proposal, ProposalStatus]]]) -> None:
        self.proposer = proposer
        self.doctrines_for = doctrines_for
        self.decided = decided

    @property
    def model(self) -> str:
        return self.proposer.settings.model

    def context(self, sector: str, schema: SectorSchema, pattern: Pattern, finding: DriftFinding | RateFinding,
                baseline: Plan | None) -> PromptContext:
        types, guards = schema_context(schema)
        return PromptContext(
            sector=sector, namespace=sector_namespace(sector), pattern=pattern_context(pattern, finding),
            event_types=types, guards=guards, protected_classes=sorted(schema.protected_classes),
            protected_properties=sorted(schema.protected_properties),
            doctrines=doctrine_context(self.doctrines_for(sector)), examples=examples_of(self.decided(sector)),
            baseline=None if baseline is None else baseline.delta)

    def plan(self, ctx: PromptContext) -> LlmPlan:
        """The model's plan, or :class:`~knhk.proposals.llm.LlmFailure`."""
        return self.proposer.propose(ctx)
