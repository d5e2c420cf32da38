"""Q2 type soundness on both backends: the sector's 1,000 most recent observations replayed under Σ_new.

Exactly 1 % violating passes, one more fails (SPEC §6: "fails when the violation rate is > 1 %"), whether
the violations are new (ΔΣ breaks observations that conformed) or the candidate simply does not describe
them. Observations go in through the real ingestor; the proposal through ProposalService.
"""

from __future__ import annotations

import pytest
from loop_support import MONDAY_10, ONE, ingest, observation, plan, term

from knhk.app.runtime import Runtime
from knhk.ontology.namespaces import KNHK, OWL_DATATYPE_PROPERTY, RDF_PROPERTY, RDF_TYPE, RDFS, SH, XSD, iri, literal
from knhk.ops.clock import ManualClock
from knhk.sectors.pack import load_pack


def vibration_shape() -> str:
    path = iri(SH + "path")
    (ps,) = [s for s, p, o in load_pack("manufacturing").sigma if p == path and o == term("manufacturing", "vibration")]
    return ps


def readings(without_vibration: int, total: int = 1000) -> list[dict[str, object]]:
    out = []
    for i in range(total):
        value: dict[str, object] = {"machine_id": f"m{i % 7}", "temperature": 20 + i % 5}
        if i >= without_vibration:
            value["vibration"] = 0.25
        out.append(observation("manufacturing", "machine.reading", value, MONDAY_10 + i * 1000, f"r-{i:04d}"))
    return out


@pytest.mark.parametrize(("violating", "passes"), [(0, True), (10, True), (11, False)])
def test_making_a_field_required_is_judged_on_recent_observations(
        loop_runtime: Runtime, clock: ManualClock, violating: int, passes: bool) -> None:
    ingest(loop_runtime, clock, readings(violating))
    clock.advance(1)
    proposal, created = loop_runtime.proposals.create(
        "manufacturing", plan([(vibration_shape(), iri(SH + "minCount"), ONE)], why="vibration is always sent"),
        pattern=None, author="engineer@plant.example")
    assert created
    report, receipt = loop_runtime.proposals.validate(proposal.id)
    assert report.shadow["observations"] == 1000
    assert report.shadow["violations"] == violating
    assert report.shadow["newly_failing"] == violating
    if passes:
        assert report.outcome == "approved", report.reason
    else:
        assert report.outcome == "rejected"
        assert report.failed_stage == "invariants"
        assert "Q2: 11 of 1000 recent observations (1.1%) violate" in (report.reason or "")
        assert "previously conforming" in (report.reason or "")
    assert receipt.fields["outcome"] == report.outcome
    assert ("invariants" in receipt.fields["data"]["passed"]) is passes


@pytest.mark.parametrize(("undeclared", "passes"), [(10, True), (11, False)])
def test_observations_the_candidate_does_not_describe_count_too(
        loop_runtime: Runtime, clock: ManualClock, undeclared: int, passes: bool) -> None:
    """A new field on machine.reading declared as an integer while 10 or 11 of the recent readings carry a
    string there: those violate Σ_new's shape (they violated Σ_old's closed shape already, so none is new)."""
    raws = readings(0, 1000 - undeclared)
    raws += [observation("manufacturing", "machine.reading",
                         {"machine_id": "m1", "temperature": 21, "vibration": 0.1, "shift": "night"},
                         MONDAY_10 + 1_000_000 + i, f"s-{i}") for i in range(undeclared)]
    ingest(loop_runtime, clock, raws)
    clock.advance(1)
    cls = term("manufacturing", "MachineReading")
    shift = term("manufacturing", "shift")
    shape = term("manufacturing", "MachineReadingShape")
    ps = term("manufacturing", "MachineReadingShape-shift")
    additions = [(shift, iri(RDF_TYPE), iri(RDF_PROPERTY)), (shift, iri(RDF_TYPE), iri(OWL_DATATYPE_PROPERTY)),
                 (shift, iri(RDFS + "domain"), cls), (shift, iri(RDFS + "range"), iri(XSD + "integer")),
                 (shift, iri(KNHK + "fieldName"), literal("shift")), (shape, iri(SH + "property"), ps),
                 (ps, iri(SH + "path"), shift), (ps, iri(SH + "datatype"), iri(XSD + "integer"))]
    proposal, _ = loop_runtime.proposals.create("manufacturing", plan(additions), pattern=None, author="eng")
    report, _ = loop_runtime.proposals.validate(proposal.id)
    assert report.shadow["violations"] == undeclared
    assert report.shadow["newly_failing"] == 0
    assert (report.outcome == "approved") is passes, report.reason
    if not passes:
        assert "Q2: 11 of 1000" in (report.reason or "")
