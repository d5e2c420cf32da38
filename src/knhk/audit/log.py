"""Writing and reading the audit log: actor (as pseudonym), action, resource, outcome, reason, metadata.

An audit entry is a ledger entry in the ``audit`` log with ``kind`` = action, ``subject`` = the actor's
pseudonym, and ``data`` = ``{"resource": …, "metadata": {…}}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from knhk.audit.subjects import Subjects
from knhk.errors import InvalidInputError
from knhk.ledger import receipts
from knhk.ledger.ledger import Ledger
from knhk.ops.clock import format_rfc3339
from knhk.proof.entry import Entry

OUTCOMES = ("success", "failure", "denied", "error")


@dataclass(frozen=True)
class AuditEvent:
    seq: int
    ts_us: int
    actor: str
    action: str
    resource: str
    outcome: str
    reason: str | None
    metadata: Mapping[str, Any]
    id: str

    def to_json(self) -> dict[str, Any]:
        """The event as the API and CLI list it (``actor`` is the pseudonym)."""
        return {"seq": self.seq, "time": format_rfc3339(self.ts_us), "actor": self.actor, "action": self.action,
                "resource": self.resource, "outcome": self.outcome, "reason": self.reason,
                "metadata": dict(self.metadata), "id": self.id}

    @classmethod
    def from_entry(cls, entry: Entry) -> AuditEvent:
        data = entry.data or {}
        return cls(entry.seq, entry.ts_us, str(entry.subject), entry.kind, str(data.get("resource", "")),
                   entry.outcome, entry.reason, data.get("metadata") or {}, entry.id)


class AuditLog:
    """Appends to and reads the ``audit`` log; identities are replaced by pseudonyms before writing."""

    def __init__(self, ledger: Ledger, subjects: Subjects) -> None:
        self.ledger = ledger
        self.subjects = subjects

    def record(self, actor: str, action: str, resource: str, outcome: str = "success", *,
               reason: str | None = None, metadata: Mapping[str, Any] | None = None,
               sector: str | None = None) -> Entry:
        if outcome not in OUTCOMES:
            raise InvalidInputError(f"audit outcome must be one of {', '.join(OUTCOMES)}, not {outcome!r}")
        if not resource or len(resource) > 1024:
            raise InvalidInputError("audit resource must be 1 to 1024 characters")
        meta = dict(metadata or {})
        if any(not isinstance(k, str) for k in meta):
            raise InvalidInputError("audit metadata keys must be strings")
        checked = receipts.audit_event(action=action, resource=resource, outcome=outcome, reason=reason,
                                       metadata=meta, sector=sector)  # refuse bad input before any write
        return self.ledger.append(replace(checked, subject=self.subjects.pseudonym(actor)))

    def events(self, *, after_seq: int = -1, limit: int = 100, action: str | None = None,
               newest_first: bool = False) -> list[AuditEvent]:
        return [AuditEvent.from_entry(e)
                for e in self.ledger.entries("audit", after_seq=after_seq, limit=limit, kind=action,
                                             descending=newest_first)]
