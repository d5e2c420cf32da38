"""Request and response bodies of the API (the OpenAPI document is generated from these).

Responses that show a domain record use that record's own JSON view (``Observation``, ``PointerMove``,
``Erasure``), so the API cannot drift from what the domain says it is.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from knhk.audit.erasure import ErasureReport as Erasure
from knhk.errors import InvalidInputError, UsageError
from knhk.observations.model import ObservationView as Observation
from knhk.ontology.registry import PointerMoveView as PointerMove

__all__ = ["Erasure", "Observation", "PointerMove"]  # the domain views used as response models


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ObservationIn(_Model):
    id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:-]{1,128}$",
                           description="Client id: an idempotency key (1–128 of [A-Za-z0-9_.:-]).")
    event_type: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,128}$", description="1–128 characters of [A-Za-z0-9_.:-].")
    sector: str = Field(pattern=r"^[a-z][a-z0-9-]{0,62}$", description="Lowercase sector slug.")
    timestamp: str | None = Field(default=None, description="RFC 3339 with offset; defaults to the time of receipt.")
    value: dict[str, Any] = Field(default_factory=dict, description="JSON object, at most 64 KiB encoded.")
    metadata: dict[str, str] = Field(default_factory=dict)


class ObservationBatchIn(_Model):
    observations: list[ObservationIn] = Field(max_length=10_000, description="1–10,000 observations, atomic.")


#: The batch route's request body in the OpenAPI document: ``ObservationBatchIn`` (the route validates it
#: itself, :func:`batch_items`, so it declares the schema instead of a parameter).
BATCH_REQUEST_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "title": "ObservationBatchIn", "type": "object", "additionalProperties": False, "required": ["observations"],
    "properties": {"observations": {"type": "array", "maxItems": 10_000, "description": "1–10,000 observations, "
                                    "atomic.", "items": {"$ref": "#/components/schemas/ObservationIn"}}}}}}}}
_NOT_NULL = ("event_type", "sector", "value", "metadata")  # ObservationIn fields that may be absent but not null


def batch_items(document: Any) -> list[dict[str, Any]]:
    """The items of a batch body ``{"observations": [...]}`` as sent, refusing what ``ObservationBatchIn``
    refuses before the ingest's own checks of each item (:func:`knhk.observations.model.parse_observation`,
    which applies the rules of ``ObservationIn``): 422 for a wrong shape, naming the item; 413 (from the
    ingest) beyond 10,000 items; 400 for an empty batch."""
    if not isinstance(document, dict) or not isinstance(document.get("observations"), list):
        raise InvalidInputError('the body must be an object {"observations": [...]} with a list of observations',
                                field="observations")
    extra = sorted(str(k) for k in document if k != "observations")
    if extra:
        raise InvalidInputError(f"unknown field(s) {', '.join(extra)}; a batch has only observations", field=extra[0])
    items: list[Any] = document["observations"]
    if not items:
        raise UsageError("a batch needs at least one observation")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidInputError(f"observation {index}: an observation must be a JSON object", index=index)
        for name in _NOT_NULL:
            if name in item and item[name] is None:
                raise InvalidInputError(f"observation {index}: {name} must not be null", field=name, index=index)
    return items


class IngestResult(BaseModel):
    observation: Observation
    duplicate: bool
    violations: list[dict[str, Any]]
    receipts: list[str]
    receipts_pending: int = Field(0, description="Receipts committed with the observation but not yet in the "
                                                 "ledger; they follow within the drain interval.")


class BatchResult(BaseModel):
    stored: int
    duplicates: int
    results: list[IngestResult]


class Page(BaseModel):
    items: list[dict[str, Any]]
    next_cursor: str | None


class ObservationPage(BaseModel):
    items: list[Observation]
    next_cursor: str | None


class DetectIn(_Model):
    sector: str


class Detection(BaseModel):
    sector: str
    detected_at: str
    patterns: list[dict[str, Any]]
    dropped: list[dict[str, Any]]
    errors: list[dict[str, str]]


class ProposalIn(_Model):
    sector: str
    rationale: str = Field(min_length=1, max_length=4096)
    additions: list[list[str]] = Field(default_factory=list, description="[subject, predicate, object] N-Triples terms")
    removals: list[list[str]] = Field(default_factory=list)
    change_class: Literal["standard", "normal", "major"] | None = Field(
        default=None, description="Ask for a class at least this high (never lowers the class decided from ΔΣ).")


class EmergencyIn(_Model):
    justification: str = Field(min_length=1, max_length=4096)


class ReviewIn(_Model):
    verdict: Literal["accepted", "rejected"]
    comment: str | None = Field(default=None, max_length=4096)


class Proposal(BaseModel):
    id: str
    sector: str
    base_snapshot_id: str
    candidate_snapshot_id: str
    pattern: str | None
    rationale: str
    author: str
    proposer: str
    cost: int
    created_us: int
    summary: dict[str, list[str]]
    receipt_id: str | None
    status: str
    reason: str | None
    change_class: str | None = None
    class_reason: str | None = None
    delta: dict[str, Any] | None = None
    validations: list[dict[str, Any]] | None = None
    approvals: list[dict[str, Any]] | None = None


class ApprovalIn(_Model):
    decision: Literal["approve", "reject"] = "approve"
    comment: str | None = Field(default=None, max_length=4096)


class Execution(BaseModel):
    proposal_id: str
    outcome: str
    change_class: str | None = None
    class_reason: str | None = None
    promoted_snapshot: str | None
    receipts: list[str]
    report: dict[str, Any] | None


class PromoteIn(_Model):
    sector: str | None = None
    validation_receipt_id: str | None = None
    force: bool = False
    reason: str | None = Field(default=None, max_length=4096)


class RollbackIn(_Model):
    sector: str
    reason: str | None = Field(default=None, max_length=4096)


class CycleIn(_Model):
    sector: str


class Cycle(BaseModel):
    id: str
    sector: str
    started_us: int
    finished_us: int
    outcome: str
    counts: dict[str, int]
    receipt_ids: list[str]
    error: str | None
    duration_ms: float | None = None
    patterns: list[dict[str, Any]] | None = None
    proposals: list[dict[str, Any]] | None = None
    alerts: list[dict[str, Any]] | None = None


class Checkpoint(BaseModel):
    log: str
    tree_size: int
    root_hash: str
    key_id: str
    issued: str
    note: str


class Consistency(BaseModel):
    log: str
    first: int
    second: int
    first_root: str
    second_root: str
    proof: list[str]


class Bundle(BaseModel):
    log: str
    entry: dict[str, Any]
    leaf_index: int
    tree_size: int
    inclusion_proof: list[str]
    checkpoint: str
    public_key: str


class Health(BaseModel):
    status: Literal["healthy", "degraded", "unhealthy"]
    version: str
    uptime_s: float
    dependencies: dict[str, dict[str, Any]]


class RelaxationIn(_Model):
    sector: str = Field(pattern=r"^[a-z][a-z0-9-]{0,62}$", description="The sector whose guard is relaxed.")
    duration_s: int = Field(ge=1, description="How long the guard is off once the request is granted (seconds).")
    reason: str = Field(min_length=1, max_length=4096, description="Why (recorded in the receipt).")


class RevokeIn(_Model):
    reason: str | None = Field(default=None, max_length=4096)


class RelaxationDecision(BaseModel):
    subject: str
    roles: list[str]
    sector: str | None
    decision: str
    comment: str | None
    at_us: int


class Relaxation(BaseModel):
    """A guard relaxation request (SPEC §7) and where it stands (``state``: pending, scheduled, active,
    rejected, revoked, ended, expired)."""

    id: str
    sector: str
    guard_id: str
    criticality: str
    snapshot_id: str
    author: str
    reason: str
    duration_s: int
    quorum: int
    min_review_s: int
    requested_us: int
    status: str
    state: str
    starts_us: int | None
    ends_us: int | None
    note: str | None
    approvals: int
    decisions: list[RelaxationDecision]
