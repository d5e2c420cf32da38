"""Stage results and the validation report (SPEC §6): what each of the seven stages found and the outcome."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

STAGES = ("static", "invariants", "doctrines", "guards", "performance", "rollback", "compatibility")
OUTCOMES = ("approved", "rejected", "held", "no_op")


@dataclass
class StageResult:
    name: str
    passed: bool
    message: str
    duration_us: int = 0
    skipped: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return "skipped" if self.skipped else ("passed" if self.passed else "failed")

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "status": self.status, "message": self.message,
                "duration_ms": round(self.duration_us / 1000, 3), "details": self.details}


@dataclass
class ValidationReport:
    """The outcome of validating one proposal: every stage, and approved / rejected / held / no_op."""

    proposal_id: str
    snapshot_id: str
    outcome: str
    stages: list[StageResult] = field(default_factory=list)
    failed_stage: str | None = None
    reason: str | None = None
    warnings: list[str] = field(default_factory=list)
    pending_approvals: list[dict[str, Any]] = field(default_factory=list)
    shadow: dict[str, Any] = field(default_factory=dict)
    version_bump: str = "patch"
    irreversible: bool = False
    duration_us: int = 0

    @property
    def passed_stages(self) -> list[str]:
        return [s.name for s in self.stages if s.passed and not s.skipped]

    @property
    def failed_stages(self) -> list[str]:
        return [s.name for s in self.stages if not s.passed and not s.skipped]

    def to_json(self) -> dict[str, Any]:
        return {
            "proposal_id": self.proposal_id,
            "snapshot_id": self.snapshot_id,
            "outcome": self.outcome,
            "failed_stage": self.failed_stage,
            "reason": self.reason,
            "stages": [s.to_json() for s in self.stages],
            "warnings": self.warnings,
            "pending_approvals": self.pending_approvals,
            "shadow": self.shadow,
            "version_bump": self.version_bump,
            "irreversible": self.irreversible,
            "duration_ms": round(self.duration_us / 1000, 3),
        }
