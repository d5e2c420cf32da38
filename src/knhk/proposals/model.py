"""Proposal records: a ΔΣ against a base snapshot, why it was made, by whom, and where it stands.

A proposal's id is content-addressed (sector, base snapshot, ΔΣ digest), so the same change planned twice on
the same base is the same proposal: cycles never create duplicates.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from knhk.proposals.delta import DeltaSigma

STATUSES = ("created", "held", "approved", "promoted", "rejected", "no_op", "expired", "superseded", "frozen")
#: Final states: no validation, decision or promotion changes them again (``frozen``: its author's identity was
#: erased while it was open, so nobody can tell whether its approvers are the author).
FINAL = frozenset({"promoted", "rejected", "no_op", "expired", "superseded", "frozen"})
#: Final states whose snapshot may never become current (a promoted one may again, after a rollback).
CLOSED = frozenset({"rejected", "expired", "superseded", "frozen"})
#: Where people may still act.
OPEN = frozenset({"created", "held", "approved"})
PROPOSERS = ("rule", "llm", "human")


def proposal_id(sector: str, base_id: str, delta: DeltaSigma) -> str:
    return "prop_" + hashlib.sha256(f"{sector}\n{base_id}\n{delta.digest()}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Proposal:
    id: str
    sector: str
    base_id: str
    candidate_id: str
    delta: DeltaSigma
    pattern: str | None
    rationale: str
    author: str
    proposer: str
    cost: int
    created_us: int
    receipt_id: str | None = None

    def to_json(self, *, with_delta: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id, "sector": self.sector, "base_snapshot_id": self.base_id,
            "candidate_snapshot_id": self.candidate_id, "pattern": self.pattern, "rationale": self.rationale,
            "author": self.author, "proposer": self.proposer, "cost": self.cost, "created_us": self.created_us,
            "summary": self.delta.summary().to_json(), "receipt_id": self.receipt_id,
        }
        if with_delta:
            out["delta"] = self.delta.to_json()
        return out


@dataclass(frozen=True)
class ProposalStatus:
    proposal_id: str
    status: str
    reason: str | None
    held_at_us: int | None
    updated_us: int
    change_class: str | None = None  # standard, normal, major, emergency (knhk.validation.classes)
    class_reason: str | None = None

    @property
    def klass(self) -> dict[str, str]:
        """The class and its reason as every receipt of the proposal carries them (empty before it has one)."""
        if self.change_class is None:
            return {}
        return {"change_class": self.change_class, "class_reason": self.class_reason or ""}
